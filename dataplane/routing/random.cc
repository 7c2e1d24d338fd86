#include "dataplane/routing/random.h"

#include <limits>

namespace llmproxy {

uint64_t Random::Uniform(uint64_t n) {
  // Reject the top partial block so every residue is equally likely.
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  while (true) {
    const uint64_t x = NextU64();
    if (x < limit) return x % n;
  }
}

double Random::NextDouble() {
  // 53 random bits: exactly representable, uniform in [0, 1).
  return static_cast<double>(NextU64() >> 11) * 0x1.0p-53;
}

Random& ThreadLocalRandom() {
  thread_local SeededRandom random([] {
    std::random_device device;
    return (static_cast<uint64_t>(device()) << 32) ^ device();
  }());
  return random;
}

}  // namespace llmproxy
