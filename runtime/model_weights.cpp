#include "runtime/model_weights.h"

#include <algorithm>

namespace dsocr {
namespace {

// Collects the names the lookup misses so one error can list them all.
class Binder {
 public:
  explicit Binder(const std::function<const void*(const std::string&)>& lookup) : lookup_(lookup) {}

  const bf16_t* operator()(const std::string& name) {
    const void* p = lookup_(name);
    if (!p) missing_.push_back(name);
    return static_cast<const bf16_t*>(p);
  }

  MlpWeights mlp(const std::string& prefix) {
    return MlpWeights{(*this)(prefix + ".gate_proj.weight"), (*this)(prefix + ".up_proj.weight"),
                      (*this)(prefix + ".down_proj.weight")};
  }

  Status status() const {
    if (missing_.empty()) return Status::Ok();
    std::string msg = strfmt("%zu tensor(s) missing from the checkpoint: ", missing_.size());
    size_t shown = std::min<size_t>(missing_.size(), 10);
    for (size_t i = 0; i < shown; ++i) msg += (i ? ", " : "") + missing_[i];
    if (shown < missing_.size()) msg += strfmt(" and %zu more", missing_.size() - shown);
    return Status::Error(msg + "; the directory does not hold a DeepSeek-OCR checkpoint");
  }

 private:
  const std::function<const void*(const std::string&)>& lookup_;
  std::vector<std::string> missing_;
};

}  // namespace

Expected<ModelWeights> bind_weights(const ModelConfig& cfg,
                                    const std::function<const void*(const std::string&)>& lookup) {
  Binder b(lookup);
  ModelWeights w;

  // SAM-B (model.sam_model.*).
  const std::string sp = "model.sam_model.";
  w.sam.patch_w = b(sp + "patch_embed.proj.weight");
  w.sam.patch_b = b(sp + "patch_embed.proj.bias");
  w.sam.pos_embed = b(sp + "pos_embed");
  for (int i = 0; i < cfg.sam.depth; ++i) {
    const std::string p = sp + "blocks." + std::to_string(i) + ".";
    SamBlockWeights blk{};
    blk.global = std::find(cfg.sam.global_blocks.begin(), cfg.sam.global_blocks.end(), i) !=
                 cfg.sam.global_blocks.end();
    blk.rel_len = blk.global ? 2 * (cfg.sam.img_size / cfg.sam.patch) - 1 : 2 * cfg.sam.window - 1;
    blk.norm1_w = b(p + "norm1.weight");
    blk.norm1_b = b(p + "norm1.bias");
    blk.qkv_w = b(p + "attn.qkv.weight");
    blk.qkv_b = b(p + "attn.qkv.bias");
    blk.proj_w = b(p + "attn.proj.weight");
    blk.proj_b = b(p + "attn.proj.bias");
    blk.rel_h = b(p + "attn.rel_pos_h");
    blk.rel_w = b(p + "attn.rel_pos_w");
    blk.norm2_w = b(p + "norm2.weight");
    blk.norm2_b = b(p + "norm2.bias");
    blk.lin1_w = b(p + "mlp.lin1.weight");
    blk.lin1_b = b(p + "mlp.lin1.bias");
    blk.lin2_w = b(p + "mlp.lin2.weight");
    blk.lin2_b = b(p + "mlp.lin2.bias");
    w.sam.blocks.push_back(blk);
  }
  w.sam.neck0_w = b(sp + "neck.0.weight");
  w.sam.neck1_w = b(sp + "neck.1.weight");
  w.sam.neck1_b = b(sp + "neck.1.bias");
  w.sam.neck2_w = b(sp + "neck.2.weight");
  w.sam.neck3_w = b(sp + "neck.3.weight");
  w.sam.neck3_b = b(sp + "neck.3.bias");
  w.sam.net2_w = b(sp + "net_2.weight");
  w.sam.net3_w = b(sp + "net_3.weight");

  // CLIP-L body (model.vision_model.*); its own patch_embedding is never used.
  const std::string cp = "model.vision_model.";
  w.clip.class_emb = b(cp + "embeddings.class_embedding");
  w.clip.pos_emb = b(cp + "embeddings.position_embedding.weight");
  w.clip.pre_ln_w = b(cp + "pre_layrnorm.weight");
  w.clip.pre_ln_b = b(cp + "pre_layrnorm.bias");
  for (int i = 0; i < cfg.clip.depth; ++i) {
    const std::string p = cp + "transformer.layers." + std::to_string(i) + ".";
    ClipLayerWeights l{};
    l.ln1_w = b(p + "layer_norm1.weight");
    l.ln1_b = b(p + "layer_norm1.bias");
    l.qkv_w = b(p + "self_attn.qkv_proj.weight");
    l.qkv_b = b(p + "self_attn.qkv_proj.bias");
    l.out_w = b(p + "self_attn.out_proj.weight");
    l.out_b = b(p + "self_attn.out_proj.bias");
    l.ln2_w = b(p + "layer_norm2.weight");
    l.ln2_b = b(p + "layer_norm2.bias");
    l.fc1_w = b(p + "mlp.fc1.weight");
    l.fc1_b = b(p + "mlp.fc1.bias");
    l.fc2_w = b(p + "mlp.fc2.weight");
    l.fc2_b = b(p + "mlp.fc2.bias");
    w.clip.layers.push_back(l);
  }

  // Projector and the two learned separator embeddings.
  w.proj.w = b("model.projector.layers.weight");
  w.proj.b = b("model.projector.layers.bias");
  w.proj.image_newline = b("model.image_newline");
  w.proj.view_sep = b("model.view_seperator");

  // Decoder.
  w.dec.embed = b("model.embed_tokens.weight");
  w.dec.final_norm = b("model.norm.weight");
  w.dec.lm_head = b("lm_head.weight");
  for (int i = 0; i < cfg.n_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    DecoderLayerWeights l{};
    l.in_norm = b(p + "input_layernorm.weight");
    l.post_norm = b(p + "post_attention_layernorm.weight");
    l.q = b(p + "self_attn.q_proj.weight");
    l.k = b(p + "self_attn.k_proj.weight");
    l.v = b(p + "self_attn.v_proj.weight");
    l.o = b(p + "self_attn.o_proj.weight");
    l.moe = i >= cfg.first_dense;
    if (!l.moe) {
      l.dense = b.mlp(p + "mlp");
    } else {
      l.router = b(p + "mlp.gate.weight");
      for (int e = 0; e < cfg.n_experts; ++e)
        l.experts.push_back(b.mlp(p + "mlp.experts." + std::to_string(e)));
      l.shared = b.mlp(p + "mlp.shared_experts");
    }
    w.dec.layers.push_back(std::move(l));
  }

  DSOCR_TRY(b.status());
  return w;
}

}  // namespace dsocr
