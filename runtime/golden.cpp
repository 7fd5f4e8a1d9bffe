#include "runtime/golden.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "loader/bf16.h"
#include "loader/image.h"
#include "runtime/assemble.h"
#include "runtime/cpu_model.h"
#include "runtime/cuda_check.h"
#include "runtime/gpu_model.h"

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

// prefill_hidden (+ positions) and prefill_logits_last.
void push_prefill(TensorDump& dump, const ModelConfig& cfg, const HiddenTap& tap,
                  const std::vector<float>& logits) {
  const int64_t P = static_cast<int64_t>(tap.positions.size());
  dump.push_back(f32_tensor("prefill_hidden", {cfg.n_layers + 1, P, cfg.dim}, tap.out.data()));
  dump.push_back(make_tensor("prefill_hidden_positions", DType::I64, {P}, tap.positions.data(),
                             tap.positions.size()));
  dump.push_back(f32_tensor("prefill_logits_last", {cfg.vocab}, logits.data()));
}

}  // namespace

std::vector<int64_t> golden_hidden_positions(int64_t T) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < std::min<int64_t>(4, T); ++i) p.push_back(i);
  p.push_back(T / 2);
  for (int64_t i = std::max<int64_t>(0, T - 8); i < T; ++i) p.push_back(i);
  return p;
}

// The encoder on the GPU, its outputs in the CPU backend's PageEmbeds layout (float32 widened
// from the BF16 device values; SAM's NHWC tap transposed to the golden NCHW). The assembled rows
// are written to the decoder's input rows (no sequence yet) and read back.
static Expected<PageEmbeds> encode_page_gpu(GpuModel& gm, const PageViews& page) {
  const ModelConfig& cfg = gm.cfg();
  VisionTaps gt, tt;
  uint16_t* rows_dev = gm.decoder().input_rows();
  DSOCR_TRY(gm.vision().encode_page(views_ref(page), rows_dev, gm.stream(), &gt,
                                    page.n_tiles ? &tt : nullptr));
  DSOCR_CUDA_TRY(cudaStreamSynchronize(gm.stream()));
  PageEmbeds pe;
  auto widen = [](const std::vector<uint16_t>& v) {
    std::vector<float> f(v.size());
    for (size_t i = 0; i < v.size(); ++i) f[i] = bf16_to_f32(v[i]);
    return f;
  };
  const int q = gt.q, c = cfg.sam.net3_dim;
  pe.global.n = 1, pe.global.q = q;
  pe.global.sam.resize(static_cast<size_t>(c) * q * q);
  for (int p = 0; p < q * q; ++p)  // [q*q, c] -> [c, q*q]
    for (int ch = 0; ch < c; ++ch) pe.global.sam[ch * q * q + p] = bf16_to_f32(gt.sam[p * c + ch]);
  pe.global.clip = gt.clip;
  pe.global.proj = widen(gt.proj);
  if (page.n_tiles) pe.tiles.n = tt.n, pe.tiles.q = tt.q, pe.tiles.proj = widen(tt.proj);
  pe.rows = image_embed_rows(page.S / 64, kTileSize / 64, page.grid.w, page.grid.h);
  std::vector<uint16_t> rows(static_cast<size_t>(pe.rows) * cfg.dim);
  DSOCR_CUDA_TRY(cudaMemcpy(rows.data(), rows_dev, rows.size() * 2, cudaMemcpyDeviceToHost));
  pe.image_embeds = widen(rows);
  return pe;
}

