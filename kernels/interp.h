// Interpolations of the vision encoders' position tables (MODEL.md §3, §4.2), float32 math:
// * SAM pos_embed [64,64,768] → [g,g,768] and CLIP patch position embeddings [16,16,1024] →
//   [h,h,1024]: F.interpolate(mode='bicubic', antialias=True, align_corners=False). PyTorch's
//   _upsample_bicubic2d_aa (ATen UpSampleKernel.cpp / UpSampleBilinear2d.cu): a separable
//   PIL-style filter, Keys cubic a = −0.5, scale = in/out, support = 2·max(scale, 1),
//   centre = scale·(i + 0.5), window [max(int(centre − support + 0.5), 0),
//   min(int(centre + support + 0.5), in)), tap j weight cubic((j − centre + 0.5)/max(scale,1)),
//   weights normalised to sum 1. Applies to upsampling too (1280 mode: 64→80, CLIP 16→20).
// * SAM rel_pos tables [127,64] → [2L−1,64]: F.interpolate(mode='linear', align_corners=False)
//   along the table: src = max(scale·(i + 0.5) − 0.5, 0), i0 = int(src), i1 = min(i0+1, in−1).
// The models cast the result back to BF16 ("cast back to the param dtype"); these functions
// return float32 and leave that rounding (round_bf16) to the caller.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstdint>

namespace dsocr {

// Channels-first: out[c, :, :] = bicubic_aa(in[c, :, :]).
// PRECOND: in, out non-null, no aliasing; all sizes >= 1. Multithreaded over channels.
void interp_bicubic_aa_chw_ref(const float* in,  // [channels, in_h, in_w]
                               float* out,       // [channels, out_h, out_w]
                               int64_t channels, int64_t in_h, int64_t in_w, int64_t out_h,
                               int64_t out_w);

// Channels-last (the SAM pos_embed layout, and CLIP's [256,1024] rows seen as [16,16,1024]):
// the same result as permuting to CHW, interpolating and permuting back.
// PRECOND: as above. Multithreaded over output rows.
void interp_bicubic_aa_hwc_ref(const float* in,  // [in_h, in_w, channels]
                               float* out,       // [out_h, out_w, channels]
                               int64_t channels, int64_t in_h, int64_t in_w, int64_t out_h,
                               int64_t out_w);

// 1-D linear along the rows of a table: out[i, :] from in[i0, :] and in[i1, :]
// (rel_pos [L0, head_dim] → [L1, head_dim]; PyTorch interpolates rel_pos.permute → [1, 64, L0]
// along its last axis, the same numbers).
// PRECOND: in, out non-null, no aliasing; in_len, out_len, channels >= 1.
void interp_linear_rows_ref(const float* in,  // [in_len, channels]
                            float* out,       // [out_len, channels]
                            int64_t in_len, int64_t out_len, int64_t channels);

}  // namespace dsocr
