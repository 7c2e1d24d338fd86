// The SQLite store of client keys (controlplane/key_store.h): persistence across reopen,
// unique names, revoke, what a damaged or foreign file gives.
#include "controlplane/key_store.h"

#include <gtest/gtest.h>
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
            int64_t now) {
  const std::string key = NewClientKeySecret();
  std::string error = store.Create(name, Sha256Hex(key), models, now);
  return error.empty() ? Made{key, ""} : Made{"", std::move(error)};
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
