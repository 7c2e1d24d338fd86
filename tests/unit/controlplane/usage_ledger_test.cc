// The usage ledger (controlplane/usage_ledger.h): sums per hour, key, model and backend,
// kept across reopen, and queried by key and time.
#include "controlplane/usage_ledger.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace llmproxy {
namespace {

class UsageLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("llmproxy-ledger-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "state.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<UsageLedger> Open() {
    std::string error;
    auto ledger = UsageLedger::Open(path_, error);
    EXPECT_NE(ledger, nullptr) << error;
    return ledger;
  }

  std::filesystem::path dir_;
  std::string path_;
};

constexpr int64_t kHour = 1'764'000'000 - 1'764'000'000 % 3600;  // an hour's start

TEST_F(UsageLedgerTest, RowsOfOneHourKeyModelAndBackendAddUp) {
  {
    auto ledger = Open();
    ASSERT_NE(ledger, nullptr);
    ASSERT_TRUE(ledger->Add({{kHour + 5, "a", "m", "b1", 2, 10, 20, 0.5},
                             {kHour + 3599, "a", "m", "b1", 1, 1, 2, 0.25},
                             {kHour + 10, "a", "m", "b2", 1, 3, 4, 0},
                             {kHour + 3600, "a", "m", "b1", 1, 1, 1, 0},
                             {kHour, "z", "m", "b1", 7, 0, 0, 0}}));
  }
  auto ledger = Open();  // what was written survives the reopen
  ASSERT_NE(ledger, nullptr);
  const std::vector<UsageRow> all = ledger->Query(std::nullopt, kHour);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].hour, kHour);
  EXPECT_EQ(all[0].key, "a");
  EXPECT_EQ(all[0].backend, "b1");
  EXPECT_EQ(all[0].requests, 3u);
  EXPECT_EQ(all[0].prompt_tokens, 11u);
  EXPECT_EQ(all[0].completion_tokens, 22u);
  EXPECT_DOUBLE_EQ(all[0].cost_usd, 0.75);
  EXPECT_EQ(all[1].backend, "b2");
  EXPECT_EQ(all[2].key, "z");
  EXPECT_EQ(all[3].hour, kHour + 3600);
  // By key, and from a later time (rounded down to its hour).
  EXPECT_EQ(ledger->Query(std::string("z"), kHour).size(), 1u);
  EXPECT_EQ(ledger->Query(std::string("a"), kHour + 3700).size(), 1u);
  EXPECT_TRUE(ledger->Query(std::string("nobody"), kHour).empty());
  EXPECT_TRUE(ledger->Add({}));
}

TEST_F(UsageLedgerTest, HostileNamesAreData) {
  auto ledger = Open();
  ASSERT_NE(ledger, nullptr);
  const std::string name = "x'); DROP TABLE usage; --";
  ASSERT_TRUE(ledger->Add({{kHour, name, "m\"", "b", 1, 1, 1, 0}}));
  const std::vector<UsageRow> rows = ledger->Query(name, kHour);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].model, "m\"");
}

}  // namespace
}  // namespace llmproxy
