// The DeepEncoder (SAM-B -> CLIP-L -> projector -> image-embedding assembly) on the GPU
// (../shared/MODEL.md §3-§4.5, DESIGN.md §3, §5). Mirrors runtime/vision_cpu.cpp step by step,
// with BF16 storage and FP32 math, rounding where the official BF16 model (autocast) keeps BF16:
// every Linear / conv output, the SAM residual stream; CLIP's residual stream stays FP32 as it
// does there (autocast LayerNorm returns FP32). Views of one side run as one batch (a "group":
// the global view, or all the tiles of a page).
//
// Memory: everything lives in one caller-given device region (the pool's "vision" region):
//   [GemmRunner workspace 32 MiB][constant tables per view side][activations of the largest group]
// or, with two lanes (vision_gpu_region_bytes "concurrent"):
//   [workspace][tables][activations of group 0][workspace 2][activations of group 1]
// The tables (SAM pos_embed, CLIP position embedding, SAM rel-pos tables, resized on the host with
// the CPU references once per side and kept in FP32) are built once in create(); the activations
// are reused by every group. No device allocation after create(). Host pixels go up through
// pinned host memory (one area per group: 14.2 MB for Gundam, allocated at the first host-pixel
// encode), which a pageable copy would stage through the driver at a fraction of the bus's speed.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "kernels/gemm.h"
#include "loader/config.h"
#include "loader/status.h"
#include "runtime/model_weights.h"
#include "runtime/preprocess.h"

namespace dsocr {

// A group of square views the encoder must handle: side S (multiple of 64) and at most max_views.
struct VisionGroup {
  int side = 0;
  int max_views = 1;
};

// The groups a mode needs: its one view side, or (crop modes) the 1024 global view and up to
// kMaxCropsHF tiles of 640.
std::vector<VisionGroup> vision_groups(Mode mode);

// Bytes of the region for encoding the groups one after the other (workspace + tables of every
// distinct side + the largest group's activations; 256-byte aligned pieces). Per mode:
//   tiny 512: 53,374,976 B (53 MB)    small 640: 58,501,120 B (59 MB)
//   base 1024: 98,265,088 B (98 MB)   large 1280: 132,675,584 B (133 MB)
//   gundam (1 x 1024 + 9 x 640 tiles): 227,270,656 B (227 MB; 6 tiles: 155 MB)
// concurrent (two groups of different sides, i.e. the crop modes): room for both groups at once,
// each with its own GEMM workspace (two lanes; gundam 312 MB), so that encode_page runs the tiles
// on a second stream beside the global view (a Gundam page: 10.96 -> 9.90 ms on the H200).
uint64_t vision_gpu_region_bytes(const ModelConfig& cfg, const std::vector<VisionGroup>& groups,
                                 bool concurrent = false);
// True when the groups can run as two lanes (two groups of different sides).
bool vision_groups_concurrent(const std::vector<VisionGroup>& groups);
// One group alone: vision_gpu_region_bytes(cfg, {{S, n_views}}).
uint64_t vision_gpu_workspace_bytes(const ModelConfig& cfg, int S, int n_views);

// Host copies of one group's per-view outputs (what golden/cases hold), filled when asked for.
struct VisionTaps {
  int n = 0, q = 0;            // views, SAM output grid side (S / 64)
  std::vector<uint16_t> sam;   // [n, q·q, 1024] BF16, NHWC (tokens row-major): the golden
                               //   sam_global [n, 1024, q, q] is its transpose
  std::vector<float> clip;     // [n, 1 + q·q, 1024] FP32, CLIP-L output incl. the class token
  std::vector<uint16_t> proj;  // [n, q·q, 1280] BF16, projector output
};

// Milliseconds per stage of the last encode (CUDA events; filled only when asked for, which
// synchronises the stream at the end of the call).
struct VisionStageMs {
  float upload = 0;       // host pixels -> workspace (0 for device pixels)
  float patch_embed = 0;  // normalise + im2col + GEMM + bias + pos
  float sam_blocks = 0;   // the 12 SAM blocks
  float neck = 0;         // neck (1x1, LN2d, 3x3, LN2d), net_2, net_3
  float clip = 0;         // embeddings, pre-LN, 24 layers
  float projector = 0;    // concat, projector GEMM, assembly / copy out
  float total() const { return upload + patch_embed + sam_blocks + neck + clip + projector; }
  VisionStageMs& operator+=(const VisionStageMs& o);
};

// The views of one page. Pixels are u8 RGB HWC as preprocessed (preprocess.h / golden
// global_u8, crops_u8), on the host (copied into the workspace) or already on the device.
struct PageViewsRef {
  const uint8_t* global = nullptr;  // [S, S, 3]
  int S = 0;
  const uint8_t* tiles = nullptr;  // [w_t·h_t, 640, 640, 3], or null (no tiles)
  int w_t = 1, h_t = 1;            // tile grid (tiles across, down); (1, 1): no tiles
  bool on_device = false;
};

class VisionGpu {
 public:
  // w: the vision weights bound to DEVICE pointers (bind_weights over WeightTable::lookup()).
  // region: device memory of region_bytes >= vision_gpu_region_bytes(cfg, groups), 256-byte
  // aligned; the encoder owns it until destroyed. Reads the position / rel-pos tables back from
  // the device, resizes them on the host per side and uploads them into the region (synchronous).
  // With region_bytes >= vision_gpu_region_bytes(cfg, groups, true) the two groups get a lane
  // each (encode_page runs them side by side on an internal second stream, joined before it
  // returns); else they share one.
  static Expected<std::unique_ptr<VisionGpu>> create(const ModelConfig& cfg, const ModelWeights& w,
                                                     void* region, uint64_t region_bytes,
                                                     const std::vector<VisionGroup>& groups);

