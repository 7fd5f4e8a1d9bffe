// Checkpoint upload into the device pool: a crafted checkpoint of random tensors with awkward sizes
// (odd byte counts, tensors smaller and larger than a staging chunk, chunks that end mid-tensor)
// through every read method and staging geometry, checked byte for byte and by device checksums.
// (The whole SYNTH-1 checkpoint: synth1_upload_test.cpp.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "kernels/checksum.h"
#include "kernels/parallel.h"
#include "loader/synth.h"  // splitmix64
#include "runtime/cuda_check.h"
#include "runtime/planner.h"
#include "runtime/pool.h"
#include "runtime/weights.h"
#include "upload_test_util.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;

constexpr int kClasses = static_cast<int>(TensorClass::kRoutedExpert) + 1;

// A checkpoint directory of random tensors, ~target_mb MB, removed at the end of the test.
struct CraftedCheckpoint {
  fs::path dir;
  ~CraftedCheckpoint() {
    std::error_code ec;
    if (!dir.empty()) fs::remove_all(dir, ec);
  }
};

void craft(CraftedCheckpoint* out, uint64_t target_bytes, uint64_t seed) {
  out->dir = fs::temp_directory_path() /
             ("dsocr_upload_test_" + std::to_string(::getpid()) + "_" + std::to_string(seed));
  fs::create_directories(out->dir);
  std::mt19937_64 rng(seed);
  std::vector<TensorInfo> ts;
  uint64_t total = 0;
  // A few fixed awkward ones first, then random sizes up to ~40 MB.
  auto add = [&](DType dt, std::vector<int64_t> shape) {
    TensorInfo t;
    t.name = "t";  // (not "t" + to_string: GCC 12 -Wrestrict false positive)
    t.name += std::to_string(ts.size()) + "." + dtype_name(dt);
    t.dtype = dt;
    t.shape = std::move(shape);
    total += static_cast<uint64_t>(t.numel()) * dtype_size(dt);
    ts.push_back(std::move(t));
  };
  add(DType::BF16, {1});
  add(DType::U8, {77777});  // odd byte count
  add(DType::U8, {3});
  add(DType::F32, {333, 7});
  add(DType::BF16, {(70 << 20) / 2 + 1});  // larger than a 64 MB chunk, odd word count
  while (total < target_bytes) {
    const uint64_t r = rng() % 10;
    const uint64_t words = r < 6   ? 1 + rng() % 65536
                           : r < 9 ? 1 + rng() % (4 << 20)
                                   : 1 + rng() % (20 << 20);
    if (rng() % 5 == 0)
      add(DType::U8, {static_cast<int64_t>(2 * words + 1)});
    else
      add(DType::BF16, {static_cast<int64_t>(words)});
  }
  std::string header = build_safetensors_header(ts);
  ASSERT_FALSE(header.empty());
  std::ofstream f(out->dir / "model.safetensors", std::ios::binary);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<uint64_t> block(1 << 17);
  uint64_t s = seed * 1000003;
  for (uint64_t left = total; left > 0;) {
    for (uint64_t& w : block) w = splitmix64(s++);
    const uint64_t n = std::min<uint64_t>(left, block.size() * 8);
    f.write(reinterpret_cast<const char*>(block.data()), static_cast<std::streamsize>(n));
    left -= n;
  }
  ASSERT_TRUE(f.good());
}

std::vector<WeightEntry> entries_round_robin(const Checkpoint& ck) {
  std::vector<WeightEntry> e;
  int i = 0;
  for (const TensorInfo& t : ck.tensors())
    e.push_back({t.name, t.nbytes, static_cast<TensorClass>(i++ % kClasses)});
  return e;
}

uint64_t test_bytes() {
  const char* mb = std::getenv("DSOCR_UPLOAD_TEST_MB");  // smaller under compute-sanitizer
  return (mb ? std::strtoull(mb, nullptr, 10) : 300) << 20;
}

