#!/usr/bin/env python3
"""Where sparse MLA decode time goes on one GPU (an H200 through the device tool: a
cross-vendor proxy, never an MI300X figure).

Parts (``--parts``, comma separated):
  gather     read-only random-row gather ceilings (1152-B rows, the decode sweep's index sets:
             32K contexts, 2048 slots per row): several tilings, from many programs per SM down
             to one program per query row; the same rows L2-resident (slots folded into 8192 rows)
  breakdown  per-kernel device time of ``sparse_mla_decode`` (torch.profiler, eager calls) next to
             the whole call's time (CUDA-graph replay, L2 flushed, as bench_sparse_mla.py times
             it): what the split-K merge and the launch gap cost
  configs    a few tile / split overrides (``CONFIG_CASES``), timed like the benchmark
  scaling    kernel time against keys per program at a fixed 128 query rows (B=128, one split:
             128 programs at H=16, 256 at H=128), decode H=16 / H=128 and the read-only gather
             with one program per row: the fixed cost per program
  flush      the benchmark's timing with its L2 flush (zeroing 512 MB, which leaves the L2 full of
             dirty lines that the timed kernel then evicts to HBM), with a read-only flush (clean
             lines) and with none: how much of a short kernel's figure is the flush's write-back;
             decode B=64/128 and the read-only gather of the same rows (two tilings)

Usage (device call, repo root):
    python3 scripts/h200_decode_diag.py --out $OUT [--parts gather,breakdown,configs,flush]
Writes ``$OUT/decode_diag.json`` and prints a log.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_sparse_mla as bs  # noqa: E402  (timing, the cache pool and index sets of the benchmark)

from rocm_dsa.triton_kernels import sparse_mla as sm  # noqa: E402

ROW_BYTES = 1152

# (B, H, overrides, num_splits) timed in part ``configs``
CONFIG_CASES = [
    (128, 128, {}, None),
    (128, 128, {"BLOCK_K": 32, "num_stages": 3}, None),
    (128, 128, {"BLOCK_K": 32, "num_stages": 4}, None),
    (128, 128, {"BLOCK_K": 32, "num_stages": 3, "UNCHAIN_QK": 0}, None),
    (64, 16, {}, None),
    (64, 16, {}, 3),
    (64, 16, {}, 4),
    (64, 16, {"programs_per_unit": 1.94}, None),
]


def _gather_call(pool, idx: torch.Tensor, block_r: int, keys: int, warps: int, stages: int, fold: int = 0):
    """The benchmark's read-only gather (bench_sparse_mla.gather_read_call) over the pool's rows."""
    return bs.gather_read_call(pool.bf16.view(torch.int32).view(-1, 288), idx, block_r, keys, warps, stages, fold)


def gather_part(pool, out: dict):
    res = []
    for b in (128, 64):
        idx = bs.decode_indices(pool, b, 1, 32768).view(b, bs.TOPK)
        for fold in (0, 8192):
            for block_r, keys, warps, stages in ((32, 256, 4, 3), (16, 128, 4, 3), (64, 512, 8, 3),
                                                 (64, 2048, 8, 3), (64, 1024, 8, 3), (64, 2048, 8, 2)):
                splits = -(-bs.TOPK // keys)
                ms = bs.timed(_gather_call(pool, idx, block_r, keys, warps, stages, fold), 15)
                gbs = idx.numel() * ROW_BYTES / ms / 1e6
                e = {"B": b, "l2_resident": bool(fold), "BLOCK_R": block_r, "keys_per_program": keys,
                     "programs": b * splits, "warps": warps, "stages": stages, "us": round(ms * 1e3, 2),
                     "GBps": round(gbs, 1)}
                res.append(e)
                bs.log("gather", e)
    out["gather"] = res


def _case(pool, b: int, h: int):
    q = bs.queries(b, h).view(b, 1, h, 576)
    idx = bs.decode_indices(pool, b, 1, 32768)
    return q, idx


def _call(pool, q, idx, config=None, num_splits=None):
    return lambda: sm.sparse_mla_decode(q, pool.bf16, idx, bs.SM_SCALE, 512, torch.float8_e4m3fn,  # noqa: E731
                                        arch="sm90", config=config, num_splits=num_splits)


def _pct_copy(nbytes: float, us: float, copy_gbs: float) -> float:
    """Bytes moved in ``us`` microseconds as a percentage of the measured copy bandwidth."""
    return round(100 * nbytes / (us * 1e-6) / 1e9 / copy_gbs, 1)


def _kernel_times(fn, n: int = 20) -> dict:
    """Mean device time (us) per call of each kernel fn launches (torch.profiler, eager calls)."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    kernels = {}
    for ev in prof.key_averages():
        t = getattr(ev, "self_device_time_total", None)
        if t is None:
            t = ev.self_cuda_time_total
        if t and ev.count:
            kernels[ev.key[:60]] = round(t / n, 2)
    return kernels


