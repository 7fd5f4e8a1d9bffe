#include "runtime/vision_gpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/activation.h"
#include "kernels/conv2d.h"
#include "kernels/interp.h"
#include "kernels/layernorm.h"
#include "kernels/parallel.h"
#include "kernels/vision_attention.h"
#include "kernels/vision_misc.h"
#include "loader/bf16.h"
#include "runtime/cuda_check.h"
#include "runtime/preprocess.h"

namespace dsocr {
namespace {

constexpr uint64_t kAlign = 256;
uint64_t align_up(uint64_t v) {
  return (v + kAlign - 1) / kAlign * kAlign;
}

// Bump allocator over byte offsets (sizes only; the same code lays out and sizes the region).
struct Carver {
  uint64_t off = 0;
  uint64_t take(uint64_t bytes) {
    const uint64_t o = off;
    off = align_up(off + bytes);
    return o;
  }
};

int head_dim_of(const ModelConfig& cfg) {
  return cfg.sam.dim / cfg.sam.n_heads;
}

// Constant tables of one view side S (FP32: the official model interpolates in float32; keeping
// float32 instead of its cast back to BF16 stays closer to the float32 model).
struct TableLayout {
  uint64_t sam_pos = 0;                // [g², 768]
  uint64_t clip_pos = 0;               // [1 + q², 1024]
  std::vector<uint64_t> rel_h, rel_w;  // per SAM block: [2L − 1, 64], L = g (global) or window
  std::vector<int> rel_rows;           // 2L − 1 per block
  uint64_t bytes = 0;
};
TableLayout table_layout(const ModelConfig& cfg, int S) {
  const SamConfig& c = cfg.sam;
  const int64_t g = S / c.patch, q = g / 4;
  TableLayout t;
  Carver cv;
  t.sam_pos = cv.take(g * g * c.dim * 4);
  t.clip_pos = cv.take((1 + q * q) * cfg.clip.dim * 4);
  for (int b = 0; b < c.depth; ++b) {
    const bool global =
        std::find(c.global_blocks.begin(), c.global_blocks.end(), b) != c.global_blocks.end();
    const int rows = 2 * static_cast<int>(global ? g : c.window) - 1;
    t.rel_rows.push_back(rows);
    t.rel_h.push_back(cv.take(int64_t{rows} * head_dim_of(cfg) * 4));
    t.rel_w.push_back(cv.take(int64_t{rows} * head_dim_of(cfg) * 4));
  }
  t.bytes = cv.off;
  return t;
}

// Activations of one group of n views of side S. Two phases share the area after `feat`: SAM
// (pixels .. big) and CLIP + projector (h .. proj); feat (the projector input [n·q², 2048]: CLIP
// columns 0..1023, SAM columns 1024..2047, written by net_3 directly) spans both.
//   N = n·g² tokens, Nw = n·nw²·win² windowed tokens (zero-padded), Nmax = max(N, Nw)
//   x    [N, 768]       SAM residual stream
//   xn   [Nmax, 768]    norm outputs (windowed for window blocks), attention out, patch im2col,
//                       neck.0 / net_2 outputs
//   xw   [Nmax, 768]    windowed norm1 output, proj output, attention out (global), neck.2 out
//   big  max(Nmax·2304, N·3072, N·768 FP32) BF16: qkv, MLP hidden, patch GEMM FP32 output, conv
//                       im2col (neck.2: N·2304, the largest)
//   CLIP, T = n·(q² + 1): h [T, 1024] FP32, xn/att/tmp [T, 1024], qkv [T, 3072], hidden
//                       [T, 4096]; proj [n·q², 1280]
struct ActLayout {
  int64_t g = 0, N = 0, nw = 0, Nw = 0, Nmax = 0, q = 0, Q = 0, T = 0;
  uint64_t feat = 0, pix = 0, x = 0, xn = 0, xw = 0, big = 0;
  uint64_t h = 0, cxn = 0, cqkv = 0, catt = 0, ctmp = 0, chid = 0, proj = 0;
  uint64_t bytes = 0;
};
ActLayout act_layout(const ModelConfig& cfg, int S, int n) {
  const SamConfig& c = cfg.sam;
  ActLayout a;
  a.g = S / c.patch;
  a.N = n * a.g * a.g;
  a.nw = (a.g + c.window - 1) / c.window;
  a.Nw = n * a.nw * a.nw * c.window * c.window;
  a.Nmax = std::max(a.N, a.Nw);
  a.q = a.g / 4;
  a.Q = n * a.q * a.q;
  a.T = n * (a.q * a.q + 1);
  const int64_t D = c.dim, cd = cfg.clip.dim;
  Carver cv;
  a.feat = cv.take(a.Q * cfg.proj_in * 2);
  const uint64_t phase = cv.off;
  a.pix = cv.take(int64_t{n} * S * S * 3);
  a.x = cv.take(a.N * D * 2);
  a.xn = cv.take(a.Nmax * D * 2);
  a.xw = cv.take(a.Nmax * D * 2);
  const int64_t big = std::max(
      {a.Nmax * 3 * D, a.N * int64_t{c.mlp_dim}, a.N * D * 2, a.N * int64_t{c.neck_dim} * 9});
  a.big = cv.take(big * 2);
  const uint64_t sam_end = cv.off;
  cv.off = phase;
  a.h = cv.take(a.T * cd * 4);
  a.cxn = cv.take(a.T * cd * 2);
  a.cqkv = cv.take(a.T * 3 * cd * 2);
  a.catt = cv.take(a.T * cd * 2);
  a.ctmp = cv.take(a.T * cd * 2);
  a.chid = cv.take(a.T * int64_t{cfg.clip.mlp_dim} * 2);
  a.proj = cv.take(a.Q * int64_t{cfg.proj_out} * 2);
  a.bytes = std::max(sam_end, cv.off);
  return a;
}

// The group whose pinned staging area takes host pixels of side S: the one of that side with the
// most views (encode_group checks that a call's views fit it).
size_t staging_group(const std::vector<VisionGroup>& groups, int S) {
  size_t best = groups.size();
  for (size_t i = 0; i < groups.size(); ++i)
    if (groups[i].side == S &&
        (best == groups.size() || groups[i].max_views > groups[best].max_views))
      best = i;
  return best;
}

bool bad_side(const ModelConfig& cfg, int S) {
  return S < 64 || S % 64 != 0 || S / cfg.sam.patch > 1024;
}

}  // namespace

VisionStageMs& VisionStageMs::operator+=(const VisionStageMs& o) {
  upload += o.upload, patch_embed += o.patch_embed, sam_blocks += o.sam_blocks, neck += o.neck;
  clip += o.clip, projector += o.projector;
  return *this;
}

std::vector<VisionGroup> vision_groups(Mode mode) {
  const ModeSpec& s = mode_spec(mode);
  if (!s.crop) return {{s.image_size, 1}};
  return {{s.base_size, 1}, {kTileSize, kMaxCropsHF}};
}

bool vision_groups_concurrent(const std::vector<VisionGroup>& groups) {
  return groups.size() == 2 && groups[0].side != groups[1].side;
}

uint64_t vision_gpu_region_bytes(const ModelConfig& cfg, const std::vector<VisionGroup>& groups,
                                 bool concurrent) {
  uint64_t bytes = align_up(GemmRunner::kWorkspaceBytes), act = 0;
  std::vector<int> sides;
  for (const VisionGroup& g : groups) {
    if (std::find(sides.begin(), sides.end(), g.side) == sides.end()) {
      sides.push_back(g.side);
      bytes += align_up(table_layout(cfg, g.side).bytes);
    }
    act = std::max(act, act_layout(cfg, g.side, g.max_views).bytes);
  }
  if (!concurrent || !vision_groups_concurrent(groups)) return bytes + act;
  // Lane 0 (the first group) after the tables, then lane 1's workspace and activations.
  return bytes + align_up(act_layout(cfg, groups[0].side, groups[0].max_views).bytes) +
         align_up(GemmRunner::kWorkspaceBytes) +
         act_layout(cfg, groups[1].side, groups[1].max_views).bytes;
}

uint64_t vision_gpu_workspace_bytes(const ModelConfig& cfg, int S, int n_views) {
  return vision_gpu_region_bytes(cfg, {{S, n_views}});
}

struct VisionGpu::Tables {
  int S = 0;
  TableLayout layout;
  uint8_t* base = nullptr;
  const float* f32(uint64_t off) const { return reinterpret_cast<const float*>(base + off); }
};

// Stage boundaries: start, upload, patch, blocks, neck, clip, projector.
struct VisionGpu::Events {
  static constexpr int kCount = 7;
  cudaEvent_t e[kCount] = {};
  ~Events() {
    for (cudaEvent_t x : e)
      if (x) cudaEventDestroy(x);
  }
};

struct VisionGpu::Graphs {
  struct Entry {
    int S = 0, n = 0, lane = 0, uses = 0;
    cudaGraphExec_t exec = nullptr;
  };
  std::vector<Entry> e;
  Entry& at(int S, int n, int lane) {
    for (Entry& x : e)
      if (x.S == S && x.n == n && x.lane == lane) return x;
    e.push_back(Entry{S, n, lane, 0, nullptr});
    return e.back();
  }
  ~Graphs() {
    for (Entry& x : e)
      if (x.exec) cudaGraphExecDestroy(x.exec);
  }
};

struct VisionGpu::Staging {
  uint8_t* host = nullptr;
  bool unavailable = false;       // cudaHostAlloc failed once: pageable copies from then on
  std::vector<size_t> offset;     // per group (groups_ order)
  std::vector<cudaEvent_t> done;  // per group: after the last copy out of its area
  ~Staging() {
    for (cudaEvent_t e : done)
      if (e) cudaEventDestroy(e);
    if (host) cudaFreeHost(host);
  }
};

struct VisionGpu::SideStream {
  cudaStream_t stream = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  ~SideStream() {
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
    if (stream) cudaStreamDestroy(stream);
  }
};

VisionGpu::~VisionGpu() = default;

Expected<std::unique_ptr<VisionGpu>> VisionGpu::create(const ModelConfig& cfg,
                                                       const ModelWeights& w, void* region,
                                                       uint64_t region_bytes,
                                                       const std::vector<VisionGroup>& groups) {
  if (groups.empty()) return Status::Error("vision encoder: no view groups to plan for");
  for (const VisionGroup& g : groups)
    if (bad_side(cfg, g.side) || g.max_views < 1)
      return Status::Error(
          strfmt("vision encoder: view side %d (x%d views) is not a positive "
                 "multiple of 64 with at least one view",
                 g.side, g.max_views));
  const uint64_t need = vision_gpu_region_bytes(cfg, groups);
  if (!region || reinterpret_cast<uintptr_t>(region) % kAlign || region_bytes < need)
    return Status::Error(
        strfmt("vision encoder: region of %llu bytes at %p; need %llu bytes, "
               "256-byte aligned (plan the pool's vision region with "
               "vision_gpu_region_bytes)",
               static_cast<unsigned long long>(region_bytes), region,
               static_cast<unsigned long long>(need)));
  std::unique_ptr<VisionGpu> v(new VisionGpu);
  v->cfg_ = cfg;
  v->w_ = w;
  v->region_ = static_cast<uint8_t*>(region);
  v->region_bytes_ = region_bytes;
  v->groups_ = groups;
  DSOCR_CUDA_TRY(v->lanes_[0].gemm.init(v->region_, GemmRunner::kWorkspaceBytes));
  uint64_t off = align_up(GemmRunner::kWorkspaceBytes);

  // Host copies of the tables to resize (a few MB, once).
  const SamConfig& c = cfg.sam;
  const int hd = head_dim_of(cfg);
  auto download = [](const bf16_t* dev, size_t n, std::vector<float>* out) -> Status {
    std::vector<bf16_t> h(n);
    DSOCR_CUDA_TRY(cudaMemcpy(h.data(), dev, n * 2, cudaMemcpyDeviceToHost));
    out->resize(n);
    for (size_t i = 0; i < n; ++i) (*out)[i] = bf16_to_f32(h[i]);
    return Status::Ok();
  };
  const int64_t g0 = c.img_size / c.patch, cg0 = cfg.clip.pos_grid;
  std::vector<float> sam_pos, clip_pos;
  DSOCR_TRY(download(w.sam.pos_embed, g0 * g0 * c.dim, &sam_pos));
  DSOCR_TRY(download(w.clip.pos_emb, (1 + cg0 * cg0) * cfg.clip.dim, &clip_pos));
  std::vector<std::vector<float>> rel_h(c.depth), rel_w(c.depth);
  for (int b = 0; b < c.depth; ++b) {
    const SamBlockWeights& bw = w.sam.blocks[b];
    DSOCR_TRY(download(bw.rel_h, size_t(bw.rel_len) * hd, &rel_h[b]));
    DSOCR_TRY(download(bw.rel_w, size_t(bw.rel_len) * hd, &rel_w[b]));
  }

  for (const VisionGroup& grp : groups) {
    if (v->tables_for(grp.side)) continue;
    auto t = std::make_unique<Tables>();
    t->S = grp.side;
    t->layout = table_layout(cfg, grp.side);
    t->base = v->region_ + off;
    off += align_up(t->layout.bytes);
    const int64_t g = grp.side / c.patch, q = g / 4;
    auto upload = [&](uint64_t dst, const std::vector<float>& src) -> Status {
      DSOCR_CUDA_TRY(cudaMemcpy(t->base + dst, src.data(), src.size() * 4, cudaMemcpyHostToDevice));
      return Status::Ok();
    };
    // SAM pos_embed [64, 64, 768] -> [g, g, 768] (bicubic antialias, MODEL.md §3 step 2).
    if (g == g0) {
      DSOCR_TRY(upload(t->layout.sam_pos, sam_pos));
    } else {
      std::vector<float> r(g * g * c.dim);
      interp_bicubic_aa_hwc_ref(sam_pos.data(), r.data(), c.dim, g0, g0, g, g);
      DSOCR_TRY(upload(t->layout.sam_pos, r));
    }
    // CLIP position embedding: CLS row kept, 16 x 16 patch rows -> q x q (§4.2 get_abs_pos).
    {
      const int64_t cd = cfg.clip.dim;
      std::vector<float> r((1 + q * q) * cd);
      std::copy(clip_pos.begin(), clip_pos.begin() + cd, r.begin());
      if (q == cg0)
        std::copy(clip_pos.begin() + cd, clip_pos.end(), r.begin() + cd);
      else
        interp_bicubic_aa_hwc_ref(clip_pos.data() + cd, r.data() + cd, cd, cg0, cg0, q, q);
      DSOCR_TRY(upload(t->layout.clip_pos, r));
    }
    // Rel-pos tables, linear-resized to 2L − 1 rows where needed (§3 step 4 get_rel_pos).
    for (int b = 0; b < c.depth; ++b) {
      const int rows = t->layout.rel_rows[b], len = w.sam.blocks[b].rel_len;
      for (int hw = 0; hw < 2; ++hw) {
        const std::vector<float>& src = hw ? rel_w[b] : rel_h[b];
        std::vector<float> r(size_t(rows) * hd);
        if (rows == len)
          r = src;
        else
          interp_linear_rows_ref(src.data(), r.data(), len, rows, hd);
        DSOCR_TRY(upload(hw ? t->layout.rel_w[b] : t->layout.rel_h[b], r));
      }
    }
    v->tables_.push_back(std::move(t));
  }
  // The tables went up with plain cudaMemcpy (legacy stream; a pageable copy may return before
  // its DMA lands): complete them before any encode on a non-blocking stream reads them.
  DSOCR_CUDA_TRY(cudaDeviceSynchronize());
  v->lanes_[0].act = v->region_ + off;
  v->lanes_[0].act_bytes = region_bytes - off;
  if (vision_groups_concurrent(groups) &&
      region_bytes >= vision_gpu_region_bytes(cfg, groups, /*concurrent=*/true)) {
    // Two lanes: the second group runs on a stream of its own beside the first.
    Lane& l0 = v->lanes_[0];
    Lane& l1 = v->lanes_[1];
    l0.act_bytes = align_up(act_layout(cfg, groups[0].side, groups[0].max_views).bytes);
    uint8_t* ws1 = l0.act + l0.act_bytes;
    DSOCR_CUDA_TRY(l1.gemm.init(ws1, GemmRunner::kWorkspaceBytes));
    l1.act = ws1 + align_up(GemmRunner::kWorkspaceBytes);
    l1.act_bytes = static_cast<uint64_t>(v->region_ + region_bytes - l1.act);
    v->side_ = std::make_unique<SideStream>();
    DSOCR_CUDA_TRY(cudaStreamCreateWithFlags(&v->side_->stream, cudaStreamNonBlocking));
    DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&v->side_->fork, cudaEventDisableTiming));
    DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&v->side_->join, cudaEventDisableTiming));
  }
  v->events_ = std::make_unique<Events>();
  v->graphs_ = std::make_unique<Graphs>();
  v->staging_ = std::make_unique<Staging>();
  if (const char* env = std::getenv("DSOCR_VISION_GRAPH"))  // A/B timing against eager launches
    v->use_graphs_ = std::strcmp(env, "0") != 0;
  for (cudaEvent_t& e : v->events_->e) DSOCR_CUDA_TRY(cudaEventCreate(&e));
  for (int i = 0; i < 256; ++i)
    v->pixel_lut_[i] = f32_to_bf16(normalize_pixel(static_cast<uint8_t>(i)));
  return v;
}

