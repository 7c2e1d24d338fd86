// `llmproxy-ctl --metrics-sd-file`: the Prometheus file_sd target list for supervised
// workers, and its atomic replacement on disk.
#include "controlplane/core/metrics_sd.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace llmproxy {
namespace {

TEST(MetricsSd, RendersOneGroupPerWorkerInPrometheusFileSdFormat) {
  EXPECT_EQ(RenderMetricsSd("127.0.0.1", {{"worker-0", 9400}, {"worker-1", 9401}}),
            R"([{"targets":["127.0.0.1:9400"],"labels":{"worker":"worker-0"}},)"
            R"({"targets":["127.0.0.1:9401"],"labels":{"worker":"worker-1"}}])");
}

TEST(MetricsSd, NoWorkersIsAnEmptyList) { EXPECT_EQ(RenderMetricsSd("127.0.0.1", {}), "[]"); }

TEST(MetricsSd, WorkerWithoutMetricsPortIsLeftOut) {
  EXPECT_EQ(RenderMetricsSd("127.0.0.1", {{"worker-0", 0}, {"worker-1", 9401}}),
            R"([{"targets":["127.0.0.1:9401"],"labels":{"worker":"worker-1"}}])");
}

TEST(MetricsSd, LabelValuesAreJsonEscaped) {
  auto groups = nlohmann::json::parse(RenderMetricsSd("10.0.0.5", {{"w\"1\\\n", 9400}}));
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0]["labels"]["worker"], "w\"1\\\n");
  EXPECT_EQ(groups[0]["targets"][0], "10.0.0.5:9400");
}

TEST(MetricsSd, WildcardServerHostIsScrapedOnLoopback) {
  EXPECT_EQ(MetricsSdHost("0.0.0.0"), "127.0.0.1");
  EXPECT_EQ(MetricsSdHost(""), "127.0.0.1");
  EXPECT_EQ(MetricsSdHost("::"), "127.0.0.1");
  EXPECT_EQ(MetricsSdHost("[::]"), "127.0.0.1");
}

TEST(MetricsSd, SpecificServerHostIsKeptAndIpv6Bracketed) {
  EXPECT_EQ(MetricsSdHost("127.0.0.1"), "127.0.0.1");
  EXPECT_EQ(MetricsSdHost("10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(MetricsSdHost("localhost"), "localhost");
  EXPECT_EQ(MetricsSdHost("::1"), "[::1]");
  EXPECT_EQ(MetricsSdHost("[::1]"), "[::1]");
  EXPECT_EQ(RenderMetricsSd(MetricsSdHost("::1"), {{"worker-0", 9400}}),
            R"([{"targets":["[::1]:9400"],"labels":{"worker":"worker-0"}}])");
}

class MetricsSdFile : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "llmproxy-sd-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/targets.json";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static std::string Read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string dir_, path_;
};

TEST_F(MetricsSdFile, WritesContentWorldReadableWhateverTheUmask) {
  mode_t old = ::umask(077);
  std::string err = WriteMetricsSdFile(path_, "[]\n");
  ::umask(old);
  ASSERT_EQ(err, "");
  EXPECT_EQ(Read(path_), "[]\n");
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
}

TEST_F(MetricsSdFile, ReplacesTheFileByRenameNotInPlace) {
  ASSERT_EQ(WriteMetricsSdFile(path_, "a much longer first version\n"), "");
  struct stat before {};
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  // A reader holding the old file keeps seeing a complete old list.
  std::ifstream reader(path_);
  ASSERT_EQ(WriteMetricsSdFile(path_, "[]\n"), "");
  struct stat after {};
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_EQ(Read(path_), "[]\n");
  std::string old_content((std::istreambuf_iterator<char>(reader)), {});
  EXPECT_EQ(old_content, "a much longer first version\n");
}

TEST_F(MetricsSdFile, StaleTempFileIsOverwritten) {
  { std::ofstream(path_ + ".tmp") << "garbage from a crashed run, longer than the list"; }
  ASSERT_EQ(WriteMetricsSdFile(path_, "[]"), "");
  EXPECT_EQ(Read(path_), "[]");
  EXPECT_FALSE(std::filesystem::exists(path_ + ".tmp"));
}

TEST_F(MetricsSdFile, MissingDirectoryIsAnErrorNamingThePath) {
  std::string path = dir_ + "/no-such-dir/targets.json";
  std::string err = WriteMetricsSdFile(path, "[]");
  EXPECT_NE(err.find(path + ".tmp"), std::string::npos) << err;
  EXPECT_NE(err.find("No such file"), std::string::npos) << err;
}

}  // namespace
}  // namespace llmproxy
