// Device pool, poison fill and checksum kernels against their CPU definitions.
#include "runtime/pool.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gpu/gpu_test.h"
#include "kernels/checksum.h"
#include "loader/bf16.h"
#include "runtime/cuda_check.h"
#include "runtime/planner.h"

namespace dsocr {
namespace {

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// Device buffer owned by a test.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t n) { EXPECT_EQ(cudaMalloc(&p, n ? n : 1), cudaSuccess); }
  ~DeviceBuffer() { cudaFree(p); }
  uint8_t* get() const { return static_cast<uint8_t*>(p); }
};

// Random finite BF16 words in [-2, 2) (so float64 sums are comparable), as bytes.
std::vector<uint8_t> random_bf16_bytes(size_t nbytes, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<uint8_t> b(nbytes);
  for (size_t i = 0; i + 1 < nbytes; i += 2) {
    uint16_t w = f32_to_bf16(u(rng));
    std::memcpy(&b[i], &w, 2);
  }
  if (nbytes % 2) b.back() = static_cast<uint8_t>(rng());
  return b;
}

bool sums_match(double a, double b, double tol) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::fabs(a - b) <= tol;
}

double abs_sum(const uint8_t* p, uint64_t n) {
  double s = 0;
  for (uint64_t i = 0; i + 1 < n; i += 2) {
    uint16_t w;
    std::memcpy(&w, p + i, 2);
    const double v = std::fabs(bf16_to_f32(w));
    if (std::isfinite(v)) s += v;
  }
  if (n % 2) s += std::fabs(bf16_to_f32(p[n - 1]));
  return s;
}

Checksum device_checksum(const void* p, uint64_t n, bool sum) {
  DeviceBuffer out(sizeof(Checksum));
  Checksum c;
  std::memset(static_cast<void*>(&c), 0xab, sizeof c);  // poison: every field must be written
  EXPECT_EQ(cudaMemcpy(out.get(), &c, sizeof c, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(checksum_device(p, n, sum, reinterpret_cast<Checksum*>(out.get()), nullptr),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(&c, out.get(), sizeof c, cudaMemcpyDeviceToHost), cudaSuccess);
  return c;
}

TEST(Checksum, DeviceMatchesReference) {
  DSOCR_SKIP_WITHOUT_GPU();
  const size_t kMax = (64ull << 20) + 5;
  const std::vector<uint8_t> host = random_bf16_bytes(kMax + 64, 1);
  DeviceBuffer dev(host.size());
  CUDA_OK(cudaMemcpy(dev.get(), host.data(), host.size(), cudaMemcpyHostToDevice));
  for (uint64_t n : {0ull, 1ull, 2ull, 3ull, 7ull, 15ull, 16ull, 17ull, 33ull, 4097ull, 1000003ull,
                     static_cast<unsigned long long>(kMax)}) {
    for (uint64_t off : {0ull, 1ull, 2ull, 8ull, 16ull, 48ull}) {
      for (bool sum : {true, false}) {
        const Checksum ref = checksum_ref(host.data() + off, n, sum);
        const Checksum got = device_checksum(dev.get() + off, n, sum);
        SCOPED_TRACE(testing::Message() << "n=" << n << " off=" << off << " sum=" << sum);
        EXPECT_EQ(got.hash, ref.hash);
        EXPECT_EQ(got.nbytes, n);
        for (int i = 0; i < 4; ++i) EXPECT_EQ(got.first4[i], ref.first4[i]) << i;
        // Different addition orders: the sums differ by rounding only, far below 1e-12 of the sum
        // of magnitudes (odd offsets read words straddling two values: any exponent, Inf, NaN).
        EXPECT_TRUE(sums_match(got.sum, ref.sum, 1e-12 * abs_sum(host.data() + off, n)))
            << got.sum << " vs " << ref.sum;
        if (!sum) {
          EXPECT_EQ(got.sum, 0.0);
        }
      }
    }
  }
}

TEST(Checksum, AnyChangedByteChangesTheHash) {
  DSOCR_SKIP_WITHOUT_GPU();
  std::vector<uint8_t> host = random_bf16_bytes((1 << 20) + 3, 2);
  DeviceBuffer dev(host.size());
  const Checksum base = checksum_ref(host.data(), host.size(), false);
  std::mt19937 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<uint8_t> h = host;
    const size_t pos = rng() % h.size();
    if (trial % 2 == 0) {
      h[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));  // one bit
    } else {  // swap two different words: the same multiset of values, another order
      size_t other = rng() % (h.size() / 2) * 2, at = pos / 2 * 2;
      if (other == at || (h[at] == h[other] && h[at + 1] == h[other + 1])) continue;
      std::swap(h[at], h[other]);
      std::swap(h[at + 1], h[other + 1]);
    }
    CUDA_OK(cudaMemcpy(dev.get(), h.data(), h.size(), cudaMemcpyHostToDevice));
    const Checksum got = device_checksum(dev.get(), h.size(), false);
    EXPECT_NE(got.hash, base.hash) << "trial " << trial << " pos " << pos;
    EXPECT_EQ(got.hash, checksum_ref(h.data(), h.size(), false).hash);
  }
  // A different length with the same leading bytes changes it too.
  EXPECT_NE(checksum_ref(host.data(), host.size() - 1, false).hash, base.hash);
}

