#include "runtime/cpu_model.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>

#include "loader/schema.h"
#include "runtime/assemble.h"

namespace dsocr {

Expected<std::unique_ptr<CpuModel>> CpuModel::open(const std::string& dir) {
  auto m = std::make_unique<CpuModel>();
  DSOCR_ASSIGN_OR_RETURN(m->ckpt, Checkpoint::open_dir(dir));
  DSOCR_ASSIGN_OR_RETURN(m->cfg, load_config(dir + "/config.json"));
  DSOCR_TRY(validate_checkpoint(m->ckpt, checkpoint_schema(m->cfg)));
  const Checkpoint& ck = m->ckpt;
  DSOCR_ASSIGN_OR_RETURN(m->w, bind_weights(m->cfg, [&](const std::string& name) {
                           const TensorInfo* t = ck.find(name);
                           return t ? static_cast<const void*>(ck.bytes(*t)) : nullptr;
                         }));
  return m;
}

Expected<PageViews> page_views_from_image(const Image& image, Mode mode, int max_crops) {
  PreprocessOptions po;
  po.mode = mode;
  po.max_crops = max_crops;
  DSOCR_ASSIGN_OR_RETURN(Preprocessed pre, preprocess_image(image, po));
  PageViews p;
  p.mode = mode;
  p.S = pre.global_size;
  p.global = std::move(pre.global);
  p.grid = pre.grid;
  p.n_tiles = pre.n_tiles;
  p.tiles = std::move(pre.tiles);
  p.image_w = image.width;
  p.image_h = image.height;
  return p;
}

Expected<PageViews> page_views_from_golden(const std::string& path, Mode mode) {
  const ModeSpec& spec = mode_spec(mode);
  DSOCR_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(path));
  PageViews p;
  p.mode = mode;
  const TensorInfo* g = f.find("global_u8");
  if (!g || g->dtype != DType::U8 || g->shape.size() != 3 || g->shape[0] != g->shape[1] ||
      g->shape[2] != 3)
    return Status::Error(path + ": no U8 tensor global_u8 [S,S,3]; pass a golden case file");
  p.S = static_cast<int>(g->shape[0]);
  const int expect_S = spec.crop ? spec.base_size : spec.image_size;
  if (p.S != expect_S)
    return Status::Error(strfmt("%s: global_u8 is %dx%d but --mode %s needs %dx%d; pass the "
                                "case's mode", path.c_str(), p.S, p.S, spec.name, expect_S,
                                expect_S));
  p.global.assign(f.bytes(*g), f.bytes(*g) + g->nbytes);
  const TensorInfo* c = f.find("crops_u8");
  if (!c) return p;
  if (!spec.crop || c->dtype != DType::U8 || c->shape.size() != 4 || c->shape[1] != kTileSize ||
      c->shape[2] != kTileSize || c->shape[3] != 3)
    return Status::Error(path + ": crops_u8 must be U8 [n,640,640,3] and needs --mode gundam");
  // The grid is not in the tensor; the case's "meta" metadata (its cases.json entry) has it.
  int w = 0, h = 0;
  auto meta = f.metadata().find("meta");
  if (meta != f.metadata().end()) {
    const std::string& m = meta->second;
    size_t k = m.find("\"crop_grid_wh\"");
    size_t b = k == std::string::npos ? k : m.find('[', k);
    if (b != std::string::npos && std::sscanf(m.c_str() + b, "[ %d , %d ]", &w, &h) != 2) w = h = 0;
  }
  if (w < 1 || h < 1 || w * h != c->shape[0])
    return Status::Error(path + ": cannot read crop_grid_wh for crops_u8 from its metadata");
  p.grid = TileGrid{w, h};
  p.n_tiles = w * h;
  p.tiles.assign(f.bytes(*c), f.bytes(*c) + c->nbytes);
  return p;
}

