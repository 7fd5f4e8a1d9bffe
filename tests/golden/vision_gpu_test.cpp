// The DeepEncoder on the GPU (runtime/vision_gpu.h) against the official code's runs on SYNTH-1.
// For every case: the case's own pixels (global_u8 / crops_u8) go through VisionGpu::encode_page,
// and each tensor is compared in rel-L2 against the float32 reference; the GPU's error must be at
// most the official BF16 run's own error to the same reference (printed side by side).
//   proj_global, proj_crops, image_embeds: against fp32ref_image_embeds (the projector rows of the
//     float32 run are its rows without the newlines and the separator).
//   sam_global, clip_global: the files hold no float32 run of these, so the reference is the CPU
//     float32 encoder (runtime/vision_cpu.h; its image_embeds sit within 2e-4 of fp32ref, the
//     pipeline_cpu test) on the same global view. DSOCR_VISION_CPU_REF=0 skips that part.
// Needs a GPU and the SYNTH-1 checkpoint (DSOCR_SYNTH1_DIR, set by the synth1 fixture). The cases
// are read from DSOCR_GOLDEN_DIR (environment) if set, else the build's golden directory; a case
// file that is missing is skipped with the reason.
//
// Timing (not a test; run explicitly):
//   golden_vision_gpu_test --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Timing*'
// per-view ms for a 1024² base view and a Gundam page (1 x 1024² + 6 x 640²), CUDA events, 5
// warm-ups, median of 30, with eager launches and with the graph replay (a region of two lanes:
// the Gundam tiles beside the global view); then the per-stage medians (eager: stage events).
#include "runtime/vision_gpu.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>

#include "golden/golden_case.h"
#include "gpu/gpu_test.h"
#include "kernels/checksum.h"
#include "kernels/gemm.h"
#include "kernels/vision_attention.h"
#include "loader/config.h"
#include "loader/schema.h"
#include "runtime/assemble.h"
#include "runtime/cpu_model.h"
#include "runtime/planner.h"
#include "runtime/pool.h"
#include "runtime/vision_cpu.h"
#include "runtime/weights.h"

