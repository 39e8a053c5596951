"""Render `rocm-dsa compile --json` output as the markdown tables of docs/benchmarks.md.

Usage: rocm-dsa compile --json > c.json; python scripts/compile_report_md.py c.json
"""

from __future__ import annotations

import json
import sys


def main(path: str) -> None:
    doc = json.load(open(path))
    for rep in doc["reports"]:
        s = rep["summary"]
        print(f"### {rep['arch']}: {s}\n")
        print("| kernel / config | VGPR (arch+acc) | SGPR | spills | LDS | waves/SIMD (limit) | MFMA | status |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rep["rows"]:
            if r.get("skipped"):
                continue
            mfma = ", ".join(f"{k.removeprefix('v_mfma_')} x{v}" for k, v in (r.get("mfma") or {}).items()) or "-"
            lim = "/".join(r.get("occupancy_limited_by") or []) or "-"
            print(f"| {r['source']}:{r['config']} | {r['vgprs']}+{r['agprs']} | {r['sgprs']} | "
                  f"{r['vgpr_spills']}/{r['sgpr_spills']} | {r['lds_bytes']} | {r['waves_per_simd']} ({lim}) | "
                  f"{mfma} | {r['status']} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