// The decoder half of the recipe on the GPU: prefill (hidden taps, last logits), free-running
// generation, then teacher forcing when ids are given (else the generation's own ids).
static Status golden_decoder_gpu(const GoldenOptions& opt, GpuModel& gm,
                                 const std::vector<int32_t>& ids, const PageEmbeds& pe,
                                 TensorDump& dump,
                                 const std::function<void(const std::string&)>& stage) {
  const int64_t T = static_cast<int64_t>(ids.size());
  const ModelConfig& cfg = gm.cfg();
  GpuDecoder& dec = gm.decoder();
  NGramBan ban;
  ban.mode = opt.ngram > 0 ? NGramBan::kHF : NGramBan::kNone;
  ban.n = std::max(opt.ngram, 1);
  std::vector<uint16_t> img(pe.image_embeds.size());
  for (size_t i = 0; i < img.size(); ++i) img[i] = f32_to_bf16(pe.image_embeds[i]);
  const int steps = opt.teacher_force.empty() ? opt.max_tokens
                                              : static_cast<int>(opt.teacher_force.size());
  auto start = [&]() -> Status {
    DSOCR_TRY(dec.begin(ids, std::max(opt.max_tokens, steps), ban));
    DSOCR_TRY(dec.write_rows(1, img.data(), static_cast<int64_t>(img.size()) / cfg.dim));
    return Status::Ok();
  };
  DSOCR_TRY(start());
  HiddenTap tap;
  tap.positions = golden_hidden_positions(T);
  std::vector<float> logits0(cfg.vocab);
  DSOCR_TRY(dec.prefill(logits0.data(), &tap));
  push_prefill(dump, cfg, tap, logits0);
  stage("prefill");
  DSOCR_ASSIGN_OR_RETURN(GpuGeneration gen, dec.generate());
  DSOCR_TRY(dec.end());
  dump.push_back(i64_tensor("gen_ids", gen.ids));
  stage("generate");
  const std::vector<int32_t>& tf = opt.teacher_force.empty() ? gen.ids : opt.teacher_force;
  constexpr int kTop = 64;
  const int n = static_cast<int>(std::min<size_t>(tf.size(), steps));
  std::vector<float> vals(static_cast<size_t>(n) * kTop), logits(cfg.vocab);
  std::vector<int64_t> top(static_cast<size_t>(n) * kTop);
  DSOCR_TRY(start());
  DSOCR_TRY(dec.prefill(logits.data()));
  for (int i = 0; i < n; ++i) {
    if (i > 0) DSOCR_TRY(dec.forced_step(tf[i - 1], logits.data()));
    top_k_logits(logits.data(), cfg.vocab, kTop, vals.data() + i * kTop, top.data() + i * kTop);
  }
  DSOCR_TRY(dec.end());
  stage("teacher-force");
  dump.push_back(f32_tensor("tf_top64_vals", {n, kTop}, vals.data()));
  dump.push_back(make_tensor("tf_top64_ids", DType::I64, {n, kTop}, top.data(), top.size()));
  return Status::Ok();
}