def breakdown_part(pool, out: dict, copy_gbs: float):
    res = []
    for b, h in ((64, 16), (128, 16), (128, 128), (64, 128), (8, 16)):
        q, idx = _case(pool, b, h)
        fn = _call(pool, q, idx)
        total_ms = bs.timed(fn, 15)
        kernels = _kernel_times(fn)
        splits = sm.plan_splits(b, h, bs.TOPK, arch="sm90",
                                num_units=torch.cuda.get_device_properties(0).multi_processor_count)
        e = {"B": b, "H": h, "splits": splits, "total_us": round(total_ms * 1e3, 2),
             "pct_copy": _pct_copy(bs.bytes_moved(b, h, "bf16"), total_ms * 1e3, copy_gbs),
             "kernels_us": kernels}
        res.append(e)
        bs.log("breakdown", e)
    out["breakdown"] = res


def scaling_part(pool, out: dict):
    """Kernel time against keys per program at a fixed 128 query rows (B=128, one split; 128
    programs at H=16, 256 at H=128): the intercept is the fill and drain of a program."""
    res = []
    for keys in (256, 512, 1024, 2048):
        idx = bs.decode_indices(pool, 128, 1, 32768, topk=keys)
        for h in (16, 128):
            q = bs.queries(128, h).view(128, 1, h, 576)
            e = {"keys": keys, "H": h, "kernels_us": _kernel_times(_call(pool, q, idx, None, 1))}
            res.append(e)
            bs.log("scaling", e)
        g = _gather_call(pool, idx.view(128, keys), 64, keys, 8, 3)
        e = {"keys": keys, "what": "read-only gather, one program per row", "kernels_us": _kernel_times(g)}
        res.append(e)
        bs.log("scaling", e)
    out["scaling"] = res


def configs_part(pool, out: dict, copy_gbs: float):
    res = []
    for b, h, cfg, splits in CONFIG_CASES:
        q, idx = _case(pool, b, h)
        try:
            ref = _call(pool, q, idx)()
            fn = _call(pool, q, idx, cfg or None, splits)
            got = fn()
            diff = (got[0].float() - ref[0].float()).abs().max().item()
            ms = bs.timed(fn, 15)
            e = {"B": b, "H": h, "config": cfg, "num_splits": splits, "us": round(ms * 1e3, 2),
                 "pct_copy": _pct_copy(bs.bytes_moved(b, h, "bf16"), ms * 1e3, copy_gbs),
                 "max_abs_vs_default": diff}
        except Exception as ex:  # noqa: BLE001  (a config the GPU cannot run is a result too)
            e = {"B": b, "H": h, "config": cfg, "num_splits": splits, "error": f"{type(ex).__name__}: {str(ex)[:200]}"}
        res.append(e)
        bs.log("config", e)
    out["configs"] = res


def flush_part(pool, out: dict, copy_gbs: float):
    res = []
    # (B, H, read-only gather tiling (BLOCK_R, keys per program, warps, stages) or None: decode)
    cases = [(b, h, None) for b, h in ((64, 16), (128, 16), (128, 128))]
    cases += [(b, None, t) for b in (64, 128) for t in ((16, 128, 4, 3), (32, 256, 4, 3))]
    for b, h, tiling in cases:
        q, idx = _case(pool, b, h or 16)
        fn = _call(pool, q, idx) if tiling is None else _gather_call(pool, idx.view(b, bs.TOPK), *tiling)
        e = {"B": b, "H": h, "what": "decode" if tiling is None else f"read-only gather {tiling}"}
        for mode in ("zero", "read", "none"):
            us = round(bs.timed(fn, 25, flush=mode) * 1e3, 2)
            nbytes = bs.bytes_moved(b, h, "bf16") if h else b * bs.TOPK * ROW_BYTES
            e[mode] = {"us": us, "pct_copy": _pct_copy(nbytes, us, copy_gbs)}
        res.append(e)
        bs.log("flush", e)
    out["flush"] = res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--parts", default="gather,breakdown,configs,flush")
    ap.add_argument("--budget", type=float, default=400.0, help="seconds (the benchmark's log clock)")
    args = ap.parse_args()
    bs.ARGS = types.SimpleNamespace(budget=args.budget, out=args.out)
    parts = set(args.parts.split(","))
    out = {"device": torch.cuda.get_device_name(0), "command": " ".join(sys.argv)}
    pool = bs.Pool(128 * 32768, with_fp8=False)
    bs.ceilings()
    copy_gbs = bs.RESULTS["ceilings"]["copy_GBps"]
    out["copy_GBps"] = copy_gbs
    for name, part in (("gather", lambda: gather_part(pool, out)),
                       ("breakdown", lambda: breakdown_part(pool, out, copy_gbs)),
                       ("configs", lambda: configs_part(pool, out, copy_gbs)),
                       ("flush", lambda: flush_part(pool, out, copy_gbs)),
                       ("scaling", lambda: scaling_part(pool, out))):
        if name in parts:
            try:
                part()
            except Exception as ex:  # noqa: BLE001
                out.setdefault("errors", []).append(f"{name}: {type(ex).__name__}: {ex}")
                bs.log("error", name, ex)
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "decode_diag.json"), "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "gather"}, indent=1))
    for g in out.get("gather", []):
        print(g)


if __name__ == "__main__":
    main()
