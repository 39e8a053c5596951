#!/usr/bin/env bash
# Final H200 check of main after kernel/config changes (device tool, repo root, .peer carried):
#   the sparse MLA side-by-side sweep with SGLang 0.5.23 (numerics at full shapes + timing),
#   rocm-dsa run with the triton and hip providers (bf16 and FP8 cache, next_n 2), rocm-dsa check.
# Usage: OUT=$OUT bash scripts/h200_final_check.sh
set -uo pipefail
OUT=${OUT:-results/h200}
mkdir -p "$OUT/sparse" "$OUT/accept"
export COLUMNS=200 PYTHONUNBUFFERED=1
python3 -m pip install --no-deps --no-build-isolation -e . -q 2>&1 | grep -v -i warning
python3 scripts/bench_sparse_mla.py --out "$OUT/sparse" --sglang-dir .peer/sglang_dsa \
    --budget "${BENCH_BUDGET:-200}" --reps 12 > "$OUT/sparse/log.txt" 2>&1
echo "== bench_sparse_mla rc=$?"; tail -3 "$OUT/sparse/log.txt"
a="--device cuda --lengths 3000,17000,40 --decode-steps 8"
for p in triton hip; do
  rocm-dsa run $a --provider $p > "$OUT/accept/run-$p.txt" 2>&1; echo "== run --provider $p rc=$?"
  tail -4 "$OUT/accept/run-$p.txt"
done
rocm-dsa run $a --provider triton --kv-cache fp8 --next-n 2 > "$OUT/accept/run-triton-fp8.txt" 2>&1
echo "== run --provider triton fp8 next_n 2 rc=$?"; tail -4 "$OUT/accept/run-triton-fp8.txt"
rocm-dsa check > "$OUT/accept/check.txt" 2>&1; echo "== check rc=$?"; tail -6 "$OUT/accept/check.txt"
