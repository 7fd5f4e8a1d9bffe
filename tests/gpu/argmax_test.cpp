// Ban mask + argmax (kernels/argmax.cu) against argmax_ref with the bans applied on the host.
#include "kernels/argmax.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "gpu/decoder_test_util.h"
#include "runtime/sampling.h"

namespace dsocr::test {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Runs the kernel; checks the index against argmax_ref of the host-banned logits and that the
// banned entries (in range) are -inf on the device afterwards, the rest unchanged.
void run_case(const std::string& name, std::vector<float> logits, std::vector<int32_t> banned,
              bool pass_null_ban = false) {
  const int64_t n = static_cast<int64_t>(logits.size());
  DevBuf<float> dl(logits);
  DevBuf<int32_t> db(banned.empty() ? std::vector<int32_t>{0} : banned);
  DevBuf<int32_t> dnb(std::vector<int32_t>{static_cast<int32_t>(banned.size())});
  DevBuf<int32_t> dout(1);
  DevBuf<uint8_t> ws(argmax_workspace_bytes(n));
  LAUNCH_OK(argmax_banned(dl.get(), n, pass_null_ban ? nullptr : db.get(),
                          pass_null_ban ? nullptr : dnb.get(), dout.get(), ws.get(), nullptr));
  for (int32_t id : banned)
    if (id >= 0 && id < n) logits[id] = -kInf;
  const int32_t want = argmax_ref(logits.data(), n);
  const int32_t got = dout.download()[0];
  EXPECT_EQ(got, want) << name;
  const std::vector<float> after = dl.download();
  for (int64_t i = 0; i < n; ++i) {
    const bool same = (std::isnan(after[i]) && std::isnan(logits[i])) || after[i] == logits[i];
    ASSERT_TRUE(same) << name << " logit " << i;
  }
  std::printf("  %-50s n=%lld banned=%zu -> %d\n", name.c_str(), static_cast<long long>(n),
              banned.size(), got);
}

TEST(Argmax, VocabularyWithBans) {
  DSOCR_SKIP_WITHOUT_GPU();
  const int64_t n = 129280;
  for (uint64_t seed : {1, 2, 3}) {
    Rng rng(seed);
    std::vector<float> l = random_f32(rng, n, -20.f, 20.f);
    run_case("random", l, {});
    run_case("random, null ban list", l, {}, true);
    // Ban the top 50 (the answer moves each time) plus junk ids.
    std::vector<float> tmp = l;
    std::vector<int32_t> ban;
    for (int i = 0; i < 50; ++i) {
      const int32_t a = argmax_ref(tmp.data(), n);
      ban.push_back(a);
      tmp[a] = -kInf;
    }
    ban.push_back(-5), ban.push_back(static_cast<int32_t>(n)),
        ban.push_back(ban[3]);  // ignored / dup
    run_case("top-50 banned + out-of-range + duplicate", l, ban);
  }
}

TEST(Argmax, TiesNanInfAndOddSizes) {
  DSOCR_SKIP_WITHOUT_GPU();
  Rng rng(7);
  for (int64_t n : {1, 2, 3, 5, 2047, 2048, 2049, 4099, 129280, 1000003}) {
    std::vector<float> l = random_f32(rng, n, -1.f, 1.f);
    run_case("odd n", l, {});
    // Ties at the maximum: the lowest index wins (including across pass-1 blocks).
    std::vector<float> t = l;
    for (int64_t i = n / 3; i < n; i += std::max<int64_t>(1, n / 7)) t[i] = 5.f;
    run_case("ties", t, {});
    std::vector<float> inf(n, -kInf);
    run_case("all -inf", inf, {});
    if (n > 4) {
      std::vector<float> nan = l;
      nan[n - 2] = NAN;
      nan[n - 1] = NAN;
      nan[1] = 1e30f;
      run_case("NaN beats everything, first NaN wins", nan, {});
    }
    if (n > 4 && n <= 129280) {
      std::vector<float> all_banned = l;
      std::vector<int32_t> ban;
      for (int64_t i = 0; i < n; ++i) ban.push_back(static_cast<int32_t>(i));
      run_case("everything banned -> 0", all_banned, ban);
    }
  }
}

}  // namespace
}  // namespace dsocr::test
