#include "runtime/decoder_gpu.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "kernels/activation.h"
#include "kernels/argmax.h"
#include "kernels/causal_attention.h"
#include "kernels/expert_cache.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"
#include "kernels/moe.h"
#include "kernels/prefill_attention.h"
#include "kernels/quant.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "loader/bf16.h"
#include "runtime/cuda_check.h"

namespace dsocr {
namespace {

constexpr uint64_t kAlign = 256;

// Bump allocation over a region; with a null base it only measures (the same code sizes the
// region and carves it, so the two cannot disagree).
struct Carver {
  uint8_t* base;
  uint64_t used = 0;
  template <typename T>
  T* take(uint64_t count) {
    used = (used + kAlign - 1) / kAlign * kAlign;
    T* p = base ? reinterpret_cast<T*>(base + used) : nullptr;
    used += count * sizeof(T);
    return p;
  }
};

struct Work {
  uint16_t* in;       // [max_rows, dim] BF16 input embeddings (token rows, image rows)
  float* h;           // [max_rows, dim] FP32 residual stream (see rmsnorm.h: rmsnorm_widen)
  uint16_t* x;        // [max_rows, dim] BF16 normed
  uint16_t* qkv;      // [max_rows, 3 dim] BF16 (q rotated in place)
  uint16_t* attn;     // [max_rows, dim] BF16
  float* delta;       // [max_rows, dim] FP32 sublayer output (GEMV/MoE), added by the next
                      //   add_rmsnorm
  uint16_t* delta16;  // [max_rows, dim] BF16 sublayer output of the GEMM paths (prefill)
  uint16_t* mlp;      // [max_rows, 2 dense_inter] BF16 gate | up, SiLU·mul in place
  void* moe_ws;       // moe_prefill / moe_decode scratch; quantized prefill: dequantized weights
  uint64_t moe_ws_bytes;
  float* router_logits;  // [max_rows, router_ld(c)] FP32 (prefill: one GEMM, then moe_topk)
  int32_t* topk_idx;     // [max_rows, top_k]
  float* topk_w;         // [max_rows, top_k]
  int32_t* pos_ids;      // [max_rows] positions of a prefill
  float* logits;         // [vocab] FP32
  void* attn_ws;         // decode_attention partials for max_pos keys
  void* argmax_ws;
  void* gemm_ws;  // GemmRunner::kWorkspaceBytes
  uint64_t bytes;
};

int64_t router_ld(const ModelConfig& c) {
  return (c.n_experts + 7) / 8 * 8;  // GemmRunner: a multiple of 8
}

uint64_t moe_ws_bytes(const ModelConfig& c, int64_t rows) {
  return std::max<uint64_t>(
      moe_decode_workspace_bytes(kMoeDecodeMaxT, c.top_k, c.moe_inter, c.shared_inter()),
      moe_prefill_workspace_bytes(static_cast<int>(rows), c.top_k, c.n_experts, c.dim, c.moe_inter,
                                  c.shared_inter()));
}

Work carve_work(const ModelConfig& c, int64_t rows, uint8_t* base) {
  Carver cv{base};
  Work w;
  w.in = cv.take<uint16_t>(rows * c.dim);
  w.h = cv.take<float>(rows * c.dim);
  w.x = cv.take<uint16_t>(rows * c.dim);
  w.qkv = cv.take<uint16_t>(rows * 3 * c.dim);
  w.attn = cv.take<uint16_t>(rows * c.dim);
  w.delta = cv.take<float>(rows * c.dim);
  w.delta16 = cv.take<uint16_t>(rows * c.dim);
  w.mlp = cv.take<uint16_t>(rows * 2 * c.dense_inter);
  w.moe_ws_bytes = moe_ws_bytes(c, rows);
  w.moe_ws = cv.take<uint8_t>(w.moe_ws_bytes);
  w.router_logits = cv.take<float>(rows * router_ld(c));
  w.topk_idx = cv.take<int32_t>(rows * c.top_k);
  w.topk_w = cv.take<float>(rows * c.top_k);
  w.pos_ids = cv.take<int32_t>(rows);
  w.logits = cv.take<float>(c.vocab);
  w.attn_ws = cv.take<uint8_t>(decode_attention_workspace_bytes(c.n_heads, c.head_dim, c.max_pos));
  w.argmax_ws = cv.take<uint8_t>(argmax_workspace_bytes(c.vocab));
  w.gemm_ws = cv.take<uint8_t>(GemmRunner::kWorkspaceBytes);
  w.bytes = (cv.used + kAlign - 1) / kAlign * kAlign;
  return w;
}

struct Sampling {
  int32_t* ids;         // [max_pos] history
  int32_t* banned;      // [max_pos]
  int32_t* page_table;  // [max_pos / page_size]
  DecodeSeqState* state;
  uint64_t bytes;
};

Sampling carve_sampling(const ModelConfig& c, uint8_t* base) {
  Carver cv{base};
  Sampling s;
  s.ids = cv.take<int32_t>(c.max_pos);
  s.banned = cv.take<int32_t>(c.max_pos);
  s.page_table = cv.take<int32_t>((c.max_pos + kKvPageSize - 1) / kKvPageSize);
  s.state = cv.take<DecodeSeqState>(1);
  s.bytes = (cv.used + kAlign - 1) / kAlign * kAlign;
  return s;
}

bool same_ban(const NGramBan& a, const NGramBan& b) {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace

struct GpuDecoder::Impl {
  const ModelConfig& cfg;
  DecoderWeights w;
  int64_t max_rows;
  Work work;
  Sampling samp;
  KvCache kv;
  KvSequence seq;
  cudaStream_t stream;
  GemmRunner gemm;
  MoeDeviceWeights moe_w[64];  // per layer (index = layer; dense layer unused)
  // Every decoder linear weight with its stored format (kernels/quant.h; BF16: the DecoderWeights
  // pointer, format kBf16). Index = layer.
  struct LayerQ {
    QWeight qkv[3], o, gate, up, down;
    bool qkv_adjacent = false;  // BF16 q|k|v back to back (planner slot_order): one GEMM
  };
  std::vector<LayerQ> lq;
  QWeight lm_head_q;
  std::vector<int32_t> prompt;
  int max_new = 0;
  NGramBan ban;
  int64_t pos = 0;  // host mirror: positions in the cache (prefill/forced steps)
  bool prefilled = false;
  DecodeSeqState* host_state = nullptr;  // pinned, 2 slots (the run-ahead ring)
  cudaGraphExec_t graph = nullptr;
  NGramBan graph_ban;
  cudaEvent_t ev[2] = {nullptr, nullptr};
  // The captured step runs the n-gram ban (it needs only the history) on a side branch, beside
  // the forward pass: fork/join events and the side stream.
  cudaStream_t side = nullptr;
  cudaEvent_t fork = nullptr, join = nullptr;
  // Offload hooks (set_expert, set_expert_counts): the router-choice histogram, and whether the
  // captured graph holds expert pointers that have changed since.
  int32_t* expert_counts = nullptr;  // [n_layers, n_experts] device, or null
  MoeStreamer* streamer = nullptr;
  bool graph_stale = false;

  Impl(const ModelConfig& c, const DecoderWeights& dw, int64_t rows, uint8_t* wbase,
       uint16_t* kv_base, const KvGeometry& geo, uint8_t* sbase, cudaStream_t s)
      : cfg(c),
        w(dw),
        max_rows(rows),
        work(carve_work(c, rows, wbase)),
        samp(carve_sampling(c, sbase)),
        kv(kv_base, geo),
        stream(s) {}

  ~Impl() {
    if (graph) cudaGraphExecDestroy(graph);
    for (auto e : ev)
      if (e) cudaEventDestroy(e);
    if (fork) cudaEventDestroy(fork);
    if (join) cudaEventDestroy(join);
    if (side) cudaStreamDestroy(side);
    if (host_state) cudaFreeHost(host_state);
  }

  bool delta_bf16 = false;  // which delta buffer the last sublayer wrote

  PagedKv layer_kv(int l) const { return kv.layer(l, samp.page_table); }

  // out[T, n] (ld ldo, BF16) = a[T, k] (ld lda) · w[n, k]ᵀ on cuBLASLt (the prefill's linears).
  Status linear(const uint16_t* a, int64_t lda, const uint16_t* w, int64_t n, int64_t k,
                uint16_t* out, int64_t ldo, int64_t T) {
    GemmArgs g;
    g.m = T, g.n = n, g.k = k;
    g.a = a, g.lda = lda, g.w = w, g.ldw = k;
    g.out = out, g.ldo = ldo;
    DSOCR_CUDA_TRY(gemm.run(g, stream));
    return Status::Ok();
  }

  // y = x·Wᵀ for m <= 8 rows, W = `parts` weights of `rows` rows each stacked along n (q|k|v):
  // gemv for BF16 (the call the BF16 path always made), gemv_quant otherwise.
  Status gemv_w(const uint16_t* x, int64_t ldx, const QWeight* w, int parts, int64_t rows, void* y,
                int64_t ldy, int m, int64_t k, GemvEpilogue ep) {
    if (w[0].format == WeightFormat::kBf16) {
      GemvWeights g;
      g.parts = parts;
      for (int i = 0; i < parts; ++i)
        g.w[i] = static_cast<const uint16_t*>(w[i].q), g.rows[i] = rows;
      DSOCR_CUDA_TRY(gemv(x, ldx, g, k, y, ldy, m, k, ep, stream));
    } else {
      QGemvWeights g;
      g.parts = parts, g.format = w[0].format, g.group = w[0].group;
      for (int i = 0; i < parts; ++i) g.q[i] = w[i].q, g.scale[i] = w[i].scale, g.rows[i] = rows;
      DSOCR_CUDA_TRY(gemv_quant(x, ldx, g, y, ldy, m, k, ep, stream));
    }
    return Status::Ok();
  }

  // The prefill's linear for a weight in any format. Quantized: gemv_quant for T <= 8 rows;
  // otherwise W is dequantized to BF16 block by block into the MoE scratch (idle during attention
  // and the dense MLP) and each block of output columns is one cuBLASLt GEMM.
  Status linear_w(const uint16_t* a, int64_t lda, const QWeight& w, int64_t n, int64_t k,
                  uint16_t* out, int64_t ldo, int64_t T) {
    if (w.format == WeightFormat::kBf16)
      return linear(a, lda, static_cast<const uint16_t*>(w.q), n, k, out, ldo, T);
    if (T <= kDecodeGemvMaxM) {
      DSOCR_CUDA_TRY(gemv_quant(a, lda, qgemv_weights(w, n), out, ldo, static_cast<int>(T), k,
                                GemvEpilogue::kStoreBf16, stream));
      return Status::Ok();
    }
    const int64_t block = std::min<int64_t>(
        n, static_cast<int64_t>(work.moe_ws_bytes / (static_cast<uint64_t>(k) * 2)) / 64 * 64);
    if (block < 1)
      return Status::Error("decoder: MoE scratch smaller than 64 weight rows (planner bug)");
    auto* scratch = static_cast<uint16_t*>(work.moe_ws);
    for (int64_t r0 = 0; r0 < n; r0 += block) {
      const int64_t rows = std::min(block, n - r0);
      DSOCR_CUDA_TRY(dequantize_bf16(w, k, r0, rows, scratch, stream));
      DSOCR_TRY(linear(a, lda, scratch, rows, k, out + r0, ldo, T));
    }
    return Status::Ok();
  }

  // h += the last sublayer's output (one rounding), x = rmsnorm(h) with gain w.
  Status add_norm(const uint16_t* w, int64_t T) {
    const int64_t d = cfg.dim;
    const int t = static_cast<int>(T);
    if (delta_bf16)
      DSOCR_CUDA_TRY(
          add_rmsnorm(work.h, d, work.delta16, d, w, work.x, d, t, d, cfg.rms_eps, stream));
    else
      DSOCR_CUDA_TRY(
          add_rmsnorm(work.h, d, work.delta, d, w, work.x, d, t, d, cfg.rms_eps, stream));
    return Status::Ok();
  }

  // ---- one layer over T rows at positions pos_dev[0..T) (prefill) or the state's pos (decode)
  Status attention_block(int l, int64_t T, const int32_t* pos_dev, bool decode) {
    const LayerQ& Q = lq[l];
    const int64_t d = cfg.dim;
    const float scale = 1.f / std::sqrt(static_cast<float>(cfg.head_dim));
    if (decode) {
      DSOCR_TRY(gemv_w(work.x, d, Q.qkv, 3, d, work.qkv, 3 * d, 1, d, GemvEpilogue::kStoreBf16));
    } else if (Q.qkv_adjacent) {  // one [T, 3 dim] GEMM instead of three [T, dim] ones
      DSOCR_TRY(linear(work.x, d, static_cast<const uint16_t*>(Q.qkv[0].q), 3 * d, d, work.qkv,
                       3 * d, T));
    } else {
      for (int i = 0; i < 3; ++i)
        DSOCR_TRY(linear_w(work.x, d, Q.qkv[i], d, d, work.qkv + i * d, 3 * d, T));
    }
    const PagedKv pkv = layer_kv(l);
    // Decode steps run from a captured graph shared by every sequence: bound the cache write by
    // the table's length (max_pos); decode_accept keeps pos inside the sequence's reserved pages.
    const int64_t bound = decode ? cfg.max_pos : seq.capacity();
    DSOCR_CUDA_TRY(rope_qk_append_kv(work.qkv, work.qkv + d, work.qkv + 2 * d, 3 * d, pos_dev,
                                     work.qkv, 3 * d, pkv, bound, static_cast<int>(T), cfg.n_heads,
                                     cfg.head_dim, cfg.rope_theta, stream));
    if (decode) {
      DSOCR_CUDA_TRY(decode_attention(work.qkv, pkv, pos_dev, work.attn, work.attn_ws, cfg.max_pos,
                                      cfg.n_heads, cfg.head_dim, scale, stream));
      DSOCR_TRY(gemv_w(work.attn, d, &Q.o, 1, d, work.delta, d, 1, d, GemvEpilogue::kStoreF32));
      delta_bf16 = false;
    } else {
      DSOCR_CUDA_TRY(prefill_attention(work.qkv, 3 * d, pkv, pos, static_cast<int>(T), work.attn, d,
                                       cfg.n_heads, cfg.head_dim, scale, stream));
      DSOCR_TRY(linear_w(work.attn, d, Q.o, d, d, work.delta16, d, T));
      delta_bf16 = true;
    }
    return Status::Ok();
  }

  Status mlp_block(int l, int64_t T, bool decode) {
    const DecoderLayerWeights& L = w.layers[l];
    const LayerQ& Q = lq[l];
    const int64_t d = cfg.dim;
    if (!L.moe) {
      const int64_t inter = cfg.dense_inter;
      if (decode) {
        if (Q.gate.format == WeightFormat::kBf16)
          DSOCR_CUDA_TRY(gemv_swiglu(work.x, d, L.dense.gate, L.dense.up, d, work.mlp, inter, 1,
                                     inter, d, stream));
        else
          DSOCR_CUDA_TRY(
              gemv_quant_swiglu(work.x, d, Q.gate, Q.up, work.mlp, inter, 1, inter, d, stream));
        DSOCR_TRY(gemv_w(work.mlp, inter, &Q.down, 1, d, work.delta, d, 1, inter,
                         GemvEpilogue::kStoreF32));
        delta_bf16 = false;
      } else {
        const QWeight* gu[2] = {&Q.gate, &Q.up};
        for (int i = 0; i < 2; ++i)
          DSOCR_TRY(linear_w(work.x, d, *gu[i], inter, d, work.mlp + i * inter, 2 * inter, T));
        DSOCR_CUDA_TRY(silu_mul_bf16(work.mlp, 2 * inter, work.mlp + inter, 2 * inter, work.mlp,
                                     2 * inter, T, inter, stream));
        DSOCR_TRY(linear_w(work.mlp, 2 * inter, Q.down, d, inter, work.delta16, d, T));
        delta_bf16 = true;
      }
      return Status::Ok();
    }
    delta_bf16 = false;  // both MoE paths store FP32
    if (decode || T <= kMoeDecodeMaxT) {
      DSOCR_CUDA_TRY(moe_router(work.x, d, L.router, nullptr, work.topk_idx, work.topk_w,
                                static_cast<int>(T), static_cast<int>(d), cfg.n_experts, cfg.top_k,
                                cfg.routed_scale, stream));
    } else {  // the [T, n_experts] logits as one GEMM (FP32 out), then softmax + top-k
      GemmArgs g;
      g.m = T, g.n = cfg.n_experts, g.k = d;
      g.a = work.x, g.lda = d, g.w = L.router, g.ldw = d;
      g.out = work.router_logits, g.ldo = router_ld(cfg), g.out_f32 = true;
      DSOCR_CUDA_TRY(gemm.run(g, stream));
      DSOCR_CUDA_TRY(moe_topk(work.router_logits, router_ld(cfg), nullptr, work.topk_idx,
                              work.topk_w, static_cast<int>(T), cfg.n_experts, cfg.top_k,
                              cfg.routed_scale, stream));
    }
    if (expert_counts)
      DSOCR_CUDA_TRY(expert_count(work.topk_idx, T * cfg.top_k, cfg.n_experts,
                                  expert_counts + static_cast<int64_t>(l) * cfg.n_experts, stream));
    if (decode || T <= kMoeDecodeMaxT) {
      DSOCR_CUDA_TRY(moe_decode(work.x, d, work.topk_idx, work.topk_w, moe_w[l], work.delta, d,
                                GemvEpilogue::kStoreF32, work.moe_ws, static_cast<int>(T),
                                static_cast<int>(d), cfg.n_experts, cfg.top_k, cfg.moe_inter,
                                cfg.shared_inter(), stream));
    } else {
      auto run = [&](const MoeDeviceWeights& mw, const MoePrefillPass& pass) -> Status {
        DSOCR_CUDA_TRY(moe_prefill(work.x, d, work.topk_idx, work.topk_w, mw, work.delta, d,
                                   GemvEpilogue::kStoreF32, work.moe_ws, static_cast<int>(T),
                                   static_cast<int>(d), cfg.n_experts, cfg.top_k, cfg.moe_inter,
                                   cfg.shared_inter(), stream, nullptr, &pass));
        return Status::Ok();
      };
      if (streamer) return streamer->prefill_moe(l, work.topk_idx, T, moe_w[l], run);
      return run(moe_w[l], MoePrefillPass{});
    }
    return Status::Ok();
  }

  Status tap_rows(HiddenTap* tap, int slot, int64_t T) {
    if (!tap) return Status::Ok();
    const int64_t P = static_cast<int64_t>(tap->positions.size()), d = cfg.dim;
    tap->out.resize(static_cast<size_t>((cfg.n_layers + 1) * P * d));
    for (int64_t i = 0; i < P; ++i) {
      const int64_t p = tap->positions[i] - pos;
      if (p < 0 || p >= T) continue;
      float* dst = tap->out.data() + (slot * P + i) * d;
      DSOCR_CUDA_TRY(cudaMemcpyAsync(dst, work.h + p * d, d * 4, cudaMemcpyDeviceToHost, stream));
      DSOCR_CUDA_TRY(cudaStreamSynchronize(stream));
    }
    return Status::Ok();
  }

  // The forward over T rows; leaves the last row's logits in work.logits.
  Status forward(int64_t T, const int32_t* pos_dev, bool decode, HiddenTap* tap) {
    const int64_t d = cfg.dim;
    const int t = static_cast<int>(T);
    for (int l = 0; l < cfg.n_layers; ++l) {
      const DecoderLayerWeights& L = w.layers[l];
      if (l == 0)
        DSOCR_CUDA_TRY(
            rmsnorm_widen(work.in, d, work.h, d, L.in_norm, work.x, d, t, d, cfg.rms_eps, stream));
      else
        DSOCR_TRY(add_norm(L.in_norm, T));
      DSOCR_TRY(tap_rows(tap, l, T));
      DSOCR_TRY(attention_block(l, T, pos_dev, decode));
      DSOCR_TRY(add_norm(L.post_norm, T));
      DSOCR_TRY(mlp_block(l, T, decode));
    }
    DSOCR_TRY(add_norm(w.final_norm, T));
    DSOCR_TRY(tap_rows(tap, cfg.n_layers, T));
    DSOCR_TRY(gemv_w(work.x + (T - 1) * d, d, &lm_head_q, 1, cfg.vocab, work.logits, cfg.vocab, 1,
                     d, GemvEpilogue::kStoreF32));
    return Status::Ok();
  }

  // Ban (unless the step already ran it on the side branch), argmax into state.token, accept.
  Status sample(bool banned_ready = false) {
    if (!banned_ready) DSOCR_CUDA_TRY(ngram_ban(samp.ids, samp.state, ban, samp.banned, stream));
    DSOCR_CUDA_TRY(argmax_banned(work.logits, cfg.vocab, samp.banned, &samp.state->n_banned,
                                 &samp.state->token, work.argmax_ws, stream));
    DSOCR_CUDA_TRY(decode_accept(samp.ids, samp.state, stream));
    return Status::Ok();
  }

  // One decode step of the state's token at the state's position (captured in the graph).
  Status step() {
    DSOCR_CUDA_TRY(cudaEventRecord(fork, stream));
    DSOCR_CUDA_TRY(cudaStreamWaitEvent(side, fork, 0));
    DSOCR_CUDA_TRY(ngram_ban(samp.ids, samp.state, ban, samp.banned, side));
    DSOCR_CUDA_TRY(cudaEventRecord(join, side));
    DSOCR_CUDA_TRY(
        embed_rows(&samp.state->token, w.embed, work.in, cfg.dim, 1, cfg.vocab, cfg.dim, stream));
    DSOCR_TRY(forward(1, &samp.state->pos, /*decode=*/true, nullptr));
    DSOCR_CUDA_TRY(cudaStreamWaitEvent(stream, join, 0));
    return sample(/*banned_ready=*/true);
  }
};

namespace {

// Each decoder linear weight's stored format (the planner sized its slot for it) -> Impl::lq,
// lm_head_q and the MoE weights' formats and scales. One line for what the kernels lack.
Status bind_formats(GpuDecoder::Impl& m, const QuantPolicy& quant) {
  const ModelConfig& c = m.cfg;
  const int64_t d = c.dim;
  auto qw = [&](const uint16_t* p, TensorClass cls, int64_t n, int64_t k) {
    const StoredFormat f = stored_format(quant, cls, n, k);
    return qweight_in_slot(p, f.format, n, k, f.group);
  };
  // An MLP's three weights -> MlpWeights + MlpScales; one format and group for all three.
  auto mlp = [&](const MlpWeights& w, TensorClass cls, int64_t inter, MlpWeights* mw, MlpScales* sc,
                 WeightFormat* f, int* group) -> Status {
    const QWeight g = qw(w.gate, cls, inter, d), u = qw(w.up, cls, inter, d),
                  dn = qw(w.down, cls, d, inter);
    if (g.format != dn.format || g.group != dn.group)
      return Status::Error(strfmt(
          "%s: gate/up stored as %s, down as %s; the decode MoE needs one "
          "format per MLP; use --quant-group 64 or int8",
          tensor_class_name(cls), weight_format_name(g.format), weight_format_name(dn.format)));
    *mw = w;
    *sc = {g.scale, u.scale, dn.scale};
    *f = g.format, *group = g.group;
    return Status::Ok();
  };
  m.lq.assign(c.n_layers, {});
  for (int l = 0; l < c.n_layers; ++l) {
    const DecoderLayerWeights& L = m.w.layers[l];
    GpuDecoder::Impl::LayerQ& Q = m.lq[l];
    Q.qkv[0] = qw(L.q, TensorClass::kAttn, d, d);
    Q.qkv[1] = qw(L.k, TensorClass::kAttn, d, d);
    Q.qkv[2] = qw(L.v, TensorClass::kAttn, d, d);
    const auto* q16 = static_cast<const uint16_t*>(Q.qkv[0].q);
    Q.qkv_adjacent = Q.qkv[0].format == WeightFormat::kBf16 &&
                     Q.qkv[1].format == WeightFormat::kBf16 &&
                     Q.qkv[2].format == WeightFormat::kBf16 && Q.qkv[1].q == q16 + d * d &&
                     Q.qkv[2].q == q16 + 2 * d * d;
    Q.o = qw(L.o, TensorClass::kAttn, d, d);
    if (!L.moe) {
      Q.gate = qw(L.dense.gate, TensorClass::kDenseMlp, c.dense_inter, d);
      Q.up = qw(L.dense.up, TensorClass::kDenseMlp, c.dense_inter, d);
      Q.down = qw(L.dense.down, TensorClass::kDenseMlp, d, c.dense_inter);
      continue;
    }
    MoeDeviceWeights& mw = m.moe_w[l];
    for (int e = 0; e < c.n_experts; ++e)
      DSOCR_TRY(mlp(L.experts[e], TensorClass::kRoutedExpert, c.moe_inter, &mw.experts[e],
                    &mw.expert_scales[e], &mw.expert_format, &mw.expert_group));
    DSOCR_TRY(mlp(L.shared, TensorClass::kSharedExpert, c.shared_inter(), &mw.shared,
                  &mw.shared_scales, &mw.shared_format, &mw.shared_group));
    if (!moe_decode_supports(mw.expert_format, mw.shared_format))
      return Status::Error(strfmt(
          "routed experts %s with shared experts %s: no decode MoE kernel for this pair; use "
          "the same format for both (--quant-experts / --quant-dense) or int4 experts with int8 "
          "shared experts",
          weight_format_name(mw.expert_format), weight_format_name(mw.shared_format)));
  }
  m.lm_head_q = qw(m.w.lm_head, TensorClass::kLmHead, c.vocab, d);
  return Status::Ok();
}

}  // namespace

uint64_t GpuDecoder::workspace_bytes(const ModelConfig& cfg, int64_t max_rows) {
  return carve_work(cfg, max_rows, nullptr).bytes;
}
uint64_t GpuDecoder::sampling_bytes(const ModelConfig& cfg) {
  return carve_sampling(cfg, nullptr).bytes;
}

GpuDecoder::GpuDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuDecoder::~GpuDecoder() = default;

Expected<std::unique_ptr<GpuDecoder>> GpuDecoder::create(
    const ModelConfig& cfg, const DecoderWeights& w, int64_t max_rows, uint8_t* work,
    uint64_t work_bytes, uint8_t* kv, uint64_t kv_bytes, uint8_t* sampling, uint64_t samp_bytes,
    cudaStream_t stream, const QuantPolicy& quant) {
  if (max_rows < 1 || max_rows > cfg.max_pos)
    return Status::Error(strfmt("decoder: max_rows %lld outside 1..%d",
                                static_cast<long long>(max_rows), cfg.max_pos));
  if (work_bytes < workspace_bytes(cfg, max_rows) || samp_bytes < sampling_bytes(cfg))
    return Status::Error(strfmt(
        "decoder: activation region of %llu bytes (sampling %llu) is smaller than the %llu (%llu) "
        "a %lld-row prefill needs; this is a planner bug, please report it",
        static_cast<unsigned long long>(work_bytes), static_cast<unsigned long long>(samp_bytes),
        static_cast<unsigned long long>(workspace_bytes(cfg, max_rows)),
        static_cast<unsigned long long>(sampling_bytes(cfg)), static_cast<long long>(max_rows)));
  if (cfg.n_experts > kMoeMaxExperts || cfg.n_layers > 64 || cfg.top_k > kMoeMaxTopK)
    return Status::Error("decoder: model shape outside the GPU kernels' limits");
  const KvGeometry geo = KvGeometry::fit(cfg.n_layers, cfg.dim, kKvPageSize, kv_bytes);
  if (geo.n_pages < 1)
    return Status::Error(
        strfmt("KV cache region of %llu bytes holds no page of %d tokens; raise "
               "--gpu-mem",
               static_cast<unsigned long long>(kv_bytes), kKvPageSize));
  auto impl = std::make_unique<Impl>(cfg, w, max_rows, work, reinterpret_cast<uint16_t*>(kv), geo,
                                     sampling, stream);
  DSOCR_CUDA_TRY(impl->gemm.init(impl->work.gemm_ws, GemmRunner::kWorkspaceBytes));
  DSOCR_TRY(bind_formats(*impl, quant));
  DSOCR_CUDA_TRY(
      cudaHostAlloc(reinterpret_cast<void**>(&impl->host_state), 2 * sizeof(DecodeSeqState), 0));
  for (auto& e : impl->ev) DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&impl->fork, cudaEventDisableTiming));
  DSOCR_CUDA_TRY(cudaEventCreateWithFlags(&impl->join, cudaEventDisableTiming));
  DSOCR_CUDA_TRY(cudaStreamCreateWithFlags(&impl->side, cudaStreamNonBlocking));
  DSOCR_CUDA_TRY(decode_attention_workspace_init(impl->work.attn_ws, cfg.n_heads, cfg.head_dim,
                                                 cfg.max_pos, impl->stream));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(impl->stream));
  return std::unique_ptr<GpuDecoder>(new GpuDecoder(std::move(impl)));
}

