// SafetensorsFile: round trips of files built with build_safetensors_header, and every kind of
// damage the parser must refuse (with a message naming the file and the tensor at fault).
#include "loader/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

namespace dsocr {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

constexpr const char* kName = "crafted.safetensors";

// A file image: u64 header length, the header text verbatim, `data_bytes` bytes of data.
Bytes raw_image(const std::string& header, size_t data_bytes) {
  Bytes b(8 + header.size() + data_bytes);
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
  std::memcpy(b.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) b[8 + header.size() + i] = static_cast<uint8_t>(i * 7);
  return b;
}

// A valid file image for `ts` with random payloads (fixed seed).
Bytes build_image(std::vector<TensorInfo>& ts, const std::map<std::string, std::string>& meta = {},
                  uint32_t seed = 1) {
  std::string h = build_safetensors_header(ts, meta);
  EXPECT_FALSE(h.empty());
  uint64_t total = 0;
  for (const auto& t : ts) total += t.nbytes;
  Bytes b(h.begin(), h.end());
  std::mt19937 rng(seed);
  for (uint64_t i = 0; i < total; ++i) b.push_back(static_cast<uint8_t>(rng()));
  return b;
}

TensorInfo tensor(std::string name, DType dt, std::vector<int64_t> shape) {
  TensorInfo t;
  t.name = std::move(name);
  t.dtype = dt;
  t.shape = std::move(shape);
  return t;
}

Expected<SafetensorsFile> parse(const Bytes& b) {
  return SafetensorsFile::parse(std::span<const uint8_t>(b.data(), b.size()), kName);
}

// The parse fails and the message contains the file name and every one of `parts`.
void expect_error(const Bytes& b, std::initializer_list<std::string> parts) {
  auto r = parse(b);
  ASSERT_FALSE(r.ok()) << "parsed a damaged file";
  EXPECT_NE(r.message().find(kName), std::string::npos) << r.message();
  for (const auto& p : parts) EXPECT_NE(r.message().find(p), std::string::npos) << r.message();
  EXPECT_EQ(r.message().find('\n'), std::string::npos) << "message must be one line";
}

// Header with one entry of the given JSON and `data` bytes of data region.
Bytes one_entry(const std::string& entry_json, size_t data) {
  return raw_image("{\"w\":" + entry_json + "}", data);
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("dsocr_st_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name, const Bytes& b) const {
    std::string p = (path_ / name).string();
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
    return p;
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

std::vector<TensorInfo> sample_tensors() {
  return {tensor("model.embed_tokens.weight", DType::BF16, {7, 5}),
          tensor("scalar", DType::F32, {}),
          tensor("empty", DType::F16, {0, 4}),
          tensor("ids", DType::I64, {3}),
          tensor("img", DType::U8, {2, 3, 3}),
          tensor("mask", DType::BOOL, {5}),
          tensor("d", DType::F64, {2, 1}),
          tensor("i32", DType::I32, {3}),
          tensor("u16", DType::U16, {1})};
}

TEST(Safetensors, RoundTrip) {
  auto ts = sample_tensors();
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "q\"uote\n"}};
  Bytes b = build_image(ts, meta, 7);
  auto r = parse(b);
  ASSERT_TRUE(r.ok()) << r.message();
  const SafetensorsFile& f = *r;
  EXPECT_EQ(f.data_begin() % 8, 0u);
  EXPECT_EQ(f.file_size(), b.size());
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), ts.size());
  // Written in order, so file-offset order equals the given order (the zero-byte tensor shares its
  // offset with the next one; ties sort zero-byte first).
  for (size_t i = 0; i < ts.size(); ++i) {
    const TensorInfo* t = f.find(ts[i].name);
    ASSERT_NE(t, nullptr) << ts[i].name;
    EXPECT_EQ(t->dtype, ts[i].dtype);
    EXPECT_EQ(t->shape, ts[i].shape);
    EXPECT_EQ(t->offset, ts[i].offset);
    EXPECT_EQ(t->nbytes, ts[i].nbytes);
    EXPECT_EQ(t->nbytes, static_cast<uint64_t>(t->numel()) * dtype_size(t->dtype));
    EXPECT_EQ(std::memcmp(f.bytes(*t), b.data() + ts[i].offset, t->nbytes), 0);
  }
  EXPECT_EQ(f.find("nope"), nullptr);
  EXPECT_EQ(f.find("model.embed_tokens.weight")->shape_str(), "[7,5]");
  EXPECT_EQ(f.find("scalar")->numel(), 1);
  EXPECT_EQ(f.find("empty")->nbytes, 0u);
  for (size_t i = 1; i < f.tensors().size(); ++i)
    EXPECT_LE(f.tensors()[i - 1].offset, f.tensors()[i].offset);
}

