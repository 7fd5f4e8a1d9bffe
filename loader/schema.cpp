// The DeepSeek-OCR tensor list, built from the config by the same loops that build the official
// PyTorch modules (deepencoder.py: ImageEncoderViT, VitModel, MlpProjector;
// modeling_deepseekv2.py: DeepseekV2DecoderLayer), in the order their state_dict lists them:
// the model's own parameters (image_newline, view_seperator), then sam_model, vision_model,
// projector, embed_tokens, layers, norm, and lm_head last.
#include "loader/schema.h"

#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace dsocr {

const char* tensor_class_name(TensorClass c) {
  switch (c) {
    case TensorClass::kSam:
      return "sam";
    case TensorClass::kClip:
      return "clip";
    case TensorClass::kProjector:
      return "projector";
    case TensorClass::kEmbed:
      return "embed";
    case TensorClass::kLmHead:
      return "lm_head";
    case TensorClass::kNorm:
      return "norm";
    case TensorClass::kAttn:
      return "attn";
    case TensorClass::kDenseMlp:
      return "dense_mlp";
    case TensorClass::kRouter:
      return "router";
    case TensorClass::kSharedExpert:
      return "shared_expert";
    case TensorClass::kRoutedExpert:
      return "routed_expert";
  }
  return "?";
}

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  s += ']';
  return s;
}

class SchemaBuilder {
 public:
  explicit SchemaBuilder(std::vector<TensorSpec>* out) : out_(out) {}
  void add(std::string name, std::vector<int64_t> shape, TensorClass cls, bool linear = false) {
    out_->push_back(TensorSpec{std::move(name), std::move(shape), DType::BF16, cls, linear});
  }
  // nn.Linear(in, out) -> weight [out, in] (+ bias [out]).
  void linear(const std::string& p, int64_t in, int64_t out, bool bias, TensorClass cls) {
    add(p + ".weight", {out, in}, cls, true);
    if (bias) add(p + ".bias", {out}, cls);
  }
  // nn.LayerNorm(dim) / LayerNorm2d(dim) -> weight, bias [dim].
  void layernorm(const std::string& p, int64_t dim, TensorClass cls) {
    add(p + ".weight", {dim}, cls);
    add(p + ".bias", {dim}, cls);
  }

 private:
  std::vector<TensorSpec>* out_;
};

// SAM ViT-B (deepencoder.py ImageEncoderViT) with the neck and the two extra stride-2 convs.
void add_sam(SchemaBuilder& b, const SamConfig& s) {
  const TensorClass c = TensorClass::kSam;
  const std::string p = "model.sam_model.";
  const int64_t grid = s.img_size / s.patch;  // 64 patches per side
  const int64_t head_dim = s.dim / s.n_heads;
  b.add(p + "pos_embed", {1, grid, grid, s.dim}, c);
  b.add(p + "patch_embed.proj.weight", {s.dim, 3, s.patch, s.patch}, c);
  b.add(p + "patch_embed.proj.bias", {s.dim}, c);
  for (int i = 0; i < s.depth; ++i) {
    const std::string bp = p + "blocks." + std::to_string(i) + ".";
    bool global = false;
    for (int g : s.global_blocks) global |= (g == i);
    // Relative positions span 2*size-1 offsets: the 14x14 window, or the whole 64x64 grid.
    const int64_t rel_rows = 2 * (global ? grid : s.window) - 1;
    b.layernorm(bp + "norm1", s.dim, c);
    b.add(bp + "attn.rel_pos_h", {rel_rows, head_dim}, c);
    b.add(bp + "attn.rel_pos_w", {rel_rows, head_dim}, c);
    b.linear(bp + "attn.qkv", s.dim, 3 * s.dim, true, c);
    b.linear(bp + "attn.proj", s.dim, s.dim, true, c);
    b.layernorm(bp + "norm2", s.dim, c);
    b.linear(bp + "mlp.lin1", s.dim, s.mlp_dim, true, c);
    b.linear(bp + "mlp.lin2", s.mlp_dim, s.dim, true, c);
  }
  b.add(p + "neck.0.weight", {s.neck_dim, s.dim, 1, 1}, c);
  b.layernorm(p + "neck.1", s.neck_dim, c);
  b.add(p + "neck.2.weight", {s.neck_dim, s.neck_dim, 3, 3}, c);
  b.layernorm(p + "neck.3", s.neck_dim, c);
  b.add(p + "net_2.weight", {s.net2_dim, s.neck_dim, 3, 3}, c);
  b.add(p + "net_3.weight", {s.net3_dim, s.net2_dim, 3, 3}, c);
}

