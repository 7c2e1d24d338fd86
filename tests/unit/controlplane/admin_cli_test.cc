// `llmproxy-ctl admin keys create` limit flags (controlplane/admin_cli.h): what reaches the
// request, and the usage errors (exit 2, before any call) for bad values.
#include "controlplane/admin_cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace llmproxy {
namespace {

using ::testing::HasSubstr;

std::string Apply(const KeyLimitFlags& flags, v1::CreateKeyRequest& req) {
  return ApplyKeyLimitFlags(flags, req);
}

TEST(AdminCliKeyLimits, FlagsFillTheRequest) {
  KeyLimitFlags flags;
  flags.rpm = "600";
  flags.tpm = "90000";
  flags.max_parallel = "4";
  flags.budget_usd = "12.5";
  v1::CreateKeyRequest req;
  ASSERT_EQ(Apply(flags, req), "");
  EXPECT_EQ(req.rpm(), 600u);
  EXPECT_EQ(req.tpm(), 90000u);
  EXPECT_EQ(req.max_parallel(), 4u);
  ASSERT_TRUE(req.has_budget());
  EXPECT_DOUBLE_EQ(req.budget().usd(), 12.5);
  EXPECT_EQ(req.budget().period().seconds(), 30 * 86400);  // the default period

  KeyLimitFlags tokens;
  tokens.budget_tokens = "2000000";
  tokens.budget_period = "36h";
  v1::CreateKeyRequest t;
  ASSERT_EQ(Apply(tokens, t), "");
  EXPECT_EQ(t.budget().tokens(), 2'000'000u);
  EXPECT_EQ(t.budget().period().seconds(), 36 * 3600);
  EXPECT_EQ(t.rpm(), 0u);

  v1::CreateKeyRequest none;
  ASSERT_EQ(Apply(KeyLimitFlags{}, none), "");
  EXPECT_FALSE(none.has_budget());
  EXPECT_EQ(none.rpm(), 0u);
}

TEST(AdminCliKeyLimits, BadValuesAreUsageErrors) {
  auto error = [](KeyLimitFlags flags) {
    v1::CreateKeyRequest req;
    std::string e = Apply(flags, req);
    EXPECT_FALSE(req.has_budget()) << e;  // nothing half-set
    return e;
  };
  for (const char* bad : {"0", "-1", "1.5", "", "ten", "1000000000001", "+5", "5 "}) {
    KeyLimitFlags f;
    f.rpm = bad;
    EXPECT_EQ(error(f), std::string("--rpm takes a whole number from 1 to 1000000000000 (leave it "
                                    "out for no limit), got \"") +
                            bad + "\"");
  }
  KeyLimitFlags parallel;
  parallel.max_parallel = "0";
  EXPECT_THAT(error(parallel), HasSubstr("--max-parallel takes a whole number"));
  KeyLimitFlags both;
  both.budget_usd = "1";
  both.budget_tokens = "1";
  EXPECT_EQ(error(both), "give --budget-usd or --budget-tokens, not both");
  KeyLimitFlags period_alone;
  period_alone.budget_period = "7d";
  EXPECT_EQ(error(period_alone), "--budget-period goes with --budget-usd or --budget-tokens");
  for (const char* bad : {"0", "-3", "1e10", "free", "nan", "inf"}) {
    KeyLimitFlags f;
    f.budget_usd = bad;
    EXPECT_EQ(error(f), std::string("--budget-usd takes USD, more than 0 and at most 1000000000, "
                                    "got \"") +
                            bad + "\"");
  }
  KeyLimitFlags tokens;
  tokens.budget_tokens = "1.5";
  EXPECT_EQ(error(tokens),
            "--budget-tokens takes a whole number of tokens from 1 to 1000000000000000, got "
            "\"1.5\"");
  for (const char* bad : {"367d", "0s", "soon", "30"}) {
    KeyLimitFlags f;
    f.budget_usd = "5";
    f.budget_period = bad;
    EXPECT_EQ(error(f), std::string("--budget-period takes a duration longer than 0 and at most "
                                    "366d (e.g. 30d, 7d, 24h), got \"") +
                            bad + "\"");
  }
}

int RunCli(const std::vector<std::string>& args, std::string* err_text) {
  std::ostringstream out, err;
  // An address nothing listens on: a usage error must come before any call.
  std::vector<std::string> all = {"--addr", "127.0.0.1:1"};
  all.insert(all.end(), args.begin(), args.end());
  const int code = RunAdminCli(all, out, err);
  *err_text = err.str();
  return code;
}

TEST(AdminCliKeyLimits, RunRefusesBadFlagsBeforeCalling) {
  std::string err;
  EXPECT_EQ(RunCli({"keys", "create", "k", "--rpm", "0"}, &err), 2);
  EXPECT_THAT(err, HasSubstr("--rpm takes a whole number from 1"));
  EXPECT_EQ(RunCli({"keys", "create", "k", "--budget-usd=abc"}, &err), 2);
  EXPECT_THAT(err, HasSubstr("--budget-usd takes USD"));
  EXPECT_EQ(RunCli({"keys", "create", "k", "--tpm"}, &err), 2);
  EXPECT_THAT(err, HasSubstr("--tpm needs a value"));
  EXPECT_EQ(RunCli({"keys", "list", "--rpm", "5"}, &err), 2);
  EXPECT_THAT(err, HasSubstr("go only with keys create"));
  EXPECT_EQ(RunCli({"usage", "--budget-period", "7d"}, &err), 2);
  // Good flags get as far as the call (which fails: nothing listens there).
  EXPECT_EQ(RunCli({"keys", "create", "k", "--rpm=5", "--budget-tokens", "9", "--budget-period",
                    "7d", "--max-parallel", "2", "--tpm", "100"},
                   &err),
            1);
  EXPECT_THAT(err, HasSubstr("error: 14"));  // UNAVAILABLE, not a usage error
}

TEST(AdminCliKeyLimits, HelpNamesTheFlags) {
  std::ostringstream out;
  PrintAdminUsage(out);
  for (const char* flag : {"--rpm N", "--tpm N", "--max-parallel N", "--budget-usd X",
                           "--budget-tokens N", "--budget-period 30d"}) {
    EXPECT_THAT(out.str(), HasSubstr(flag));
  }
}

}  // namespace
}  // namespace llmproxy
