// auth.keys (docs/config.md "auth"): the old string form and the object form, keys kept
// as SHA-256 digests only, and every bad entry reported at its place.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "common/config/config_loader.h"
#include "common/config/config_proto.h"
#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr std::string_view kBackends =
    "model_aliases:\n"
    "  fast: [m1]\n"
    "backends:\n"
    "  - name: a\n"
    "    url: http://127.0.0.1:9000\n"
    "    models: [m1, m2]\n";

LoadResult Load(std::string_view auth, std::map<std::string, std::string> env = {}) {
  return LoadConfigString(
      std::string(auth) + std::string(kBackends), "c.yaml",
      [env = std::move(env)](std::string_view name) -> std::optional<std::string> {
        auto it = env.find(std::string(name));
        if (it == env.end()) return std::nullopt;
        return it->second;
      });
}

std::vector<std::string> Errors(std::string_view auth) { return Load(auth).FormattedErrors(); }

TEST(KeyHash, Sha256HexIsTheStandardDigest) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(NormalizeSha256Hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"),
            Sha256Hex("abc"));
  EXPECT_EQ(NormalizeSha256Hex("ba7816bf"), "");
  EXPECT_EQ(NormalizeSha256Hex(std::string(63, 'a') + "g"), "");
}

TEST(ClientKeys, BothFormsLoadAsDigests) {
  const std::string digest = Sha256Hex("team-b-secret");
  const LoadResult r = Load(
      "auth:\n"
      "  keys:\n"
      "    - ${OLD}\n"
      "    - name: team-a\n"
      "      key: ${TEAM_A_KEY}\n"
      "      models: [m1, fast]\n"
      "    - {name: team-b, key_sha256: " +
          digest +
          "}\n"
          "    - {name: team-c, key: c-secret, models: m2}\n",
      {{"OLD", "old-secret"}, {"TEAM_A_KEY", "a-secret"}});
  ASSERT_TRUE(r.ok()) << r.FormattedErrors().size();
  ASSERT_EQ(r.config->auth_keys.size(), 4u);
  EXPECT_EQ(r.config->auth_keys[0], (ClientKey{"key-1", Sha256Hex("old-secret"), {}}));
  EXPECT_EQ(r.config->auth_keys[1], (ClientKey{"team-a", Sha256Hex("a-secret"), {"m1", "fast"}}));
  EXPECT_EQ(r.config->auth_keys[2], (ClientKey{"team-b", digest, {}}));
  EXPECT_EQ(r.config->auth_keys[3], (ClientKey{"team-c", Sha256Hex("c-secret"), {"m2"}}));
  // Through the control plane's proto and back: the same keys, and no secret on the wire.
  const v1::RoutingTable table = ToProto(*r.config);
  EXPECT_THAT(table.DebugString(), Not(HasSubstr("a-secret")));
  const FromProtoResult back = FromProto(table);
  ASSERT_TRUE(back.config.has_value()) << back.error;
  EXPECT_EQ(back.config->auth_keys, r.config->auth_keys);
}

TEST(ClientKeys, UppercaseDigestIsNormalized) {
  std::string upper = Sha256Hex("x");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const LoadResult r = Load("auth:\n  keys:\n    - {name: k, key_sha256: " + upper + "}\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config->auth_keys[0].sha256, Sha256Hex("x"));
}

TEST(ClientKeys, BadEntriesAreReportedAtTheirPlace) {
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {key: s}\n"),
              ElementsAre("c.yaml:3:7: auth.keys[0]: a key object needs a name (the label in "
                          "logs and admin)"));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a}\n"),
              ElementsAre("c.yaml:3:7: auth.keys[0]: needs key (the secret) or key_sha256 (its "
                          "SHA-256 in hex)"));
  EXPECT_THAT(
      Errors("auth:\n  keys:\n    - {name: a, key: s, key_sha256: " + Sha256Hex("s") + "}\n"),
      ElementsAre("c.yaml:3:7: auth.keys[0]: give key or key_sha256, not both"));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key_sha256: abc}\n"),
              ElementsAre("c.yaml:3:29: auth.keys[0].key_sha256: must be 64 hex digits (sha256sum "
                          "of the key, without a newline)"));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: \"\"}\n"),
              ElementsAre(HasSubstr("auth.keys[0].key: client key is empty")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - \"\"\n"),
              ElementsAre(HasSubstr("auth.keys[0]: client key is empty")));
  EXPECT_THAT(
      Errors("auth:\n  keys:\n    - {name: a, kye: s}\n"),
      testing::Contains(HasSubstr("unknown key 'kye' in auth.keys[0] (did you mean 'key'?)")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - [a, b]\n"),
              ElementsAre(HasSubstr("auth.keys[0]: must be a mapping")));
}

TEST(ClientKeys, LimitsAreRefusedRatherThanIgnored) {
  // Limits are not enforced yet: a file that sets one must not run as if unlimited.
  const std::vector<std::string> errors = Errors(
      "auth:\n  keys:\n    - {name: a, key: s, rpm: 600, tpm: 1000, max_parallel: 2,"
      " budget: {usd: 5, period: 30d}}\n");
  ASSERT_EQ(errors.size(), 4u);
  for (const char* field : {"rpm", "tpm", "max_parallel", "budget"}) {
    EXPECT_THAT(errors, testing::Contains(HasSubstr(std::string("auth.keys[0].") + field +
                                                    ": per-key limits and budgets are not "
                                                    "enforced by this version yet")));
  }
}

TEST(ClientKeys, ValidatorChecksNamesDigestsAndModels) {
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s}\n    - {name: a, key: t}\n"),
              ElementsAre(HasSubstr("auth.keys[1].name: two keys are named 'a'")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s}\n    - {name: b, key: s}\n"),
              ElementsAre(HasSubstr("auth.keys[1]: the same key is listed twice (key 'b')")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: \"a b\", key: s}\n"),
              ElementsAre(HasSubstr("auth.keys[0].name: must be 1 to 64 of A-Z a-z 0-9 . _ -")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, models: [m1, m9]}\n"),
              ElementsAre(HasSubstr("auth.keys[0].models[1]: key 'a' allows model 'm9' that no "
                                    "backend serves and no alias names")));
  // Aliases count as model names.
  EXPECT_TRUE(Load("auth:\n  keys:\n    - {name: a, key: s, models: [fast]}\n").ok());
}

}  // namespace
}  // namespace llmproxy