// CLIP-L (deepencoder.py VitModel): embeddings, 24 pre-norm layers, then pre_layrnorm (declared
// after the transformer, so listed after it).
void add_clip(SchemaBuilder& b, const ClipConfig& k) {
  const TensorClass c = TensorClass::kClip;
  const std::string p = "model.vision_model.";
  b.add(p + "embeddings.class_embedding", {k.dim}, c);
  b.add(p + "embeddings.patch_embedding.weight", {k.dim, 3, k.patch, k.patch}, c);
  b.add(p + "embeddings.position_embedding.weight",
        {static_cast<int64_t>(k.pos_grid) * k.pos_grid + 1, k.dim}, c);
  for (int i = 0; i < k.depth; ++i) {
    const std::string lp = p + "transformer.layers." + std::to_string(i) + ".";
    b.linear(lp + "self_attn.qkv_proj", k.dim, 3 * k.dim, true, c);
    b.linear(lp + "self_attn.out_proj", k.dim, k.dim, true, c);
    b.linear(lp + "mlp.fc1", k.dim, k.mlp_dim, true, c);
    b.linear(lp + "mlp.fc2", k.mlp_dim, k.dim, true, c);
    b.layernorm(lp + "layer_norm1", k.dim, c);
    b.layernorm(lp + "layer_norm2", k.dim, c);
  }
  b.layernorm(p + "pre_layrnorm", k.dim, c);
}

// DeepSeek-V2 decoder (modeling_deepseekv2.py), MHA without biases; layers below first_dense
// have a dense SwiGLU, the rest a routed MoE whose module lists the experts, then the router
// ("gate"), then the fused shared experts.
void add_decoder_layer(SchemaBuilder& b, const ModelConfig& m, int i) {
  const std::string lp = "model.layers." + std::to_string(i) + ".";
  const int64_t qdim = static_cast<int64_t>(m.n_heads) * m.head_dim;
  b.linear(lp + "self_attn.q_proj", m.dim, qdim, false, TensorClass::kAttn);
  b.linear(lp + "self_attn.k_proj", m.dim, qdim, false, TensorClass::kAttn);
  b.linear(lp + "self_attn.v_proj", m.dim, qdim, false, TensorClass::kAttn);
  b.linear(lp + "self_attn.o_proj", qdim, m.dim, false, TensorClass::kAttn);
  auto swiglu = [&](const std::string& p, int64_t inter, TensorClass c) {
    b.linear(p + "gate_proj", m.dim, inter, false, c);
    b.linear(p + "up_proj", m.dim, inter, false, c);
    b.linear(p + "down_proj", inter, m.dim, false, c);
  };
  if (i < m.first_dense) {
    swiglu(lp + "mlp.", m.dense_inter, TensorClass::kDenseMlp);
  } else {
    for (int e = 0; e < m.n_experts; ++e)
      swiglu(lp + "mlp.experts." + std::to_string(e) + ".", m.moe_inter,
             TensorClass::kRoutedExpert);
    b.linear(lp + "mlp.gate", m.dim, m.n_experts, false, TensorClass::kRouter);
    if (m.n_shared > 0)
      swiglu(lp + "mlp.shared_experts.", m.shared_inter(), TensorClass::kSharedExpert);
  }
  b.add(lp + "input_layernorm.weight", {m.dim}, TensorClass::kNorm);
  b.add(lp + "post_attention_layernorm.weight", {m.dim}, TensorClass::kNorm);
}

}  // namespace

