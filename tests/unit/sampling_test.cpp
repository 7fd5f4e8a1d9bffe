#include "runtime/sampling.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <vector>

#include "ref_test_util.h"

namespace dsocr {
namespace {

using test::Rng;
using V = std::vector<int32_t>;

// --- Literal transcriptions of the two Python rules, written independently of sampling.cpp ---

// transformers `_get_ngrams` + `_get_generated_ngrams` + `_calc_banned_ngram_tokens`.
V hf_python(const V& ids, int n) {
  const int64_t cur_len = static_cast<int64_t>(ids.size());
  if (cur_len + 1 < n) return {};
  std::map<V, V> generated;                   // prev_ngram_tuple -> followers
  for (int64_t i = 0; i + n <= cur_len; ++i)  // zip(*[gen_tokens[i:] for i in range(n)])
    generated[V(ids.begin() + i, ids.begin() + i + n - 1)].push_back(ids[i + n - 1]);
  const int64_t start_idx = cur_len + 1 - n;
  auto it = generated.find(V(ids.begin() + start_idx, ids.end()));
  if (it == generated.end()) return {};
  std::set<int32_t> s(it->second.begin(), it->second.end());
  return V(s.begin(), s.end());
}

// DeepSeek-OCR vLLM `NoRepeatNGramLogitsProcessor.__call__`.
V windowed_python(const V& ids, int n, int window, const std::set<int32_t>& whitelist) {
  const int64_t L = static_cast<int64_t>(ids.size());
  if (L < n) return {};
  // tuple(input_ids[-(n-1):]); Python's -0 slices the whole list.
  const V prefix = n == 1 ? ids : V(ids.end() - (n - 1), ids.end());
  std::set<int32_t> banned;
  for (int64_t i = std::max<int64_t>(0, L - window); i < L - n + 1; ++i) {
    const V ngram(ids.begin() + i, ids.begin() + i + n);
    if (V(ngram.begin(), ngram.end() - 1) == prefix) banned.insert(ngram.back());
  }
  for (int32_t w : whitelist) banned.erase(w);
  return V(banned.begin(), banned.end());
}

V incremental(const V& ids, int n) {
  NGramIndex idx(n);
  idx.push(ids);
  return idx.banned();
}

// --- argmax ---

TEST(Argmax, FirstMaxWinsLikeTorch) {
  const float a[] = {1.f, 3.f, 3.f, 2.f};
  EXPECT_EQ(argmax_ref(a, 4), 1);
  const float b[] = {-INFINITY, -INFINITY, -INFINITY};
  EXPECT_EQ(argmax_ref(b, 3), 0);
  const float c[] = {0.f, 0.f, 0.f};
  EXPECT_EQ(argmax_ref(c, 3), 0);
  const float d[] = {5.f, NAN, 7.f, NAN};
  EXPECT_EQ(argmax_ref(d, 4), 1);
  const float e[] = {-1.f, -0.5f, INFINITY, INFINITY};
  EXPECT_EQ(argmax_ref(e, 4), 2);
}

TEST(Argmax, RandomVocabWithPlantedTies) {
  Rng rng(51);
  const int64_t vocab = 129280;
  for (int rep = 0; rep < 20; ++rep) {
    std::vector<float> l = test::random_f32(rng, vocab, -20.f, 20.f);
    const int64_t a = rng.below(vocab), b = rng.below(vocab);
    l[a] = l[b] = 25.f;
    EXPECT_EQ(argmax_ref(l.data(), vocab), std::min(a, b));
  }
}

// --- HF rule: crafted cases ---

TEST(HfNoRepeat, CraftedSequences) {
  struct Case {
    V ids;
    int n;
    V want;
  };
  const Case cases[] = {
      {{5, 6, 5}, 2, {6}},
      {{5, 6, 5, 7, 5}, 2, {6, 7}},
      {{1, 2, 3, 1, 2}, 3, {3}},
      {{1, 2, 3, 1, 2, 4, 1, 2}, 3, {3, 4}},
      {{1, 2, 3, 4}, 3, {}},
      {{9, 9}, 3, {}},         // L + 1 == n: no complete 3-gram yet
      {{9}, 3, {}},            // L + 1 < n: HF early return
      {{9, 9, 9}, 3, {9}},     // (9,9,9) seen, suffix (9,9)
      {{4, 4, 7}, 1, {4, 7}},  // n = 1 bans every token already present
      {{}, 1, {}},
      {{}, 2, {}},
      {{3}, 2, {}},
      {{3, 3}, 2, {3}},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(hf_banned_scan(c.ids, c.n), c.want) << "n=" << c.n << " L=" << c.ids.size();
    EXPECT_EQ(incremental(c.ids, c.n), c.want) << "n=" << c.n << " L=" << c.ids.size();
    EXPECT_EQ(hf_python(c.ids, c.n), c.want) << "n=" << c.n << " L=" << c.ids.size();
  }
}

TEST(HfNoRepeat, TwentyGramAndPromptOnlyMatches) {
  Rng rng(52);
  V prompt(40);
  for (auto& t : prompt) t = static_cast<int32_t>(rng.below(129280));
  // Generated ids repeat prompt[5 .. 23]: the 19-token suffix matches, prompt[24] is banned
  // although the earlier occurrence lies entirely in the prompt.
  V ids = prompt;
  ids.insert(ids.end(), prompt.begin() + 5, prompt.begin() + 24);
  EXPECT_EQ(hf_banned_scan(ids, 20), V{prompt[24]});
  EXPECT_EQ(incremental(ids, 20), V{prompt[24]});
  // One token short of the 19-token suffix: nothing.
  ids.erase(ids.begin() + 40);
  EXPECT_EQ(hf_banned_scan(ids, 20), V{});
  EXPECT_EQ(incremental(ids, 20), V{});
  // The windowed rule sees generated ids only: the same continuation is not banned there.
  const V gen(prompt.begin() + 5, prompt.begin() + 24);
  EXPECT_EQ(windowed_banned_scan(gen, 20, 90, {}), V{});
}

// Random sequences over small alphabets with copied segments (long repeats), checked at every
// length: incremental == plain scan == literal Python transcription.
V random_repetitive(Rng& rng, int64_t len, int alphabet) {
  V ids;
  while (static_cast<int64_t>(ids.size()) < len) {
    if (ids.size() > 30 && rng.below(3) == 0) {
      const int64_t start = rng.below(static_cast<int64_t>(ids.size()) - 25);
      const int64_t n = 5 + rng.below(20);
      for (int64_t i = 0; i < n; ++i) ids.push_back(ids[start + i]);
    } else {
      ids.push_back(static_cast<int32_t>(rng.below(alphabet)));
    }
  }
  ids.resize(len);
  return ids;
}

TEST(HfNoRepeat, IncrementalEqualsScanOnLongSequences) {
  Rng rng(53);
  int64_t nonempty = 0;
  for (int n : {1, 2, 3, 5, 20, 35}) {
    const V ids = random_repetitive(rng, 1500, n <= 2 ? 50 : 4);
    NGramIndex idx(n);
    for (int64_t L = 0; L <= static_cast<int64_t>(ids.size()); ++L) {
      const V prefix(ids.begin(), ids.begin() + L);
      const V want = hf_banned_scan(prefix, n);
      ASSERT_EQ(idx.banned(), want) << "n=" << n << " L=" << L;
      if (L % 97 == 0) {
        ASSERT_EQ(hf_python(prefix, n), want) << "n=" << n << " L=" << L;
      }
      nonempty += !want.empty();
      if (L < static_cast<int64_t>(ids.size())) idx.push(ids[L]);
    }
  }
  EXPECT_GT(nonempty, 1000);  // the sequences really exercise the ban
}

// --- windowed rule ---

TEST(WindowedNoRepeat, CraftedSequences) {
  const V gen = {1, 2, 9, 9, 9, 9, 1, 2};
  // window 5: n-grams may start at i in [3, 6): (9,9,9) (9,9,1) (9,1,2) -> none follow (1,2).
  EXPECT_EQ(windowed_banned_scan(gen, 3, 5, {}), V{});
  // window 8 reaches (1,2,9) at i = 0.
  EXPECT_EQ(windowed_banned_scan(gen, 3, 8, {}), V{9});
  EXPECT_EQ(windowed_banned_scan(gen, 3, 100, {}), V{9});
  const V white = {9, 128821};
  EXPECT_EQ(windowed_banned_scan(gen, 3, 8, white), V{});
  // n = 2, suffix (2): followers of 2 are 9 (i = 1); window 7 starts at i = 1.
  EXPECT_EQ(windowed_banned_scan(gen, 2, 7, {}), V{9});
  EXPECT_EQ(windowed_banned_scan(gen, 2, 6, {}), V{});
  // n = 1: the Python slice quirk bans nothing.
  EXPECT_EQ(windowed_banned_scan(gen, 1, 90, {}), V{});
  // L < n.
  EXPECT_EQ(windowed_banned_scan(V{1, 2}, 3, 90, {}), V{});
  EXPECT_EQ(windowed_banned_scan(V{2, 2, 2}, 3, 90, {}), V{2});
}

TEST(WindowedNoRepeat, MatchesPythonOnRandomSequences) {
  Rng rng(54);
  const std::set<int32_t> white = {1, 3};
  const V white_v(white.begin(), white.end());
  int64_t nonempty = 0;
  for (int n : {1, 2, 3, 5, 30}) {
    for (int window : {1, 5, 50, 90}) {
      const V ids = random_repetitive(rng, 400, n <= 2 ? 12 : 4);
      for (int64_t L = 0; L <= 400; ++L) {
        const V prefix(ids.begin(), ids.begin() + L);
        const V want = windowed_python(prefix, n, window, white);
        ASSERT_EQ(windowed_banned_scan(prefix, n, window, white_v), want)
            << "n=" << n << " window=" << window << " L=" << L;
        nonempty += !want.empty();
      }
    }
  }
  EXPECT_GT(nonempty, 500);
}

// --- GenerationState ---

// A fake model. Token i = 5q + r scores -((r - last - 1) mod 5) - 5q: greedy decoding loops
// 0,1,2,3,4,0,1,... inside the first block of 5 until the n-gram ban pushes it to the next
// choices (other orders within the block, then higher blocks). All scores are distinct.
std::vector<float> fake_logits(const V& ids, int64_t vocab) {
  std::vector<float> l(vocab);
  const int32_t last = ids.back();
  for (int64_t i = 0; i < vocab; ++i)
    l[i] = -static_cast<float>(((i % 5) - last - 1 + 5 * 64) % 5) - 5.f * static_cast<float>(i / 5);
  return l;
}

// Next token = (last + 1) % vocab.
std::vector<float> successor_logits(const V& ids, int64_t vocab) {
  std::vector<float> l(vocab);
  for (int64_t i = 0; i < vocab; ++i)
    l[i] = -static_cast<float>((i - ids.back() - 1 + vocab) % vocab);
  return l;
}

// Oracle: the plain loop of HF generate with the plain-scan ban.
V oracle_generate(V ids, int n, int steps, int64_t vocab, int32_t eos) {
  const size_t p = ids.size();
  for (int s = 0; s < steps; ++s) {
    std::vector<float> l = fake_logits(ids, vocab);
    for (int32_t b : hf_banned_scan(ids, n)) l[b] = -INFINITY;
    const int32_t id = argmax_ref(l.data(), vocab);
    ids.push_back(id);
    if (id == eos) break;
  }
  return V(ids.begin() + p, ids.end());
}

TEST(Generation, HfBanMatchesOracleLoop) {
  const int64_t vocab = 64;
  for (int n : {2, 3, 20}) {
    GenerationConfig cfg;
    cfg.max_new_tokens = 200;
    cfg.eos_id = 63;  // reached only after the ban has pushed the loop around
    cfg.ngram_mode = GenerationConfig::NGram::kHF;
    cfg.ngram = n;
    const V prompt = {0, 10, 11, 12};
    GenerationState g(cfg, prompt);
    while (!g.done()) {
      std::vector<float> l = fake_logits(g.ids(), vocab);
      g.step(l.data(), vocab);
    }
    const V want = oracle_generate(prompt, n, 200, vocab, 63);
    EXPECT_EQ(V(g.generated().begin(), g.generated().end()), want) << "n=" << n;
    EXPECT_EQ(g.ids().size(), prompt.size() + want.size());
    // The ban changed the path (n = 1000 never bans within 204 ids).
    EXPECT_NE(want, oracle_generate(prompt, 1000, 200, vocab, 63)) << "n=" << n;
    if (n == 2) {  // every bigram inside {0..4} gets used up: the path leaves the first block
      EXPECT_TRUE(std::any_of(want.begin(), want.end(), [](int32_t t) { return t >= 5; }));
    }
    std::printf("  n=%d: %zu tokens, stop %s\n", n, want.size(),
                g.stop_reason() == StopReason::kEos ? "eos" : "max");
  }
}

TEST(Generation, BanIsAppliedToLogitsInPlace) {
  GenerationConfig cfg;
  cfg.ngram_mode = GenerationConfig::NGram::kHF;
  cfg.ngram = 2;
  const V prompt = {4, 2, 4};
  GenerationState g(cfg, prompt);
  EXPECT_EQ(g.banned_next(), V{2});
  std::vector<float> l = {0.f, 1.f, 9.f, 3.f, 2.f};
  EXPECT_EQ(g.step(l.data(), 5), 3);
  EXPECT_EQ(l[2], -INFINITY);
  EXPECT_EQ(l[3], 3.f);
}

TEST(Generation, StopsAtEosAndMaxTokens) {
  const int64_t vocab = 8;
  {
    GenerationConfig cfg;
    cfg.ngram_mode = GenerationConfig::NGram::kNone;
    cfg.max_new_tokens = 100;
    GenerationState g(cfg, V{0, 5});
    // Next-token rule (last + 1) % 8 from 5: 6, 7, 0, 1 = EOS.
    while (!g.done()) {
      std::vector<float> l = successor_logits(g.ids(), vocab);
      g.step(l.data(), vocab);
    }
    EXPECT_EQ(g.stop_reason(), StopReason::kEos);
    EXPECT_EQ(V(g.generated().begin(), g.generated().end()), (V{6, 7, 0, 1}));
  }
  {
    GenerationConfig cfg;
    cfg.ngram_mode = GenerationConfig::NGram::kNone;
    cfg.max_new_tokens = 3;
    GenerationState g(cfg, V{0, 2});
    int steps = 0;
    while (!g.done()) {
      std::vector<float> l = successor_logits(g.ids(), vocab);
      g.step(l.data(), vocab);
      ++steps;
    }
    EXPECT_EQ(steps, 3);
    EXPECT_EQ(g.stop_reason(), StopReason::kMaxTokens);
    EXPECT_EQ(V(g.generated().begin(), g.generated().end()), (V{3, 4, 5}));
  }
}

TEST(Generation, WindowedModeUsesGeneratedIdsOnly) {
  GenerationConfig cfg;
  cfg.ngram_mode = GenerationConfig::NGram::kWindowed;
  cfg.ngram = 2;
  cfg.window = 90;
  cfg.whitelist = {7};
  GenerationState g(cfg, V{3, 4, 3});  // the prompt's (3,4) must not ban 4
  EXPECT_EQ(g.banned_next(), V{});
  g.accept(5);
  g.accept(6);
  g.accept(5);
  EXPECT_EQ(g.banned_next(), V{6});
  g.accept(7);
  g.accept(5);
  EXPECT_EQ(g.banned_next(), V{6});  // 5 -> 6 and 5 -> 7, but 7 is whitelisted
  EXPECT_EQ(g.generated().size(), 5u);
}

}  // namespace
}  // namespace dsocr