Expected<PageEmbeds> encode_page_cpu(const CpuModel& m, const PageViews& page) {
  PageEmbeds e;
  std::vector<float> pixels(page.global.size());
  normalize_views_hwc(page.global.data(), page.global.size(), pixels.data());
  DSOCR_ASSIGN_OR_RETURN(e.global, encode_views_cpu(m.cfg, m.w, pixels.data(), 1, page.S));
  const int t = kTileSize / 64;
  if (page.n_tiles > 0) {
    pixels.resize(page.tiles.size());
    normalize_views_hwc(page.tiles.data(), page.tiles.size(), pixels.data());
    DSOCR_ASSIGN_OR_RETURN(e.tiles,
                           encode_views_cpu(m.cfg, m.w, pixels.data(), page.n_tiles, kTileSize));
  }
  e.rows = image_embed_rows(e.global.q, t, page.grid.w, page.grid.h);
  e.image_embeds.resize(e.rows * m.cfg.dim);
  assemble_image_embeds(e.global.proj.data(), e.global.q,
                        page.n_tiles ? e.tiles.proj.data() : nullptr, t, page.grid.w, page.grid.h,
                        m.w.proj.image_newline, m.w.proj.view_sep, e.image_embeds.data(),
                        m.cfg.dim);
  return e;
}

Expected<std::vector<int32_t>> build_prompt(const ModelConfig& cfg, int64_t image_rows,
                                            const std::vector<int32_t>& text_ids) {
  for (int32_t id : text_ids)
    if (id < 0 || id >= cfg.vocab)
      return Status::Error(strfmt("prompt id %d is outside the vocabulary [0, %d); check the ids",
                                  id, cfg.vocab));
  std::vector<int32_t> ids = {cfg.bos_id};
  ids.insert(ids.end(), image_rows, cfg.image_token_id);
  ids.insert(ids.end(), text_ids.begin(), text_ids.end());
  return ids;
}

std::vector<float> prompt_embeddings(const CpuModel& m, const CpuDecoder& dec,
                                     const std::vector<int32_t>& ids,
                                     const std::vector<float>& image_embeds) {
  const int dim = m.cfg.dim;
  const int64_t T = static_cast<int64_t>(ids.size());
  std::vector<float> embeds(T * dim);
  dec.embed(ids.data(), T, embeds.data());
  size_t r = 0;
  for (int64_t p = 0; p < T && (r + 1) * dim <= image_embeds.size(); ++p)
    if (ids[p] == m.cfg.image_token_id)
      std::memcpy(&embeds[p * dim], &image_embeds[(r++) * dim], sizeof(float) * dim);
  return embeds;
}

void top_k_logits(const float* logits, int64_t vocab, int k, float* vals, int64_t* ids) {
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

Expected<Generation> generate_cpu(const CpuModel& m, CpuDecoder& dec,
                                  const std::vector<int32_t>& prompt, std::vector<float> logits,
                                  const GenerationConfig& gc, int top_k,
                                  const std::function<bool(int32_t)>& on_token) {
  Generation g;
  GenerationState gen(gc, prompt);
  std::vector<float> emb(m.cfg.dim);
  while (!gen.done()) {
    if (top_k > 0) {
      g.top_vals.resize(g.top_vals.size() + top_k);
      g.top_ids.resize(g.top_ids.size() + top_k);
      top_k_logits(logits.data(), m.cfg.vocab, top_k, g.top_vals.data() + g.top_vals.size() - top_k,
                   g.top_ids.data() + g.top_ids.size() - top_k);
    }
    int32_t next = gen.step(logits.data(), m.cfg.vocab);  // bans, argmax, appends
    if (on_token && !on_token(next)) break;
    if (gen.done()) break;
    dec.embed(&next, 1, emb.data());
    DSOCR_TRY(dec.forward(emb.data(), 1, logits.data()));
  }
  g.ids.assign(gen.generated().begin(), gen.generated().end());
  g.stop = gen.stop_reason();
  return g;
}

}  // namespace dsocr
