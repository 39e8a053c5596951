#!/usr/bin/env python3
"""Print the tune entries of one or more bench_sparse_mla.py result files side by side:
one line per (shape, config), one column (us) per file. Usage:
    python3 scripts/tune_table.py A/sparse_mla_results.json B/sparse_mla_results.json ...
"""
import json
import sys

files = sys.argv[1:]
cols, keys = [], []
for f in files:
    d = json.load(open(f))
    col = {}
    for e in d.get("tune", []):
        k = (e["B"] if "B" in e else e.get("T"), e["H"], e["kv"], json.dumps(e.get("config") or {}, sort_keys=True))
        col[k] = e["us"]
        if k not in keys:
            keys.append(k)
    cols.append(col)
print("B/T  H  kv   config" + "".join(f" | {chr(65 + i)} us" for i in range(len(files))))
for k in keys:
    print(f"{k[0]} {k[1]} {k[2]} {k[3]}" + "".join(f" | {c.get(k, '-')}" for c in cols))
