// Stored keys with limits through the control plane's publisher (controlplane/
// config_publisher.h): created, validated, published to workers and listed with their
// limits; and the ledger's cost of cached prompt tokens from a worker's report.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/config/config_proto.h"
#include "common/config/key_hash.h"
#include "controlplane/config_publisher.h"

namespace llmproxy {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

class StoredKeyLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("llmproxy-publisher-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::ofstream((dir_ / "config.yaml").string())
        << "auth:\n  keys:\n    - {name: file-key, key: s, rpm: 60}\n"
           "prices:\n  m1: {prompt: 2, completion: 10, cached_prompt: 0.5}\n  m2: {prompt: 4}\n"
           "backends:\n  - name: a\n    url: http://127.0.0.1:1\n    models: [m1, m2, m3]\n";
    publisher_ = std::make_unique<ConfigPublisher>((dir_ / "config.yaml").string(), hub_, metrics_);
    ASSERT_TRUE(publisher_->Reload("test").ok);
  }
  void TearDown() override {
    publisher_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The table workers get now, as a worker reads it.
  Config Published() const {
    const std::optional<Snapshot> s = hub_.Current();
    EXPECT_TRUE(s.has_value());
    if (!s) return {};
    FromProtoResult r = FromProto(*s->table);
    EXPECT_TRUE(r.config.has_value()) << r.error;
    return r.config.value_or(Config{});
  }

  std::filesystem::path dir_;
  CtlMetrics metrics_;
  SnapshotHub hub_{"test"};
  std::unique_ptr<ConfigPublisher> publisher_;
};

TEST_F(StoredKeyLimitsTest, LimitsOfACreatedKeyReachTheTableAndTheList) {
  ClientKey key;
  key.name = "team-a";
  key.models = {"m1"};
  key.rpm = 600;
  key.tpm = 90'000;
  key.max_parallel = 2;
  key.budget = KeyBudget{KeyBudget::Unit::kUsd, 25, 720h};
  key.sha256 = "ignored: the publisher makes the secret";
  const ConfigPublisher::KeyOutcome made = publisher_->CreateKey(key);
  ASSERT_EQ(made.code, ConfigPublisher::KeyOutcome::Code::kOk) << made.error;
  EXPECT_EQ(made.version, 2u);

  const Config table = Published();
  ASSERT_EQ(table.auth_keys.size(), 2u);
  const ClientKey& got = table.auth_keys[1];
  EXPECT_EQ(got.name, "team-a");
  EXPECT_EQ(got.sha256, Sha256Hex(made.key));
  EXPECT_EQ(got.rpm, 600u);
  EXPECT_EQ(got.tpm, 90'000u);
  EXPECT_EQ(got.max_parallel, 2u);
  EXPECT_EQ(got.budget, key.budget);
  EXPECT_EQ(table.auth_keys[0].rpm, 60u);  // the file's key keeps its own

  const std::vector<ConfigPublisher::KeyInfo> listed = publisher_->ListKeys();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_FALSE(listed[0].stored);
  EXPECT_EQ(listed[0].key.rpm, 60u);
  EXPECT_TRUE(listed[1].stored);
  EXPECT_EQ(listed[1].key.budget, key.budget);
  EXPECT_EQ(listed[1].key.max_parallel, 2u);

  // A restarted control plane publishes the same limits from the store.
  publisher_.reset();
  SnapshotHub hub("again");
  ConfigPublisher again((dir_ / "config.yaml").string(), hub, metrics_);
  ASSERT_TRUE(again.Reload("test").ok);
  FromProtoResult r = FromProto(*hub.Current()->table);
  ASSERT_TRUE(r.config.has_value()) << r.error;
  EXPECT_EQ(r.config->auth_keys[1].budget, key.budget);
  EXPECT_EQ(r.config->auth_keys[1].tpm, 90'000u);
}

TEST_F(StoredKeyLimitsTest, LimitsOutOfBoundsAreRefusedAndNothingIsStored) {
  ClientKey key;
  key.name = "k";
  key.rpm = 1'000'000'000'001;
  key.budget = KeyBudget{KeyBudget::Unit::kTokens, 0, 400 * 24h};
  const ConfigPublisher::KeyOutcome out = publisher_->CreateKey(key);
  EXPECT_EQ(out.code, ConfigPublisher::KeyOutcome::Code::kInvalid);
  EXPECT_THAT(out.error, HasSubstr("auth.keys[1].rpm: must be at most 1000000000000"));
  EXPECT_THAT(out.error, HasSubstr("auth.keys[1].budget.tokens: must be a whole number"));
  EXPECT_THAT(out.error, HasSubstr("auth.keys[1].budget.period: must be longer than 0"));
  EXPECT_EQ(publisher_->ListKeys().size(), 1u);
  EXPECT_EQ(hub_.version(), 1u);
  // A budget in USD over unpriced models is allowed (a warning in the log).
  key.rpm = 0;
  key.budget = KeyBudget{KeyBudget::Unit::kUsd, 5, 24h};
  EXPECT_EQ(publisher_->CreateKey(key).code, ConfigPublisher::KeyOutcome::Code::kOk);
}

TEST_F(StoredKeyLimitsTest, TheLedgerPricesCachedPromptTokensApart) {
  v1::LoadReport report;
  auto add = [&](const std::string& model, uint64_t prompt, uint64_t cached, uint64_t completion) {
    v1::KeyUsage* u = report.add_usage();
    u->set_key("file-key");
    u->set_model(model);
    u->set_backend("a");
    u->set_requests(1);
    u->set_prompt_tokens(prompt);
    u->set_cached_prompt_tokens(cached);
    u->set_completion_tokens(completion);
  };
  add("m1", 1'000'000, 800'000, 100'000);  // a cached_prompt price
  add("m2", 1'000'000, 500'000, 0);        // none: cached tokens at the prompt price
  add("m3", 1'000'000, 10, 1'000);         // no price at all
  publisher_->RecordUsage(report);
  v1::LoadReport hostile;  // more cached than prompt tokens: cut to them
  v1::KeyUsage* u = hostile.add_usage();
  u->set_key("file-key");
  u->set_model("m1");
  u->set_backend("(none)");
  u->set_prompt_tokens(10);
  u->set_cached_prompt_tokens(1'000'000);
  publisher_->RecordUsage(hostile);

  const std::optional<std::vector<UsageRow>> rows = publisher_->Usage(std::nullopt, 0);
  ASSERT_TRUE(rows.has_value());
  ASSERT_EQ(rows->size(), 4u);
  auto row = [&](const std::string& model, const std::string& backend) {
    for (const UsageRow& r : *rows) {
      if (r.model == model && r.backend == backend) return r;
    }
    ADD_FAILURE() << "no row for " << model << " " << backend;
    return UsageRow{};
  };
  const UsageRow cut = row("m1", "(none)");
  EXPECT_EQ(cut.cached_prompt_tokens, 10u);
  EXPECT_DOUBLE_EQ(cut.cost_usd, 10 * 0.5 / 1e6);
  const UsageRow m1 = row("m1", "a");
  EXPECT_EQ(m1.cached_prompt_tokens, 800'000u);
  // (1M - 800k) x 2 + 800k x 0.5 + 100k x 10, per million.
  EXPECT_DOUBLE_EQ(m1.cost_usd, 0.2 * 2 + 0.8 * 0.5 + 0.1 * 10);
  const UsageRow m2 = row("m2", "a");
  EXPECT_EQ(m2.cached_prompt_tokens, 500'000u);
  EXPECT_DOUBLE_EQ(m2.cost_usd, 4.0);
  const UsageRow m3 = row("m3", "a");
  EXPECT_EQ(m3.cached_prompt_tokens, 10u);
  EXPECT_DOUBLE_EQ(m3.cost_usd, 0.0);
}

}  // namespace
}  // namespace llmproxy