uint16_t* GpuDecoder::input_rows() const {
  return impl_->work.in;
}
Status GpuDecoder::write_rows(int64_t row0, const uint16_t* host, int64_t n) {
  Impl& m = *impl_;
  if (row0 < 0 || n < 0 || row0 + n > m.max_rows || (n > 0 && !host))
    return Status::Error(strfmt("write_rows: rows %lld..%lld outside the %lld input rows",
                                static_cast<long long>(row0), static_cast<long long>(row0 + n),
                                static_cast<long long>(m.max_rows)));
  const int64_t d = m.cfg.dim;
  DSOCR_CUDA_TRY(
      cudaMemcpyAsync(m.work.in + row0 * d, host, n * d * 2, cudaMemcpyHostToDevice, m.stream));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(m.stream));
  return Status::Ok();
}
int64_t GpuDecoder::max_rows() const {
  return impl_->max_rows;
}

Status GpuDecoder::begin(const std::vector<int32_t>& prompt, int max_new, const NGramBan& ban,
                         bool stop_at_eos) {
  Impl& m = *impl_;
  const ModelConfig& c = m.cfg;
  const int64_t T = static_cast<int64_t>(prompt.size());
  if (T < 1) return Status::Error("empty prompt");
  if (T > m.max_rows)
    return Status::Error(
        strfmt("prompt of %lld tokens exceeds the %lld rows the decoder was "
               "planned for; use a smaller mode or fewer crops",
               static_cast<long long>(T), static_cast<long long>(m.max_rows)));
  if (max_new < 1) return Status::Error("max new tokens must be >= 1");
  if (T + max_new > c.max_pos)
    return Status::Error(
        strfmt("prompt of %lld tokens + %d new tokens exceeds the %d-token "
               "context; lower --max-tokens",
               static_cast<long long>(T), max_new, c.max_pos));
  for (int32_t id : prompt)
    if (id < 0 || id >= c.vocab)
      return Status::Error(strfmt("prompt id %d is outside the vocabulary [0, %d)", id, c.vocab));
  if (!m.seq.pages.empty()) DSOCR_TRY(m.kv.release(m.seq));
  DSOCR_TRY(m.kv.reserve(m.seq, T + max_new, "lower --max-tokens or raise --gpu-mem"));
  m.prompt = prompt;
  m.max_new = max_new;
  m.ban = ban;
  m.pos = 0;
  m.prefilled = false;
  DSOCR_CUDA_TRY(cudaMemcpyAsync(m.samp.page_table, m.seq.pages.data(), m.seq.pages.size() * 4,
                                 cudaMemcpyHostToDevice, m.stream));
  DSOCR_CUDA_TRY(
      cudaMemcpyAsync(m.samp.ids, prompt.data(), T * 4, cudaMemcpyHostToDevice, m.stream));
  std::vector<int32_t> pos(T);
  for (int64_t i = 0; i < T; ++i) pos[i] = static_cast<int32_t>(i);
  DSOCR_CUDA_TRY(
      cudaMemcpyAsync(m.work.pos_ids, pos.data(), T * 4, cudaMemcpyHostToDevice, m.stream));
  DSOCR_CUDA_TRY(embed_rows(m.samp.ids, m.w.embed, m.work.in, c.dim, static_cast<int>(T), c.vocab,
                            c.dim, m.stream));
  // The state as of the prompt: the next accepted token goes to ids[T], K/V row T.
  DecodeSeqState s;
  s.len = static_cast<int32_t>(T), s.prompt_len = s.len, s.pos = s.len - 1;
  s.token = prompt.back(), s.max_new = max_new, s.eos_id = stop_at_eos ? c.eos_id : -1;
  s.capacity = static_cast<int32_t>(std::min<int64_t>(m.seq.capacity(), c.max_pos));
  DSOCR_CUDA_TRY(cudaMemcpyAsync(m.samp.state, &s, sizeof s, cudaMemcpyHostToDevice, m.stream));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(m.stream));  // the host vectors above go out of scope
  return Status::Ok();
}

