// Gated MLP of the DeepSeek-V2 decoder (../shared/MODEL.md §7.1):
//   y = down( silu(gate(x)) * up(x) ),   silu(g) = g / (1 + exp(-g)) in float32.
// Used for the dense layer 0 (inter 6848), every routed expert (896) and the fused shared experts
// (1792). Weights are BF16 nn.Linear layouts, widened on the fly by linear_ref.
// CPU float32 reference; CUDA launchers join this header when the GPU issues land.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dsocr {

// The three BF16 weights of one gated MLP (an expert, the shared experts, the dense MLP).
struct MlpWeights {
  const uint16_t* gate = nullptr;  // [inter, dim]  gate_proj.weight
  const uint16_t* up = nullptr;    // [inter, dim]  up_proj.weight
  const uint16_t* down = nullptr;  // [dim, inter]  down_proj.weight
};

// Floats of scratch swiglu_ref needs for T rows.
inline size_t swiglu_scratch_floats(int64_t T, int64_t inter) {
  return static_cast<size_t>(2 * T * inter);
}

// PRECOND: x, y, scratch and the three weights non-null; y does not alias x or scratch;
// scratch holds swiglu_scratch_floats(T, inter) floats (contents clobbered).
void swiglu_ref(const float* x,       // [T, dim]
                const MlpWeights& w,  // gate/up [inter, dim], down [dim, inter]
                float* y,             // [T, dim]
                float* scratch,       // [2, T, inter]
                int64_t T, int64_t dim, int64_t inter);

}  // namespace dsocr
