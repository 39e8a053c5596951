#!/usr/bin/env bash
# H200: vendor providers side by side in `rocm-dsa bench` (issue 8). Run from the repo root with
# the sgl-flash-mla / sgl-deep-gemm wheels in .whl (device tool: carry [".whl"]).
set -uo pipefail
OUT=${OUT:-results/h200-vendor}
mkdir -p "$OUT"
export COLUMNS=200 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
# deep_gemm's _C.so links CUDA 13 runtime libraries that live in the nvidia-* wheels of torch
export LD_LIBRARY_PATH=$(python3 -c "import glob,os,nvidia;print(':'.join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(d+'/**/lib*.so*',recursive=True)})))"):${LD_LIBRARY_PATH:-}
python3 -m pip install --no-deps --no-build-isolation -e . -q 2>&1 | grep -v -i warning
{
  echo "== rocm-dsa check (providers)"; rocm-dsa check --no-selftest 2>&1 | sed -n '/Providers/,/Ops x/p'
  echo "== bench: sparse MLA, flashmla vs triton"
  timeout ${T_MLA:-80} rocm-dsa bench --sweep decode,prefill --heads 128 --provider flashmla --provider triton \
      --kv ${KV:-bf16} --budget 0.05 --out "$OUT/bench-mla.msgpack"; echo "rc=$?"
  echo "== bench: indexer, deepgemm vs triton"
  timeout ${T_IDX:-40} rocm-dsa bench --sweep indexer --provider deepgemm --provider triton --budget 0.05 \
      --out "$OUT/bench-indexer.msgpack"; echo "rc=$?"
} 2>&1 | tee "$OUT/log.txt"
