// The random source the balancers draw from. Injected (never global) so tests use a
// fixed seed or a scripted sequence. Not thread-safe: use one instance per thread
// (ThreadLocalRandom() in production).
#pragma once

#include <cstdint>
#include <random>

namespace llmproxy {

class Random {
 public:
  virtual ~Random() = default;
  // A uniformly distributed 64-bit value.
  virtual uint64_t NextU64() = 0;
  // Uniform in [0, n); n must be > 0. Default: rejection sampling over NextU64, unbiased.
  virtual uint64_t Uniform(uint64_t n);
  // Uniform in [0, 1).
  double NextDouble();
};

// A seeded Mersenne Twister: deterministic for a given seed (tests, benchmarks).
class SeededRandom : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : engine_(seed) {}
  uint64_t NextU64() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// This thread's generator, seeded once from std::random_device. For the data plane's
// io threads: no lock, no sharing between threads.
Random& ThreadLocalRandom();

}  // namespace llmproxy