namespace dsocr {
namespace {

namespace fs = std::filesystem;
using golden::as_f64;
using golden::rel_l2;

// The SYNTH-1 weights on the device, uploaded once for every test of this file.
struct DeviceModel {
  ModelConfig cfg;
  std::unique_ptr<CpuModel> cpu;  // the mapped checkpoint (CPU float32 reference)
  DevicePool pool;
  WeightTable table;
  ModelWeights w;  // device pointers
  std::string error;
};

DeviceModel* model() {
  static std::unique_ptr<DeviceModel> m = [] {
    auto d = std::make_unique<DeviceModel>();
    const char* dir = std::getenv("DSOCR_SYNTH1_DIR");
    auto fail = [&](const std::string& e) {
      d->error = e;
      return std::move(d);
    };
    if (!dir || !*dir) return fail("DSOCR_SYNTH1_DIR is not set (the synth1 fixture sets it)");
    auto cpu = CpuModel::open(dir);
    if (!cpu.ok()) return fail(cpu.message());
    d->cpu = std::move(*cpu);
    d->cfg = d->cpu->cfg;
    auto entries = weight_entries(d->cpu->ckpt, checkpoint_schema(d->cfg));
    if (!entries.ok()) return fail(entries.message());
    PlanOptions po;  // gundam: its vision region must hold the gundam encoder (checked below)
    po.max_new_tokens = 64;
    auto plan = plan_memory(d->cfg, *entries, po);
    if (!plan.ok()) return fail(plan.message());
    PoolOptions pool_options;
    pool_options.poison = true;
    auto pool = DevicePool::create(*plan, pool_options);
    if (!pool.ok()) return fail(pool.message());
    d->pool = std::move(*pool);
    auto table = upload_weights(d->cpu->ckpt, d->pool);
    if (!table.ok()) return fail(table.message());
    d->table = std::move(*table);
    auto w = bind_weights(d->cfg, d->table.lookup());
    if (!w.ok()) return fail(w.message());
    d->w = std::move(*w);
    return d;
  }();
  return m.get();
}

// Skips without a GPU or without the synthetic checkpoint; any other load failure fails.
#define NEED_MODEL()                                                        \
  DSOCR_SKIP_WITHOUT_GPU();                                                 \
  DeviceModel* m = model();                                                 \
  if (m->error.rfind("DSOCR_SYNTH1_DIR", 0) == 0) GTEST_SKIP() << m->error; \
  ASSERT_TRUE(m->error.empty()) << m->error;

// Device memory owned by a test, poisoned.
struct DevMem {
  void* p = nullptr;
  explicit DevMem(uint64_t bytes) {
    EXPECT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
    EXPECT_EQ(fill_u32_device(p, kPoison32, bytes, nullptr), cudaSuccess);
  }
  ~DevMem() { cudaFree(p); }
};

template <typename T>
std::vector<double> f64(const std::vector<T>& v) {
  std::vector<double> d(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if constexpr (std::is_same_v<T, uint16_t>)
      d[i] = bf16_to_f32(v[i]);
    else
      d[i] = v[i];
  }
  return d;
}
// [n, q², C] NHWC -> [n, C, q²] NCHW.
std::vector<double> to_nchw(const std::vector<double>& v, int n, int q2, int C) {
  std::vector<double> o(v.size());
  for (int i = 0; i < n; ++i)
    for (int p = 0; p < q2; ++p)
      for (int c = 0; c < C; ++c) o[(size_t(i) * C + c) * q2 + p] = v[(size_t(i) * q2 + p) * C + c];
  return o;
}
// The projector rows of an assembled sequence (drop newlines and the separator): the global
// view's [g², dim] and the tiles' [n, t², dim] in tile order.
void split_rows(const std::vector<double>& seq, int g, int t, int w_t, int h_t, int dim,
                std::vector<double>* global, std::vector<double>* tiles) {
  const bool tiled = w_t > 1 || h_t > 1;
  size_t row = 0;
  if (tiled) {
    tiles->assign(size_t(w_t) * h_t * t * t * dim, 0);
    for (int R = 0; R < h_t * t; ++R, ++row)  // ++row: the newline
      for (int C = 0; C < w_t * t; ++C, ++row) {
        const size_t tile = size_t(R / t) * w_t + C / t, inner = size_t(R % t) * t + C % t;
        std::copy_n(&seq[row * dim], dim, &(*tiles)[(tile * t * t + inner) * dim]);
      }
  }
  global->clear();
  for (int r = 0; r < g; ++r, ++row)
    for (int c = 0; c < g; ++c, ++row)
      global->insert(global->end(), &seq[row * dim], &seq[row * dim] + dim);
}

struct Row {
  std::string tensor, reference;
  double gpu, official;
};

void run_case(const std::string& name) {
  NEED_MODEL();
  const std::string path = golden::case_path(name);
  if (!fs::exists(path)) GTEST_SKIP() << path << " is not there";
  auto gf = SafetensorsFile::open(path);
  ASSERT_TRUE(gf.ok()) << gf.message();
  std::string mode_name;
  {
    const std::string& meta = gf->metadata().at("meta");
    const size_t k = meta.find("\"mode\": \"");
    ASSERT_NE(k, std::string::npos) << meta;
    mode_name = meta.substr(k + 9, meta.find('"', k + 9) - k - 9);
  }
  auto mode = parse_mode(mode_name);
  ASSERT_TRUE(mode.ok()) << mode.message();
  auto views = page_views_from_golden(path, *mode);
  ASSERT_TRUE(views.ok()) << views.message();
  const PageViews& pv = *views;
  const ModelConfig& cfg = m->cfg;
  const int g = pv.S / 64, t = kTileSize / 64, dim = cfg.proj_out;

  // The encoder over its own poisoned region, sized for the case's mode.
  const std::vector<VisionGroup> groups = vision_groups(*mode);
  const uint64_t region_bytes = vision_gpu_region_bytes(cfg, groups);
  if (*mode == Mode::kGundam) {
    EXPECT_GE(m->pool.plan().find_region("vision")->bytes, region_bytes) << "planner vs encoder";
  }
  DevMem region(region_bytes);
  auto enc = VisionGpu::create(cfg, m->w, region.p, region_bytes, groups);
  ASSERT_TRUE(enc.ok()) << enc.message();
  const int64_t rows = image_embed_rows(g, t, pv.grid.w, pv.grid.h);
  DevMem out(rows * dim * 2);
  PageViewsRef ref;
  ref.global = pv.global.data();
  ref.S = pv.S;
  ref.tiles = pv.n_tiles ? pv.tiles.data() : nullptr;
  ref.w_t = pv.grid.w;
  ref.h_t = pv.grid.h;
  VisionTaps gt, tt;
  VisionStageMs ms;
  Status st = (*enc)->encode_page(ref, static_cast<uint16_t*>(out.p), nullptr, &gt,
                                  pv.n_tiles ? &tt : nullptr, &ms);
  ASSERT_TRUE(st.ok()) << st.message();
  std::vector<uint16_t> seq(rows * dim);
  ASSERT_EQ(cudaMemcpy(seq.data(), out.p, seq.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  std::printf("  [%s] %s, %dx%d global%s: encode %.2f ms (first call, incl. plan search)\n",
              name.c_str(), mode_name.c_str(), pv.S, pv.S,
              pv.n_tiles ? (" + " + std::to_string(pv.n_tiles) + " tiles").c_str() : "",
              ms.total());

  // The graph path on a stream of its own: the first call runs eagerly, the second captures and
  // replays, the third replays; each writes the eager call's bits into a NaN-poisoned output.
  // The crop modes again with a region of two lanes (the tiles on the encoder's second stream).
  {
    cudaStream_t s = nullptr;
    ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    std::vector<uint16_t> again(seq.size());
    const bool lanes = vision_groups_concurrent(groups);
    const uint64_t lane_bytes = vision_gpu_region_bytes(cfg, groups, true);
    DevMem region2(lanes ? lane_bytes : 256);
    for (int two = 0; two <= (lanes ? 1 : 0); ++two) {
      std::unique_ptr<VisionGpu> lane_enc;
      if (two) {
        auto r = VisionGpu::create(cfg, m->w, region2.p, lane_bytes, groups);
        ASSERT_TRUE(r.ok()) << r.message();
        lane_enc = std::move(*r);
      }
      VisionGpu& v = two ? *lane_enc : **enc;
      for (int call = 0; call < 3; ++call) {
        ASSERT_EQ(cudaMemsetAsync(out.p, 0xFF, again.size() * 2, s), cudaSuccess);
        st = v.encode_page(ref, static_cast<uint16_t*>(out.p), s);
        ASSERT_TRUE(st.ok()) << st.message();
        ASSERT_EQ(cudaMemcpyAsync(again.data(), out.p, again.size() * 2, cudaMemcpyDeviceToHost, s),
                  cudaSuccess);
        ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
        EXPECT_EQ(std::memcmp(again.data(), seq.data(), seq.size() * 2), 0)
            << name << ": encode call " << call << (two ? " with two lanes" : "")
            << " on a stream (graph path) differs from eager";
      }
    }
    if (lanes)
      std::printf("  [%s] two lanes (%s region): the eager bits\n", name.c_str(),
                  format_bytes(lane_bytes).c_str());
    cudaStreamDestroy(s);
  }

  std::vector<Row> table;
  // Projector rows and the assembled sequence vs fp32ref_image_embeds.
  const std::vector<double> f32_seq = as_f64(*gf, "fp32ref_image_embeds");
  ASSERT_EQ(f32_seq.size(), seq.size());
  std::vector<double> f32_glob, f32_tiles, bf_glob, bf_tiles;
  split_rows(f32_seq, g, t, pv.grid.w, pv.grid.h, dim, &f32_glob, &f32_tiles);
  table.push_back({"image_embeds", "fp32ref", rel_l2(f64(seq), f32_seq),
                   rel_l2(as_f64(*gf, "image_embeds"), f32_seq)});
  table.push_back({"proj_global", "fp32ref rows", rel_l2(f64(gt.proj), f32_glob),
                   rel_l2(as_f64(*gf, "proj_global"), f32_glob)});
  if (pv.n_tiles)
    table.push_back({"proj_crops", "fp32ref rows", rel_l2(f64(tt.proj), f32_tiles),
                     rel_l2(as_f64(*gf, "proj_crops"), f32_tiles)});

  // SAM and CLIP outputs vs the CPU float32 encoder on the same view.
  const std::vector<double> sam_gpu = to_nchw(f64(gt.sam), 1, g * g, cfg.sam.net3_dim);
  const std::vector<double> clip_gpu = f64(gt.clip);
  const char* cpu_ref = std::getenv("DSOCR_VISION_CPU_REF");
  if (!cpu_ref || std::string(cpu_ref) != "0") {
    std::vector<float> px(pv.global.size());
    normalize_views_hwc(pv.global.data(), px.size(), px.data());
    const auto t0 = std::chrono::steady_clock::now();
    auto cpu = encode_views_cpu(cfg, m->cpu->w, px.data(), 1, pv.S);
    ASSERT_TRUE(cpu.ok()) << cpu.message();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::vector<double> sam_cpu = f64(cpu->sam), clip_cpu = f64(cpu->clip);
    table.push_back({"sam_global", "CPU fp32", rel_l2(sam_gpu, sam_cpu),
                     rel_l2(as_f64(*gf, "sam_global"), sam_cpu)});
    table.push_back({"clip_global", "CPU fp32", rel_l2(clip_gpu, clip_cpu),
                     rel_l2(as_f64(*gf, "clip_global"), clip_cpu)});
    std::printf("  [%s] CPU fp32 encoder (global view, %.1f s): proj_global vs fp32ref %.3g\n",
                name.c_str(), secs, rel_l2(f64(cpu->proj), f32_glob));
  }
  for (const Row& r : table) {
    std::printf("  [%s] %-12s rel-L2 vs %-12s GPU %.4g   official BF16 %.4g\n", name.c_str(),
                r.tensor.c_str(), r.reference.c_str(), r.gpu, r.official);
    EXPECT_TRUE(std::isfinite(r.gpu)) << r.tensor;
    EXPECT_LE(r.gpu, r.official) << name << ": " << r.tensor << " vs " << r.reference;
  }
  // For scale: the GPU against the official BF16 tensors themselves.
  std::printf("  [%s] GPU vs official BF16: sam_global %.3g  clip_global %.3g  image_embeds %.3g\n",
              name.c_str(), rel_l2(sam_gpu, as_f64(*gf, "sam_global")),
              rel_l2(clip_gpu, as_f64(*gf, "clip_global")),
              rel_l2(f64(seq), as_f64(*gf, "image_embeds")));
}

TEST(VisionGpuGolden, show1_tiny) {
  run_case("show1_tiny");
}
TEST(VisionGpuGolden, fig1_small) {
  run_case("fig1_small");
}
TEST(VisionGpuGolden, page_base) {
  run_case("page_base");
}
TEST(VisionGpuGolden, show2_large) {
  run_case("show2_large");
}
TEST(VisionGpuGolden, page_gundam) {
  run_case("page_gundam");
}
TEST(VisionGpuGolden, small_gundam) {
  run_case("small_gundam");
}

// ---- Timing ----

float median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

TEST(VisionGpuBench, DISABLED_Timing) {
  NEED_MODEL();
  const ModelConfig& cfg = m->cfg;
  const std::vector<VisionGroup> groups = vision_groups(Mode::kGundam);
  const uint64_t region_bytes = vision_gpu_region_bytes(cfg, groups, /*concurrent=*/true);
  DevMem region(region_bytes);
  auto enc = VisionGpu::create(cfg, m->w, region.p, region_bytes, groups);
  ASSERT_TRUE(enc.ok()) << enc.message();
  // Pixels already on the device (the engine uploads a page once); a deterministic pattern.
  const int n_tiles = 6, w_t = 2, h_t = 3;
  std::vector<uint8_t> host(size_t(1024) * 1024 * 3 + size_t(n_tiles) * 640 * 640 * 3);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
  DevMem px(host.size());
  ASSERT_EQ(cudaMemcpy(px.p, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  const uint8_t* global = static_cast<const uint8_t*>(px.p);
  const uint8_t* tiles = global + size_t(1024) * 1024 * 3;
  const int64_t rows = image_embed_rows(16, 10, w_t, h_t);
  DevMem out(rows * cfg.proj_out * 2);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaEvent_t e0, e1;
  ASSERT_EQ(cudaEventCreate(&e0), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e1), cudaSuccess);
  PageViewsRef base{global, 1024, nullptr, 1, 1, true};
  PageViewsRef gundam{global, 1024, tiles, w_t, h_t, true};
  uint16_t* o = static_cast<uint16_t*>(out.p);
  constexpr int kWarm = 5, kRuns = 30;
  struct Case {
    const char* name;
    const PageViewsRef* page;
    int views;
  } cases[] = {{"base 1024² (1 view)", &base, 1}, {"gundam page (1x1024² + 6x640²)", &gundam, 7}};
  for (const Case& c : cases) {
    // Eager launches, then the graph replay (the default).
    std::vector<float> ms;
    for (const bool graphs : {false, true}) {
      (*enc)->set_graphs(graphs);
      ms.clear();
      for (int i = 0; i < kWarm + kRuns; ++i) {
        ASSERT_EQ(cudaEventRecord(e0, stream), cudaSuccess);
        Status st = (*enc)->encode_page(*c.page, o, stream);
        ASSERT_TRUE(st.ok()) << st.message();
        ASSERT_EQ(cudaEventRecord(e1, stream), cudaSuccess);
        ASSERT_EQ(cudaEventSynchronize(e1), cudaSuccess);
        float t = 0;
        ASSERT_EQ(cudaEventElapsedTime(&t, e0, e1), cudaSuccess);
        if (i >= kWarm) ms.push_back(t);
      }
      if (!graphs)
        std::printf("  TIMING %-32s eager launches: median %.3f ms = %.3f ms/view\n", c.name,
                    median(ms), median(ms) / c.views);
    }
    // Per-stage medians (stage events; every call synchronises at its end).
    std::vector<float> up, pe, sb, nk, cl, pj;
    for (int i = 0; i < kRuns; ++i) {
      VisionStageMs s;
      Status st = (*enc)->encode_page(*c.page, o, stream, nullptr, nullptr, &s);
      ASSERT_TRUE(st.ok()) << st.message();
      pe.push_back(s.patch_embed), sb.push_back(s.sam_blocks), nk.push_back(s.neck);
      cl.push_back(s.clip), pj.push_back(s.projector);
    }
    const float med = median(ms);
    std::printf(
        "  TIMING %-32s graph: median %.3f ms (min %.3f, %d runs) = %.3f ms/view | patch %.3f  "
        "SAM blocks %.3f  neck %.3f  CLIP %.3f  projector+assembly %.3f\n",
        c.name, med, *std::min_element(ms.begin(), ms.end()), kRuns, med / c.views, median(pe),
        median(sb), median(nk), median(cl), median(pj));
  }
  // Host pixels: the same page from (pageable) host memory, staged by the encoder through pinned
  // memory; wall clock of the whole call (graph replay) against the device-pixel call.
  {
    PageViewsRef hp{host.data(), 1024, host.data() + size_t(1024) * 1024 * 3, w_t, h_t, false};
    std::vector<float> wall[2];
    for (int i = 0; i < kWarm + kRuns; ++i)
      for (int from_host = 0; from_host < 2; ++from_host) {
        const auto t0 = std::chrono::steady_clock::now();
        Status st = (*enc)->encode_page(from_host ? hp : gundam, o, stream);
        ASSERT_TRUE(st.ok()) << st.message();
        ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
        const auto t1 = std::chrono::steady_clock::now();
        if (i >= kWarm)
          wall[from_host].push_back(std::chrono::duration<float, std::milli>(t1 - t0).count());
      }
    std::printf(
        "  TIMING gundam page, wall clock per call: device pixels %.3f ms, host pixels %.3f ms "
        "(upload +%.3f ms)\n",
        median(wall[0]), median(wall[1]), median(wall[1]) - median(wall[0]));
  }
  // Where a 1024² view's time goes: the encoder's attention and GEMM shapes alone (same stream,
  // events around 20 repetitions after 5 warm-ups; inputs uniform in [-1, 1)).
  {
    std::vector<uint16_t> fill(size_t(4900) * 4096);
    uint64_t z = 1;
    for (auto& v : fill) {
      z = z * 6364136223846793005ull + 1442695040888963407ull;
      v = f32_to_bf16(static_cast<float>((z >> 40) * 0x1.0p-24) * 2.f - 1.f);
    }
    DevMem a(fill.size() * 2), b(fill.size() * 2), c(fill.size() * 2),
        ws(GemmRunner::kWorkspaceBytes);
    ASSERT_EQ(cudaMemcpy(a.p, fill.data(), fill.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(b.p, fill.data(), fill.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    std::vector<float> rel(159 * 64);
    for (size_t i = 0; i < rel.size(); ++i) rel[i] = bf16_to_f32(fill[i]);
    DevMem rh(rel.size() * 4);
    ASSERT_EQ(cudaMemcpy(rh.p, rel.data(), rel.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    GemmRunner gemm;
    ASSERT_EQ(gemm.init(ws.p, GemmRunner::kWorkspaceBytes), CUBLAS_STATUS_SUCCESS);
    auto time_us = [&](const std::function<void()>& f) {
      for (int i = 0; i < 5; ++i) f();
      std::vector<float> t;
      for (int i = 0; i < 20; ++i) {
        cudaEventRecord(e0, stream);
        f();
        cudaEventRecord(e1, stream);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        t.push_back(ms * 1e3f);
      }
      EXPECT_EQ(cudaGetLastError(), cudaSuccess);
      return median(t);
    };
    const uint16_t* A = static_cast<const uint16_t*>(a.p);
    const uint16_t* W = static_cast<const uint16_t*>(b.p);
    uint16_t* C = static_cast<uint16_t*>(c.p);
    const float* R = static_cast<const float*>(rh.p);
    auto att = [&](const char* what, int64_t seqs, int64_t tokens, int64_t grid, int heads,
                   int count) {
      const float us = time_us([&] {
        EXPECT_EQ(vision_attention(A, grid ? R : nullptr, grid ? R : nullptr, C, seqs, tokens, grid,
                                   grid, heads, 64, stream),
                  cudaSuccess);
      });
      const double flop = 4.0 * seqs * heads * tokens * tokens * 64;
      std::printf("  OPS attention %-26s %8.1f us  %6.1f TFLOP/s  x%-2d per view = %7.1f us\n",
                  what, us, flop / us * 1e-6, count, us * count);
      return us * count;
    };
    auto mm = [&](const char* what, int64_t m, int64_t n, int64_t k, int count) {
      GemmArgs g;
      g.m = m, g.n = n, g.k = k, g.a = A, g.lda = k, g.w = W, g.ldw = k, g.bias = W;
      g.out = C, g.ldo = n;
      const float us = time_us([&] { EXPECT_EQ(gemm.run(g, stream), CUBLAS_STATUS_SUCCESS); });
      std::printf("  OPS gemm %-31s %8.1f us  %6.1f TFLOP/s  x%-2d per view = %7.1f us\n", what, us,
                  2.0 * m * n * k / us * 1e-6, count, us * count);
      return us * count;
    };
    float sam_att = 0, sam_mm = 0, clip_att = 0, clip_mm = 0;
    sam_att += att("SAM window 25x196 rel", 25, 196, 14, 12, 8);
    sam_att += att("SAM global 4096 rel", 1, 4096, 64, 12, 4);
    clip_att += att("CLIP 257", 1, 257, 0, 16, 24);
    sam_mm += mm("SAM qkv 4900x2304x768", 4900, 2304, 768, 8);
    sam_mm += mm("SAM proj 4900x768x768", 4900, 768, 768, 8);
    sam_mm += mm("SAM qkv 4096x2304x768", 4096, 2304, 768, 4);
    sam_mm += mm("SAM proj 4096x768x768", 4096, 768, 768, 4);
    sam_mm += mm("SAM lin1 4096x3072x768", 4096, 3072, 768, 12);
    sam_mm += mm("SAM lin2 4096x768x3072", 4096, 768, 3072, 12);
    clip_mm += mm("CLIP qkv 257x3072x1024", 257, 3072, 1024, 24);
    clip_mm += mm("CLIP out 257x1024x1024", 257, 1024, 1024, 24);
    clip_mm += mm("CLIP fc1 257x4096x1024", 257, 4096, 1024, 24);
    clip_mm += mm("CLIP fc2 257x1024x4096", 257, 1024, 4096, 24);
    std::printf(
        "  OPS 1024² view: SAM attention %.3f ms + SAM GEMMs %.3f ms; CLIP attention "
        "%.3f ms + CLIP GEMMs %.3f ms (the rest of each stage: norms, GELU, glue)\n",
        sam_att * 1e-3, sam_mm * 1e-3, clip_att * 1e-3, clip_mm * 1e-3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace dsocr
