// Client authentication by key digest (routing/client_auth.h): both header forms, which
// key matched, and hostile header values.
#include "dataplane/routing/client_auth.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

const std::vector<ClientKey> kKeys = {
    {"team-a", Sha256Hex("secret-a"), {"m1", "fast"}},
    {"team-b", Sha256Hex("secret-b"), {}},
};

std::string NameOf(const ClientAuth& a) { return a.key == nullptr ? "(none)" : a.key->name; }

TEST(ClientAuth, OpenWithoutKeys) {
  const ClientAuth a = AuthenticateClient({}, "", "");
  EXPECT_TRUE(a.ok);
  EXPECT_EQ(a.key, nullptr);
}

TEST(ClientAuth, BearerAndXApiKeyFindTheirKey) {
  EXPECT_EQ(NameOf(AuthenticateClient(kKeys, "Bearer secret-a", "")), "team-a");
  EXPECT_EQ(NameOf(AuthenticateClient(kKeys, "bearer   secret-b  ", "")), "team-b");
  EXPECT_EQ(NameOf(AuthenticateClient(kKeys, "", " secret-b\t")), "team-b");
  // A wrong Bearer token does not hide a right x-api-key (Anthropic clients send both).
  EXPECT_EQ(NameOf(AuthenticateClient(kKeys, "Bearer nope", "secret-a")), "team-a");
  EXPECT_TRUE(AuthenticateClient(kKeys, "Bearer secret-a", "").ok);
}

TEST(ClientAuth, WrongOrMalformedCredentialsAreRefused) {
  for (const char* authorization :
       {"", "Bearer", "Bearer ", "Bearer  ", "Basic secret-a", "Bearersecret-a", "secret-a",
        "Bearer secret-a-extra", "Bearer secret-", "Bearer SECRET-A"}) {
    const ClientAuth a = AuthenticateClient(kKeys, authorization, "");
    EXPECT_FALSE(a.ok) << authorization;
    EXPECT_EQ(a.key, nullptr) << authorization;
  }
  EXPECT_FALSE(AuthenticateClient(kKeys, "", "  ").ok);
  // The digest itself is not a key.
  EXPECT_FALSE(AuthenticateClient(kKeys, "Bearer " + Sha256Hex("secret-a"), "").ok);
  // Hostile bytes: long, NUL, non-UTF-8.
  EXPECT_FALSE(AuthenticateClient(kKeys, "Bearer " + std::string(1 << 16, 'x'), "").ok);
  EXPECT_FALSE(AuthenticateClient(kKeys, std::string("Bearer secret-a\0", 16), "").ok);
  EXPECT_FALSE(AuthenticateClient(kKeys, "Bearer \xff\xfe", "\xc3").ok);
}

TEST(ClientAuth, KeyAllowsModel) {
  EXPECT_TRUE(KeyAllowsModel(nullptr, "anything"));
  EXPECT_TRUE(KeyAllowsModel(&kKeys[1], "anything"));  // no models: any
  EXPECT_TRUE(KeyAllowsModel(&kKeys[0], "m1"));
  EXPECT_TRUE(KeyAllowsModel(&kKeys[0], "fast"));
  EXPECT_FALSE(KeyAllowsModel(&kKeys[0], "m2"));
  EXPECT_FALSE(KeyAllowsModel(&kKeys[0], ""));
  EXPECT_FALSE(KeyAllowsModel(&kKeys[0], "M1"));
}

}  // namespace
}  // namespace llmproxy