Status GpuDecoder::prefill(float* logits_last, HiddenTap* tap) {
  Impl& m = *impl_;
  const int64_t T = static_cast<int64_t>(m.prompt.size());
  if (T == 0 || m.prefilled) return Status::Error("prefill: call begin() first, once per sequence");
  DSOCR_TRY(m.forward(T, m.work.pos_ids, /*decode=*/false, tap));
  m.pos = T;
  m.prefilled = true;
  if (logits_last) {
    DSOCR_CUDA_TRY(cudaMemcpyAsync(logits_last, m.work.logits, m.cfg.vocab * 4,
                                   cudaMemcpyDeviceToHost, m.stream));
  }
  DSOCR_CUDA_TRY(cudaStreamSynchronize(m.stream));
  return Status::Ok();
}

Expected<GpuGeneration> GpuDecoder::generate(const std::function<bool(int32_t)>& on_token) {
  Impl& m = *impl_;
  if (!m.prefilled || m.pos != static_cast<int64_t>(m.prompt.size()))
    return Status::Error("generate: call begin() and prefill() first");
  // (Re)capture the step graph when the ban rule or an expert pointer (set_expert: offload)
  // changed; no other pointer ever changes.
  if (!m.graph || m.graph_stale || !same_ban(m.graph_ban, m.ban)) {
    if (m.graph) cudaGraphExecDestroy(m.graph), m.graph = nullptr;
    DSOCR_TRY(capture_graph(
        m.stream, [&] { return m.step(); }, &m.graph));
    m.graph_ban = m.ban;
    m.graph_stale = false;
  }
  GpuGeneration out;
  const auto t0 = std::chrono::steady_clock::now();
  // The first token from the prefill's logits, then one graph per token. The host reads step k's
  // state while step k+1 already runs (its result is dropped if step k stopped).
  DSOCR_TRY(m.sample());
  DSOCR_CUDA_TRY(cudaMemcpyAsync(&m.host_state[0], m.samp.state, sizeof(DecodeSeqState),
                                 cudaMemcpyDeviceToHost, m.stream));
  DSOCR_CUDA_TRY(cudaEventRecord(m.ev[0], m.stream));
  for (int64_t k = 0;; ++k) {
    const int cur = static_cast<int>(k & 1), nxt = cur ^ 1;
    DSOCR_CUDA_TRY(cudaGraphLaunch(m.graph, m.stream));
    DSOCR_CUDA_TRY(cudaMemcpyAsync(&m.host_state[nxt], m.samp.state, sizeof(DecodeSeqState),
                                   cudaMemcpyDeviceToHost, m.stream));
    DSOCR_CUDA_TRY(cudaEventRecord(m.ev[nxt], m.stream));
    DSOCR_CUDA_TRY(cudaEventSynchronize(m.ev[cur]));
    const DecodeSeqState s = m.host_state[cur];
    if (s.generated > static_cast<int32_t>(out.ids.size())) {
      out.ids.push_back(s.token);
      if (on_token && !on_token(s.token)) {
        out.stop = kRunning;  // stopped by the caller
        break;
      }
    }
    if (s.stop != kRunning) {
      out.stop = static_cast<DecodeStop>(s.stop);
      break;
    }
  }
  DSOCR_CUDA_TRY(cudaStreamSynchronize(m.stream));
  out.decode_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  m.pos = static_cast<int64_t>(m.prompt.size()) + static_cast<int64_t>(out.ids.size());
  return out;
}