TEST(Safetensors, OpenFromDisk) {
  TempDir d;
  auto ts = sample_tensors();
  Bytes b = build_image(ts);
  std::string p = d.file("m.safetensors", b);
  auto r = SafetensorsFile::open(p);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->path(), p);
  const TensorInfo* t = r->find("ids");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(std::memcmp(r->bytes(*t), b.data() + t->offset, t->nbytes), 0);
  // The mapping survives moves.
  SafetensorsFile moved = std::move(r).value();
  EXPECT_EQ(std::memcmp(moved.bytes(*moved.find("img")), b.data() + moved.find("img")->offset, 18),
            0);
}

TEST(Safetensors, NoTensors) {
  EXPECT_TRUE(parse(raw_image("{}", 0)).ok());
  EXPECT_TRUE(parse(raw_image("{\"__metadata__\":{}}      ", 0)).ok());
  expect_error(raw_image("{}", 3), {"3 trailing bytes"});
}

TEST(Safetensors, BuildHeaderChecks) {
  std::vector<TensorInfo> ts = {tensor("a", DType::F32, {2})};
  ts[0].nbytes = 7;
  EXPECT_TRUE(build_safetensors_header(ts).empty());
  auto r = try_build_safetensors_header(ts);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.message().find("\"a\""), std::string::npos) << r.message();
  ts[0].nbytes = 8;
  EXPECT_FALSE(build_safetensors_header(ts).empty());
  std::vector<TensorInfo> dup = {tensor("a", DType::F32, {2}), tensor("a", DType::F32, {2})};
  EXPECT_NE(try_build_safetensors_header(dup).message().find("duplicate"), std::string::npos);
  std::vector<TensorInfo> neg = {tensor("n", DType::F32, {-2})};
  EXPECT_TRUE(build_safetensors_header(neg).empty());
  std::vector<TensorInfo> bad_utf8 = {tensor("\xff\xfe", DType::F32, {1})};
  EXPECT_TRUE(build_safetensors_header(bad_utf8).empty());
  // Padding: the header text length is a multiple of 8 for every name length.
  for (int len = 1; len <= 16; ++len) {
    std::vector<TensorInfo> one = {tensor(std::string(len, 'x'), DType::U8, {3})};
    std::string h = build_safetensors_header(one);
    EXPECT_EQ(h.size() % 8, 0u);
    EXPECT_EQ(one[0].offset, h.size());
  }
}

TEST(Safetensors, TruncatedAnywhere) {
  auto ts = sample_tensors();
  Bytes b = build_image(ts);
  auto full = parse(b);
  ASSERT_TRUE(full.ok());
  const uint64_t data_begin = full->data_begin();
  int checked = 0;
  // Every cut point across the length prefix and the header, and a sample across the data.
  for (uint64_t cut = 0; cut < b.size(); cut += (cut <= data_begin ? 1 : 3)) {
    Bytes t(b.begin(), b.begin() + static_cast<ptrdiff_t>(cut));
    auto r = parse(t);
    ASSERT_FALSE(r.ok()) << "cut at " << cut << " of " << b.size() << " parsed";
    EXPECT_NE(r.message().find(kName), std::string::npos) << r.message();
    ++checked;
  }
  EXPECT_GT(checked, static_cast<int>(data_begin));
}

TEST(Safetensors, HeaderLength) {
  Bytes b = raw_image("{}", 0);
  b[0] = 200;  // length 200 > 2 bytes present
  expect_error(b, {"header length 200", "runs past the end"});
  Bytes big = raw_image("{}", 0);
  uint64_t n = kMaxHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) big[i] = static_cast<uint8_t>(n >> (8 * i));
  expect_error(big, {"exceeds", "104857601"});
  Bytes huge = raw_image("{}", 0);
  for (int i = 0; i < 8; ++i) huge[i] = 0xff;  // 2^64-1: must not wrap 8 + N
  expect_error(huge, {"exceeds"});
  expect_error(Bytes{1, 2, 3}, {"3 bytes", "too short"});
  expect_error(Bytes{}, {"0 bytes"});
}

TEST(Safetensors, InvalidJson) {
  expect_error(raw_image("{\"w\":", 0), {"invalid JSON"});
  expect_error(raw_image("not json", 0), {"invalid JSON"});
  expect_error(raw_image(std::string("{\"a\0\":1}", 8), 0), {"invalid JSON"});
  expect_error(raw_image("{\"\xff\":1}", 0), {"invalid JSON"});
  expect_error(raw_image("{} {}", 0), {"invalid JSON"});
  expect_error(raw_image(std::string(5000, '[') + std::string(5000, ']'), 0), {"nested deeper"});
}

TEST(Safetensors, NotAnObject) {
  expect_error(raw_image("[1,2]", 0), {"expected a JSON object"});
  expect_error(raw_image("12", 0), {"expected a JSON object"});
  expect_error(raw_image("{\"w\":[1]}", 0), {"\"w\"", "expected an object"});
}

