// The buffered access log (the worker's default): lines are held per thread and written
// in whole-line batches, an idle buffer is written by the background flusher, Flush() and
// the destructor write what is left, and concurrent threads never lose, duplicate or mix
// lines. Written to a temp file or a pipe instead of stderr.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/log/logging.h"
#include "dataplane/observe/access_log.h"

namespace llmproxy {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

RequestRecord Record(const std::string& id) {
  RequestRecord r;
  r.request_id = id;
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.status = 200;
  r.model_requested = "gpt-4o";
  r.model_resolved = "deepseek-chat";
  r.backend = "deepseek";
  r.attempts = 1;
  r.duration_seconds = 0.25;
  r.overhead_seconds = 0.000123;
  r.client_address = "127.0.0.1:50000";
  return r;
}

// An unlinked temp file: everything written to its fd can be read back with pread.
class TempFile {
 public:
  TempFile() {
    char path[] = "/tmp/llmproxy-access-log-XXXXXX";
    fd_ = ::mkstemp(path);
    if (fd_ >= 0) ::unlink(path);
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  std::string Contents() const {
    std::string out;
    char buf[65536];
    off_t at = 0;
    ssize_t n;
    while ((n = ::pread(fd_, buf, sizeof buf, at)) > 0) {
      out.append(buf, static_cast<size_t>(n));
      at += n;
    }
    return out;
  }

 private:
  int fd_ = -1;
};

// Splits on '\n'; every line (the last included) must end with one.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) {
      ADD_FAILURE() << "unterminated tail: " << text.substr(pos);
      break;
    }
    lines.push_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return lines;
}

std::vector<json> ParseLines(const std::string& text) {
  std::vector<json> out;
  for (const std::string& l : Lines(text)) {
    json j = json::parse(l, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not one JSON object: " << l;
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

AccessLogBufferOptions Options(int fd) {
  AccessLogBufferOptions o;
  o.fd = fd;
  o.format = LogFormat::kJson;
  return o;
}

template <typename Pred>
bool WaitUntil(Pred pred, milliseconds deadline) {
  const auto end = std::chrono::steady_clock::now() + deadline;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return pred();
}

class AccessLogBuffer : public ::testing::Test {
 protected:
  void SetUp() override { InitLogging(LogFormat::kText, LogLevel::kInfo); }
};

TEST_F(AccessLogBuffer, LinesAreHeldUntilFlushThenArriveWholeAndInOrder) {
  TempFile file;
  ASSERT_GE(file.fd(), 0);
  AccessLogBufferOptions o = Options(file.fd());
  o.buffer_bytes = 1 << 20;
  o.max_age = std::chrono::hours(1);  // only Flush() writes in this test
  AccessLog log(o);
  for (int i = 0; i < 200; ++i) log.OnRequestDone(Record("req-" + std::to_string(i)));
  EXPECT_EQ(file.Contents(), "");  // no write per request
  log.Flush();
  std::vector<json> lines = ParseLines(file.Contents());
  ASSERT_EQ(lines.size(), 200u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(lines[i]["request_id"], "req-" + std::to_string(i));
    EXPECT_EQ(lines[i]["msg"], "access");
    EXPECT_EQ(lines[i]["status"], 200);
  }
  log.Flush();  // nothing left: no duplicates
  EXPECT_EQ(ParseLines(file.Contents()).size(), 200u);
}

TEST_F(AccessLogBuffer, FullBufferIsWrittenInWholeLinesWithoutFlush) {
  TempFile file;
  ASSERT_GE(file.fd(), 0);
  AccessLogBufferOptions o = Options(file.fd());
  o.buffer_bytes = 4096;
  o.max_age = std::chrono::hours(1);
  AccessLog log(o);
  const size_t line_size =
      FormatAccessLogLine(Record("req-0000"), LogFormat::kJson, std::chrono::system_clock::now())
          .size();
  // Every line has the same size (fixed-width ids), so a batch is always `batch` lines.
  const size_t batch = (4096 + line_size - 1) / line_size;
  const int count = static_cast<int>(3 * batch + 1);
  for (int i = 0; i < count; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "req-%04d", i);
    log.OnRequestDone(Record(id));
  }
  // Three full batches went out on their own, as whole lines; the last line waits.
  const std::string written = file.Contents();
  EXPECT_EQ(written.size(), 3 * batch * line_size);
  EXPECT_EQ(ParseLines(written).size(), 3 * batch);
  log.Flush();
  std::vector<json> all = ParseLines(file.Contents());
  ASSERT_EQ(all.size(), static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "req-%04d", i);
    EXPECT_EQ(all[i]["request_id"], id);
  }
}

TEST_F(AccessLogBuffer, IdleBufferIsWrittenByTheBackgroundFlusher) {
  TempFile file;
  ASSERT_GE(file.fd(), 0);
  AccessLog log(Options(file.fd()));  // defaults: 100 ms max age, 100 ms flusher period
  log.OnRequestDone(Record("lonely"));
  // Generous bound (the design target is ~200 ms).
  ASSERT_TRUE(WaitUntil([&] { return !file.Contents().empty(); }, milliseconds(3000)));
  std::vector<json> lines = ParseLines(file.Contents());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["request_id"], "lonely");
}