Status GpuDecoder::forced_step(int32_t token, float* logits) {
  Impl& m = *impl_;
  const ModelConfig& c = m.cfg;
  if (!m.prefilled) return Status::Error("forced_step: call prefill() first");
  if (token < 0 || token >= c.vocab)
    return Status::Error(strfmt("token %d is outside the vocabulary [0, %d)", token, c.vocab));
  if (m.pos >= m.seq.capacity())
    return Status::Error(strfmt("teacher forcing past the %lld reserved tokens",
                                static_cast<long long>(m.seq.capacity())));
  // The state for a step of `token` at position m.pos (no sampling).
  DecodeSeqState s;
  s.len = static_cast<int32_t>(m.pos + 1), s.prompt_len = static_cast<int32_t>(m.prompt.size());
  s.pos = static_cast<int32_t>(m.pos), s.token = token;
  s.max_new = m.max_new, s.capacity = static_cast<int32_t>(m.seq.capacity());
  DSOCR_CUDA_TRY(cudaMemcpyAsync(m.samp.state, &s, sizeof s, cudaMemcpyHostToDevice, m.stream));
  DSOCR_CUDA_TRY(
      embed_rows(&m.samp.state->token, m.w.embed, m.work.in, c.dim, 1, c.vocab, c.dim, m.stream));
  DSOCR_TRY(m.forward(1, &m.samp.state->pos, /*decode=*/true, nullptr));
  DSOCR_CUDA_TRY(
      cudaMemcpyAsync(logits, m.work.logits, c.vocab * 4, cudaMemcpyDeviceToHost, m.stream));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(m.stream));
  m.pos += 1;
  return Status::Ok();
}