  // One page: the tiles (if any), then the global view, each group batched; writes the assembled
  // image-embedding rows (image_embed_rows(S/64, 10, w_t, h_t) rows: local grid + newlines, global
  // grid + newlines, view_seperator) into `out`.
  Status encode_page(const PageViewsRef& page,
                     uint16_t* out,  // [rows, 1280] BF16 device: the decoder's input rows
                     cudaStream_t stream, VisionTaps* global_taps = nullptr,
                     VisionTaps* tile_taps = nullptr, VisionStageMs* ms = nullptr);

  // One group of n views of side S -> projector rows [n, (S/64)², 1280] into proj_out (device,
  // may be null when only taps are wanted).
  Status encode_views(const uint8_t* pixels,  // [n, S, S, 3] u8 (host or device)
                      bool on_device, int n, int S,
                      uint16_t* proj_out,  // [n·(S/64)², 1280] BF16 device, or null
                      cudaStream_t stream, VisionTaps* taps = nullptr, VisionStageMs* ms = nullptr);

  // Replay each group's encoder as a CUDA graph (default on; env DSOCR_VISION_GRAPH=0 turns it
  // off, for A/B timing). A (side, views) shape runs eagerly the first time (cuBLASLt picks its
  // algorithms, kernels load), is captured the second time and replayed from then on; calls that
  // ask for stage times, or run on the legacy default stream, run eagerly.
  void set_graphs(bool on) { use_graphs_ = on; }

  ~VisionGpu();
  VisionGpu(const VisionGpu&) = delete;
  VisionGpu& operator=(const VisionGpu&) = delete;

 private:
  struct Tables;  // per side
  struct Events;
  struct Graphs;   // captured encoder bodies per (side, views)
  struct Staging;  // pinned host copies of host pixels, one area per view group
  struct SideStream;
  // Activations and GEMM workspace of one group at a time; lane 1 exists with two lanes only.
  struct Lane {
    GemmRunner gemm;
    uint8_t* act = nullptr;
    uint64_t act_bytes = 0;
  };
  int lane_of(int S) const;  // 0, or with two lanes the index of S's group
  VisionGpu() = default;
  // Where a group's projector rows go: assembled into the decoder rows (out), or copied plainly.
  struct Placement {
    uint16_t* out = nullptr;  // assembled rows (null: plain copy to proj_out)
    int w_t = 1, h_t = 1;
    bool separator = false;
    uint16_t* proj_out = nullptr;
  };
  Status encode_group(const uint8_t* pixels, bool on_device, int n, int S, const Placement& place,
                      cudaStream_t stream, VisionTaps* taps, VisionStageMs* ms);
  // The encoder proper, from the u8 pixels (device) to the projector rows in the workspace
  // (~330 launches for a 1024² view; recording its stage events 2..5 when `marks`).
  Status body(const uint8_t* pixels, int n, int S, cudaStream_t stream, bool marks);
  // body() over the workspace's pixel area, as a graph replay (captured on the second use of the
  // shape) or eagerly.
  Status body_replayed(int n, int S, cudaStream_t stream);
  const Tables* tables_for(int S) const;
  // Host pixels of a group into its pinned staging area (allocated on first use, copied by the
  // CPU pool's threads); null when pinned memory cannot be had (the copy is then pageable).
  Expected<const uint8_t*> stage_pixels(const uint8_t* pixels, size_t bytes, int S);

  ModelConfig cfg_;
  ModelWeights w_;
  uint8_t* region_ = nullptr;
  uint64_t region_bytes_ = 0;
  Lane lanes_[2];
  std::unique_ptr<SideStream> side_;  // with two lanes: lane 1's stream, fork / join events
  std::vector<VisionGroup> groups_;
  std::vector<std::unique_ptr<Tables>> tables_;
  std::unique_ptr<Events> events_;
  std::unique_ptr<Graphs> graphs_;
  std::unique_ptr<Staging> staging_;
  bool use_graphs_ = true;
  uint16_t pixel_lut_[256] = {};  // normalize_pixel as BF16 bits
};

}  // namespace dsocr
