// The decode step's sampling kernels (kernels/ngram.cu) against the CPU rules of
// runtime/sampling.h: the n-gram ban as a set, the accept/stop bookkeeping, the embedding gather.
#include "kernels/ngram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "gpu/decoder_test_util.h"
#include "runtime/sampling.h"

namespace dsocr::test {
namespace {

std::set<int32_t> gpu_banned(const std::vector<int32_t>& ids, int prompt_len, const NGramBan& ban) {
  DevBuf<int32_t> dids(ids), dbanned(ids.size() + 1);
  DecodeSeqState s;
  s.len = static_cast<int32_t>(ids.size()), s.prompt_len = prompt_len, s.n_banned = -1;
  DevBuf<DecodeSeqState> dst(1);
  EXPECT_EQ(cudaMemcpy(dst.get(), &s, sizeof s, cudaMemcpyHostToDevice), cudaSuccess);
  EXPECT_EQ(ngram_ban(dids.get(), dst.get(), ban, dbanned.get(), nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(&s, dst.get(), sizeof s, cudaMemcpyDeviceToHost), cudaSuccess);
  const std::vector<int32_t> b = dbanned.download();
  EXPECT_GE(s.n_banned, 0);
  return std::set<int32_t>(b.begin(), b.begin() + std::max(0, s.n_banned));
}

TEST(NGramBan, MatchesTheCpuRules) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(5);
  int checked = 0, nonempty = 0;
  for (int trial = 0; trial < 60; ++trial) {
    // Small alphabets and pasted repeats make matches frequent.
    const int alphabet = 2 + static_cast<int>(rng.next() % 6);
    const int L = 1 + static_cast<int>(rng.next() % (trial < 50 ? 300 : 3000));
    std::vector<int32_t> ids(L);
    for (auto& v : ids) v = static_cast<int32_t>(rng.next() % alphabet) + 128800;
    const int prompt_len = static_cast<int>(rng.next() % (L + 1));
    for (int n : {1, 2, 3, 5, 20}) {
      NGramBan hf;
      hf.mode = NGramBan::kHF, hf.n = n;
      const std::vector<int32_t> ref = hf_banned_scan(ids, n);
      const std::set<int32_t> got = gpu_banned(ids, prompt_len, hf);
      EXPECT_EQ(got, std::set<int32_t>(ref.begin(), ref.end())) << "HF L=" << L << " n=" << n;
      NGramBan win;
      win.mode = NGramBan::kWindowed, win.n = n, win.window = 1 + static_cast<int>(rng.next() % 120);
      win.n_whitelist = 2, win.whitelist[0] = 128801, win.whitelist[1] = 128803;
      const std::span<const int32_t> gen(ids.data() + prompt_len, ids.size() - prompt_len);
      const std::vector<int32_t> wl = {128801, 128803};
      const std::vector<int32_t> wref = windowed_banned_scan(gen, n, win.window, wl);
      EXPECT_EQ(gpu_banned(ids, prompt_len, win), std::set<int32_t>(wref.begin(), wref.end()))
          << "windowed L=" << L << " n=" << n << " window=" << win.window;
      ++checked;
      nonempty += !ref.empty();
    }
  }
  EXPECT_GT(nonempty, checked / 4);  // the cases exercise real bans
  NGramBan none;
  EXPECT_TRUE(gpu_banned({1, 1, 1, 1}, 0, none).empty());
}

TEST(NGramBan, AcceptStopsOnEosMaxAndCapacity) {
  DSOCR_SKIP_WITHOUT_GPU();
  const int32_t cap = 8, eos = 1;
  DevBuf<int32_t> ids(std::vector<int32_t>(cap, 0));
  DevBuf<DecodeSeqState> dst(1);
  int32_t max_new = 10;
  auto set_state = [&](int32_t len, int32_t token, int32_t generated) {
    DecodeSeqState s;
    s.len = len, s.pos = len - 1, s.token = token, s.generated = generated;
    s.max_new = max_new, s.capacity = cap, s.eos_id = eos;
    ASSERT_EQ(cudaMemcpy(dst.get(), &s, sizeof s, cudaMemcpyHostToDevice), cudaSuccess);
  };
  auto accept = [&] {
    EXPECT_EQ(decode_accept(ids.get(), dst.get(), nullptr), cudaSuccess);
    DecodeSeqState s;
    EXPECT_EQ(cudaMemcpy(&s, dst.get(), sizeof s, cudaMemcpyDeviceToHost), cudaSuccess);
    return s;
  };
  set_state(3, 42, 0);
  DecodeSeqState s = accept();
  EXPECT_EQ(s.len, 4);
  EXPECT_EQ(s.pos, 3);
  EXPECT_EQ(s.generated, 1);
  EXPECT_EQ(s.stop, kRunning);
  EXPECT_EQ(ids.download()[3], 42);
  set_state(3, eos, 0);
  EXPECT_EQ(accept().stop, kStopEos);
  max_new = 5;
  set_state(3, 7, 4);
  EXPECT_EQ(accept().stop, kStopMaxTokens);
  max_new = 10;
  set_state(7, 7, 0);
  s = accept();
  EXPECT_EQ(s.stop, kStopCapacity);  // len 8 == capacity: no room for the next K/V
  EXPECT_EQ(s.len, 8);
  const DecodeSeqState again = accept();  // a stopped state is left alone
  EXPECT_EQ(again.len, 8);
  EXPECT_EQ(again.generated, s.generated);
}

TEST(NGramBan, EmbedRowsGathersTableRows) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(9);
  const int64_t vocab = 300, dim = 1280, ldo = 1288;
  const std::vector<uint16_t> table = random_bf16(rng, vocab * dim);
  const std::vector<int32_t> ids = {5, 299, 0, 5, 300, -2};
  DevBuf<uint16_t> dt(table), dout(ids.size() * ldo);
  DevBuf<int32_t> dids(ids);
  LAUNCH_OK(embed_rows(dids.get(), dt.get(), dout.get(), ldo, static_cast<int>(ids.size()), vocab,
                       dim, nullptr));
  const std::vector<uint16_t> out = dout.download();
  for (size_t t = 0; t < ids.size(); ++t)
    for (int64_t c = 0; c < dim; ++c) {
      const uint16_t want = ids[t] >= 0 && ids[t] < vocab ? table[ids[t] * dim + c] : 0;
      ASSERT_EQ(out[t * ldo + c], want) << "t=" << t << " c=" << c;
    }
}

}  // namespace
}  // namespace dsocr::test