Status GpuDecoder::set_expert(int layer, int expert, const MlpWeights& w, const MlpScales& scales) {
  Impl& m = *impl_;
  if (layer < 0 || layer >= m.cfg.n_layers || !m.w.layers[layer].moe || expert < 0 ||
      expert >= m.cfg.n_experts || !w.gate || !w.up || !w.down)
    return Status::Error(
        strfmt("set_expert(layer %d, expert %d): no such routed expert, or null "
               "weights (internal error)",
               layer, expert));
  // Scales exactly when the experts are quantized: a stale or missing scale pointer would make
  // the kernels read another expert's (or no) scales.
  const bool quantized = m.moe_w[layer].expert_format != WeightFormat::kBf16;
  for (const uint16_t* sc : {scales.gate, scales.up, scales.down})
    if ((sc != nullptr) != quantized)
      return Status::Error(
          strfmt("set_expert(layer %d, expert %d): routed experts are %s, scales "
                 "%s (internal error)",
                 layer, expert, weight_format_name(m.moe_w[layer].expert_format),
                 sc ? "given" : "missing"));
  m.moe_w[layer].experts[expert] = w;
  m.moe_w[layer].expert_scales[expert] = scales;
  m.graph_stale = true;
  return Status::Ok();
}

void GpuDecoder::set_moe_streamer(MoeStreamer* streamer) {
  impl_->streamer = streamer;
}

void GpuDecoder::set_expert_counts(int32_t* counts) {
  impl_->expert_counts = counts;
  impl_->graph_stale = true;
}

Status GpuDecoder::end() {
  Impl& m = *impl_;
  DSOCR_CUDA_TRY(cudaStreamSynchronize(m.stream));
  m.prompt.clear();
  m.prefilled = false;
  if (!m.seq.pages.empty()) DSOCR_TRY(m.kv.release(m.seq));
  return Status::Ok();
}

}  // namespace dsocr