TEST(Fill, WritesThePatternAndNothingElse) {
  DSOCR_SKIP_WITHOUT_GPU();
  const size_t kSize = (3 << 20) + 100;
  DeviceBuffer dev(kSize);
  std::vector<uint8_t> h(kSize);
  for (auto [off, n] : std::vector<std::pair<size_t, size_t>>{// off + n <= kSize
                                                              {0, kSize},
                                                              {1, 5},
                                                              {3, 1},
                                                              {16, 16},
                                                              {17, (1 << 20) + 7},
                                                              {96, 3 << 20},
                                                              {7, 0},
                                                              {256, kSize - 256}}) {
    ASSERT_LE(off + n, kSize);
    CUDA_OK(cudaMemset(dev.get(), 0x11, kSize));
    CUDA_OK(fill_u32_device(dev.get() + off, kPoison32, n, nullptr));
    CUDA_OK(cudaMemcpy(h.data(), dev.get(), kSize, cudaMemcpyDeviceToHost));
    size_t bad = 0;
    for (size_t i = 0; i < kSize; ++i) {
      const uint8_t want = (i >= off && i < off + n)
                               ? static_cast<uint8_t>(kPoison32 >> (8 * ((i - off) % 4)))
                               : 0x11;
      bad += h[i] != want;
    }
    EXPECT_EQ(bad, 0u) << "off " << off << " n " << n;
  }
  // The poison reads as NaN in both precisions.
  uint32_t w = kPoison32;
  float f;
  std::memcpy(&f, &w, 4);
  EXPECT_TRUE(std::isnan(f));
  EXPECT_TRUE(std::isnan(bf16_to_f32(static_cast<uint16_t>(w))));
  EXPECT_TRUE(std::isnan(bf16_to_f32(static_cast<uint16_t>(w >> 16))));
}

std::vector<WeightEntry> some_weights() {
  std::vector<WeightEntry> w;
  std::mt19937 rng(5);
  for (int i = 0; i < 64; ++i) {
    std::string name = "w";  // (not "w" + to_string: GCC 12 -Wrestrict false positive)
    name += std::to_string(i);
    w.push_back({name, 1 + rng() % 1000000,
                 static_cast<TensorClass>(i % (static_cast<int>(TensorClass::kRoutedExpert) + 1))});
  }
  return w;
}

MemoryPlan small_plan() {
  PlanOptions o;
  o.mode = Mode::kTiny;
  o.max_new_tokens = 100;
  Expected<MemoryPlan> p = plan_memory(ModelConfig{}, some_weights(), o);
  EXPECT_TRUE(p.ok()) << p.message();
  return p.ok() ? *p : MemoryPlan{};
}

// Every word of every non-weight region equals the poison.
void expect_poisoned(const DevicePool& pool) {
  for (const Region& r : pool.plan().regions) {
    if (r.kind == RegionKind::kWeights) continue;
    std::vector<uint32_t> h(r.bytes / 4);
    ASSERT_EQ(cudaMemcpy(h.data(), pool.region(r.name), h.size() * 4, cudaMemcpyDeviceToHost),
              cudaSuccess);
    size_t bad = 0;
    for (uint32_t x : h) bad += x != kPoison32;
    EXPECT_EQ(bad, 0u) << r.name;
  }
}

