#!/usr/bin/env bash
# H200: wide tile sweep of the Triton sparse MLA Hopper targets + the side-by-side sweep with
# SGLang 0.5.23's kernels (carried in .peer/sglang_dsa), then Nsight Compute sections of the
# decode H=16 / H=128 and prefill H=128 kernels. Usage (device tool, repo root):
#   OUT=$OUT bash scripts/h200_sparse_mla_tune.sh
set -u
python3 -m pip install --no-deps --no-build-isolation -e . -q >/dev/null 2>&1 || echo "pip install -e . failed"
mkdir -p "$OUT/bench" "$OUT/ncu"
python3 scripts/bench_sparse_mla.py --out "$OUT/bench" --sglang-dir .peer/sglang_dsa --budget "${BENCH_BUDGET:-170}" \
    --parts "${BENCH_PARTS:-ceilings,tune,decode,prefill}" --tune --tune-wide --reps 12 --heads 16,128 --batches 64,128 \
    --contexts 32768 --tokens 4096 2>&1 | tail -60
for c in ${NCU_CASES-decode16 decode128 prefill128}; do
  timeout 60 ncu --clock-control none --launch-skip 2 --launch-count 2 -k regex:sparse_mla \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section WarpStateStats \
    --section LaunchStats python3 scripts/profile_sparse_mla.py --case ${c%%:*} ${NCU_CONFIG:+--config "$NCU_CONFIG"} > "$OUT/ncu/$c.txt" 2>&1
  echo "== ncu $c rc=$?"; grep -E "sparse_mla_kernel|Duration|Throughput|Registers|Achieved Occupancy|Theoretical Occupancy|Stall|Block Limit|Shared Memory Config|Dynamic Shared" "$OUT/ncu/$c.txt" | head -30
done
