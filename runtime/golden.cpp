#include "runtime/golden.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "loader/config.h"
#include "loader/image.h"
#include "loader/schema.h"
#include "runtime/assemble.h"
#include "runtime/decoder_cpu.h"
#include "runtime/model_weights.h"
#include "runtime/preprocess.h"
#include "runtime/sampling.h"
#include "runtime/vision_cpu.h"

namespace dsocr {
namespace {

template <class T>
DumpTensor make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                       const T* data, size_t count) {
  DumpTensor t{name, dtype, std::move(shape), {}};
  t.data.resize(count * sizeof(T));
  if (count) std::memcpy(t.data.data(), data, t.data.size());
  return t;
}

DumpTensor f32_tensor(const std::string& name, std::vector<int64_t> shape, const float* data) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return make_tensor(name, DType::F32, std::move(shape), data, n);
}

DumpTensor i64_tensor(const std::string& name, const std::vector<int32_t>& ids) {
  std::vector<int64_t> v(ids.begin(), ids.end());
  return make_tensor(name, DType::I64, {static_cast<int64_t>(v.size())}, v.data(), v.size());
}

// Top-k of raw logits, descending; equal values keep the lower id first.
void top_k(const float* logits, int64_t vocab, int k, float* vals, int64_t* ids) {
  std::vector<int32_t> idx(vocab);
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int i = 0; i < k; ++i) {
    vals[i] = logits[idx[i]];
    ids[i] = idx[i];
  }
}

// The global view (and tiles) as u8, either preprocessed from the image or read from a golden case.
struct Pixels {
  int S = 0;
  std::vector<uint8_t> global;  // [S, S, 3]
  int n_tiles = 0, w_t = 1, h_t = 1;
  std::vector<uint8_t> tiles;  // [n_tiles, 640, 640, 3]
};

Expected<Pixels> pixels_from_golden(const std::string& path, const ModeSpec& spec) {
  DSOCR_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(path));
  Pixels px;
  const TensorInfo* g = f.find("global_u8");
  if (!g || g->dtype != DType::U8 || g->shape.size() != 3 || g->shape[0] != g->shape[1] ||
      g->shape[2] != 3)
    return Status::Error(path + ": no U8 tensor global_u8 [S,S,3]; pass a golden case file");
  px.S = static_cast<int>(g->shape[0]);
  const int expect_S = spec.crop ? spec.base_size : spec.image_size;
  if (px.S != expect_S)
    return Status::Error(strfmt("%s: global_u8 is %dx%d but --mode %s needs %dx%d", path.c_str(),
                                px.S, px.S, spec.name, expect_S, expect_S));
  px.global.assign(f.bytes(*g), f.bytes(*g) + g->nbytes);
  if (const TensorInfo* c = f.find("crops_u8")) {
    if (!spec.crop || c->dtype != DType::U8 || c->shape.size() != 4 ||
        c->shape[1] != kTileSize || c->shape[2] != kTileSize || c->shape[3] != 3)
      return Status::Error(path + ": crops_u8 must be U8 [n,640,640,3] and needs --mode gundam");
    px.n_tiles = static_cast<int>(c->shape[0]);
    px.tiles.assign(f.bytes(*c), f.bytes(*c) + c->nbytes);
    // The grid is not stored in the tensor; the case's metadata has it.
    auto meta = f.metadata().find("meta");
    int w = 0, h = 0;
    if (meta != f.metadata().end()) {
      const std::string& m = meta->second;
      auto p = m.find("\"crop_grid_wh\"");
      if (p != std::string::npos) std::sscanf(m.c_str() + m.find('[', p), "[%d , %d]", &w, &h);
    }
    if (w * h != px.n_tiles || w < 1 || h < 1)
      return Status::Error(path + ": cannot read crop_grid_wh for crops_u8 from the metadata");
    px.w_t = w;
    px.h_t = h;
  }
  return px;
}

}  // namespace

std::vector<int64_t> golden_hidden_positions(int64_t T) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < std::min<int64_t>(4, T); ++i) p.push_back(i);
  p.push_back(T / 2);
  for (int64_t i = std::max<int64_t>(0, T - 8); i < T; ++i) p.push_back(i);
  return p;
}