Expected<TensorDump> run_golden(const GoldenOptions& opt,
                                const std::function<void(const std::string&)>& log) {
  using clock = std::chrono::steady_clock;
  auto t_stage = clock::now();
  auto stage = [&](const std::string& what) {
    auto now = clock::now();
    double ms = std::chrono::duration<double, std::milli>(now - t_stage).count();
    t_stage = now;
    if (log) log(strfmt("%-13s %9.1f ms", what.c_str(), ms));
  };

  DSOCR_ASSIGN_OR_RETURN(std::unique_ptr<CpuModel> model, CpuModel::open(opt.model_dir));
  const ModelConfig& cfg = model->cfg;
  DSOCR_ASSIGN_OR_RETURN(Mode mode, parse_mode(opt.mode));
  for (int32_t id : opt.teacher_force)
    if (id < 0 || id >= cfg.vocab)
      return Status::Error(
          strfmt("teacher-force id %d is outside the vocabulary [0, %d); check the ids", id, cfg.vocab));
  stage("load");

  PageViews page;
  if (!opt.pixels_from_golden.empty()) {
    DSOCR_ASSIGN_OR_RETURN(page, page_views_from_golden(opt.pixels_from_golden, mode));
  } else {
    DSOCR_ASSIGN_OR_RETURN(Image img, load_image(opt.image_path));
    DSOCR_ASSIGN_OR_RETURN(page, page_views_from_image(img, mode, opt.max_crops));
  }
  stage("preprocess");

  // Check the prompt against the vocabulary and the context before any compute.
  const int t = kTileSize / 64;
  const int64_t rows = image_embed_rows(page.S / 64, t, page.grid.w, page.grid.h);
  DSOCR_ASSIGN_OR_RETURN(std::vector<int32_t> ids, build_prompt(cfg, rows, opt.prompt_ids));
  const int64_t T = static_cast<int64_t>(ids.size());
  const int steps = opt.teacher_force.empty() ? opt.max_tokens
                                              : static_cast<int>(opt.teacher_force.size());
  const int new_tokens = std::max(opt.max_tokens, steps);
  if (T + new_tokens > cfg.max_pos)
    return Status::Error(strfmt("prompt of %lld tokens + %d new tokens exceeds the %d-token "
                                "context; lower --max-tokens",
                                static_cast<long long>(T), new_tokens, cfg.max_pos));

  std::unique_ptr<GpuModel> gm;
  PageEmbeds pe;
  if (opt.cuda) {
    PlanOptions po;
    po.mode = mode;
    po.max_new_tokens = std::max(64, new_tokens);
    po.device = 0;
    po.quant = opt.quant;
    DSOCR_ASSIGN_OR_RETURN(gm, GpuModel::open(opt.model_dir, po));
    stage("load gpu");
    DSOCR_ASSIGN_OR_RETURN(pe, encode_page_gpu(*gm, page));
  } else {
    DSOCR_ASSIGN_OR_RETURN(pe, encode_page_cpu(*model, page));
  }
  TensorDump dump;
  const int g = pe.global.q;
  dump.push_back(make_tensor("global_u8", DType::U8, {page.S, page.S, 3}, page.global.data(),
                             page.global.size()));
  dump.push_back(f32_tensor("sam_global", {1, cfg.sam.net3_dim, g, g}, pe.global.sam.data()));
  dump.push_back(f32_tensor("clip_global", {1, 1 + g * g, cfg.clip.dim}, pe.global.clip.data()));
  dump.push_back(f32_tensor("proj_global", {g * g, cfg.proj_out}, pe.global.proj.data()));
  if (page.n_tiles > 0) {
    dump.push_back(make_tensor("crops_u8", DType::U8, {page.n_tiles, kTileSize, kTileSize, 3},
                               page.tiles.data(), page.tiles.size()));
    dump.push_back(
        f32_tensor("proj_crops", {page.n_tiles, t * t, cfg.proj_out}, pe.tiles.proj.data()));
  }
  dump.push_back(f32_tensor("image_embeds", {pe.rows, cfg.dim}, pe.image_embeds.data()));
  stage("vision");

  dump.push_back(i64_tensor("input_ids", ids));
  CpuDecoder dec(cfg, model->w.dec, T + new_tokens);
  std::vector<float> embeds = prompt_embeddings(*model, dec, ids, pe.image_embeds);

  HiddenTap tap;
  tap.positions = golden_hidden_positions(T);
  std::vector<float> logits0(cfg.vocab);
  DSOCR_TRY(dec.forward(embeds.data(), T, logits0.data(), &tap));
  push_prefill(dump, cfg, tap, logits0);
  stage("prefill");

  // Free-running greedy generation with the HF no-repeat-ngram ban; without teacher-force ids
  // the raw top-64 of its own steps are the tf_top64 tensors.
  constexpr int kTop = 64;
  const bool tf_own = opt.teacher_force.empty();
  GenerationConfig gc;
  gc.max_new_tokens = opt.max_tokens;
  gc.eos_id = cfg.eos_id;
  gc.ngram_mode = opt.ngram > 0 ? GenerationConfig::NGram::kHF : GenerationConfig::NGram::kNone;
  gc.ngram = std::max(opt.ngram, 1);
  DSOCR_ASSIGN_OR_RETURN(Generation gen,
                         generate_cpu(*model, dec, ids, logits0, gc, tf_own ? kTop : 0));
  dump.push_back(i64_tensor("gen_ids", gen.ids));
  stage("generate");

  // Teacher forcing: step i sees prompt + tf[0..i-1].
  if (!tf_own) {
    dec.truncate(T);
    std::vector<float> logits = logits0, emb(cfg.dim);
    gen.top_vals.clear();
    gen.top_ids.clear();
    for (int i = 0; i < steps; ++i) {
      if (i > 0) {
        dec.embed(&opt.teacher_force[i - 1], 1, emb.data());
        DSOCR_TRY(dec.forward(emb.data(), 1, logits.data()));
      }
      gen.top_vals.resize(gen.top_vals.size() + kTop);
      gen.top_ids.resize(gen.top_ids.size() + kTop);
      top_k_logits(logits.data(), cfg.vocab, kTop, gen.top_vals.data() + i * kTop,
                   gen.top_ids.data() + i * kTop);
    }
    stage("teacher-force");
  }
  const int64_t n_steps = static_cast<int64_t>(gen.top_vals.size() / kTop);
  dump.push_back(f32_tensor("tf_top64_vals", {n_steps, kTop}, gen.top_vals.data()));
  dump.push_back(make_tensor("tf_top64_ids", DType::I64, {n_steps, kTop}, gen.top_ids.data(),
                             gen.top_ids.size()));
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