TEST_F(AccessLogBuffer, DestructorWritesWhatIsLeft) {
  TempFile file;
  ASSERT_GE(file.fd(), 0);
  {
    AccessLogBufferOptions o = Options(file.fd());
    o.max_age = std::chrono::hours(1);
    AccessLog log(o);
    log.OnRequestDone(Record("a"));
    log.OnRequestDone(Record("b"));
    EXPECT_EQ(file.Contents(), "");
  }
  std::vector<json> lines = ParseLines(file.Contents());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["request_id"], "a");
  EXPECT_EQ(lines[1]["request_id"], "b");
}

TEST_F(AccessLogBuffer, LogLevelWarnWritesNothing) {
  TempFile file;
  ASSERT_GE(file.fd(), 0);
  {
    AccessLog log(Options(file.fd()));
    InitLogging(LogFormat::kJson, LogLevel::kWarn);
    log.OnRequestDone(Record("silenced"));
    InitLogging(LogFormat::kText, LogLevel::kInfo);
  }
  EXPECT_EQ(file.Contents(), "");
}

// Many io threads at once, into a pipe (where one big write can be split by the kernel):
// every line arrives exactly once, whole, and each thread's lines in its order.
TEST_F(AccessLogBuffer, ConcurrentThreadsLoseDuplicateAndMixNothing) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  ::fcntl(pipefd[1], F_SETPIPE_SZ, 4096);  // small pipe: writes block and get split
  std::string got;
  std::thread reader([&] {
    char buf[8192];
    ssize_t n;
    while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  });
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  {
    AccessLogBufferOptions o = Options(pipefd[1]);
    o.max_age = milliseconds(1);  // mix size- and age-triggered writes and the flusher
    o.flush_interval = milliseconds(1);
    AccessLog log(o);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&log, t] {
        for (int i = 0; i < kPerThread; ++i) {
          // Built with += : GCC 12 warns falsely (-Wrestrict) on "t" + std::to_string(t).
          std::string id = "t";
          id += std::to_string(t);
          id += '-';
          id += std::to_string(i);
          RequestRecord r = Record(id);
          // Lines of different lengths, so a split would show.
          r.model_requested.append(static_cast<size_t>(i % 97), 'x');
          log.OnRequestDone(r);
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  ::close(pipefd[1]);
  reader.join();
  ::close(pipefd[0]);

  std::vector<json> lines = ParseLines(got);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kPerThread));
  std::map<int, int> next;  // thread -> next expected index
  for (const json& l : lines) {
    const std::string id = l["request_id"];
    const size_t dash = id.find('-');
    ASSERT_NE(dash, std::string::npos) << id;
    const int t = std::stoi(id.substr(1, dash - 1));
    const int i = std::stoi(id.substr(dash + 1));
    EXPECT_EQ(i, next[t]) << "thread " << t << " out of order or duplicated";
    next[t] = i + 1;
    EXPECT_EQ(l["model_requested"].get<std::string>().size(), 6u + static_cast<size_t>(i % 97));
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kPerThread) << t;
}

// Seconds use std::to_chars now: still JSON numbers, read back within 1e-6 relative.
TEST_F(AccessLogBuffer, SecondsRoundTripWithinOneMillionth) {
  for (double v : {0.0, 1e-9, 1.234567e-7, 0.000123456789, 0.25, 3.5, 1.0 / 3, 59.999999,
                   123456.789, 9.87654321e12}) {
    RequestRecord r = Record("s");
    r.duration_seconds = v;
    r.overhead_seconds = v / 7;
    r.ttft_seconds = v / 3;
    const std::string line =
        FormatAccessLogLine(r, LogFormat::kJson, std::chrono::system_clock::now());
    json j = json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    for (auto [key, want] : {std::pair<const char*, double>{"duration_seconds", v},
                             {"overhead_seconds", v / 7},
                             {"ttft_seconds", v / 3}}) {
      ASSERT_TRUE(j[key].is_number()) << line;
      const double got = j[key].get<double>();
      EXPECT_LE(std::fabs(got - want), 1e-6 * std::fabs(want)) << key << " " << line;
    }
  }
  RequestRecord r = Record("nan");
  r.duration_seconds = std::nan("");
  json j = json::parse(FormatAccessLogLine(r, LogFormat::kJson, std::chrono::system_clock::now()));
  EXPECT_TRUE(j["duration_seconds"].is_null());
}

}  // namespace
}  // namespace llmproxy
