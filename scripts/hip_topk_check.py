#!/usr/bin/env python3
"""Full-size numerics and timing of the ``hip`` provider's kernels on a GPU (run on the H200).

What it does, in one run:

1. builds the extension (nvcc on CUDA torch, hipcc on ROCm torch) and, in parallel, the
   TEST-ONLY wave64-emulation build (two warps per emulated wave, see hip/dsa_port.h);
2. top-k: exact equality with an independent float64 reference (stable descending sort; the
   kernel returns that set with the valid prefix in ascending column order, -1 after it; run
   three times: identical outputs, i.e. deterministic) on random rows, rows dominated by exact
   zeros and by equal values, narrow value ranges, tiny alphabets, 64 x 262,144 rows, window
   lengths just below / above k and powers of two +-1, +inf / -inf / NaN rows, -0.0 / +0.0 ties,
   decode rows (lengths, next_n = 2) with page-table slot mapping, the LDS-capacity fallback
   forced with cap = 16, the split threshold pass (several workgroups per row) at its default
   and forced chunk counts, with its bounded-slice overflow forced (cap = 16 -> exact path), and
   the wave64 emulation build on a subset;
3. cache stores: byte equality with the reference provider (indexer keys e4m3fn / e4m3fnuz x
   bf16 / f16 / f32 x ue8m0 / fp32 scales; MLA bf16 rows and 656-byte FP8 records), including
   caches larger than 2 GiB written near their end (64-bit offsets);
4. timing of the HIP top-k against torch.topk (and the Triton provider's top-k when it runs)
   for DeepSeek-V3.2 shapes (k = 2048): CUDA events, warm-up, median of 20, per call over 4
   rotating input sets (so the L2 cache does not hold them), both as CUDA-graph replays (GPU
   time) and eager calls (host overhead included); shapes that use the split threshold pass are
   also timed without it (splits = 1), plus a split-count sweep and the per-kernel device times
   (PyTorch profiler) of the main shape.

Usage (repository root; results as JSON with --out):
    PYTHONPATH=. python3 scripts/hip_topk_check.py --out /tmp/hip_check
Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import traceback

import torch

INF = float("inf")
NAN = float("nan")
RESULTS: dict = {"checks": [], "timing": [], "env": {}}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# float64 reference top-k (independent of rocm_dsa): candidates = not NaN, not -inf; stable
# descending sort = value descending, then column ascending; -1 after the candidates
# ---------------------------------------------------------------------------------------------
def ref_topk(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int, offset: torch.Tensor | None = None
             ) -> torch.Tensor:
    r, c = x.shape
    out = torch.full((r, k), -1, dtype=torch.int64, device=x.device)
    step = max(1, (1 << 26) // max(c, 1))
    for r0 in range(0, r, step):
        r1 = min(r, r0 + step)
        xd = x[r0:r1].double()
        cols = torch.arange(c, device=x.device)
        cand = (cols >= lo[r0:r1, None]) & (cols < hi[r0:r1, None]) & ~torch.isnan(xd) & (xd != -INF)
        keyed = torch.where(cand, xd, torch.full_like(xd, -INF))
        kk = min(k, c)
        order = torch.sort(keyed, dim=1, descending=True, stable=True).indices[:, :kk]
        valid = torch.arange(kk, device=x.device)[None, :] < cand.sum(1, keepdim=True)
        base = lo[r0:r1, None] if offset is None else offset[r0:r1, None]
        out[r0:r1, :kk] = torch.where(valid, order - base, torch.full_like(order, -1))
    return out.to(torch.int32)


def by_column(t: torch.Tensor) -> torch.Tensor:
    """The same rows with the valid prefix in ascending order (the HIP kernel's output order:
    ascending column), -1 after it."""
    big = torch.iinfo(torch.int32).max
    s = torch.where(t >= 0, t, torch.full_like(t, big)).sort(1).values
    return torch.where(s == big, torch.full_like(s, -1), s)


def record(name: str, ok: bool, detail: str = "", **extra):
    RESULTS["checks"].append({"name": name, "ok": bool(ok), "detail": detail, **extra})
    log(f"  [{'PASS' if ok else 'FAIL'}] {name} {detail}")


def compare_topk(name: str, got: torch.Tensor, want: torch.Tensor, ordered: bool = False, **extra):
    """got must equal ``want`` (the value-descending reference) with its valid prefix in ascending
    order, the kernel's output order (``ordered``: want is in output order already, e.g. the KV
    slots of column-ordered positions): the exact set, in order, -1 after it."""
    g, w = got.cpu(), want.cpu() if ordered else by_column(want.cpu())
    same = torch.equal(g, w)
    detail = ""
    if not same:
        gs = by_column(g)
        bad = ((gs != by_column(w)) | ((g >= 0) != (w >= 0))).any(1).nonzero().flatten()
        if bad.numel() == 0:
            bad = (g != w).any(1).nonzero().flatten()
        r = int(bad[0])
        sg = {v for v in g[r].tolist() if v >= 0}
        sw = {v for v in w[r].tolist() if v >= 0}
        detail = (f"{bad.numel()} rows differ; row {r}: set_equal={sg == sw} missing={sorted(sw - sg)[:8]} "
                  f"extra={sorted(sg - sw)[:8]} got[:8]={g[r, :8].tolist()} want[:8]={w[r, :8].tolist()}")
    record(name, same, detail, **extra)


# ---------------------------------------------------------------------------------------------
# top-k cases
# ---------------------------------------------------------------------------------------------
def full_rows(r, c, dev):
    return torch.zeros(r, dtype=torch.int32, device=dev), torch.full((r,), c, dtype=torch.int32, device=dev)


def make_cases(dev, small: bool):
    g = torch.Generator(device=dev).manual_seed(1234)

    def randn(*s):
        return torch.randn(*s, device=dev, generator=g)

    def rand(*s):
        return torch.rand(*s, device=dev, generator=g)

    cases = []
    if not small:
        cases.append(("random 64x131072", randn(64, 131072), 2048))
        cases.append(("random 64x262144", randn(64, 262144), 2048))
        cases.append(("random 1x262144", randn(1, 262144), 2048))
        cases.append(("random 300x32768 (block 512)", randn(300, 32768), 2048))
    cases.append(("random 8x131072", randn(8, 131072), 2048))
    z = randn(32, 65536)
    z[rand(32, 65536) < 0.9] = 0.0
    z[0] = 0.0
    z[1, 100:120] = 1.0
    cases.append(("exact zeros 90%", z, 2048))
    cases.append(("all equal / all zero", torch.cat([torch.full((4, 50000), 3.0, device=dev),
                                                     torch.zeros(4, 50000, device=dev)]), 2048))
    cases.append(("narrow range 1+1e-6", 1.0 + rand(16, 131072) * 1e-6, 2048))
    cases.append(("narrow range 1000+0.01", 1000.0 + rand(16, 131072) * 0.01, 2048))
    alpha = torch.tensor([0.0, -0.0, 1.0, -2.0, 0.5], device=dev)
    cases.append(("alphabet of 5", alpha[torch.randint(0, 5, (16, 100000), device=dev, generator=g)], 2048))
    s = randn(12, 40000)
    s[0, :100] = INF
    s[1] = NAN
    s[1, 7] = 2.0
    s[2, ::2] = -INF
    s[3, 1::3] = NAN
    s[4] = -INF
    s[4, 9] = INF
    s[5, :3000] = INF
    s[6] = NAN
    s[7, rand(40000) < 0.5] = NAN
    s[7, rand(40000) < 0.3] = -INF
    s[8] = INF
    s[9] = -0.0
    s[9, 500:600] = 0.0
    s[10] *= 1e30
    s[11] *= 1e-40  # denormals
    cases.append(("inf / nan / -0 / extreme", s, 2048))
    n = 131072  # largest values hidden between the sample positions: the sampled threshold fails
    # (the columns j * n // 4096 include those of 2048 samples, j * n // 2048)
    sampled = torch.div(torch.arange(4096, device=dev) * n, 4096, rounding_mode="floor")
    free = torch.ones(n, dtype=torch.bool, device=dev)
    free[sampled] = False
    hidden = free.nonzero().flatten()[::20][:6000]
    h = randn(4, n) * 1e-3
    h[:, hidden] = 10.0 + rand(4, hidden.numel())
    cases.append(("hidden from the samples (fallback)", h, 2048))
    cases.append(("k=64 random", randn(16, 20000), 64))
    cases.append(("k=1 random", randn(16, 20000), 1))
    cases.append(("k=2047 random", randn(8, 30000), 2047))
    return cases


def lengths_case(dev):
    ns = [0, 1, 2, 3, 2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537, 131071, 131072]
    c = 140000
    x = torch.randn(len(ns), c, device=dev)
    starts = torch.tensor([(i * 997) % (c - n + 1) for i, n in enumerate(ns)], dtype=torch.int32, device=dev)
    ends = starts + torch.tensor(ns, dtype=torch.int32, device=dev)
    return x, starts, ends


def run_topk_checks(ext, dev, tag: str, block: int | None, small: bool):
    from rocm_dsa.backends.hip import topk_block_size, topk_splits
    from rocm_dsa.platform import detect

    sms = detect(dev).num_cus

    def cmp(name, got, want, ordered=False):
        compare_topk(name, got, want, ordered=ordered)

    def call(x, s, e, k, cap=0, blk=None, splits=None, **kw):
        b = blk or block or topk_block_size(x.shape[0], sms)
        sp = splits or topk_splits(x.shape[0], x.shape[1], sms)
        return ext.topk(x, s, e, kw.get("lengths"), kw.get("next_n", 1), kw.get("block_table"),
                        kw.get("page_size", 64), k, cap, b, None, sp)

    for name, x, k in make_cases(dev, small):
        s, e = full_rows(x.shape[0], x.shape[1], dev)
        want = ref_topk(x, s.long(), e.long(), k)
        got = call(x, s, e, k)
        cmp(f"{tag} topk {name} k={k}", got, want)
        # deterministic: the same input gives the same output (order included), run after run
        again = [call(x, s, e, k) for _ in range(2)]
        record(f"{tag} topk {name} k={k} deterministic", all(torch.equal(got, a) for a in again))
        if x.shape[0] <= 64:  # the split threshold pass forced on (odd chunk count: unaligned chunks)
            cmp(f"{tag} topk {name} k={k} splits=7", call(x, s, e, k, splits=7), want)
            cmp(f"{tag} topk {name} k={k} splits=1", call(x, s, e, k, splits=1), want)
        if x.shape[0] <= 32:
            cmp(f"{tag} topk {name} k={k} cap=16 (fallback)", call(x, s, e, k, cap=16), want)
            cmp(f"{tag} topk {name} k={k} cap=16 splits=5 (overflow -> exact)", call(x, s, e, k, cap=16, splits=5),
                want)
    x, s, e = lengths_case(dev)
    for k in (2048, 4096 // 2 - 1):
        want = ref_topk(x, s.long(), e.long(), k)
        cmp(f"{tag} topk ragged lengths k={k}", call(x, s, e, k), want)
        cmp(f"{tag} topk ragged lengths k={k} splits=9", call(x, s, e, k, splits=9), want)
        cmp(f"{tag} topk ragged lengths k={k} cap=16", call(x, s, e, k, cap=16), want)
    # ragged windows with negative starts / ends beyond C: positions relative to starts[r]
    xr = torch.randn(4, 10000, device=dev)
    sr = torch.tensor([-50, 0, 9000, 10001], dtype=torch.int32, device=dev)
    er = torch.tensor([5000, 20000, 8000, 20000], dtype=torch.int32, device=dev)
    lo = sr.long().clamp(0, 10000)
    hi = torch.maximum(er.long().clamp(0, 10000), lo)
    cmp(f"{tag} topk clamped windows", call(xr, sr, er, 2048), ref_topk(xr, lo, hi, 2048, offset=sr.long()))
    cmp(f"{tag} topk clamped windows splits=4", call(xr, sr, er, 2048, splits=4),
        ref_topk(xr, lo, hi, 2048, offset=sr.long()))
    # decode: lengths + next_n, positions and page-table slots
    from rocm_dsa.cache import positions_to_slots

    b, next_n, page, maxp = 24, 2, 64, 2048
    lens = torch.randint(1, maxp * page + 1, (b,), device=dev, dtype=torch.int32)
    lens[:6] = torch.tensor([1, 2, 2048, 2049, 64, maxp * page], dtype=torch.int32, device=dev)
    bt = torch.randperm(b * maxp, device=dev).view(b, maxp).to(torch.int32)
    logits = torch.randn(b * next_n, maxp * page, device=dev)
    r = torch.arange(b * next_n, device=dev)
    hi = (lens.long()[r // next_n] - next_n + r % next_n + 1).clamp(0, maxp * page)
    want = ref_topk(logits, torch.zeros_like(hi), hi, 2048)
    got = call(logits, None, None, 2048, lengths=lens, next_n=next_n)
    cmp(f"{tag} topk decode lengths next_n=2", got, want)
    got = call(logits, None, None, 2048, lengths=lens, next_n=next_n, block_table=bt, page_size=page)
    slots = positions_to_slots(by_column(want), bt.repeat_interleave(next_n, 0), page)
    cmp(f"{tag} topk decode slots next_n=2", got, slots, ordered=True)
    got = call(logits, None, None, 2048, lengths=lens, next_n=next_n, block_table=bt, page_size=page, splits=3)
    cmp(f"{tag} topk decode slots next_n=2 splits=3", got, slots, ordered=True)


# ---------------------------------------------------------------------------------------------
# cache stores
# ---------------------------------------------------------------------------------------------
def run_store_checks(ext, dev, tag: str, big: bool):
    from rocm_dsa import ops
    from rocm_dsa.cache import IndexerKCache, MLAKVCache
    from rocm_dsa.testing import poison

    for fp8 in (torch.float8_e4m3fn, torch.float8_e4m3fnuz):
        fnuz = fp8 == torch.float8_e4m3fnuz
        fname = "fnuz" if fnuz else "fn"
        for kd in (torch.bfloat16, torch.float16, torch.float32):
            for fmt in ("ue8m0", None):
                n, pages = 8192, 160
                k = torch.randn(n, 128, device=dev) * torch.logspace(-3, 3, n, device=dev)[:, None]
                k = k.to(kd)
                slots = torch.randperm(pages * 64, device=dev)[:n].long()
                slots[::13] = -1
                a = IndexerKCache(pages, fp8_dtype=fp8, device=dev)
                bref = IndexerKCache(pages, fp8_dtype=fp8, device=dev)
                poison(a.buffer)
                bref.buffer.copy_(a.buffer)
                ext.store_indexer_k(k, a.buffer, slots, fnuz, fmt == "ue8m0")
                ops.store_indexer_k(k, bref, slots, scale_fmt=fmt, provider="reference")
                nbad = int((a.buffer != bref.buffer).sum())
                record(f"{tag} store_indexer_k {fname} {str(kd)[6:]} {fmt}", nbad == 0, f"{nbad} bytes differ")
        for kv in ("bf16", "fp8"):
            for cd, rd in ((torch.bfloat16, torch.bfloat16), (torch.float32, torch.float32), (torch.float32, torch.bfloat16)):
                n, pages = 4096, 80
                c = (torch.randn(n, 512, device=dev) * 4).to(cd)
                rr = torch.randn(n, 64, device=dev).to(rd)
                slots = torch.randperm(pages * 64, device=dev)[:n].to(torch.int32)
                slots[::11] = -1
                a = MLAKVCache(pages, kv_dtype=kv, fp8_dtype=fp8, device=dev)
                bref = MLAKVCache(pages, kv_dtype=kv, fp8_dtype=fp8, device=dev)
                poison(a.buffer.view(torch.uint8))
                bref.buffer.copy_(a.buffer)
                ext.store_mla_kv(c, rr, a.buffer, slots, fnuz)
                ops.store_mla_kv(c, rr, bref, slots, provider="reference")
                nbad = int((a.buffer.view(torch.uint8) != bref.buffer.view(torch.uint8)).sum())
                record(f"{tag} store_mla_kv {kv} {fname} c={str(cd)[6:]} rope={str(rd)[6:]}", nbad == 0,
                       f"{nbad} bytes differ")
    if not big:
        return
    # caches over 2 GiB, written near the end: byte offsets must be 64-bit
    fp8 = torch.float8_e4m3fn
    pages = (1 << 31) // (64 * 132) + 256
    big_idx = IndexerKCache(pages, fp8_dtype=fp8, device=dev)
    n = 512
    k = torch.randn(n, 128, device=dev).bfloat16()
    base = pages - 16
    slots = base * 64 + torch.randperm(16 * 64, device=dev)[:n].long()
    ext.store_indexer_k(k, big_idx.buffer, slots, False, True)
    small = IndexerKCache(16, fp8_dtype=fp8, device=dev)
    ops.store_indexer_k(k, small, slots - base * 64, provider="reference")
    ok = torch.equal(big_idx.buffer[base:], small.buffer)
    record(f"{tag} store_indexer_k > 2 GiB cache ({big_idx.buffer.numel() / 2**30:.2f} GiB)", ok)
    del big_idx
    torch.cuda.empty_cache()
    nslots = (1 << 31) // 656 + 4096
    big_mla = torch.zeros(nslots, 656, dtype=torch.uint8, device=dev)
    c = torch.randn(n, 512, device=dev).bfloat16()
    rr = torch.randn(n, 64, device=dev).bfloat16()
    slots = nslots - 4096 + torch.randperm(4096, device=dev)[:n].long()
    ext.store_mla_kv(c, rr, big_mla, slots, False)
    small = torch.zeros(4096, 656, dtype=torch.uint8, device=dev)
    ops.store_mla_kv(c, rr, small, slots - (nslots - 4096), fp8_dtype=fp8, provider="reference")
    record(f"{tag} store_mla_kv fp8 > 2 GiB cache ({big_mla.numel() / 2**30:.2f} GiB)",
           torch.equal(big_mla[nslots - 4096:], small))
    del big_mla
    torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
def _events_median(run, calls: int, reps: int) -> float:
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / calls)
    return statistics.median(times)


def bench_eager(fns, reps=20) -> float:
    """Median us per call, calls issued back to back from Python (host overhead included when
    it exceeds the GPU time)."""
    for _ in range(3):
        for f in fns:
            f()
    torch.cuda.synchronize()
    return _events_median(lambda: [f() for f in fns], len(fns), reps)


def bench_graph(fns, reps=20) -> float | None:
    """Median us per call of a CUDA graph replaying one call per input set (GPU time, no host
    overhead; the input sets rotate so that the L2 cache does not hold the data). None when the
    calls cannot be captured."""
    try:
        st = torch.cuda.Stream()
        st.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(st):
            for _ in range(3):
                for f in fns:
                    f()
        torch.cuda.current_stream().wait_stream(st)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for f in fns:
                f()
        for _ in range(3):
            g.replay()
        torch.cuda.synchronize()
        return _events_median(g.replay, len(fns), reps)
    except Exception as ex:  # noqa: BLE001
        log(f"  (graph capture failed: {type(ex).__name__}: {str(ex)[:200]})")
        torch.cuda.synchronize()
        return None


def kernel_times(fns, reps: int = 10) -> dict[str, float]:
    """Mean device time (us) per launch of each kernel the calls run, from the PyTorch profiler
    (CUPTI kernel records); {} when the profiler gives none."""
    from torch.profiler import ProfilerActivity, profile

    for f in fns:
        f()
    torch.cuda.synchronize()
    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(reps):
                for f in fns:
                    f()
            torch.cuda.synchronize()
        out = {}
        for a in prof.key_averages():
            tot = getattr(a, "device_time_total", None)
            if tot is None:
                tot = getattr(a, "cuda_time_total", 0.0)
            m = re.search(r"(_\w+_kernel)(<[^>]*>)?", a.key)
            if a.count and tot and m:
                out[m.group(0)] = out.get(m.group(0), 0.0) + tot / a.count
        return out
    except Exception as ex:  # noqa: BLE001
        log(f"  (profiler failed: {type(ex).__name__}: {str(ex)[:200]})")
        return {}


def run_timing(ext, dev):
    from rocm_dsa import ops
    from rocm_dsa.backends import get_provider, make_case
    from rocm_dsa.backends.hip import topk_block_size, topk_splits
    from rocm_dsa.platform import detect

    sms = detect(dev).num_cus
    why = get_provider("triton").supports(make_case("topk_indices", dev, k=2048, columns=131072))
    if why:
        log(f"  triton top-k not timed: {'; '.join(why)}")
    sets = 4  # rotating input sets per timed call (each set is a fresh random tensor)

    def measure(label, xs, k=2048, cap=0, blk=None, data="randn", splits=None):
        r, c = xs[0].shape
        s, e = full_rows(r, c, dev)
        blk = blk or topk_block_size(r, sms)
        auto = topk_splits(r, c, sms)
        sp = splits or auto
        hip = [lambda x=x: ext.topk(x, s, e, None, 1, None, 64, k, cap, blk, None, sp) for x in xs]
        tt = [lambda x=x: torch.topk(x, k, dim=1) for x in xs]
        row = {"rows": r, "cols": c, "k": k, "data": data, "block": blk, "cap": cap or "default", "splits": sp,
               "hip_graph_us": bench_graph(hip), "hip_eager_us": bench_eager(hip),
               "torch_topk_graph_us": bench_graph(tt), "torch_topk_eager_us": bench_eager(tt),
               "triton_eager_us": None}
        if not why and cap == 0 and blk == topk_block_size(r, sms):
            try:
                tr = [lambda x=x: ops.topk_indices(x, s, e, k=k, provider="triton") for x in xs]
                row["triton_eager_us"] = bench_eager(tr)
                row["triton_graph_us"] = bench_graph(tr)
            except Exception as ex:  # noqa: BLE001
                log(f"  triton top-k failed at {r}x{c}: {type(ex).__name__}: {str(ex)[:200]}")
        hg, tg = row["hip_graph_us"], row["torch_topk_graph_us"]
        row["speedup_graph"] = tg / hg if hg and tg else None
        row["speedup_eager"] = row["torch_topk_eager_us"] / row["hip_eager_us"]
        RESULTS["timing"].append(row)

        def f(v):
            return "   -   " if v is None else f"{v:7.1f}"
        if sp > 1:  # the same inputs without the split pass (the previous default)
            one = [lambda x=x: ext.topk(x, s, e, None, 1, None, 64, k, cap, blk, None, 1) for x in xs]
            row["hip_graph_us_splits1"] = bench_graph(one)
            row["hip_eager_us_splits1"] = bench_eager(one)
            log(f"  {label:38s} splits=1: hip {f(row['hip_graph_us_splits1'])} / {f(row['hip_eager_us_splits1'])} us")
        log(f"  {label:38s} splits={sp} hip {f(hg)} / {f(row['hip_eager_us'])} us | torch.topk {f(tg)} / "
            f"{f(row['torch_topk_eager_us'])} us | triton {f(row['triton_eager_us'])} us | "
            f"x{(row['speedup_graph'] or 0):.2f} (graph) x{row['speedup_eager']:.2f} (eager)")

    log("  (times: CUDA-graph replay / eager, median us per call over 4 rotating inputs)")
    for r, c in [(64, 131072), (64, 262144), (1, 131072), (8, 131072), (128, 65536), (1024, 16384),
                 (4096, 4096), (64, 8192)]:
        measure(f"{r} x {c} randn", [torch.randn(r, c, device=dev) for _ in range(sets)])
    main = [torch.randn(64, 131072, device=dev) for _ in range(sets)]
    s64, e64 = full_rows(64, 131072, dev)
    sweep = {}
    for sp in (1, 2, 3, 4, 6, 8):  # split sweep, graph replay only
        sweep[sp] = bench_graph([lambda x=x, sp=sp: ext.topk(x, s64, e64, None, 1, None, 64, 2048, 0, 1024, None, sp)
                                 for x in main])
    RESULTS["split_sweep_64x131072"] = sweep
    log("  64 x 131072 splits sweep (graph us): " + ", ".join(f"{k}: {v:.1f}" for k, v in sweep.items() if v))
    sp = topk_splits(64, 131072, sms)
    kt = kernel_times([lambda x=x: ext.topk(x, s64, e64, None, 1, None, 64, 2048, 0, 1024, None, sp) for x in main])
    RESULTS["kernel_times_64x131072"] = {"splits": sp, "us": kt}
    log(f"  64 x 131072 splits={sp} per-kernel device time (profiler, eager): "
        + ", ".join(f"{k}: {v:.1f} us" for k, v in kt.items()))
    measure("64 x 131072 randn block=512", main, blk=512)
    measure("64 x 131072 randn cap=16 (exact path)", main, cap=16)
    measure("64 x 131072 zeros 90%", [x.clone().masked_fill_(torch.rand_like(x) < 0.9, 0.0) for x in main],
            data="zeros 90%")
    measure("64 x 131072 narrow 1+1e-6", [torch.rand_like(x).mul_(1e-6).add_(1.0) for x in main], data="narrow")
    measure("64 x 131072 -inf after col 8192", [x.clone().index_fill_(1, torch.arange(8192, 131072, device=dev), -INF)
                                                for x in main], data="-inf tail (decode-like)")
    measure("64 x 131072 all equal", [torch.full_like(x, 0.5) for x in main], data="all equal")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="directory for hip_topk_check.json")
    ap.add_argument("--skip-wave64", action="store_true", help="skip the wave64-emulation build")
    ap.add_argument("--skip-timing", action="store_true")
    args = ap.parse_args()
    t_start = time.time()
    if not torch.cuda.is_available():
        log("no GPU: torch.cuda.is_available() is False")
        return 2
    dev = torch.device("cuda")
    from rocm_dsa import hipext

    RESULTS["env"] = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "cuda": torch.version.cuda,
                      "hip": torch.version.hip, "toolchain": str(hipext.toolchain())}
    log(f"== {RESULTS['env']}")
    emu = None
    if not args.skip_wave64:  # build the emulation variant in a second process meanwhile
        emu = subprocess.Popen([sys.executable, "-c", "from rocm_dsa import hipext; hipext.load(variant='wave64-emulated')"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t0 = time.time()
    ext = hipext.load(verbose=False)
    RESULTS["env"]["build_s"] = time.time() - t0
    log(f"== built in {RESULTS['env']['build_s']:.1f} s ({hipext.build_dir()})")
    log("== top-k (native build)")
    for fn, a in ((run_topk_checks, (ext, dev, "native", None, False)), (run_store_checks, (ext, dev, "native", True))):
        try:
            fn(*a)
        except Exception:  # noqa: BLE001
            record(f"{fn.__name__} crashed", False, traceback.format_exc()[-2000:])
    if emu is not None:
        out, _ = emu.communicate()
        if emu.returncode != 0:
            record("wave64-emulated build", False, out[-3000:])
        else:
            log("== wave64 emulation build (2 warps per wave, 512-thread workgroups)")
            try:
                ext64 = hipext.load(variant="wave64-emulated")
                run_topk_checks(ext64, dev, "wave64-emu", 512, True)
                run_store_checks(ext64, dev, "wave64-emu", False)
            except Exception:  # noqa: BLE001
                record("wave64-emulated checks crashed", False, traceback.format_exc()[-2000:])
    if not args.skip_timing:
        log("== timing")
        try:
            run_timing(ext, dev)
        except Exception:  # noqa: BLE001
            record("timing crashed", False, traceback.format_exc()[-2000:])
    n_fail = sum(1 for c in RESULTS["checks"] if not c["ok"])
    log(f"== {len(RESULTS['checks']) - n_fail} passed, {n_fail} failed ({time.time() - t_start:.0f} s)")
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "hip_topk_check.json"), "w") as f:
            json.dump(RESULTS, f, indent=1)
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