const VisionGpu::Tables* VisionGpu::tables_for(int S) const {
  for (const auto& t : tables_)
    if (t->S == S) return t.get();
  return nullptr;
}

Status VisionGpu::encode_views(const uint8_t* pixels, bool on_device, int n, int S,
                               uint16_t* proj_out, cudaStream_t stream, VisionTaps* taps,
                               VisionStageMs* ms) {
  Placement p;
  p.proj_out = proj_out;
  return encode_group(pixels, on_device, n, S, p, stream, taps, ms);
}

Status VisionGpu::encode_page(const PageViewsRef& page, uint16_t* out, cudaStream_t stream,
                              VisionTaps* global_taps, VisionTaps* tile_taps, VisionStageMs* ms) {
  const bool tiled = page.w_t > 1 || page.h_t > 1;
  if (page.w_t < 1 || page.h_t < 1 || (tiled && !page.tiles) || !page.global || !out)
    return Status::Error(
        strfmt("vision encoder: page with a %dx%d tile grid needs the global "
               "view, %s and an output buffer",
               page.w_t, page.h_t, tiled ? "the tiles" : "no tiles"));
  const int dim = cfg_.proj_out;
  const int t = kTileSize / 64;
  VisionStageMs sum;
  int64_t local_rows = 0;
  // Two lanes (planned with room for both): the tiles on the side stream beside the global view.
  // Stage timing runs the groups one after the other (the stage events are shared).
  const bool side = side_ && tiled && !ms && lane_of(kTileSize) != lane_of(page.S);
  if (side) {
    DSOCR_CUDA_TRY(cudaEventRecord(side_->fork, stream));
    DSOCR_CUDA_TRY(cudaStreamWaitEvent(side_->stream, side_->fork));
  }
  if (tiled) {
    Placement p;
    p.out = out;
    p.w_t = page.w_t;
    p.h_t = page.h_t;
    VisionStageMs one;
    DSOCR_TRY(encode_group(page.tiles, page.on_device, page.w_t * page.h_t, kTileSize, p,
                           side ? side_->stream : stream, tile_taps, ms ? &one : nullptr));
    sum += one;
    local_rows = int64_t{page.h_t} * t * (int64_t{page.w_t} * t + 1);
  }
  Placement p;
  p.out = out + local_rows * dim;
  p.separator = true;
  VisionStageMs one;
  DSOCR_TRY(encode_group(page.global, page.on_device, 1, page.S, p, stream, global_taps,
                         ms ? &one : nullptr));
  sum += one;
  if (side) {
    DSOCR_CUDA_TRY(cudaEventRecord(side_->join, side_->stream));
    DSOCR_CUDA_TRY(cudaStreamWaitEvent(stream, side_->join));
  }
  if (ms) *ms = sum;
  return Status::Ok();
}

