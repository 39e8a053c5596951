#!/usr/bin/env bash
# Final H200 check of main after kernel/config changes (device tool, repo root, .peer and .whl carried):
#   the HIP top-k exactness + timing script, the sparse MLA side-by-side sweep with SGLang 0.5.23 and, with .whl carried,
#   aiter's Triton sparse MLA (numerics at full shapes + timing),
#   rocm-dsa run with the triton and hip providers (bf16 and FP8 cache, next_n 2), rocm-dsa check.
# Usage: OUT=$OUT [PARTS="topk sparse hip run check"] [RUN_PROVIDERS="triton hip"] bash scripts/h200_final_check.sh
set -uo pipefail
PARTS=" ${PARTS:-topk sparse hip run check} "
for p in $PARTS; do
  case $p in topk|sparse|hip|run|check) ;; *) echo "PARTS: unknown part '$p' (expected space-separated: topk sparse hip run check)" >&2; exit 2 ;; esac
done
has() { [[ "$PARTS" == *" $1 "* ]]; }
OUT=${OUT:-results/h200}
mkdir -p "$OUT/sparse" "$OUT/accept" "$OUT/hip-topk" "$OUT/topk-triton"
export COLUMNS=200 PYTHONUNBUFFERED=1
python3 -m pip install --no-deps --no-build-isolation -e . -q 2>&1 | grep -v -i warning
# Triton top-k: exactness + speed of the config and its variants; with results/topk_prev/topk_v1.py
# carried (an older topk.py) also that version side by side
PREV_META='{"RADIX_BITS":6,"BLOCK":2048,"PROGRAMS":1056,"num_warps":8,"SELECT_WARPS":16,"THRESHOLD_BLOCK":8192,"T_LEVELS":3,"SELECT_BLOCK":2048,"GROUPS_PER_K":4}'
if has topk; then
  prev=()
  [ -f results/topk_prev/topk_v1.py ] && prev=(--prev results/topk_prev/topk_v1.py --prev-meta "$PREV_META")
  python3 scripts/bench_topk_triton.py --out "$OUT/topk-triton" --budget "${TOPK_BUDGET:-120}" "${prev[@]}" \
      --variants @scripts/topk_variants_h200.json > "$OUT/topk-triton/log.txt" 2>&1
  echo "== bench_topk_triton rc=$?"; tail -25 "$OUT/topk-triton/log.txt"
fi
if has sparse; then
  # aiter's Triton sparse MLA as a second peer when its wheel files are carried (.whl/aiter_src)
  aiter=()
  [ -f .whl/aiter_src/aiter/ops/triton/unified_attention_sparse_mla.py ] && aiter=(--aiter-src .whl/aiter_src)
  python3 scripts/bench_sparse_mla.py --out "$OUT/sparse" --sglang-dir .peer/sglang_dsa "${aiter[@]}" \
      --budget "${BENCH_BUDGET:-200}" --reps 12 ${SPARSE_ARGS:-} > "$OUT/sparse/log.txt" 2>&1
  echo "== bench_sparse_mla rc=$?"; tail -3 "$OUT/sparse/log.txt"
fi
if has hip; then
  TORCH_CUDA_ARCH_LIST=9.0 python3 scripts/hip_topk_check.py --out "$OUT/hip-topk" > "$OUT/hip-topk/check.txt" 2>&1
  echo "== hip_topk_check rc=$?"; grep -E "64 x 131072 randn|zeros 90|passed" "$OUT/hip-topk/check.txt" | head -8
fi
a="--device cuda --lengths 3000,17000,40 --decode-steps 8"
has run && for p in ${RUN_PROVIDERS:-triton hip}; do
  rocm-dsa run $a --provider $p > "$OUT/accept/run-$p.txt" 2>&1; echo "== run --provider $p rc=$?"
  tail -4 "$OUT/accept/run-$p.txt"
done
if has run; then
  rocm-dsa run $a --provider triton --kv-cache fp8 --next-n 2 > "$OUT/accept/run-triton-fp8.txt" 2>&1
  echo "== run --provider triton fp8 next_n 2 rc=$?"; tail -4 "$OUT/accept/run-triton-fp8.txt"
fi
if has check; then
  rocm-dsa check > "$OUT/accept/check.txt" 2>&1; echo "== check rc=$?"; tail -6 "$OUT/accept/check.txt"
fi
