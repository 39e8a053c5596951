#!/usr/bin/env bash
# A/B(/C...) of one kernel source on the GPU in one device call: runs a benchmark command with
# the working tree's file (side A), then with each other version of that file swapped in (sides
# B, C, ...), then restores the file. Each side writes to $OUT/<side> (the command gets that
# folder as $RUN_OUT) and its log to $OUT/<side>/log.txt.
# Usage (device tool, repo root; the other versions carried, e.g. under .peer/):
#   OUT=$OUT TARGET=triton_kernels/sparse_mla.py ALT=".peer/old.py .peer/other.py" \
#     CMD='python3 scripts/bench_sparse_mla.py --out $RUN_OUT --parts ceilings,tune --tune --tune-splits' \
#     bash scripts/h200_ab_kernel.sh
set -uo pipefail
: "${OUT:?}" "${TARGET:?}" "${ALT:?}" "${CMD:?}"
for f in "$TARGET" $ALT; do [ -f "$f" ] || { echo "not a file: $f (TARGET / ALT)" >&2; exit 2; }; done
export PYTHONUNBUFFERED=1
python3 -m pip install --no-deps --no-build-isolation -e . -q >/dev/null 2>&1 || echo "pip install -e . failed"
cp "$TARGET" "$OUT/.A_saved"
trap 'cp "$OUT/.A_saved" "$TARGET"; rm -f "$OUT/.A_saved"' EXIT
sides=(A B C D E F G H)
i=0
for name in "$OUT/.A_saved" $ALT; do
  side=${sides[$i]}; i=$((i + 1))
  # TARGET itself in ALT means the working tree's version again (a copy onto itself would leave
  # the previous side's file in place)
  src=$name
  [ "$src" -ef "$TARGET" ] && src="$OUT/.A_saved"
  cp "$src" "$TARGET"
  mkdir -p "$OUT/$side"
  RUN_OUT="$OUT/$side" bash -c "$CMD" > "$OUT/$side/log.txt" 2>&1
  echo "== $side rc=$? ($([ "$side" = A ] && echo "working tree" || echo "$name"))"
done