Expected<TensorDump> run_golden_cpu(const GoldenOptions& opt,
                                    const std::function<void(const std::string&)>& log) {
  using clock = std::chrono::steady_clock;
  auto t_stage = clock::now();
  auto stage = [&](const std::string& what) {
    auto now = clock::now();
    double ms = std::chrono::duration<double, std::milli>(now - t_stage).count();
    t_stage = now;
    if (log) log(strfmt("%-12s %9.1f ms", what.c_str(), ms));
  };

  // Model.
  DSOCR_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open_dir(opt.model_dir));
  DSOCR_ASSIGN_OR_RETURN(ModelConfig cfg, load_config(opt.model_dir + "/config.json"));
  DSOCR_TRY(validate_checkpoint(ckpt, checkpoint_schema(cfg)));
  DSOCR_ASSIGN_OR_RETURN(ModelWeights w, bind_weights(cfg, [&](const std::string& name) {
                           const TensorInfo* t = ckpt.find(name);
                           return t ? static_cast<const void*>(ckpt.bytes(*t)) : nullptr;
                         }));
  DSOCR_ASSIGN_OR_RETURN(Mode mode, parse_mode(opt.mode));
  const ModeSpec& spec = mode_spec(mode);
  for (int32_t id : opt.prompt_ids)
    if (id < 0 || id >= cfg.vocab)
      return Status::Error(strfmt("prompt id %d is outside the vocabulary [0, %d)", id, cfg.vocab));
  for (int32_t id : opt.teacher_force)
    if (id < 0 || id >= cfg.vocab)
      return Status::Error(
          strfmt("teacher-force id %d is outside the vocabulary [0, %d)", id, cfg.vocab));
  stage("load");

  // Pixels.
  Pixels px;
  if (!opt.pixels_from_golden.empty()) {
    DSOCR_ASSIGN_OR_RETURN(px, pixels_from_golden(opt.pixels_from_golden, spec));
  } else {
    DSOCR_ASSIGN_OR_RETURN(Image img, load_image(opt.image_path));
    PreprocessOptions po;
    po.mode = mode;
    po.max_crops = opt.max_crops;
    DSOCR_ASSIGN_OR_RETURN(Preprocessed pre, preprocess_image(img, po));
    px.S = pre.global_size;
    px.global = std::move(pre.global);
    px.n_tiles = pre.n_tiles;
    px.w_t = pre.grid.w;
    px.h_t = pre.grid.h;
    px.tiles = std::move(pre.tiles);
  }
  stage("preprocess");

  // Vision: global view, then tiles; assemble the image sequence.
  TensorDump dump;
  dump.push_back(make_tensor("global_u8", DType::U8, {px.S, px.S, 3}, px.global.data(),
                             px.global.size()));
  std::vector<float> pixels(px.global.size());
  normalize_views_hwc(px.global.data(), px.global.size(), pixels.data());
  DSOCR_ASSIGN_OR_RETURN(VisionOutput gv, encode_views_cpu(cfg, w, pixels.data(), 1, px.S));
  const int g = gv.q;
  dump.push_back(f32_tensor("sam_global", {1, cfg.sam.net3_dim, g, g}, gv.sam.data()));
  dump.push_back(f32_tensor("clip_global", {1, 1 + g * g, cfg.clip.dim}, gv.clip.data()));
  dump.push_back(f32_tensor("proj_global", {g * g, cfg.proj_out}, gv.proj.data()));
  VisionOutput tv;
  const int t = kTileSize / 64;
  if (px.n_tiles > 0) {
    dump.push_back(make_tensor("crops_u8", DType::U8, {px.n_tiles, kTileSize, kTileSize, 3},
                               px.tiles.data(), px.tiles.size()));
    pixels.resize(px.tiles.size());
    normalize_views_hwc(px.tiles.data(), px.tiles.size(), pixels.data());
    DSOCR_ASSIGN_OR_RETURN(tv, encode_views_cpu(cfg, w, pixels.data(), px.n_tiles, kTileSize));
    dump.push_back(f32_tensor("proj_crops", {px.n_tiles, t * t, cfg.proj_out}, tv.proj.data()));
  }
  const int64_t n_img = image_embed_rows(g, t, px.w_t, px.h_t);
  std::vector<float> image_embeds(n_img * cfg.dim);
  assemble_image_embeds(gv.proj.data(), g, px.n_tiles ? tv.proj.data() : nullptr, t, px.w_t,
                        px.h_t, w.proj.image_newline, w.proj.view_sep, image_embeds.data(),
                        cfg.dim);
  dump.push_back(f32_tensor("image_embeds", {n_img, cfg.dim}, image_embeds.data()));
  stage("vision");

  // Prompt: BOS + image tokens + text ids; image rows replace the image-token embeddings.
  std::vector<int32_t> ids = {cfg.bos_id};
  ids.insert(ids.end(), n_img, cfg.image_token_id);
  ids.insert(ids.end(), opt.prompt_ids.begin(), opt.prompt_ids.end());
  const int64_t T = static_cast<int64_t>(ids.size());
  const int steps = opt.teacher_force.empty() ? opt.max_tokens
                                              : static_cast<int>(opt.teacher_force.size());
  if (T + std::max(opt.max_tokens, steps) > cfg.max_pos)
    return Status::Error(strfmt("prompt of %lld tokens + %d new tokens exceeds the %d-token "
                                "context; lower --max-tokens",
                                static_cast<long long>(T), std::max(opt.max_tokens, steps),
                                cfg.max_pos));
  dump.push_back(i64_tensor("input_ids", ids));
  std::vector<float> embeds(T * cfg.dim);
  CpuDecoder dec(cfg, w.dec, T + std::max(opt.max_tokens, steps));
  dec.embed(ids.data(), T, embeds.data());
  for (int64_t p = 0, r = 0; p < T; ++p)
    if (ids[p] == cfg.image_token_id)
      std::memcpy(&embeds[p * cfg.dim], &image_embeds[(r++) * cfg.dim], sizeof(float) * cfg.dim);

  // Prefill with the hidden-state tap.
  HiddenTap tap;
  tap.positions = golden_hidden_positions(T);
  std::vector<float> logits(cfg.vocab), logits0(cfg.vocab);
  DSOCR_TRY(dec.forward(embeds.data(), T, logits0.data(), &tap));
  const int64_t P = static_cast<int64_t>(tap.positions.size());
  dump.push_back(f32_tensor("prefill_hidden", {cfg.n_layers + 1, P, cfg.dim}, tap.out.data()));
  dump.push_back(make_tensor("prefill_hidden_positions", DType::I64, {P}, tap.positions.data(),
                             tap.positions.size()));
  dump.push_back(f32_tensor("prefill_logits_last", {cfg.vocab}, logits0.data()));
  stage("prefill");

  // Free-running greedy generation with the HF no-repeat-ngram ban.
  GenerationConfig gc;
  gc.max_new_tokens = opt.max_tokens;
  gc.eos_id = cfg.eos_id;
  gc.ngram_mode = opt.ngram > 0 ? GenerationConfig::NGram::kHF : GenerationConfig::NGram::kNone;
  gc.ngram = std::max(opt.ngram, 1);
  GenerationState gen(gc, ids);
  constexpr int kTop = 64;
  std::vector<float> top_vals;
  std::vector<int64_t> top_ids;
  const bool tf_own = opt.teacher_force.empty();
  logits = logits0;
  std::vector<float> emb(cfg.dim);
  while (!gen.done()) {
    if (tf_own) {
      top_vals.resize(top_vals.size() + kTop);
      top_ids.resize(top_ids.size() + kTop);
      top_k(logits.data(), cfg.vocab, kTop, top_vals.data() + top_vals.size() - kTop,
            top_ids.data() + top_ids.size() - kTop);
    }
    int32_t next = gen.step(logits.data(), cfg.vocab);  // bans, argmax, appends
    if (gen.done()) break;
    dec.embed(&next, 1, emb.data());
    DSOCR_TRY(dec.forward(emb.data(), 1, logits.data()));
  }
  std::vector<int32_t> gen_ids(gen.generated().begin(), gen.generated().end());
  dump.push_back(i64_tensor("gen_ids", gen_ids));
  stage("generate");

  // Teacher forcing on the given ids: step i sees prompt + tf[0..i-1].
  if (!tf_own) {
    dec.truncate(T);
    logits = logits0;
    for (int i = 0; i < steps; ++i) {
      if (i > 0) {
        dec.embed(&opt.teacher_force[i - 1], 1, emb.data());
        DSOCR_TRY(dec.forward(emb.data(), 1, logits.data()));
      }
      top_vals.resize(top_vals.size() + kTop);
      top_ids.resize(top_ids.size() + kTop);
      top_k(logits.data(), cfg.vocab, kTop, top_vals.data() + top_vals.size() - kTop,
            top_ids.data() + top_ids.size() - kTop);
    }
    stage("teacher-force");
  }
  const int64_t n_steps = static_cast<int64_t>(top_vals.size() / kTop);
  dump.push_back(f32_tensor("tf_top64_vals", {n_steps, kTop}, top_vals.data()));
  dump.push_back(make_tensor("tf_top64_ids", DType::I64, {n_steps, kTop}, top_ids.data(),
                             top_ids.size()));
  return dump;
}

Status write_tensor_dump(const std::string& path, const TensorDump& dump,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<TensorInfo> infos;
  for (const DumpTensor& t : dump) {
    TensorInfo i;
    i.name = t.name;
    i.dtype = t.dtype;
    i.shape = t.shape;
    i.nbytes = t.data.size();
    infos.push_back(std::move(i));
  }
  const std::string header = build_safetensors_header(infos, metadata);
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return Status::Error(path + ": cannot create the dump file (check the directory)");
  bool ok = std::fwrite(header.data(), 1, header.size(), f) == header.size();
  for (const DumpTensor& t : dump)
    ok = ok && (t.data.empty() || std::fwrite(t.data.data(), 1, t.data.size(), f) == t.data.size());
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status::Error(path + ": write failed (disk full or not writable?)");
  }
  return Status::Ok();
}

}  // namespace dsocr
