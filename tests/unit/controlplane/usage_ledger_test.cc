// The usage ledger (controlplane/usage_ledger.h): sums per hour, key, model and backend,
// kept across reopen, and queried by key and time.
#include "controlplane/usage_ledger.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
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

TEST_F(UsageLedgerTest, CachedPromptTokensAddUpBesideTheOthers) {
  {
    auto ledger = Open();
    ASSERT_NE(ledger, nullptr);
    ASSERT_TRUE(ledger->Add({{kHour, "a", "m", "b", 1, 100, 10, 0.5, 80},
                             {kHour + 60, "a", "m", "b", 2, 50, 5, 0.25, 20},
                             {kHour, "a", "m2", "b", 1, 7, 1, 0}}));
  }
  auto ledger = Open();
  ASSERT_NE(ledger, nullptr);
  const std::vector<UsageRow> rows = ledger->Query(std::string("a"), kHour);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].model, "m");
  EXPECT_EQ(rows[0].requests, 3u);
  EXPECT_EQ(rows[0].prompt_tokens, 150u);
  EXPECT_EQ(rows[0].cached_prompt_tokens, 100u);
  EXPECT_EQ(rows[0].completion_tokens, 15u);
  EXPECT_DOUBLE_EQ(rows[0].cost_usd, 0.75);
  EXPECT_EQ(rows[1].cached_prompt_tokens, 0u);
}

TEST_F(UsageLedgerTest, ALedgerOfThePreviousVersionGetsTheCachedColumn) {
  {
    // The table and a row as the previous llmproxy-ctl wrote them.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "CREATE TABLE usage (hour INTEGER NOT NULL, key TEXT NOT NULL,"
                           " model TEXT NOT NULL, backend TEXT NOT NULL, requests INTEGER NOT NULL,"
                           " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,"
                           " cost_usd REAL NOT NULL, PRIMARY KEY (hour, key, model, backend));"
                           "INSERT INTO usage VALUES (1764000000, 'a', 'm', 'b', 4, 40, 8, 1.5);",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  for (int open = 0; open < 2; ++open) {  // migrated once, then opened as is
    auto ledger = Open();
    ASSERT_NE(ledger, nullptr);
    ASSERT_TRUE(ledger->Add({{kHour, "a", "m", "b", 1, 10, 2, 0.5, 6}}));
    const std::vector<UsageRow> rows = ledger->Query(std::nullopt, kHour);
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].requests, 5u + open);
    EXPECT_EQ(rows[0].prompt_tokens, 50u + 10 * open);
    EXPECT_EQ(rows[0].cached_prompt_tokens, 6u * (open + 1));  // the old row counted 0
    EXPECT_DOUBLE_EQ(rows[0].cost_usd, 2.0 + 0.5 * open);
  }
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