TEST(Safetensors, Dtype) {
  expect_error(one_entry(R"({"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]})", 2),
               {"\"w\"", "unknown dtype", "F8_E4M3"});
  expect_error(one_entry(R"({"dtype":7,"shape":[2],"data_offsets":[0,2]})", 2), {"\"w\"", "dtype"});
  expect_error(one_entry(R"({"shape":[2],"data_offsets":[0,2]})", 2),
               {"\"w\"", "missing", "dtype"});
  EXPECT_TRUE(parse(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2]})", 2)).ok());
  // Every known dtype name round-trips.
  for (DType t : {DType::BF16, DType::F16, DType::F32, DType::F64, DType::I8, DType::U8, DType::I16,
                  DType::U16, DType::I32, DType::U32, DType::I64, DType::U64, DType::BOOL}) {
    auto p = parse_dtype(dtype_name(t));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, t);
    EXPECT_GT(dtype_size(t), 0u);
  }
}

TEST(Safetensors, ShapeSizeMismatch) {
  expect_error(one_entry(R"({"dtype":"BF16","shape":[2,3],"data_offsets":[0,10]})", 10),
               {"\"w\"", "[2,3]", "12 bytes", "hold 10"});
}

TEST(Safetensors, BadDims) {
  expect_error(one_entry(R"({"dtype":"U8","shape":[-2],"data_offsets":[0,0]})", 0),
               {"\"w\"", "shape[0]", "negative"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[2.5],"data_offsets":[0,2]})", 2),
               {"\"w\"", "non-integer"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[2.0],"data_offsets":[0,2]})", 2),
               {"\"w\"", "non-integer"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[1e30],"data_offsets":[0,2]})", 2),
               {"\"w\"", "shape[0]"});
  expect_error(one_entry(R"({"dtype":"U8","shape":["2"],"data_offsets":[0,2]})", 2),
               {"\"w\"", "shape[0]"});
  expect_error(one_entry(R"({"dtype":"U8","shape":2,"data_offsets":[0,2]})", 2),
               {"\"w\"", "shape"});
  expect_error(
      one_entry(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,2]})", 2),
      {"\"w\"", "larger than 2^63-1"});
}

TEST(Safetensors, ShapeProductOverflow) {
  expect_error(
      one_entry(R"({"dtype":"BF16","shape":[4294967296,4294967296,4],"data_offsets":[0,0]})", 0),
      {"\"w\"", "overflows"});
  // 2^62 elements of 4 bytes overflow u64 only in the last multiply.
  expect_error(
      one_entry(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]})", 0),
      {"\"w\"", "overflows"});
  // A zero dim makes the product 0 whatever follows.
  EXPECT_TRUE(
      parse(one_entry(R"({"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]})", 0))
          .ok());
}

TEST(Safetensors, DataOffsets) {
  expect_error(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2,4]})", 2),
               {"\"w\"", "data_offsets"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[-1,1]})", 2),
               {"\"w\"", "data_offsets"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2.0]})", 2),
               {"\"w\"", "data_offsets"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[0],"data_offsets":[2,0]})", 2),
               {"\"w\"", "begin > end"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[4,6]})", 4),
               {"\"w\"", "[4,6]", "past the data region", "4 bytes"});
  expect_error(one_entry(R"({"dtype":"U8","shape":[2]})", 2), {"\"w\"", "data_offsets"});
}

TEST(Safetensors, Overlap) {
  expect_error(raw_image(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                         12),
               {"\"a\"", "\"b\"", "overlap"});
  // The same range twice.
  expect_error(raw_image(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
                         16),
               {"overlap"});
  // A zero-byte tensor inside another tensor.
  expect_error(raw_image(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                         R"("z":{"dtype":"U8","shape":[0],"data_offsets":[3,3]}})",
                         8),
               {"\"z\"", "overlap"});
}

TEST(Safetensors, HoleAndTrailing) {
  expect_error(raw_image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
                         12),
               {"hole of 4 bytes", "\"b\""});
  expect_error(raw_image(R"({"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", 8),
               {"hole", "at the start"});
  expect_error(raw_image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", 9),
               {"5 trailing bytes"});
  // Zero-byte tensors at the very end and at the start are fine.
  EXPECT_TRUE(parse(raw_image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                              R"("z":{"dtype":"U8","shape":[0],"data_offsets":[4,4]},)"
                              R"("y":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})",
                              4))
                  .ok());
}

TEST(Safetensors, DuplicateNames) {
  expect_error(raw_image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                         8),
               {"duplicate", "\"a\""});
  expect_error(one_entry(R"({"dtype":"U8","dtype":"I8","shape":[2],"data_offsets":[0,2]})", 2),
               {"duplicate", "\"dtype\"", "inside \"w\""});
}

