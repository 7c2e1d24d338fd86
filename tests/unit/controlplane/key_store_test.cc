// The SQLite store of client keys (controlplane/key_store.h): persistence across reopen,
// unique names, revoke, limits, the previous schema's database, what a damaged or foreign
// file gives.
#include "controlplane/key_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "common/config/key_hash.h"

namespace llmproxy {
namespace {

// What the control plane does with the store: a new secret, stored by its digest.
struct Made {
  std::string key;  // the secret; empty on error
  std::string error;
};
Made Create(KeyStore& store, const std::string& name, const std::vector<std::string>& models,
            int64_t now, ClientKey limits = {}) {
  const std::string key = NewClientKeySecret();
  limits.name = name;
  limits.sha256 = Sha256Hex(key);
  limits.models = models;
  std::string error = store.Create(limits, now);
  return error.empty() ? Made{key, ""} : Made{"", std::move(error)};
}

// Runs SQL on the file directly (as another program, or an older llmproxy-ctl, would).
void Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  EXPECT_EQ(rc, SQLITE_OK) << (message ? message : "");
  sqlite3_free(message);
  sqlite3_close(db);
}

int64_t SchemaVersion(const std::string& path) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'schema_version'", -1, &s, nullptr);
  const int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
  sqlite3_finalize(s);
  sqlite3_close(db);
  return v;
}
Made Rotate(KeyStore& store, const std::string& name, int64_t now) {
  const std::string key = NewClientKeySecret();
  std::string error = store.Rotate(name, Sha256Hex(key), now);
  return error.empty() ? Made{key, ""} : Made{"", std::move(error)};
}

class KeyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("llmproxy-keystore-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "state.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<KeyStore> Open() {
    std::string error;
    auto store = KeyStore::Open(path_, error);
    EXPECT_NE(store, nullptr) << error;
    return store;
  }

  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(KeyStoreTest, CreatedKeysAreRandomStoredHashedAndSurviveReopen) {
  std::string secret_a, secret_b;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    Made a = Create(*store, "team-a", {"m1", "fast"}, 1000);
    Made b = Create(*store, "team-b", {}, 1001);
    ASSERT_EQ(a.error, "");
    ASSERT_EQ(b.error, "");
    secret_a = a.key;
    secret_b = b.key;
  }
  EXPECT_EQ(secret_a.rfind("sk-llmp-", 0), 0u);
  EXPECT_EQ(secret_a.size(), 51u);
  EXPECT_NE(secret_a, secret_b);
  for (char c : secret_a.substr(8))
    EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << c;
  // The file holds the digest, never the key.
  std::ifstream in(path_, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(bytes.find(secret_a), std::string::npos);

  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::vector<ClientKey> active = store->Active();
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0], (ClientKey{"team-a", Sha256Hex(secret_a), {"m1", "fast"}}));
  EXPECT_EQ(active[1], (ClientKey{"team-b", Sha256Hex(secret_b), {}}));
  const std::vector<StoredKey> listed = store->List();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].created_at, 1000);
  EXPECT_FALSE(listed[0].revoked_at.has_value());
}

TEST_F(KeyStoreTest, NamesAreUniqueAndRevokedKeysKeepThem) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(Create(*store, "k", {}, 1).error, "");
  Made again = Create(*store, "k", {}, 2);
  EXPECT_EQ(again.key, "");
  EXPECT_NE(again.error.find("exists"), std::string::npos) << again.error;
  EXPECT_TRUE(store->Revoke("k", 5));
  EXPECT_FALSE(store->Revoke("k", 6));  // already revoked
  EXPECT_FALSE(store->Revoke("nope", 6));
  EXPECT_TRUE(store->Active().empty());
  ASSERT_EQ(store->List().size(), 1u);
  EXPECT_EQ(store->List()[0].revoked_at, 5);
  EXPECT_NE(Create(*store, "k", {}, 7).error, "");  // the ledger keeps the name
  // Hostile names are data, not SQL.
  ASSERT_EQ(Create(*store, "x'); DROP TABLE client_keys; --", {"a\"b"}, 8).error, "");
  EXPECT_EQ(store->List().size(), 2u);
  EXPECT_EQ(store->Active()[0].models, std::vector<std::string>{"a\"b"});
}

TEST_F(KeyStoreTest, RotateReplacesTheSecretOfAnActiveKeyOnly) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const Made first = Create(*store, "k", {"m1"}, 1);
  ASSERT_EQ(first.error, "");
  const Made second = Rotate(*store, "k", 9);
  ASSERT_EQ(second.error, "");
  EXPECT_NE(second.key, first.key);
  ASSERT_EQ(store->Active().size(), 1u);
  EXPECT_EQ(store->Active()[0], (ClientKey{"k", Sha256Hex(second.key), {"m1"}}));
  EXPECT_EQ(store->List()[0].created_at, 9);
  EXPECT_NE(Rotate(*store, "nope", 10).error, "");
  ASSERT_TRUE(store->Revoke("k", 11));
  const Made after = Rotate(*store, "k", 12);
  EXPECT_EQ(after.key, "");
  EXPECT_NE(after.error.find("no active stored key"), std::string::npos) << after.error;
}

