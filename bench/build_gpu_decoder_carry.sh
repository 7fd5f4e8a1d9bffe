#!/usr/bin/env bash
# Builds what bench/device_gpu_decoder.sh runs on the GPU machine: the decoder-kernel GPU tests,
# dsocr_microbench, and mutants -- the same tests linked against a kernel with one planted bug each,
# which must FAIL there (STYLE.md: "each new test should be seen failing once").
#
#   bash bench/build_gpu_decoder_carry.sh [BUILD_DIR] [CARRY_DIR]
#     BUILD_DIR (default build-gdec): a configured CMake build dir, e.g.
#       cmake -S . -B build-gdec -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSOCR_CUDA_ARCHS=90a
#     CARRY_DIR (default build-gdec-carry): tests/, bench/, lib/ (libbenchmark, absent on the GPU
#       image), _mut/ -- small enough to travel with the working tree (device tool `carry`).
# A mutant links its mutated kernel object before libdsocr_kernels.a, so the archive's own copy of
# that file is never pulled in.
set -euo pipefail
B=${1:-build-gdec}
C=${2:-build-gdec-carry}
ROOT=$(pwd)
TESTS="gemv rmsnorm rope decode_attention argmax moe_decode"
targets=""
for t in $TESTS; do targets="$targets gpu_${t}_test"; done
ninja -C "$B" -j2 $targets dsocr_microbench

rm -rf "$C"
mkdir -p "$C/tests" "$C/bench" "$C/lib" "$C/_mut"
for t in $TESTS; do cp "$B/tests/gpu_${t}_test" "$C/tests/"; done
cp "$B/bench/dsocr_microbench" "$C/bench/"
cp -L "$(ldd "$B/bench/dsocr_microbench" | awk '/libbenchmark/ { print $3 }')" "$C/lib/"

# name ~ test ~ kernel source ~ exact text ~ replacement   (\n in the texts: a newline)
MUTANTS=$(cat <<'EOF'
mma_fragment~gemv~kernels/gemv.cu~wv[u][t][0].x, wv[u][t][1].x, wv[u][t][0].y~wv[u][t][0].x, wv[u][t][0].y, wv[u][t][1].x
splitk_drops_warp~gemv~kernels/gemv.cu~for (int q = 0; q < ks; ++q) v += s_red[q][t][r];~for (int q = 0; q + 1 < ks; ++q) v += s_red[q][t][r];
attn_no_rescale~decode_attention~kernels/decode_attention.cu~for (int e = 0; e < 8; ++e) acc[e] *= alpha;~(void)alpha;
attn_combine_drops_split~decode_attention~kernels/decode_attention.cu~for (int i = grp; i < ns; i += kCombineGroups)~for (int i = grp; i + 1 < ns; i += kCombineGroups)
moe_drops_shared_slice~moe_decode~kernels/moe_decode.cu~const int n_items = n_unique + (shared_inter + moe_inter - 1) / moe_inter;~const int n_items = n_unique + (shared_inter + moe_inter - 1) / moe_inter - 1;
router_tie_higher_id~moe_decode~kernels/moe_decode.cu~if (op > bp || (op == bp && oi < bi)) bp = op, bi = oi;~if (op > bp || (op == bp && oi > bi)) bp = op, bi = oi;
rmsnorm_mean_divisor~rmsnorm~kernels/rmsnorm.cu~const float r = 1.f / sqrtf(tot / static_cast<float>(dim) + eps);~const float r = 1.f / sqrtf(tot / static_cast<float>(dim + 8) + eps);
rope_sin_sign~rope~kernels/rope.cu~y1[e] = x1[e] * c[e] + x0[e] * s[e];~y1[e] = x1[e] * c[e] - x0[e] * s[e];
argmax_ties_high~argmax~kernels/argmax.cu~  return ia < ib;\n}~  return ia > ib;\n}
EOF
)
mkdir -p "$B/_mut"
while IFS='~' read -r name test src old new; do
  [ -n "$name" ] || continue
  out="$B/_mut/${name}.cu"
  python3 - "$ROOT/$src" "$out" "$old" "$new" <<'PY'
import sys
src, out, old, new = sys.argv[1:5]
old = old.replace('\\n', '\n'); new = new.replace('\\n', '\n')
s = open(src).read()
if s.count(old) != 1:
    sys.exit(f"mutant pattern found {s.count(old)} times in {src}: {old!r}")
open(out, 'w').write(s.replace(old, new))
PY
  obj="kernels/CMakeFiles/dsocr_kernels.dir/$(basename "$src").o"
  compile=$(ninja -C "$B" -t commands "$obj" | tail -1)
  compile=${compile/-c $ROOT\/$src -o $obj/-c $ROOT/$out -o _mut/${name}.o}
  compile=$(echo "$compile" | sed -E 's/ -MD -MT [^ ]+ -MF [^ ]+//')
  (cd "$B" && eval "$compile")
  link=$(ninja -C "$B" -t commands "tests/gpu_${test}_test" | tail -1)
  testobj="tests/CMakeFiles/gpu_${test}_test.dir/gpu/${test}_test.cpp.o"
  link=${link/$testobj -o tests\/gpu_${test}_test/$testobj _mut/${name}.o -o _mut/gpu_${test}_test__${name}}
  (cd "$B" && eval "$link")
  cp "$B/_mut/gpu_${test}_test__${name}" "$C/_mut/"
  echo "mutant $name -> $C/_mut/gpu_${test}_test__${name}"
done <<<"$MUTANTS"
du -sh "$C"