Status VisionGpu::encode_group(const uint8_t* pixels, bool on_device, int n, int S,
                               const Placement& place, cudaStream_t stream, VisionTaps* taps,
                               VisionStageMs* ms) {
  int max_views = 0;
  for (const VisionGroup& g : groups_)
    if (g.side == S) max_views = std::max(max_views, g.max_views);
  if (!tables_for(S) || n < 1 || n > max_views)
    return Status::Error(
        strfmt("vision encoder: %d views of %dx%d, but the encoder was planned "
               "for %d views of that side; plan the mode's view groups",
               n, S, S, max_views));
  if (!pixels) return Status::Error("vision encoder: no pixels");
  const ActLayout a = act_layout(cfg_, S, n);
  const Lane& L = lanes_[lane_of(S)];
  if (a.bytes > L.act_bytes) return Status::Error("vision encoder: activation area too small");
  cudaEvent_t* ev = events_->e;

  // Host pixels (u8) into the workspace. Device pixels are read where they are by an eager
  // encode; a graph replay reads the workspace's pixel area (one device-to-device copy, ~5 µs for
  // a Gundam page's tiles), so that its nodes never change. (The legacy default stream cannot be
  // captured: encodes on it run eagerly.)
  const bool replay = use_graphs_ && !ms && stream != nullptr && stream != cudaStreamLegacy;
  if (ms) DSOCR_CUDA_TRY(cudaEventRecord(ev[0], stream));
  const uint8_t* pix = pixels;
  if (!on_device || replay) {
    const size_t bytes = size_t(n) * S * S * 3;
    const uint8_t* src = pixels;
    if (!on_device) {
      DSOCR_ASSIGN_OR_RETURN(const uint8_t* pinned, stage_pixels(pixels, bytes, S));
      if (pinned) src = pinned;
    }
    DSOCR_CUDA_TRY(cudaMemcpyAsync(L.act + a.pix, src, bytes,
                                   on_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice,
                                   stream));
    if (src != pixels)
      DSOCR_CUDA_TRY(cudaEventRecord(staging_->done[staging_group(groups_, S)], stream));
    pix = L.act + a.pix;
  }
  if (ms) DSOCR_CUDA_TRY(cudaEventRecord(ev[1], stream));
  if (replay) {
    DSOCR_TRY(body_replayed(n, S, stream));
  } else {
    DSOCR_TRY(body(pix, n, S, stream, /*marks=*/true));
  }

  // The group's projector rows to where they belong (§4.5).
  const uint16_t* proj = reinterpret_cast<const uint16_t*>(L.act + a.proj);
  const int po = cfg_.proj_out;
  if (place.out) {
    DSOCR_CUDA_TRY(
        assemble_embeds(proj, static_cast<int>(a.q), place.w_t, place.h_t, w_.proj.image_newline,
                        place.separator ? w_.proj.view_sep : nullptr, place.out, po, stream));
  }
  if (place.proj_out)
    DSOCR_CUDA_TRY(cudaMemcpyAsync(place.proj_out, proj, size_t(a.Q) * po * 2,
                                   cudaMemcpyDeviceToDevice, stream));
  if (ms) DSOCR_CUDA_TRY(cudaEventRecord(ev[Events::kCount - 1], stream));

  if (taps) {
    const int sd = cfg_.sam.net3_dim, cd = cfg_.clip.dim;
    taps->n = n;
    taps->q = static_cast<int>(a.q);
    taps->sam.resize(size_t(a.Q) * sd);
    taps->clip.resize(size_t(a.T) * cd);
    taps->proj.resize(size_t(a.Q) * po);
    const uint8_t* sam_out = L.act + a.feat + size_t(cd) * 2;  // feat columns [1024, 2048)
    DSOCR_CUDA_TRY(cudaMemcpy2DAsync(taps->sam.data(), size_t(sd) * 2, sam_out,
                                     size_t(cfg_.proj_in) * 2, size_t(sd) * 2, a.Q,
                                     cudaMemcpyDeviceToHost, stream));
    DSOCR_CUDA_TRY(cudaMemcpyAsync(taps->clip.data(), L.act + a.h, taps->clip.size() * 4,
                                   cudaMemcpyDeviceToHost, stream));
    DSOCR_CUDA_TRY(cudaMemcpyAsync(taps->proj.data(), proj, taps->proj.size() * 2,
                                   cudaMemcpyDeviceToHost, stream));
    DSOCR_CUDA_TRY(cudaStreamSynchronize(stream));
  }
  if (ms) {
    DSOCR_CUDA_TRY(cudaEventSynchronize(ev[Events::kCount - 1]));
    float t[Events::kCount - 1];
    for (int i = 0; i + 1 < Events::kCount; ++i)
      DSOCR_CUDA_TRY(cudaEventElapsedTime(&t[i], ev[i], ev[i + 1]));
    *ms = VisionStageMs{t[0], t[1], t[2], t[3], t[4], t[5]};
  }
  return Status::Ok();
}

