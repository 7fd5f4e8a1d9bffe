// Checkpoint::open_dir: single-file and sharded (index.json) checkpoint directories, and the
// directory mistakes a user makes (wrong path, empty dir, stray shards, a broken index).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "loader/safetensors.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

class CheckpointDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dsocr_ckpt_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes a valid .safetensors holding F32 tensors of the given names (4 floats each, values
  // from a fixed seed) and returns its path.
  std::string shard(const std::string& file, const std::vector<std::string>& names,
                    uint32_t seed = 1) {
    std::vector<TensorInfo> ts;
    for (const auto& n : names) {
      TensorInfo t;
      t.name = n;
      t.dtype = DType::F32;
      t.shape = {4};
      ts.push_back(t);
    }
    std::string bytes = build_safetensors_header(ts);
    EXPECT_FALSE(bytes.empty());
    std::mt19937 rng(seed);
    for (size_t i = 0; i < names.size() * 16; ++i) bytes.push_back(static_cast<char>(rng()));
    return write(file, bytes);
  }

  std::string write(const std::string& file, const std::string& text) {
    std::string p = (dir_ / file).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }

  std::string dir() const { return dir_.string(); }

  // open_dir fails with a message holding every one of `parts`.
  void expect_error(std::initializer_list<std::string> parts) {
    auto c = Checkpoint::open_dir(dir());
    ASSERT_FALSE(c.ok()) << "opened a broken checkpoint dir";
    for (const auto& p : parts) EXPECT_NE(c.message().find(p), std::string::npos) << c.message();
  }

  fs::path dir_;
};

constexpr const char* kHint = "pass --model the directory holding";

TEST_F(CheckpointDir, MissingDir) {
  auto c = Checkpoint::open_dir(dir() + "/nope");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("/nope: no such directory"), std::string::npos) << c.message();
  EXPECT_NE(c.message().find(kHint), std::string::npos) << c.message();
}

TEST_F(CheckpointDir, FileInsteadOfDir) {
  std::string f = shard("model.safetensors", {"a"});
  auto c = Checkpoint::open_dir(f);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("not a directory"), std::string::npos) << c.message();
  EXPECT_NE(c.message().find(kHint), std::string::npos) << c.message();
}

TEST_F(CheckpointDir, EmptyDir) {
  write("config.json", "{}");
  expect_error({dir(), "no .safetensors file", kHint});
}

TEST_F(CheckpointDir, SingleFile) {
  shard("model-00001-of-000001.safetensors", {"x", "y", "z"});
  write("config.json", "{}");
  auto c = Checkpoint::open_dir(dir());
  ASSERT_TRUE(c.ok()) << c.message();
  ASSERT_EQ(c->files().size(), 1u);
  ASSERT_EQ(c->tensors().size(), 3u);
  EXPECT_EQ(c->total_bytes(), 48u);
  const TensorInfo* y = c->find("y");
  ASSERT_NE(y, nullptr);
  EXPECT_EQ(y->shard, 0);
  EXPECT_EQ(c->find("w"), nullptr);
  // Bytes come from the right place in the file.
  const TensorInfo* fy = c->files()[0].find("y");
  EXPECT_EQ(c->bytes(*y), c->files()[0].bytes(*fy));
}

TEST_F(CheckpointDir, TwoFilesWithoutIndex) {
  shard("a.safetensors", {"x"});
  shard("b.safetensors", {"y"});
  expect_error(
      {"2 .safetensors files", "a.safetensors", "b.safetensors", "model.safetensors.index.json"});
}

TEST_F(CheckpointDir, CorruptSingleFile) {
  write("model.safetensors", std::string("\x05\0\0\0\0\0\0\0{}", 10));
  expect_error({"model.safetensors", "header length 5"});
}

TEST_F(CheckpointDir, Sharded) {
  shard("model-00001-of-00002.safetensors", {"a", "b"}, 1);
  shard("model-00002-of-00002.safetensors", {"c"}, 2);
  write("model.safetensors.index.json",
        R"({"metadata":{"total_size":48},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
        R"("b":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  auto c = Checkpoint::open_dir(dir());
  ASSERT_TRUE(c.ok()) << c.message();
  ASSERT_EQ(c->files().size(), 2u);
  ASSERT_EQ(c->tensors().size(), 3u);
  EXPECT_EQ(c->find("a")->shard, 0);
  EXPECT_EQ(c->find("c")->shard, 1);
  EXPECT_EQ(c->total_bytes(), 48u);
  const TensorInfo* t = c->find("c");
  EXPECT_EQ(std::memcmp(c->bytes(*t), c->files()[1].bytes(*c->files()[1].find("c")), 16), 0);
}

TEST_F(CheckpointDir, IndexNamesMissingShard) {
  shard("s1.safetensors", {"a"});
  write("model.safetensors.index.json",
        R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  expect_error({"model.safetensors.index.json", "\"s2.safetensors\"", "missing"});
}

TEST_F(CheckpointDir, TensorAbsentFromItsShard) {
  shard("s1.safetensors", {"a"});
  shard("s2.safetensors", {"b"});
  write("model.safetensors.index.json",
        R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors","q":"s2.safetensors"}})");
  expect_error({"\"q\"", "s2.safetensors", "does not hold"});
}

TEST_F(CheckpointDir, TensorInTwoShards) {
  shard("s1.safetensors", {"a", "b"});
  shard("s2.safetensors", {"b"});
  write("model.safetensors.index.json",
        R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  expect_error({"\"b\"", "in both", "s1.safetensors", "s2.safetensors"});
}

TEST_F(CheckpointDir, ShardTensorNotInIndex) {
  shard("s1.safetensors", {"a", "extra"});
  write("model.safetensors.index.json", R"({"weight_map":{"a":"s1.safetensors"}})");
  expect_error({"\"extra\"", "does not list"});
}

TEST_F(CheckpointDir, IndexPathTraversal) {
  fs::create_directories(dir_ / "sub");
  shard("sub/s1.safetensors", {"a"});
  for (const char* bad : {"../s1.safetensors", "/etc/passwd", "sub/s1.safetensors", "..", ""}) {
    write("model.safetensors.index.json", std::string(R"({"weight_map":{"a":")") + bad + R"("}})");
    expect_error({"model.safetensors.index.json", "not a plain file name"});
  }
}

TEST_F(CheckpointDir, BadIndex) {
  shard("s1.safetensors", {"a"});
  write("model.safetensors.index.json", "{\"weight_map\":");
  expect_error({"model.safetensors.index.json", "invalid JSON"});
  write("model.safetensors.index.json", R"({"weight_map":[1]})");
  expect_error({"model.safetensors.index.json", "weight_map"});
  write("model.safetensors.index.json", R"({"other":{}})");
  expect_error({"model.safetensors.index.json", "weight_map"});
  write("model.safetensors.index.json", R"({"weight_map":{"a":3}})");
  expect_error({"model.safetensors.index.json", "\"a\"", "expected a file name"});
  write("model.safetensors.index.json", R"({"weight_map":{}})");
  expect_error({"weight_map is empty"});
  write("model.safetensors.index.json",
        R"({"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}})");
  expect_error({"duplicate key", "\"a\""});
  write("model.safetensors.index.json", "");
  expect_error({"model.safetensors.index.json", "empty"});
}

TEST_F(CheckpointDir, CorruptShard) {
  shard("s1.safetensors", {"a"});
  write("s2.safetensors", "garbage!garbage!");
  write("model.safetensors.index.json",
        R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  expect_error({"s2.safetensors"});
}

}  // namespace
}  // namespace dsocr
