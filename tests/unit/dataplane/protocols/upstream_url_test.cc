// The original program's URL rule: backend url + "/chat/completions" etc.
#include <gtest/gtest.h>

#include "dataplane/protocols/upstream_url.h"

namespace llmproxy {
namespace {

UpstreamUrl MustParse(std::string_view text) {
  std::string error;
  std::optional<UpstreamUrl> url = ParseUpstreamUrl(text, &error);
  EXPECT_TRUE(url.has_value()) << text << ": " << error;
  return url.value_or(UpstreamUrl{});
}

TEST(UpstreamUrl, HostOnlyHttpsGetsDefaultPortAndEmptyBase) {
  const UpstreamUrl url = MustParse("https://api.deepseek.com");
  EXPECT_TRUE(url.tls);
  EXPECT_EQ(url.host, "api.deepseek.com");
  EXPECT_EQ(url.port, 443);
  EXPECT_EQ(url.base_path, "");
  EXPECT_EQ(url.Target("/chat/completions"), "/chat/completions");
  EXPECT_EQ(url.HostHeader(), "api.deepseek.com");
  EXPECT_EQ(url.Origin(), "https://api.deepseek.com:443");
}

TEST(UpstreamUrl, BasePathIsKeptAndSuffixAppended) {
  const UpstreamUrl url = MustParse("https://api.poe.com/v1");
  EXPECT_EQ(url.base_path, "/v1");
  EXPECT_EQ(url.Target("/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(url.Target("/embeddings"), "/v1/embeddings");
  EXPECT_EQ(MustParse("https://ark.cn-beijing.volces.com/api/v3").Target("/completions"),
            "/api/v3/completions");
}

TEST(UpstreamUrl, TrailingSlashesAreStripped) {
  EXPECT_EQ(MustParse("https://api.poe.com/v1/"), MustParse("https://api.poe.com/v1"));
  EXPECT_EQ(MustParse("https://api.deepseek.com/").Target("/chat/completions"),
            "/chat/completions");
  EXPECT_EQ(MustParse("http://h//").base_path, "");
}

TEST(UpstreamUrl, HttpDefaultPortAndExplicitPorts) {
  const UpstreamUrl plain = MustParse("http://127.0.0.1");
  EXPECT_FALSE(plain.tls);
  EXPECT_EQ(plain.port, 80);
  EXPECT_EQ(plain.HostHeader(), "127.0.0.1");
  const UpstreamUrl custom = MustParse("http://localhost:18080/v1");
  EXPECT_EQ(custom.port, 18080);
  EXPECT_EQ(custom.HostHeader(), "localhost:18080");
  EXPECT_EQ(custom.Origin(), "http://localhost:18080");
  // The scheme's own port is not repeated in Host.
  EXPECT_EQ(MustParse("https://x.example:443").HostHeader(), "x.example");
  EXPECT_EQ(MustParse("http://x.example:443").HostHeader(), "x.example:443");
}

TEST(UpstreamUrl, SchemeAndHostAreCaseInsensitive) {
  const UpstreamUrl url = MustParse("HTTPS://API.Example.COM/V1");
  EXPECT_TRUE(url.tls);
  EXPECT_EQ(url.host, "api.example.com");
  EXPECT_EQ(url.base_path, "/V1");  // paths are case-sensitive
}

TEST(UpstreamUrl, Ipv6Literal) {
  const UpstreamUrl url = MustParse("http://[::1]:8081/v1");
  EXPECT_EQ(url.host, "::1");
  EXPECT_EQ(url.port, 8081);
  EXPECT_EQ(url.HostHeader(), "[::1]:8081");
}

TEST(UpstreamUrl, RejectsBadUrls) {
  for (const char* bad :
       {"", "api.deepseek.com", "ftp://x.example", "https://", "https:///v1", "https://:443",
        "https://x.example:0", "https://x.example:65536", "https://x.example:12a",
        "https://x.example:", "https://user:pw@x.example", "https://x.example/v1?x=1",
        "https://x.example/#frag", "https://x example", "http://[::1", "http://[::1]x",
        "https://x.example/a b"}) {
    std::string error;
    EXPECT_FALSE(ParseUpstreamUrl(bad, &error).has_value()) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

}  // namespace
}  // namespace llmproxy
