#!/usr/bin/env bash
# One H200 session of the operator-facing acceptance runs (device tool; see docs/benchmarks.md):
#   rocm-dsa check (providers x ops, self-tests), rocm-dsa run --provider triton at the issue's
#   lengths, rocm-dsa bench with plots. Results land in $OUT (default ./results/h200).
# Usage (repo root, on a CUDA machine): bash scripts/h200_acceptance.sh
set -uo pipefail
OUT=${OUT:-results/h200}
mkdir -p "$OUT/plots"
export COLUMNS=200 PYTHONUNBUFFERED=1
python3 -m pip install --no-deps --no-build-isolation -e . -q 2>&1 | grep -v -i warning
log=$OUT/log.txt
{
  echo "== nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  echo "== rocm-dsa check"; time rocm-dsa check --json > "$OUT/check.json"; echo "rc=$?"
  rocm-dsa check --no-selftest
  echo "== rocm-dsa run --provider triton"
  time rocm-dsa run --device cuda --provider triton --lengths 3000,17000,40 --decode-steps 8 \
      --json > "$OUT/run-triton.json"; echo "rc=$?"
  python3 - "$OUT/run-triton.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("ok:", d["ok"], "wall s:", round(d["wall_seconds"], 1))
for s in d["stages"]:
    print({k: s[k] for k in s if k in ("stage", "provider", "seconds", "tokens_per_s", "max_error", "topk_overlap", "bytes_per_token", "status")})
PY
  echo "== rocm-dsa bench"
  time timeout ${BENCH_TIMEOUT:-200} rocm-dsa bench --sweep ${BENCH_SWEEP:-dsa,decode} --heads 16,128 --budget ${BENCH_BUDGET:-0.15} --plot "$OUT/plots"
  echo "rc=$?"
} 2>&1 | tee "$log"