TEST(Safetensors, Metadata) {
  expect_error(raw_image(R"({"__metadata__":[1]})", 0), {"__metadata__", "expected an object"});
  expect_error(raw_image(R"({"__metadata__":{"k":1}})", 0), {"__metadata__", "\"k\"", "string"});
  expect_error(raw_image(R"({"__metadata__":{"k":{"x":"y"}}})", 0), {"__metadata__", "\"k\""});
}

TEST(Safetensors, EmptyTensorName) {
  expect_error(raw_image(R"({"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})", 0),
               {"empty name"});
}

TEST(Safetensors, NameInMessageIsClippedAndEscaped) {
  // A 1001-byte name ending in a control character (legal JSON when escaped).
  std::string name = std::string(1000, 'n') + "\\u0001";
  auto r = parse(raw_image("{\"" + name + "\":{\"dtype\":\"X\"}}", 0));
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.message().size(), 600u) << r.message();
  EXPECT_NE(r.message().find("1001 bytes"), std::string::npos) << r.message();
  // A long invalid token with a raw control byte: the JSON error is clipped and escaped too.
  auto j = parse(raw_image("{\"" + std::string(1000, 'n') + "\x01\":1}", 0));
  ASSERT_FALSE(j.ok());
  EXPECT_LT(j.message().size(), 600u) << j.message();
  EXPECT_EQ(j.message().find('\x01'), std::string::npos) << j.message();
}

TEST(MappedFile, Errors) {
  TempDir d;
  auto missing = MappedFile::open((d.path() / "absent.safetensors").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find("absent.safetensors: no such file"), std::string::npos)
      << missing.message();
  auto dir = MappedFile::open(d.path().string());
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.message().find("is a directory"), std::string::npos) << dir.message();
  std::string empty = d.file("empty.safetensors", {});
  auto e = SafetensorsFile::open(empty);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.message().find("empty.safetensors: file is empty"), std::string::npos) << e.message();
  if (::geteuid() != 0) {  // root reads anything
    std::string locked = d.file("locked.safetensors", {1, 2, 3});
    fs::permissions(locked, fs::perms::none);
    auto l = MappedFile::open(locked);
    ASSERT_FALSE(l.ok());
    EXPECT_NE(l.message().find("locked.safetensors: cannot open"), std::string::npos)
        << l.message();
  }
  auto dev = MappedFile::open("/dev/null");
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.message().find("not a regular file"), std::string::npos) << dev.message();
}

TEST(MappedFile, MapsContent) {
  TempDir d;
  Bytes b = {9, 8, 7, 6, 5};
  auto m = MappedFile::open(d.file("x.bin", b));
  ASSERT_TRUE(m.ok()) << m.message();
  ASSERT_EQ(m->size(), 5u);
  EXPECT_EQ(std::memcmp(m->data(), b.data(), 5), 0);
  MappedFile a = std::move(m).value();
  MappedFile c;
  c = std::move(a);
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(c.data()[4], 5);
}

// The golden case files written by the reference dump script must parse as they are.
TEST(Safetensors, GoldenCases) {
  const fs::path dir = fs::path(DSOCR_GOLDEN_DIR) / "cases";
  if (!fs::is_directory(dir)) GTEST_SKIP() << dir << " not found (golden data not checked out)";
  int n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() != ".safetensors") continue;
    auto f = SafetensorsFile::open(e.path().string());
    ASSERT_TRUE(f.ok()) << f.message();
    EXPECT_GE(f->tensors().size(), 18u) << e.path();
    EXPECT_EQ(f->metadata().count("meta"), 1u) << e.path();
    ++n;
  }
  EXPECT_GE(n, 6);
  auto f = SafetensorsFile::open((dir / "show1_tiny.safetensors").string());
  ASSERT_TRUE(f.ok()) << f.message();
  const TensorInfo* u8 = f->find("global_u8");
  ASSERT_NE(u8, nullptr);
  EXPECT_EQ(u8->dtype, DType::U8);
  EXPECT_EQ(u8->shape, (std::vector<int64_t>{512, 512, 3}));
  const TensorInfo* ids = f->find("input_ids");
  ASSERT_NE(ids, nullptr);
  EXPECT_EQ(ids->dtype, DType::I64);
  EXPECT_EQ(ids->shape, (std::vector<int64_t>{82}));
  int64_t bos;
  std::memcpy(&bos, f->bytes(*ids), 8);
  EXPECT_EQ(bos, 0);  // BOS id
  const TensorInfo* emb = f->find("image_embeds");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->dtype, DType::BF16);
  EXPECT_EQ(emb->shape_str(), "[73,1280]");
  EXPECT_EQ(f->find("clip_global")->dtype, DType::F32);
}

}  // namespace
}  // namespace dsocr
