// Ambiguous body keys: Go-based upstreams match JSON keys case-insensitively (and fold
// U+017F to 's'), so a body with both "model" and "MODEL" would be routed, logged and
// allow-listed by one value and served by the other. Such a body, or one with a
// duplicate "model" or "stream", gets 400 before any upstream sees it; the connection
// stays usable.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/hostile/raw_client_util.h"
#include "tests/integration/proxy_test_util.h"
#include "tests/mockllm/mock_llm.h"

namespace llmproxy {
namespace {

using hostile::RoundTrip;

class BodyKeys : public ::testing::Test {
 protected:
  // Sends `body`, then a valid request on the same connection: the first gets 400 with
  // `message`, the second 200 from backend a; backend b (model m2) is never asked.
  void ExpectRefusedThenServed(const std::string& body, const std::string& message) {
    SCOPED_TRACE(body);
    const size_t before = a.RequestCount();
    hostile::Exchange ex = RoundTrip(
        worker.port(), hostile::Post("/v1/chat/completions", body) +
                           hostile::Post("/v1/chat/completions", kValid, "Connection: close\r\n"));
    ASSERT_EQ(ex.replies.size(), 2u) << ex.raw;
    const hostile::RawReply& refused = ex.replies[0];
    EXPECT_EQ(refused.status_line, "HTTP/1.1 400 Bad Request");
    EXPECT_EQ(refused.Get("content-type"), "application/json");
    const auto error = nlohmann::json::parse(refused.body, nullptr, false);
    ASSERT_FALSE(error.is_discarded()) << refused.body;
    EXPECT_EQ(error["error"]["message"], "Invalid request body: " + message);
    EXPECT_EQ(error["error"]["type"], "invalid_request_error");
    EXPECT_EQ(ex.replies[1].status_line, "HTTP/1.1 200 OK");
    EXPECT_EQ(a.RequestCount(), before + 1) << "only the valid request is forwarded";
    EXPECT_EQ(b.RequestCount(), 0u) << "the ambiguous model reached its backend";
  }

  static constexpr const char* kValid = R"({"model":"m1","messages":[]})";
  MockLlm a{test::NamedMock("a")};
  MockLlm b{test::NamedMock("b")};
  test::TestWorker worker{test::TestConfig(
      {test::MockBackend("a", a.BaseUrl(), {"m1"}), test::MockBackend("b", b.BaseUrl(), {"m2"})})};
};

TEST_F(BodyKeys, AModelKeyThatDiffersOnlyInCaseIs400) {
  ExpectRefusedThenServed(R"({"model":"m1","MODEL":"m2","messages":[]})",
                          R"(key "MODEL" differs from "model" only in case)");
  ExpectRefusedThenServed(R"({"Model":"m2","model":"m1","messages":[]})",
                          R"(key "Model" differs from "model" only in case)");
  // Escaped key bytes are compared after unescaping.
  ExpectRefusedThenServed(R"({"model":"m1","\u004dodel":"m2","messages":[]})",
                          R"(key "Model" differs from "model" only in case)");
}

TEST_F(BodyKeys, AStreamKeyThatDiffersOnlyInCaseIs400) {
  ExpectRefusedThenServed(R"({"model":"m1","Stream":true,"messages":[]})",
                          R"(key "Stream" differs from "stream" only in case)");
  // Go folds U+017F LATIN SMALL LETTER LONG S to 's': "ſtream" is "stream" to it.
  ExpectRefusedThenServed("{\"model\":\"m1\",\"\xC5\xBFtream\":true,\"messages\":[]}",
                          "key \"\xC5\xBFtream\" differs from \"stream\" only in case");
}

TEST_F(BodyKeys, DuplicateModelOrStreamKeysAre400) {
  ExpectRefusedThenServed(R"({"model":"m1","messages":[],"model":"m2"})",
                          R"(duplicate "model" key)");
  ExpectRefusedThenServed(R"({"model":"m1","stream":false,"stream":true,"messages":[]})",
                          R"(duplicate "stream" key)");
}

TEST_F(BodyKeys, KeysOnlyNestedDeeperAreNotAmbiguous) {
  // "MODEL" inside messages is the client's content, not a routing key.
  hostile::Exchange ex = RoundTrip(
      worker.port(),
      hostile::Post("/v1/chat/completions",
                    R"({"model":"m1","messages":[{"role":"user","content":"x","MODEL":"m2"}]})",
                    "Connection: close\r\n"));
  ASSERT_EQ(ex.replies.size(), 1u) << ex.raw;
  EXPECT_EQ(ex.replies[0].status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(a.RequestCount(), 1u);
  EXPECT_EQ(b.RequestCount(), 0u);
}

}  // namespace
}  // namespace llmproxy
