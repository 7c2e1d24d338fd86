// Access-log lines fed with RequestRecords directly: every JSON line parses and carries
// the documented fields, client input is escaped and cut, text lines are key=value, and
// --log-level warn silences them.
#include "dataplane/observe/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/log/logging.h"

namespace llmproxy {
namespace {

using nlohmann::json;

RequestRecord FullRecord() {
  RequestRecord r;
  r.request_id = "req-42";
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.status = 200;
  r.model_requested = "gpt-4o";
  r.model_resolved = "deepseek-chat";
  r.backend = "deepseek";
  r.attempts = 2;
  r.stream = true;
  r.ttft_seconds = 0.25;
  r.duration_seconds = 3.5;
  r.overhead_seconds = 0.00012;
  r.prompt_tokens = 17;
  r.completion_tokens = 230;
  r.bytes_in = 321;
  r.bytes_out = 4567;
  r.client_address = "127.0.0.1:50000";
  return r;
}

// 2026-12-01T04:00:00.123Z
std::chrono::system_clock::time_point FixedTime() {
  return std::chrono::system_clock::time_point(std::chrono::milliseconds(1796097600123));
}

TEST(AccessLogFormat, JsonLineHasEveryField) {
  std::string line = FormatAccessLogLine(FullRecord(), LogFormat::kJson, FixedTime());
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);  // exactly one line
  json j = json::parse(line);
  EXPECT_EQ(j["ts"], "2026-12-01T04:00:00.123Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["msg"], "access");
  EXPECT_EQ(j["request_id"], "req-42");
  EXPECT_EQ(j["method"], "POST");
  EXPECT_EQ(j["path"], "/v1/chat/completions");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["model_requested"], "gpt-4o");
  EXPECT_EQ(j["model_resolved"], "deepseek-chat");
  EXPECT_EQ(j["backend"], "deepseek");
  EXPECT_EQ(j["attempts"], 2);
  EXPECT_EQ(j["stream"], true);
  EXPECT_DOUBLE_EQ(j["ttft_seconds"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(j["duration_seconds"].get<double>(), 3.5);
  EXPECT_DOUBLE_EQ(j["overhead_seconds"].get<double>(), 0.00012);
  EXPECT_EQ(j["prompt_tokens"], 17);
  EXPECT_EQ(j["completion_tokens"], 230);
  EXPECT_EQ(j["bytes_in"], 321);
  EXPECT_EQ(j["bytes_out"], 4567);
  EXPECT_EQ(j["client"], "127.0.0.1:50000");
  EXPECT_FALSE(j.contains("error"));  // only when the proxy made the response
}

TEST(AccessLogFormat, AbsentValuesAreNullAndProxyErrorsAreShown) {
  RequestRecord r;
  r.request_id = "req-1";
  r.method = "POST";
  r.path = "/v1/chat/completions";
  r.status = 401;
  r.duration_seconds = 0.0001;
  r.client_address = "127.0.0.1:1";
  r.error = "invalid API key";
  json j = json::parse(FormatAccessLogLine(r, LogFormat::kJson, FixedTime()));
  EXPECT_TRUE(j["ttft_seconds"].is_null());
  EXPECT_TRUE(j["prompt_tokens"].is_null());
  EXPECT_TRUE(j["completion_tokens"].is_null());
  EXPECT_EQ(j["backend"], "");
  EXPECT_EQ(j["model_resolved"], "");
  EXPECT_EQ(j["attempts"], 0);
  EXPECT_EQ(j["stream"], false);
  EXPECT_EQ(j["status"], 401);
  EXPECT_EQ(j["error"], "invalid API key");
}

TEST(AccessLogFormat, ClientInputIsEscapedAndCut) {
  RequestRecord r = FullRecord();
  r.model_requested = "evil\"}\n{\"status\":500,\\ \x01 \xff\xfe caf\xc3\xa9 ";
  r.model_requested += std::string(1000, 'x');
  r.request_id = std::string("id\r\nX-Injected: 1");
  std::string line = FormatAccessLogLine(r, LogFormat::kJson, FixedTime());
  EXPECT_EQ(line.find('\n'), line.size() - 1);
  EXPECT_EQ(line.find('\r'), std::string::npos);
  json j = json::parse(line);  // throws on invalid UTF-8 or broken escaping
  std::string model = j["model_requested"];
  EXPECT_EQ(
      model.rfind("evil\"}\n{\"status\":500,\\ \x01 \xef\xbf\xbd\xef\xbf\xbd caf\xc3\xa9 x", 0), 0u)
      << model;
  EXPECT_LE(model.size(), 256u + 8);  // cut at 256 input bytes (+ replacement growth)
  EXPECT_EQ(j["status"], 200);        // the injected field did not take
  EXPECT_EQ(j["request_id"], "id\r\nX-Injected: 1");

  // A multi-byte character is never split by the cut.
  RequestRecord cjk = FullRecord();
  cjk.model_requested.clear();
  for (int i = 0; i < 200; ++i) cjk.model_requested += "\xe6\xa8\xa1";  // 模, 3 bytes
  json k = json::parse(FormatAccessLogLine(cjk, LogFormat::kJson, FixedTime()));
  std::string cut = k["model_requested"];
  EXPECT_EQ(cut.size(), 255u);  // 85 whole characters
}

TEST(AccessLogFormat, TextLineIsKeyValue) {
  std::string line = FormatAccessLogLine(FullRecord(), LogFormat::kText, FixedTime());
  EXPECT_EQ(line,
            "2026-12-01T04:00:00.123Z info access request_id=req-42 method=POST "
            "path=/v1/chat/completions status=200 model_requested=gpt-4o "
            "model_resolved=deepseek-chat backend=deepseek attempts=2 stream=true "
            "ttft_seconds=0.25 duration_seconds=3.5 overhead_seconds=0.00012 prompt_tokens=17 "
            "completion_tokens=230 bytes_in=321 bytes_out=4567 client=127.0.0.1:50000\n");

  RequestRecord r = FullRecord();
  r.ttft_seconds.reset();
  r.prompt_tokens.reset();
  r.backend.clear();
  r.model_requested = "two words=\"x\"\n";
  std::string text = FormatAccessLogLine(r, LogFormat::kText, FixedTime());
  EXPECT_NE(text.find(" ttft_seconds=- "), std::string::npos) << text;
  EXPECT_NE(text.find(" prompt_tokens=- "), std::string::npos) << text;
  EXPECT_NE(text.find(" backend=- "), std::string::npos) << text;
  EXPECT_NE(text.find(" model_requested=\"two words=\\\"x\\\"\\n\" "), std::string::npos) << text;
  EXPECT_EQ(text.find('\n'), text.size() - 1);
}

TEST(AccessLogFormat, ObserverWritesOneLinePerRequestToItsSink) {
  std::vector<std::string> lines;
  AccessLog log([&lines](std::string_view l) { lines.emplace_back(l); }, LogFormat::kJson);
  RequestRecord r = FullRecord();
  log.OnRequestStart();
  log.OnAttempt("deepseek", AttemptOutcome::kServerError);
  log.OnAttempt("glm", AttemptOutcome::kSuccess);
  log.OnRequestDone(r);
  r.request_id = "req-43";
  log.OnRequestDone(r);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["request_id"], "req-42");
  EXPECT_EQ(json::parse(lines[1])["request_id"], "req-43");
}

TEST(AccessLogFormat, FollowsTheProcessLogFormatAndLevel) {
  std::vector<std::string> lines;
  AccessLog log([&lines](std::string_view l) { lines.emplace_back(l); });
  InitLogging(LogFormat::kJson, LogLevel::kInfo);
  log.OnRequestDone(FullRecord());
  InitLogging(LogFormat::kText, LogLevel::kInfo);
  log.OnRequestDone(FullRecord());
  InitLogging(LogFormat::kJson, LogLevel::kWarn);  // --log-level warn: no access lines
  log.OnRequestDone(FullRecord());
  InitLogging(LogFormat::kText, LogLevel::kInfo);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(json::parse(lines[0])["msg"], "access");
  EXPECT_NE(lines[1].find(" info access request_id=req-42 "), std::string::npos) << lines[1];
}

// The default AccessLog writes to stderr; capture fd 2 to see the real line.
TEST(AccessLogFormat, DefaultSinkIsStderr) {
  InitLogging(LogFormat::kJson, LogLevel::kInfo);
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  int saved = ::dup(STDERR_FILENO);
  ::dup2(pipefd[1], STDERR_FILENO);
  {
    AccessLog log;
    log.OnRequestDone(FullRecord());
  }
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(pipefd[1]);
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  InitLogging(LogFormat::kText, LogLevel::kInfo);
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(json::parse(got)["bytes_out"], 4567);
}

}  // namespace
}  // namespace llmproxy