Expected<const uint8_t*> VisionGpu::stage_pixels(const uint8_t* pixels, size_t bytes, int S) {
  Staging& st = *staging_;
  if (st.unavailable) return static_cast<const uint8_t*>(nullptr);
  if (!st.host) {
    size_t total = 0;
    for (const VisionGroup& g : groups_) {
      st.offset.push_back(total);
      total += align_up(size_t(g.max_views) * g.side * g.side * 3);
    }
    if (cudaHostAlloc(reinterpret_cast<void**>(&st.host), total, cudaHostAllocDefault) !=
        cudaSuccess) {
      cudaGetLastError();  // not sticky: pageable copies still work
      st.host = nullptr;
      st.unavailable = true;
      return static_cast<const uint8_t*>(nullptr);
    }
    st.done.assign(groups_.size(), nullptr);
    for (cudaEvent_t& e : st.done)
      DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  }
  const size_t gi = staging_group(groups_, S);
  uint8_t* dst = st.host + st.offset[gi];
  DSOCR_CUDA_TRY(cudaEventSynchronize(st.done[gi]));  // the previous page's copy out of the area
  constexpr int64_t kChunk = int64_t{1} << 20;
  parallel_for((static_cast<int64_t>(bytes) + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
    const size_t lo = size_t(b) * kChunk, hi = std::min(bytes, size_t(e) * kChunk);
    std::memcpy(dst + lo, pixels + lo, hi - lo);
  });
  return static_cast<const uint8_t*>(dst);
}