TEST(Pool, CarvesThePlanAndPoisons) {
  DSOCR_SKIP_WITHOUT_GPU();
  const MemoryPlan plan = small_plan();
  ASSERT_GT(plan.total, 0u);
  size_t free0 = 0, free1 = 0, free2 = 0, total = 0;
  CUDA_OK(cudaMemGetInfo(&free0, &total));
  {
    PoolOptions po;
    po.poison = true;
    Expected<DevicePool> pool = DevicePool::create(plan, po);
    ASSERT_TRUE(pool.ok()) << pool.message();
    CUDA_OK(cudaMemGetInfo(&free1, &total));
    EXPECT_GE(free0 - free1, plan.total);  // one allocation of the whole plan
    ASSERT_NE(pool->base(), nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(pool->base()) % kPoolAlign, 0u);
    EXPECT_EQ(pool->size(), plan.total);
    for (const Region& r : plan.regions) EXPECT_EQ(pool->region(r.name), pool->base() + r.offset);
    for (const TensorSlot& t : plan.tensors)
      EXPECT_EQ(pool->tensor(t.name), pool->base() + plan.tensor_offset(t));
    EXPECT_EQ(pool->region("nope"), nullptr);
    EXPECT_EQ(pool->tensor("nope"), nullptr);
    expect_poisoned(*pool);

    // Scribble on the KV cache and the activations, then poison again.
    CUDA_OK(cudaMemset(pool->region("kv_cache"), 0, plan.find_region("kv_cache")->bytes));
    CUDA_OK(cudaMemset(pool->region("decoder"), 0x3c, plan.find_region("decoder")->bytes));
    ASSERT_TRUE(pool->poison().ok());
    CUDA_OK(cudaDeviceSynchronize());
    expect_poisoned(*pool);

    // Moving hands the allocation over.
    uint8_t* base = pool->base();
    DevicePool moved = std::move(*pool);
    EXPECT_EQ(pool->base(), nullptr);
    EXPECT_EQ(moved.base(), base);
    EXPECT_EQ(moved.region("vision"), base + plan.find_region("vision")->offset);
  }
  CUDA_OK(cudaMemGetInfo(&free2, &total));
  EXPECT_GE(free2 + (2 << 20), free1 + plan.total);  // freed by the destructor
}

TEST(Pool, AllocationFailureIsOneLine) {
  DSOCR_SKIP_WITHOUT_GPU();
  std::vector<WeightEntry> huge = {{"huge", 64ull << 40, TensorClass::kRoutedExpert}};
  PlanOptions o;
  o.mode = Mode::kTiny;
  o.gpu_mem = 128ull << 40;  // a budget the plan fits, on a card that has far less
  Expected<MemoryPlan> plan = plan_memory(ModelConfig{}, huge, o);
  ASSERT_TRUE(plan.ok()) << plan.message();
  Expected<DevicePool> pool = DevicePool::create(*plan);
  ASSERT_FALSE(pool.ok());
  EXPECT_NE(pool.message().find("cannot allocate the"), std::string::npos) << pool.message();
  EXPECT_EQ(pool.message().find('\n'), std::string::npos);
  // The failure leaves the device usable.
  DeviceBuffer ok(1 << 20);
  CUDA_OK(cudaMemset(ok.get(), 0, 1 << 20));
  CUDA_OK(cudaDeviceSynchronize());
}

TEST(Pool, CudaErrorsNameTheCall) {
  DSOCR_SKIP_WITHOUT_GPU();
  auto failing = []() -> Status {
    DSOCR_CUDA_TRY(cudaSetDevice(1 << 20));
    return Status::Ok();
  };
  Status s = failing();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("gpu/pool_test.cpp:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("cudaSetDevice(1 << 20) failed: cudaErrorInvalidDevice"),
            std::string::npos)
      << s.message();
  cudaGetLastError();
}

}  // namespace
}  // namespace dsocr