std::vector<TensorSpec> checkpoint_schema(const ModelConfig& cfg) {
  std::vector<TensorSpec> out;
  SchemaBuilder b(&out);
  b.add("model.image_newline", {cfg.proj_out}, TensorClass::kProjector);
  b.add("model.view_seperator", {cfg.proj_out}, TensorClass::kProjector);  // sic
  add_sam(b, cfg.sam);
  add_clip(b, cfg.clip);
  b.linear("model.projector.layers", cfg.proj_in, cfg.proj_out, true, TensorClass::kProjector);
  b.add("model.embed_tokens.weight", {cfg.vocab, cfg.dim}, TensorClass::kEmbed);
  for (int i = 0; i < cfg.n_layers; ++i) add_decoder_layer(b, cfg, i);
  b.add("model.norm.weight", {cfg.dim}, TensorClass::kNorm);
  b.linear("lm_head", cfg.dim, cfg.vocab, false, TensorClass::kLmHead);
  return out;
}

std::vector<TensorInfo> schema_tensor_infos(const std::vector<TensorSpec>& schema) {
  std::vector<TensorInfo> out;
  out.reserve(schema.size());
  for (const TensorSpec& s : schema) {
    TensorInfo t;
    t.name = s.name;
    t.dtype = s.dtype;
    t.shape = s.shape;
    out.push_back(std::move(t));
  }
  return out;
}

Status validate_checkpoint(const Checkpoint& ckpt, const std::vector<TensorSpec>& schema) {
  constexpr size_t kMaxListed = 20;
  std::vector<std::string> problems;
  size_t n_missing = 0, n_unexpected = 0, n_shape = 0, n_dtype = 0;
  std::unordered_set<std::string_view> expected;
  expected.reserve(schema.size());
  for (const TensorSpec& s : schema) {
    expected.insert(s.name);
    const TensorInfo* t = ckpt.find(s.name);
    if (!t) {
      ++n_missing;
      problems.push_back(strfmt("missing %s (%s %s)", s.name.c_str(), dtype_name(s.dtype),
                                shape_string(s.shape).c_str()));
      continue;
    }
    if (t->shape != s.shape) {
      ++n_shape;
      problems.push_back(strfmt("%s: shape %s, expected %s", s.name.c_str(),
                                shape_string(t->shape).c_str(), shape_string(s.shape).c_str()));
    }
    if (t->dtype != s.dtype) {
      ++n_dtype;
      problems.push_back(strfmt("%s: dtype %s, expected %s", s.name.c_str(), dtype_name(t->dtype),
                                dtype_name(s.dtype)));
    }
  }
  for (const TensorInfo& t : ckpt.tensors()) {
    if (expected.count(t.name)) continue;
    ++n_unexpected;
    problems.push_back(strfmt("unexpected %s (%s %s)", t.name.c_str(), dtype_name(t.dtype),
                              t.shape_str().c_str()));
  }
  if (problems.empty()) return Status::Ok();

  std::string msg = strfmt(
      "%s: checkpoint does not match the DeepSeek-OCR schema (%zu tensors expected, %zu found; "
      "%zu missing, %zu unexpected, %zu with a wrong shape, %zu with a wrong dtype): ",
      ckpt.dir().c_str(), schema.size(), ckpt.tensors().size(), n_missing, n_unexpected, n_shape,
      n_dtype);
  for (size_t i = 0; i < problems.size() && i < kMaxListed; ++i) {
    if (i) msg += "; ";
    msg += problems[i];
  }
  if (problems.size() > kMaxListed) msg += strfmt("; and %zu more", problems.size() - kMaxListed);
  msg +=
      ". The directory does not hold the official DeepSeek-OCR checkpoint; re-download it or "
      "regenerate it with dsocr-synth";
  return Status::Error(msg);
}

}  // namespace dsocr
