// Error bodies that echo client bytes: SanitizeUtf8 keeps them valid UTF-8 (cut on a
// character boundary, bad bytes replaced) so the JSON stays valid whatever was sent.
#include "dataplane/protocols/error_response.h"

#include <string>

#include <gtest/gtest.h>

namespace llmproxy {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(SanitizeUtf8, AsciiAndValidUtf8PassUnchanged) {
  EXPECT_EQ(SanitizeUtf8("/v2/nothing"), "/v2/nothing");
  const std::string mixed = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80";  // é € 😀
  EXPECT_EQ(SanitizeUtf8(mixed), mixed);
  EXPECT_EQ(SanitizeUtf8(""), "");
}

TEST(SanitizeUtf8, InvalidBytesAreReplacedOneForOne) {
  EXPECT_EQ(SanitizeUtf8("a\xFF"
                         "b"),
            "a" + kFffd + "b");
  EXPECT_EQ(SanitizeUtf8("\xFE\xFF"), kFffd + kFffd);
  // A lone continuation byte, a truncated sequence, an overlong '/', a surrogate, and a
  // code point above U+10FFFF.
  EXPECT_EQ(SanitizeUtf8("\x80"), kFffd);
  EXPECT_EQ(SanitizeUtf8("\xE2\x82"
                         "x"),
            kFffd + kFffd + "x");
  EXPECT_EQ(SanitizeUtf8("\xC0\xAF"), kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), kFffd + kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\x98"), kFffd + kFffd + kFffd);
}

TEST(SanitizeUtf8, LongInputIsCutOnACharacterBoundary) {
  EXPECT_EQ(SanitizeUtf8("abcdef", 4), "abcd...");
  EXPECT_EQ(SanitizeUtf8("abcd", 4), "abcd");
  // "é" is two bytes: with room for three, "aé" fits, "aéé" does not.
  EXPECT_EQ(SanitizeUtf8("a\xC3\xA9\xC3\xA9", 3), "a\xC3\xA9...");
  // A 4-byte character that does not fit whole is dropped, not split.
  EXPECT_EQ(SanitizeUtf8("ab\xF0\x9F\x98\x80", 5), "ab...");
  // A replacement (3 bytes) that does not fit is not split either.
  EXPECT_EQ(SanitizeUtf8("ab\xFF", 4), "ab...");
  const std::string many(300, 'x');
  EXPECT_EQ(SanitizeUtf8(many), std::string(128, 'x') + "...");
}

TEST(ErrorMessages, EchoedClientBytesStayValidUtf8) {
  const std::string path = "/\xFF\xFE/" + std::string(200, '\xC3');
  const ProxyError e = RouteNotFoundError(path);
  EXPECT_EQ(e.message.substr(0, 16), "Unknown route: /");
  EXPECT_EQ(e.message.find('\xFF'), std::string::npos);
  EXPECT_EQ(e.message.substr(16, 6), kFffd + kFffd);
  EXPECT_EQ(e.message.substr(e.message.size() - 3), "...");
  EXPECT_EQ(SanitizeUtf8(e.message, 1000), e.message);  // already valid
  const ProxyError m = MethodNotAllowedError("G\xC3");
  EXPECT_EQ(m.message, "Method G" + kFffd + " is not allowed on this route.");
}

TEST(ErrorMessages, NewStatuses) {
  EXPECT_EQ(BufferedBytesLimitError(1024).status, 503);
  EXPECT_EQ(BufferedBytesLimitError(1024).Json(),
            R"({"error":{"message":"The proxy is holding too many request bytes right now )"
            R"((server.max_buffered_bytes = 1024); retry the request later.",)"
            R"("type":"server_error","code":"server_busy"}})");
  EXPECT_EQ(TransferCodingNotImplementedError().status, 501);
  EXPECT_EQ(HttpVersionNotSupportedError().status, 505);
}

}  // namespace
}  // namespace llmproxy
