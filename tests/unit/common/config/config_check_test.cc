// `llmproxy-ctl --check -c FILE`: summary and exit 0, or every error and exit 1.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/config/config_check.h"

namespace llmproxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string TestData(std::string_view name) {
  return std::string(LLMPROXY_SOURCE_DIR) + "/tests/testdata/" + std::string(name);
}

// A config file in a private temp dir, removed at the end of the test.
class TempConfig {
 public:
  explicit TempConfig(const std::string& text) {
    char tmpl[] = "/tmp/llmproxy-check-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/config.yaml";
    std::ofstream(path_) << text;
  }
  ~TempConfig() { std::filesystem::remove_all(dir_); }
  const std::string& path() const { return path_; }

 private:
  std::string dir_;
  std::string path_;
};

TEST(ConfigCheckTest, ValidFilePrintsSummaryAndReturnsZero) {
  std::ostringstream out, err;
  EXPECT_EQ(RunConfigCheck(TestData("original_sample.yaml"), out, err), 0);
  EXPECT_EQ(out.str(),
            "config ok: 3 backends (deepseek, poe, volc), 6 models, mode random, retry 3, "
            "timeout 180s, port 8080\n");
  EXPECT_EQ(err.str(), "");
  EXPECT_THAT(out.str(), Not(HasSubstr("sk-your-deepseek-key")));
}

TEST(ConfigCheckTest, InvalidFilePrintsEveryErrorAndReturnsOne) {
  std::ostringstream out, err;
  const std::string f = TestData("many_errors.yaml");
  EXPECT_EQ(RunConfigCheck(f, out, err), 1);
  EXPECT_EQ(out.str(), "");
  EXPECT_THAT(err.str(), HasSubstr(f + ":3:1: unknown key 'backnds' (did you mean 'backends'?)\n"));
  EXPECT_THAT(err.str(), HasSubstr(f + ":14:5: backends[2].url: url is required\n"));
  EXPECT_THAT(err.str(), HasSubstr("config check failed: 8 errors\n"));
}

TEST(ConfigCheckTest, WarningsDoNotFailTheCheck) {
  TempConfig config(
      "backends:\n"
      "  - name: a\n"
      "    url: http://127.0.0.1:1\n"
      "    api_key: sk-never-shown\n"
      "    default_model: other\n"
      "    models: [m]\n");
  std::ostringstream out, err;
  EXPECT_EQ(RunConfigCheck(config.path(), out, err), 0);
  EXPECT_THAT(out.str(), HasSubstr("config ok: 1 backend (a), 1 model,"));
  EXPECT_THAT(err.str(), HasSubstr(config.path() + ":5:20: warning: backends[0].default_model"));
  EXPECT_THAT(out.str() + err.str(), Not(HasSubstr("sk-never-shown")));
}

TEST(ConfigCheckTest, UsesProcessEnvironment) {
  TempConfig config(
      "backends:\n"
      "  - name: a\n"
      "    url: http://127.0.0.1:1\n"
      "    api_key: ${LLMPROXY_CHECK_TEST_KEY}\n"
      "    models: [m]\n");
  ::unsetenv("LLMPROXY_CHECK_TEST_KEY");
  std::ostringstream out1, err1;
  EXPECT_EQ(RunConfigCheck(config.path(), out1, err1), 1);
  EXPECT_THAT(err1.str(),
              HasSubstr(config.path() + ":4:14: backends[0].api_key: environment variable "
                                        "'LLMPROXY_CHECK_TEST_KEY' is not set"));
  ::setenv("LLMPROXY_CHECK_TEST_KEY", "sk-from-env", 1);
  std::ostringstream out2, err2;
  EXPECT_EQ(RunConfigCheck(config.path(), out2, err2), 0) << err2.str();
  EXPECT_THAT(out2.str() + err2.str(), Not(HasSubstr("sk-from-env")));
  ::unsetenv("LLMPROXY_CHECK_TEST_KEY");
}

TEST(ConfigCheckTest, MissingFileFails) {
  std::ostringstream out, err;
  EXPECT_EQ(RunConfigCheck("/nonexistent/config.yaml", out, err), 1);
  EXPECT_THAT(err.str(), HasSubstr("/nonexistent/config.yaml: cannot read file"));
}

}  // namespace
}  // namespace llmproxy