TEST(Upload, CraftedCheckpointEveryMethodAndGeometry) {
  DSOCR_SKIP_WITHOUT_GPU();
  CraftedCheckpoint crafted;
  craft(&crafted, test_bytes(), 11);
  Expected<Checkpoint> ck = Checkpoint::open_dir(crafted.dir.string());
  ASSERT_TRUE(ck.ok()) << ck.message();
  const std::vector<WeightEntry> entries = entries_round_robin(*ck);
  PlanOptions po;
  po.mode = Mode::kTiny;
  po.max_new_tokens = 16;
  Expected<MemoryPlan> plan = plan_memory(ModelConfig{}, entries, po);
  ASSERT_TRUE(plan.ok()) << plan.message();
  PoolOptions pool_options;
  pool_options.poison = true;
  Expected<DevicePool> pool = DevicePool::create(*plan, pool_options);
  ASSERT_TRUE(pool.ok()) << pool.message();
  const std::vector<Checksum> want = host_checksums(*ck);

  // The weights part of the pool as it must look after an upload: tensor bytes in their slots,
  // poison in the alignment gaps.
  uint64_t weights_end = 0;
  for (const Region& r : plan->regions)
    if (r.kind == RegionKind::kWeights) weights_end = std::max(weights_end, r.offset + r.bytes);
  std::vector<uint8_t> expect(weights_end);
  for (size_t i = 0; i < expect.size(); ++i)
    expect[i] = static_cast<uint8_t>(kPoison32 >> (8 * (i % 4)));
  for (const TensorInfo& t : ck->tensors())
    std::memcpy(expect.data() + plan->tensor_offset(*plan->find_tensor(t.name)), ck->bytes(t),
                t.nbytes);

  struct Geometry {
    ReadMethod method;
    uint64_t chunk;
    int buffers;
    int threads;
  };
  // buffers = per reader thread; threads 0 = the default. Chunk sizes that are not multiples of
  // 4 KiB are rounded up by the upload.
  const Geometry geometries[] = {
      {ReadMethod::kPread, 8 << 20, 2, 0},
      {ReadMethod::kMmap, 8 << 20, 2, 0},
      {ReadMethod::kDirect, 8 << 20, 2, 0},
      {ReadMethod::kPread, (3 << 20) + 123, 3, 1},
      {ReadMethod::kDirect, 1 << 20, 1, 3},
      {ReadMethod::kMmap, 5 << 20, 4, 2},
      {ReadMethod::kDirect, (16 << 20) + 4096, 2, 16},
      {ReadMethod::kPread, 64 << 20, 2, 7},
      {ReadMethod::kPread, 4096, 2, 5},
  };
  std::vector<uint8_t> back(weights_end);
  for (const Geometry& g : geometries) {
    SCOPED_TRACE(testing::Message() << read_method_name(g.method) << " chunk " << g.chunk << " x "
                                    << g.buffers << " threads " << g.threads);
    ASSERT_EQ(fill_u32_device(pool->base(), kPoison32, pool->size(), nullptr), cudaSuccess);
    UploadOptions uo;
    uo.method = g.method;
    uo.chunk_bytes = g.chunk;
    uo.buffers_per_thread = g.buffers;
    uo.read_threads = g.threads;
    UploadStats st;
    Expected<WeightTable> table = upload_weights(*ck, *pool, uo, &st);
    ASSERT_TRUE(table.ok()) << table.message();
    EXPECT_EQ(st.bytes, ck->total_bytes());
    EXPECT_GE(st.file_bytes, ck->total_bytes());
    EXPECT_EQ(table->size(), ck->tensors().size());
    for (const TensorInfo& t : ck->tensors()) {
      const DeviceTensor* d = table->find(t.name);
      ASSERT_NE(d, nullptr) << t.name;
      EXPECT_EQ(d->data, pool->tensor(t.name));
      EXPECT_EQ(d->nbytes, t.nbytes);
      EXPECT_EQ(d->dtype, t.dtype);
      EXPECT_EQ(d->shape, t.shape);
      EXPECT_EQ(table->lookup()(t.name), d->data);
    }
    EXPECT_EQ(table->lookup()("nope"), nullptr);
    std::printf(
        "  %-6s chunk %9llu x %d per thread, %d threads: %s in %.3f s = %.2f GB/s (%d chunks, "
        "read %.3f s, wait %.3f s, used %s)\n",
        read_method_name(g.method), static_cast<unsigned long long>(g.chunk), g.buffers, st.threads,
        format_bytes(st.bytes).c_str(), st.seconds, st.gb_per_s(), st.chunks, st.read_seconds,
        st.wait_seconds, read_method_name(st.method));
    expect_same_checksums(*ck, want, device_checksums(*ck, *table));
    ASSERT_EQ(cudaMemcpy(back.data(), pool->base(), weights_end, cudaMemcpyDeviceToHost),
              cudaSuccess);
    size_t first_bad = back.size();
    for (size_t i = 0; i < back.size(); ++i)
      if (back[i] != expect[i]) {
        first_bad = i;
        break;
      }
    EXPECT_EQ(first_bad, back.size())
        << "first wrong byte of the weights at pool offset " << first_bad;
  }
}

TEST(Upload, RefusesAPlanWithoutTheTensor) {
  DSOCR_SKIP_WITHOUT_GPU();
  CraftedCheckpoint crafted;
  craft(&crafted, 4 << 20, 12);
  Expected<Checkpoint> ck = Checkpoint::open_dir(crafted.dir.string());
  ASSERT_TRUE(ck.ok()) << ck.message();
  std::vector<WeightEntry> entries = entries_round_robin(*ck);
  const std::string dropped = entries.back().name;
  entries.pop_back();
  PlanOptions po;
  po.mode = Mode::kTiny;
  po.max_new_tokens = 16;
  Expected<MemoryPlan> plan = plan_memory(ModelConfig{}, entries, po);
  ASSERT_TRUE(plan.ok()) << plan.message();
  Expected<DevicePool> pool = DevicePool::create(*plan);
  ASSERT_TRUE(pool.ok()) << pool.message();
  Expected<WeightTable> table = upload_weights(*ck, *pool);
  ASSERT_FALSE(table.ok());
  EXPECT_NE(table.message().find(dropped), std::string::npos) << table.message();
  UploadOptions bad;
  bad.buffers_per_thread = 0;
  EXPECT_FALSE(upload_weights(*ck, *pool, bad).ok());
  bad = UploadOptions{};
  bad.chunk_bytes = 100;
  EXPECT_FALSE(upload_weights(*ck, *pool, bad).ok());
}

}  // namespace
}  // namespace dsocr