TEST_F(KeyStoreTest, LimitsAreStoredAndKeptAcrossRotateAndReopen) {
  ClientKey a;
  a.rpm = 600;
  a.tpm = 90'000;
  a.max_parallel = 3;
  a.budget = KeyBudget{KeyBudget::Unit::kUsd, 12.5, Millis(30LL * 86'400'000)};
  ClientKey b;
  b.budget = KeyBudget{KeyBudget::Unit::kTokens, 2'000'000, Millis(3'600'000)};
  ClientKey c;
  c.max_parallel = 1'000'000'000'000;
  std::string secret_a;
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    const Made made = Create(*store, "a", {"m1"}, 1, a);
    ASSERT_EQ(made.error, "");
    secret_a = made.key;
    ASSERT_EQ(Create(*store, "b", {}, 2, b).error, "");
    ASSERT_EQ(Create(*store, "c", {}, 3, c).error, "");
    ASSERT_EQ(Create(*store, "d", {}, 4).error, "");
    ASSERT_EQ(Rotate(*store, "a", 5).error, "");  // a new secret, the same limits
  }
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::vector<ClientKey> active = store->Active();
  ASSERT_EQ(active.size(), 4u);
  EXPECT_EQ(active[0].name, "a");
  EXPECT_NE(active[0].sha256, Sha256Hex(secret_a));
  EXPECT_EQ(active[0].models, std::vector<std::string>{"m1"});
  EXPECT_EQ(active[0].rpm, 600u);
  EXPECT_EQ(active[0].tpm, 90'000u);
  EXPECT_EQ(active[0].max_parallel, 3u);
  EXPECT_EQ(active[0].budget, a.budget);
  EXPECT_EQ(active[1].budget, b.budget);
  EXPECT_EQ(active[1].rpm, 0u);
  EXPECT_EQ(active[2].max_parallel, 1'000'000'000'000u);
  EXPECT_FALSE(active[2].budget.has_value());
  EXPECT_FALSE(active[3].limited());
  EXPECT_EQ(store->List()[1].key.budget, b.budget);
  EXPECT_EQ(SchemaVersion(path_), 2);
}

TEST_F(KeyStoreTest, ADatabaseOfThePreviousVersionGetsTheLimitColumns) {
  // The schema and a row exactly as the previous llmproxy-ctl wrote them.
  Exec(path_,
       "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
       "INSERT INTO meta (key, value) VALUES ('schema_version', 1);"
       "CREATE TABLE client_keys (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE,"
       "  models TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER);"
       "INSERT INTO client_keys VALUES ('old', '" +
           Sha256Hex("old-secret") +
           "', '[\"m1\"]', 100, NULL);"
           "INSERT INTO client_keys VALUES ('gone', '" +
           Sha256Hex("gone") + "', '[]', 100, 200);");
  {
    auto store = Open();
    ASSERT_NE(store, nullptr);
    // Its keys are there, unlimited, and new ones can have limits.
    const std::vector<StoredKey> listed = store->List();
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[1].key, (ClientKey{"old", Sha256Hex("old-secret"), {"m1"}}));
    EXPECT_EQ(listed[1].created_at, 100);
    EXPECT_EQ(listed[0].revoked_at, 200);
    ClientKey limits;
    limits.rpm = 5;
    limits.budget = KeyBudget{KeyBudget::Unit::kUsd, 1, Millis(86'400'000)};
    ASSERT_EQ(Create(*store, "new", {}, 300, limits).error, "");
    EXPECT_EQ(store->Active()[0].rpm, 5u);
    EXPECT_EQ(store->Active()[0].budget, limits.budget);
  }
  EXPECT_EQ(SchemaVersion(path_), 2);  // an older llmproxy-ctl now refuses the file
  auto again = Open();                 // opening a migrated file changes nothing
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Active().size(), 2u);
  EXPECT_EQ(again->Active()[0].rpm, 5u);
  EXPECT_EQ(again->Active()[1], (ClientKey{"old", Sha256Hex("old-secret"), {"m1"}}));
}

TEST_F(KeyStoreTest, ADatabaseOfANewerVersionIsRefused) {
  { ASSERT_NE(Open(), nullptr); }
  Exec(path_, "UPDATE meta SET value = 3 WHERE key = 'schema_version'");
  std::string error;
  EXPECT_EQ(KeyStore::Open(path_, error), nullptr);
  EXPECT_NE(error.find("written by a newer llmproxy-ctl"), std::string::npos) << error;
}

TEST_F(KeyStoreTest, UnusableFilesAreClearErrors) {
  {
    std::ofstream junk(path_, std::ios::binary);
    junk << std::string(4096, 'x');
  }
  std::string error;
  EXPECT_EQ(KeyStore::Open(path_, error), nullptr);
  EXPECT_NE(error.find("not usable"), std::string::npos) << error;
  error.clear();
  EXPECT_EQ(KeyStore::Open((dir_ / "missing-dir" / "state.db").string(), error), nullptr);
  EXPECT_NE(error.find("cannot open"), std::string::npos) << error;
}

}  // namespace
}  // namespace llmproxy
