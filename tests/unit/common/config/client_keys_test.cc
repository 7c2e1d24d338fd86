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

TEST(ClientKeys, LimitsLoadOnObjectKeysAndStringKeysStayUnlimited) {
  const LoadResult r = Load(
      "prices:\n  m1: {prompt: 1, completion: 2}\n  m2: {prompt: 1}\n"
      "auth:\n  keys:\n"
      "    - {name: a, key: s, rpm: 600, tpm: 100000, max_parallel: 4,"
      " budget: {usd: 12.5, period: 30d}}\n"
      "    - name: b\n      key: t\n      budget: {tokens: 2000000, period: 86400}\n"
      "    - plain-secret\n"
      "    - {name: d, key: u, rpm: +7, tpm: 1000000000000}\n");
  ASSERT_TRUE(r.ok()) << testing::PrintToString(r.FormattedErrors());
  EXPECT_TRUE(r.diagnostics.empty());  // every model the USD key reaches has a price
  const std::vector<ClientKey>& keys = r.config->auth_keys;
  ASSERT_EQ(keys.size(), 4u);
  EXPECT_EQ(keys[0].rpm, 600u);
  EXPECT_EQ(keys[0].tpm, 100000u);
  EXPECT_EQ(keys[0].max_parallel, 4u);
  EXPECT_EQ(keys[0].budget, (KeyBudget{KeyBudget::Unit::kUsd, 12.5, Millis(30LL * 86'400'000)}));
  EXPECT_TRUE(keys[0].limited());
  EXPECT_EQ(keys[1].rpm, 0u);
  EXPECT_EQ(keys[1].budget, (KeyBudget{KeyBudget::Unit::kTokens, 2e6, Millis(86'400'000)}));
  EXPECT_EQ(keys[2], (ClientKey{"key-3", Sha256Hex("plain-secret"), {}}));
  EXPECT_FALSE(keys[2].limited());
  EXPECT_EQ(keys[3].rpm, 7u);
  EXPECT_EQ(keys[3].tpm, 1'000'000'000'000u);
  EXPECT_FALSE(keys[3].budget.has_value());
  // An empty value keeps the default: no limit.
  const LoadResult empty = Load("auth:\n  keys:\n    - name: e\n      key: v\n      rpm:\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty.config->auth_keys[0].limited());
}

TEST(ClientKeys, BadLimitsAreErrorsThatSayHowToHaveNone) {
  const std::string none = " (omit the field for no limit), got ";
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, rpm: 0}\n"),
              ElementsAre("c.yaml:3:30: auth.keys[0].rpm: must be a whole number from 1 to "
                          "1000000000000" +
                          none + "'0'"));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, tpm: -5}\n"),
              ElementsAre(HasSubstr("auth.keys[0].tpm: must be a whole number from 1 to "
                                    "1000000000000" +
                                    none + "'-5'")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, max_parallel: 1.5}\n"),
              ElementsAre(HasSubstr("auth.keys[0].max_parallel: must be a whole number from 1 "
                                    "to 1000000000000" +
                                    none + "'1.5'")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, rpm: 1000000000001}\n"),
              ElementsAre(HasSubstr(none + "'1000000000001'")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, rpm: lots}\n"),
              ElementsAre(HasSubstr(none + "'lots'")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, rpm: [1]}\n"),
              ElementsAre(HasSubstr("auth.keys[0].rpm: must be a whole number, not a list")));
  EXPECT_THAT(Errors("auth:\n  keys:\n    - {name: a, key: s, rmp: 5}\n"),
              ElementsAre(HasSubstr("unknown key 'rmp' in auth.keys[0] (did you mean 'rpm'?)")));
}

TEST(ClientKeys, BadBudgetsAreErrorsAtTheirPlace) {
  auto budget = [](const std::string& value) {
    return Errors("auth:\n  keys:\n    - name: a\n      key: s\n      budget: " + value + "\n");
  };
  EXPECT_THAT(budget("5"), ElementsAre("c.yaml:5:15: auth.keys[0].budget: must be {usd: X, "
                                       "period: 30d} or {tokens: N, period: 30d}"));
  EXPECT_THAT(budget("{usd: 0, period: 30d}"),
              ElementsAre("c.yaml:5:21: auth.keys[0].budget.usd: must be USD, more than 0 and "
                          "at most 1000000000, got '0'"));
  EXPECT_THAT(budget("{usd: 1e10, period: 30d}"),
              ElementsAre(HasSubstr("auth.keys[0].budget.usd: must be USD, more than 0 and at "
                                    "most 1000000000, got '1e10'")));
  EXPECT_THAT(budget("{usd: -1, period: 30d}"), ElementsAre(HasSubstr("got '-1'")));
  EXPECT_THAT(budget("{usd: nan, period: 30d}"), ElementsAre(HasSubstr("got 'nan'")));
  EXPECT_THAT(budget("{tokens: 1.5, period: 30d}"),
              ElementsAre(HasSubstr("auth.keys[0].budget.tokens: must be a whole number of "
                                    "tokens from 1 to 1000000000000000, got '1.5'")));
  EXPECT_THAT(budget("{tokens: 0, period: 30d}"), ElementsAre(HasSubstr("got '0'")));
  EXPECT_THAT(budget("{usd: 1, tokens: 2, period: 30d}"),
              ElementsAre("c.yaml:5:15: auth.keys[0].budget: give usd or tokens, not both"));
  EXPECT_THAT(budget("{period: 30d}"),
              ElementsAre("c.yaml:5:15: auth.keys[0].budget: needs usd (USD per period) or "
                          "tokens (prompt + completion tokens per period)"));
  EXPECT_THAT(budget("{usd: 5}"),
              ElementsAre("c.yaml:5:15: auth.keys[0].budget: needs period, the window the "
                          "budget is spent over (e.g. 30d)"));
  for (const char* period : {"367d", "0s", "0", "soon", "-1d"}) {
    EXPECT_THAT(budget(std::string("{usd: 5, period: ") + period + "}"),
                ElementsAre(HasSubstr("auth.keys[0].budget.period: must be a duration longer "
                                      "than 0 and at most 366d (e.g. 30d, 7d, 24h), got '" +
                                      std::string(period) + "'")))
        << period;
  }
  EXPECT_THAT(budget("{usd: 5, period: 30d, perod: 1d}"),
              ElementsAre(HasSubstr("unknown key 'perod' in auth.keys[0].budget (did you mean "
                                    "'period'?)")));
  // The longest period, and a bare integer (seconds) as everywhere in the file.
  EXPECT_TRUE(
      Load("auth:\n  keys:\n    - {name: a, key: s, budget: {tokens: 9, period: 366d}}\n").ok());
  EXPECT_TRUE(
      Load("auth:\n  keys:\n    - {name: a, key: s, budget: {tokens: 9, period: 3600}}\n").ok());
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