int VisionGpu::lane_of(int S) const {
  return side_ ? static_cast<int>(staging_group(groups_, S)) : 0;
}

Status VisionGpu::body_replayed(int n, int S, cudaStream_t stream) {
  const uint8_t* pix = lanes_[lane_of(S)].act + act_layout(cfg_, S, n).pix;
  Graphs::Entry& g = graphs_->at(S, n, lane_of(S));
  if (!g.exec && g.uses++ == 0) return body(pix, n, S, stream, /*marks=*/false);
  if (!g.exec)
    DSOCR_TRY(capture_graph(
        stream, [&] { return body(pix, n, S, stream, /*marks=*/false); }, &g.exec));
  DSOCR_CUDA_TRY(cudaGraphLaunch(g.exec, stream));
  return Status::Ok();
}

Status VisionGpu::body(const uint8_t* pix, int n, int S, cudaStream_t stream, bool marks) {
  const Tables* tab = tables_for(S);
  const ActLayout a = act_layout(cfg_, S, n);
  const SamConfig& c = cfg_.sam;
  const ClipConfig& cc = cfg_.clip;
  const int D = c.dim, hd = head_dim_of(cfg_), cd = cc.dim, win = c.window;
  Lane& lane = lanes_[lane_of(S)];
  auto bf = [&](uint64_t off) { return reinterpret_cast<uint16_t*>(lane.act + off); };
  uint16_t *x = bf(a.x), *xn = bf(a.xn), *xw = bf(a.xw), *big = bf(a.big), *feat = bf(a.feat);
  uint16_t* sam_out = feat + cd;  // net_3 writes the projector input's SAM half (ld proj_in)
  const int64_t ld_feat = cfg_.proj_in;

  // Stage marks 2..5 (after the patch embed, the blocks, the neck, CLIP).
  auto mark = [&](int i) -> Status {
    if (marks) DSOCR_CUDA_TRY(cudaEventRecord(events_->e[i], stream));
    return Status::Ok();
  };
  auto gemm = [&](const uint16_t* in, int64_t lda, const bf16_t* w, int64_t m, int64_t nn,
                  int64_t k, const bf16_t* bias, void* out, int64_t ldo, const void* residual,
                  bool out_f32 = false) -> Status {
    GemmArgs g;
    g.m = m, g.n = nn, g.k = k;
    g.a = in, g.lda = lda, g.w = w, g.ldw = k, g.bias = bias;
    g.residual = residual, g.ldr = residual ? ldo : 0;
    g.out = out, g.ldo = ldo, g.out_f32 = out_f32;
    DSOCR_CUDA_TRY(lane.gemm.run(g, stream));
    return Status::Ok();
  };

  // ---- Normalise + im2col + GEMM + bias + pos (§3 steps 1-2).
  PixelLut lut;
  std::memcpy(lut.v, pixel_lut_, sizeof(lut.v));
  const int64_t K_patch = 3 * c.patch * c.patch;
  DSOCR_CUDA_TRY(patch_im2col_u8(pix, lut, xn, n, S, stream));
  DSOCR_TRY(gemm(xn, K_patch, w_.sam.patch_w, a.N, D, K_patch, nullptr, big, D, nullptr, true));
  DSOCR_CUDA_TRY(patch_bias_pos(reinterpret_cast<const float*>(big), w_.sam.patch_b,
                                tab->f32(tab->layout.sam_pos), x, n, a.g * a.g, D, stream));
  DSOCR_TRY(mark(2));
  // ---- 12 SAM blocks (§3 step 3-4).
  const int g = static_cast<int>(a.g);
  for (int b = 0; b < c.depth; ++b) {
    const SamBlockWeights& bw = w_.sam.blocks[b];
    const float* rh = tab->f32(tab->layout.rel_h[b]);
    const float* rw = tab->f32(tab->layout.rel_w[b]);
    if (!bw.global) {
      // norm1 + zero-padded window partition -> qkv -> attention per window -> proj -> unpartition
      // + residual + norm2.
      DSOCR_CUDA_TRY(layernorm_window_partition(x, bw.norm1_w, bw.norm1_b, xw, n, g, win, D,
                                                c.ln_eps, stream));
      DSOCR_TRY(gemm(xw, D, bw.qkv_w, a.Nw, 3 * D, D, bw.qkv_b, big, 3 * D, nullptr));
      DSOCR_CUDA_TRY(vision_attention(big, rh, rw, xn, a.Nw / (win * win), win * win, win, win,
                                      c.n_heads, hd, stream));
      DSOCR_TRY(gemm(xn, D, bw.proj_w, a.Nw, D, D, bw.proj_b, xw, D, nullptr));
      DSOCR_CUDA_TRY(add_window_unpartition_layernorm(x, xw, bw.norm2_w, bw.norm2_b, xn, n, g, win,
                                                      D, c.ln_eps, stream));
    } else {
      DSOCR_CUDA_TRY(layernorm(x, D, bw.norm1_w, bw.norm1_b, xn, D, a.N, D, c.ln_eps, stream));
      DSOCR_TRY(gemm(xn, D, bw.qkv_w, a.N, 3 * D, D, bw.qkv_b, big, 3 * D, nullptr));
      DSOCR_CUDA_TRY(
          vision_attention(big, rh, rw, xw, n, int64_t{g} * g, g, g, c.n_heads, hd, stream));
      // x = bf16(x + proj(att) + b): the residual rides in the GEMM's C input.
      DSOCR_TRY(gemm(xw, D, bw.proj_w, a.N, D, D, bw.proj_b, x, D, x));
      DSOCR_CUDA_TRY(layernorm(x, D, bw.norm2_w, bw.norm2_b, xn, D, a.N, D, c.ln_eps, stream));
    }
    // MLP: lin1 + bias -> GELU(erf) -> lin2 + bias + residual.
    DSOCR_TRY(gemm(xn, D, bw.lin1_w, a.N, c.mlp_dim, D, bw.lin1_b, big, c.mlp_dim, nullptr));
    DSOCR_CUDA_TRY(activation_bf16(big, c.mlp_dim, a.N, c.mlp_dim, Activation::kGeluErf, stream));
    DSOCR_TRY(gemm(big, c.mlp_dim, bw.lin2_w, a.N, D, c.mlp_dim, bw.lin2_b, x, D, x));
  }
  DSOCR_TRY(mark(3));

  // ---- Neck and the two stride-2 convs (§3 steps 5-6), NHWC; LayerNorm2d = LN over channels.
  const int nd = c.neck_dim;
  DSOCR_TRY(gemm(x, D, w_.sam.neck0_w, a.N, nd, D, nullptr, xn, nd, nullptr));
  DSOCR_CUDA_TRY(
      layernorm(xn, nd, w_.sam.neck1_w, w_.sam.neck1_b, xn, nd, a.N, nd, c.ln_eps, stream));
  Conv2dShape s{n, g, g, nd, nd, 3, 1, 1};
  DSOCR_CUDA_TRY(im2col_nhwc_bf16(xn, big, s, stream));
  DSOCR_TRY(gemm(big, nd * 9, w_.sam.neck2_w, a.N, nd, nd * 9, nullptr, xw, nd, nullptr));
  DSOCR_CUDA_TRY(
      layernorm(xw, nd, w_.sam.neck3_w, w_.sam.neck3_b, xw, nd, a.N, nd, c.ln_eps, stream));
  s = Conv2dShape{n, g, g, nd, c.net2_dim, 3, 2, 1};
  const int64_t m2 = n * s.out_h() * s.out_w();
  DSOCR_CUDA_TRY(im2col_nhwc_bf16(xw, big, s, stream));
  DSOCR_TRY(
      gemm(big, nd * 9, w_.sam.net2_w, m2, c.net2_dim, nd * 9, nullptr, xn, c.net2_dim, nullptr));
  s = Conv2dShape{n, s.out_h(), s.out_w(), c.net2_dim, c.net3_dim, 3, 2, 1};
  if (s.out_h() != a.q) return Status::Error("vision encoder: net_3 grid mismatch");
  DSOCR_CUDA_TRY(im2col_nhwc_bf16(xn, big, s, stream));
  DSOCR_TRY(gemm(big, c.net2_dim * 9, w_.sam.net3_w, a.Q, c.net3_dim, c.net2_dim * 9, nullptr,
                 sam_out, ld_feat, nullptr));
  DSOCR_TRY(mark(4));

  // ---- CLIP-L on the SAM tokens (§4.2). FP32 residual stream h; BF16 Linear outputs.
  float* h = reinterpret_cast<float*>(lane.act + a.h);
  uint16_t *cxn = bf(a.cxn), *cqkv = bf(a.cqkv), *catt = bf(a.catt), *ctmp = bf(a.ctmp),
           *chid = bf(a.chid);
  const int64_t P = a.q * a.q, L = P + 1, T = a.T;
  DSOCR_CUDA_TRY(clip_embed(sam_out, ld_feat, w_.clip.class_emb, tab->f32(tab->layout.clip_pos), h,
                            n, P, cd, stream));
  DSOCR_CUDA_TRY(
      layernorm(h, cd, w_.clip.pre_ln_w, w_.clip.pre_ln_b, h, cd, T, cd, cc.ln_eps, stream));
  DSOCR_CUDA_TRY(layernorm(h, cd, w_.clip.layers[0].ln1_w, w_.clip.layers[0].ln1_b, cxn, cd, T, cd,
                           cc.ln_eps, stream));
  for (size_t l = 0; l < w_.clip.layers.size(); ++l) {
    const ClipLayerWeights& lw = w_.clip.layers[l];
    DSOCR_TRY(gemm(cxn, cd, lw.qkv_w, T, 3 * cd, cd, lw.qkv_b, cqkv, 3 * cd, nullptr));
    DSOCR_CUDA_TRY(vision_attention(cqkv, nullptr, nullptr, catt, n, L, 0, 0, cc.n_heads,
                                    cd / cc.n_heads, stream));
    DSOCR_TRY(gemm(catt, cd, lw.out_w, T, cd, cd, lw.out_b, ctmp, cd, nullptr));
    DSOCR_CUDA_TRY(
        add_layernorm(h, cd, ctmp, cd, lw.ln2_w, lw.ln2_b, cxn, cd, T, cd, cc.ln_eps, stream));
    DSOCR_TRY(gemm(cxn, cd, lw.fc1_w, T, cc.mlp_dim, cd, lw.fc1_b, chid, cc.mlp_dim, nullptr));
    DSOCR_CUDA_TRY(
        activation_bf16(chid, cc.mlp_dim, T, cc.mlp_dim, Activation::kQuickGelu, stream));
    DSOCR_TRY(gemm(chid, cc.mlp_dim, lw.fc2_w, T, cd, cc.mlp_dim, lw.fc2_b, ctmp, cd, nullptr));
    const bool last = l + 1 == w_.clip.layers.size();
    const ClipLayerWeights* nx = last ? nullptr : &w_.clip.layers[l + 1];
    DSOCR_CUDA_TRY(add_layernorm(h, cd, ctmp, cd, nx ? nx->ln1_w : nullptr,
                                 nx ? nx->ln1_b : nullptr, nx ? cxn : nullptr, cd, T, cd, cc.ln_eps,
                                 stream));
  }
  DSOCR_TRY(mark(5));

  // ---- concat(CLIP[1:], SAM) -> projector -> rows (§4.3-4.5).
  DSOCR_CUDA_TRY(clip_to_feat(h, feat, ld_feat, n, P, cd, stream));
  uint16_t* proj = bf(a.proj);
  const int po = cfg_.proj_out;
  DSOCR_TRY(gemm(feat, ld_feat, w_.proj.w, a.Q, po, ld_feat, w_.proj.b, proj, po, nullptr));
  return Status::Ok();
}

}  // namespace dsocr
