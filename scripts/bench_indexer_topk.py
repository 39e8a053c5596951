#!/usr/bin/env python3
"""H200 (or any CUDA/ROCm GPU) check + benchmark of the Triton indexer and top-k kernels.

Numerics at DeepSeek-V3.2 shapes against the reference provider, then speed with device events
(triton.testing.do_bench: warm-up, median) against ceilings measured in the same run (a large
device copy, fp8 and bf16 matmuls through torch), torch.topk, and aiter's Triton indexer
kernels when their source is given with ``--aiter-src`` (a folder holding
``aiter/ops/triton/_triton_kernels/fp8_mqa_logits.py`` (prefill) and ``pa_mqa_logits.py``
(paged decode) from the amd-aiter wheel; nothing of it is copied into this repo; the launches
are written against 0.1.7.post2.dev18, and other aiter versions or an installed amd-aiter's
site-packages folder are untested). Every figure printed here is a measurement on the
machine it ran on.

Usage: python scripts/bench_indexer_topk.py [--out DIR] [--aiter-src DIR] [--quick] [--sweep]
(the top-k alone, with variants and an older topk.py side by side: scripts/bench_topk_triton.py)
Writes DIR/bench_indexer_topk.json (all numbers) and prints a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import time
import traceback

import torch

from rocm_dsa.testing import topk_set_diff as set_diff

T0 = time.time()
BUDGET_S = 240.0
RESULTS: dict = {"sections": {}, "errors": {}}


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def section(name):
    def deco(fn):
        def run(*a, **kw):
            if time.time() - T0 > BUDGET_S:
                RESULTS["errors"][name] = f"skipped: past the {BUDGET_S} s budget"
                log(f"== {name}: skipped (budget)")
                return None
            log(f"== {name}")
            try:
                RESULTS["sections"][name] = fn(*a, **kw)
            except Exception as e:  # noqa: BLE001 - keep going, report at the end
                RESULTS["errors"][name] = f"{type(e).__name__}: {e}"
                traceback.print_exc()
            return RESULTS["sections"].get(name)
        return run
    return deco


def bench(fn, warmup=25, rep=100):
    import triton.testing

    return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")  # ms


def bench_graph(fn, rep=50):
    """Median ms of ``fn`` replayed from a CUDA graph (launch overhead removed)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    return bench(g.replay, rep=rep)


def diff(a, b):
    a, b = a.double(), b.double()
    fa, fb = torch.isfinite(a), torch.isfinite(b)
    both = fa & fb
    d = (a[both] - b[both]).abs()
    return {
        "nonfinite_mismatch": int((fa != fb).sum()),
        "max_abs": float(d.max()) if d.numel() else 0.0,
        "max_rel": float((d / b[both].abs().clamp_min(1e-6)).max()) if d.numel() else 0.0,
        "rel_l2": float(d.norm() / b[both].norm().clamp_min(1e-30)) if d.numel() else 0.0,
    }


# --------------------------------------------------------------------------------------------
def make_ragged(m, n, h, fp8, dev, causal=True):
    q = (torch.randn(m, h, 128, device=dev) * 2).to(fp8)
    k = (torch.randn(n, 128, device=dev) * 2).to(fp8)
    k_scale = torch.rand(n, device=dev) + 0.5
    w = torch.randn(m, h, device=dev) * (h ** -0.5) * (128 ** -0.5)
    if causal:  # the last m tokens of an n-token prefill
        ke = torch.arange(n - m + 1, n + 1, device=dev, dtype=torch.int32)
    else:
        ke = torch.full((m,), n, device=dev, dtype=torch.int32)
    ks = torch.zeros(m, device=dev, dtype=torch.int32)
    return q, k, k_scale, w, ks, ke


def make_paged(b, ctx, next_n, h, fp8, dev, page=64):
    from rocm_dsa.cache import IndexerKCache

    pages_per = math.ceil(ctx / page)
    num_pages = b * pages_per
    cache = IndexerKCache(num_pages, page_size=page, fp8_dtype=fp8, device=dev)
    vals = (torch.randn(num_pages, page * 128, device=dev) * 2).to(fp8).view(torch.uint8)
    cache.buffer[:, : page * 128] = vals
    cache.buffer[:, page * 128:].view(torch.float32).copy_(torch.rand(num_pages, page, device=dev) + 0.5)
    table = torch.randperm(num_pages, device=dev).to(torch.int32).reshape(b, pages_per)
    lens = torch.randint(max(1, ctx // 2), ctx + 1, (b,), device=dev, dtype=torch.int32)
    lens[0] = ctx
    q = (torch.randn(b, next_n, h, 128, device=dev) * 2).to(fp8)
    w = torch.randn(b * next_n, h, device=dev) * (h ** -0.5) * (128 ** -0.5)
    return q, cache, w, lens, table


def cfg_patch(module, op, meta, options):
    """Force one kernel config for ``op`` inside ``module`` (sweeps); returns an undo function."""
    from rocm_dsa.triton_kernels import _common

    orig = module.get_config

    def fake(name, arch, **facts):
        c = orig(name, arch, **facts)
        if name != op:
            return c
        return _common.KernelConfig({**c.meta, **meta}, {**c.options, **options}, "sweep")

    module.get_config = fake
    return lambda: setattr(module, "get_config", orig)


# --------------------------------------------------------------------------------------------
@section("ceilings")
def ceilings(dev):
    n = 1 << 30
    x = torch.empty(n, dtype=torch.uint8, device=dev).random_()
    y = torch.empty_like(x)
    t = bench(lambda: y.copy_(x))
    out = {"copy_GBps": 2 * n / t / 1e6}
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    bm = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    t = bench(lambda: a @ bm)
    out["bf16_mm_TFLOPs"] = 2 * 8192 ** 3 / t / 1e9
    try:
        fp8 = torch.float8_e4m3fn
        a8, b8 = a.to(fp8), bm.to(fp8).t().contiguous().t()
        one = torch.ones((), device=dev)
        t = bench(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16))
        out["fp8_mm_TFLOPs"] = 2 * 8192 ** 3 / t / 1e9
    except Exception as e:  # noqa: BLE001
        out["fp8_mm_error"] = str(e)
    log(out)
    return out


def overlap(got, want):
    """Mean over rows of |got ∩ want| / |want| (-1 ignored), on the device."""
    big = 1 << 40
    gs = torch.where(got >= 0, got.long(), big).sort(1).values.contiguous()
    ws = torch.where(want >= 0, want.long(), big).sort(1).values.contiguous()
    idx = torch.searchsorted(gs, ws).clamp(max=gs.shape[1] - 1)
    hit = (gs.gather(1, idx) == ws) & (ws != big)
    n = (ws != big).sum(1)
    frac = torch.where(n > 0, hit.sum(1) / n.clamp(min=1), (gs[:, 0] == big).double())
    return float(frac.double().mean())


@section("numerics")
def numerics(dev, fp8, quick):
    """Kernel vs reference. On the GPU the FP8 MMA accumulates with less than fp32 precision, so
    logits differ from the fp32 reference by ~1e-4 relative and near-tied top-k sets can differ:
    the fused top-k is therefore checked for exactness against the reference top-k of the
    kernel's own logits, and its overlap with the reference-logits top-k is reported."""
    from rocm_dsa import ops
    from rocm_dsa.cache import positions_to_slots

    out = {}
    # ragged indexer, M=4096, N=65536, H=64, causal windows (last 4096 tokens of a 64K prefill)
    args = make_ragged(4096, 65536, 64, fp8, dev)
    got = ops.indexer_logits(*args, provider="triton")
    want = ops.indexer_logits(*args, provider="reference")
    out["indexer_ragged_4096x65536_H64"] = diff(got, want)
    rows = torch.arange(0, 4096, 512, device=dev)
    q64 = args[0][rows].double()
    exact = torch.einsum("rhd,cd->rhc", q64, args[1].double()).clamp_min(0)
    exact = torch.einsum("rhc,rh->rc", exact, args[3][rows].double()) * args[2].double()
    inside = torch.arange(65536, device=dev)[None, :] < args[5][rows, None]
    exact = torch.where(inside, exact, torch.full_like(exact, float("-inf")))
    out["reference_vs_float64_8rows"] = diff(want[rows], exact)
    out["triton_vs_float64_8rows"] = diff(got[rows], exact)
    tk = ops.indexer_topk(*args, k=2048, provider="triton")
    out["indexer_topk_fused_vs_exact_topk_of_kernel_logits"] = set_diff(
        tk, ops.topk_indices(got, args[4], args[5], k=2048, provider="reference"))
    out["indexer_topk_fused_overlap_vs_reference_logits"] = overlap(
        tk, ops.topk_indices(want, args[4], args[5], k=2048, provider="reference"))
    del got, want, tk, exact
    log(out)
    # top-k [64, 131072] k=2048: continuous and tie-heavy rows, vs a float64 sort
    for name, x in (("randn", torch.randn(64, 131072, device=dev)),
                    ("ties", torch.randint(-50, 50, (64, 131072), device=dev).float()),
                    ("all_equal", torch.full((64, 131072), 0.25, device=dev))):
        got = ops.topk_indices(x, torch.zeros(64, dtype=torch.int32, device=dev),
                               torch.full((64,), 131072, dtype=torch.int32, device=dev), k=2048, provider="triton")
        order = torch.sort(x.double(), dim=1, descending=True, stable=True).indices[:, :2048]
        out[f"topk_64x131072_{name}"] = set_diff(got, order)
    log({k: v for k, v in out.items() if k.startswith("topk")})
    # paged decode: logits, fused top-k (positions exact on the kernel's logits; slots consistent)
    cases = [(64, 4096, 1), (128, 32768, 2)] if quick else [(64, 4096, 1), (64, 4096, 2), (128, 32768, 1),
                                                          (128, 32768, 2), (64, 131072, 1), (64, 131072, 2)]
    for b, ctx, nn in cases:
        q, cache, w, lens, table = make_paged(b, ctx, nn, 64, fp8, dev)
        got = ops.indexer_logits_paged(q, cache, w, lens, table, provider="triton")
        want = ops.indexer_logits_paged(q, cache, w, lens, table, provider="reference")
        key = f"paged_B{b}_ctx{ctx}_nextn{nn}"
        out[key] = diff(got, want)
        width = got.shape[1]
        last = lens.clamp(max=width)[:, None] - nn + torch.arange(nn, device=dev, dtype=torch.int32)
        ends = (last + 1).clamp(min=0).reshape(-1).to(torch.int32)
        zeros = torch.zeros_like(ends)
        pos = ops.indexer_topk_paged(q, cache, w, lens, table, k=2048, provider="triton")
        slots = ops.indexer_topk_paged(q, cache, w, lens, table, k=2048, return_slots=True, provider="triton")
        out[key + "_topk_vs_exact_topk_of_kernel_logits"] = set_diff(
            pos, ops.topk_indices(got, zeros, ends, k=2048, provider="reference"))
        out[key + "_slots_match_positions"] = bool(
            torch.equal(slots, positions_to_slots(pos, table.repeat_interleave(nn, 0), 64)))
        out[key + "_topk_overlap_vs_reference_logits"] = overlap(
            pos, ops.topk_indices(want, zeros, ends, k=2048, provider="reference"))
        log(key, {kk: v for kk, v in out.items() if kk.startswith(key)})
        del q, cache, got, want
    return out


@section("fused_prefill_memory")
def fused_memory(dev, fp8, tokens):
    from rocm_dsa import ops

    q, k, k_scale, w, ks, ke = make_ragged(tokens, tokens, 64, fp8, dev)
    torch.cuda.synchronize()
    out_bytes = tokens * 2048 * 4
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    res = ops.indexer_topk(q, k, k_scale, w, ks, ke, k=2048, provider="triton")
    torch.cuda.synchronize()
    wall = time.time() - t0
    extra = torch.cuda.max_memory_allocated() - base - out_bytes
    # check 32 rows (spread over the sequence, last row included) against the reference
    rows = torch.cat([torch.randperm(tokens - 1, device=dev)[:31], torch.tensor([tokens - 1], device=dev)])
    sub = (q[rows].contiguous(), k, k_scale, w[rows].contiguous(), ks[rows].contiguous(), ke[rows].contiguous())
    kernel_logits = ops.indexer_logits(*sub, provider="triton")
    want = ops.topk_indices(kernel_logits, sub[4], sub[5], k=2048, provider="reference")
    ref = ops.indexer_topk(*sub, k=2048, provider="reference")
    r = {"tokens": tokens, "extra_GiB": extra / 2 ** 30, "full_logits_GiB": tokens * tokens * 4 / 2 ** 30,
         "wall_s": wall, "check_32_rows_vs_exact_topk_of_kernel_logits": set_diff(res[rows], want),
         "overlap_32_rows_vs_reference": overlap(res[rows], ref)}
    log(r)
    return r


@section("indexer_speed")
def indexer_speed(dev, fp8, aiter_src, sweep):
    from rocm_dsa import ops
    from rocm_dsa.triton_kernels import indexer as ix

    m, n, h = 4096, 65536, 64
    flops = 2 * m * n * h * 128
    args = make_ragged(m, n, h, fp8, dev, causal=False)
    out = {}
    t = bench(lambda: ops.indexer_logits(*args, provider="triton"))
    out["triton"] = {"ms": t, "TFLOPs": flops / t / 1e9}
    log("triton indexer (config file)", out["triton"])
    if sweep:
        best = None
        for bt, bn, nw, ns in [(64, 128, 4, 3), (64, 128, 8, 3), (128, 128, 8, 3), (64, 256, 8, 3),
                               (128, 64, 4, 3), (64, 64, 4, 4), (128, 128, 8, 2), (64, 128, 4, 2)]:
            undo = cfg_patch(ix, "indexer_logits", {"BLOCK_T": bt, "BLOCK_N": bn},
                             {"num_warps": nw, "num_stages": ns})
            try:
                t = bench(lambda: ops.indexer_logits(*args, provider="triton"), rep=50)
                r = {"ms": t, "TFLOPs": flops / t / 1e9}
            except Exception as e:  # noqa: BLE001
                r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            finally:
                undo()
            out[f"sweep_BT{bt}_BN{bn}_w{nw}_s{ns}"] = r
            log(bt, bn, nw, ns, r)
            if "ms" in r and (best is None or r["ms"] < best[1]["ms"]):
                best = ((bt, bn, nw, ns), r)
        out["sweep_best"] = best
    # causal windows (blocks outside skipped): time and in-window FLOPs
    cargs = make_ragged(m, n, h, fp8, dev, causal=True)
    in_window = float((cargs[5] - cargs[4]).double().sum())
    t = bench(lambda: ops.indexer_logits(*cargs, provider="triton"))
    out["triton_causal"] = {"ms": t, "TFLOPs": 2 * in_window * h * 128 / t / 1e9}
    if aiter_src:
        out["aiter"] = aiter_indexer(args, flops, aiter_src)
    log(out)
    return out


def load_aiter_kernels(aiter_src, name):
    """One of aiter's ``_triton_kernels`` files, loaded by path (it imports only triton)."""
    path = os.path.join(aiter_src, f"aiter/ops/triton/_triton_kernels/{name}.py")
    spec = importlib.util.spec_from_file_location(f"aiter_{name}_kernels", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def aiter_indexer(args, flops, aiter_src):
    r = {}
    try:
        mod = load_aiter_kernels(aiter_src, "fp8_mqa_logits")
        r["source"] = mod.__file__
    except Exception as e:  # noqa: BLE001
        r["error"] = f"load: {type(e).__name__}: {e}"
        return r
    q, k, k_scale, w, ks, ke = args
    m, h, d = q.shape
    n = k.shape[0]

    def launch(**opts):
        logits = torch.full((m, n), float("-inf"), dtype=torch.float32, device=q.device)
        mod._fp8_mqa_logits_kernel[(m,)](
            Q_ptr=q, KV_ptr=k, kv_scales_ptr=k_scale, weights_ptr=w, cu_start_ptr=ks, cu_end_ptr=ke,
            logits_ptr=logits, seq_len=m, seq_len_kv=n, NUM_HEADS=h, HEAD_SIZE=d,
            stride_q_s=q.stride(0), stride_q_h=q.stride(1), stride_q_d=q.stride(2),
            stride_kv_s=k.stride(0), stride_kv_d=k.stride(1), stride_w_s=w.stride(0), stride_w_h=w.stride(1),
            stride_logits_s=logits.stride(0), stride_logits_k=logits.stride(1), BLOCK_KV=128, **opts)
        return logits

    amd_opts = dict(num_warps=4, num_stages=2, waves_per_eu=2, matrix_instr_nonkdim=16)  # aiter's launch
    try:
        launch(**amd_opts)
        r["launch"] = "aiter options as shipped"
        opts = amd_opts
    except Exception as e:  # noqa: BLE001
        r["as_shipped_error"] = f"{type(e).__name__}: {str(e)[:300]}"
        opts = dict(num_warps=4, num_stages=2)
        r["launch"] = "aiter kernel, AMD-only options (waves_per_eu, matrix_instr_nonkdim) dropped"
    try:
        from rocm_dsa import ops

        got = launch(**opts)
        want = ops.indexer_logits(*args, provider="triton")
        r["vs_triton"] = diff(got, want)
        t = bench(lambda: launch(**opts))
        t_fill = bench(lambda: torch.full((m, n), float("-inf"), dtype=torch.float32, device=q.device))
        r.update({"ms": t, "TFLOPs": flops / t / 1e9, "ms_of_which_fill": t_fill})
    except Exception as e:  # noqa: BLE001
        r["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    log("aiter", r)
    return r


@section("topk_speed")
def topk_speed(dev, sweep):
    from rocm_dsa import ops
    from rocm_dsa.triton_kernels import topk as tk

    out = {}
    for r_, c in ((64, 131072), (128, 65536), (1, 131072), (4096, 65536)):
        x = torch.randn(r_, c, device=dev)
        st = torch.zeros(r_, dtype=torch.int32, device=dev)
        en = torch.full((r_,), c, dtype=torch.int32, device=dev)
        key = f"{r_}x{c}_k2048"
        t_tr = bench(lambda: ops.topk_indices(x, st, en, k=2048, provider="triton"))
        t_th = bench(lambda: torch.topk(x, 2048, dim=1))
        row = {"triton_ms": t_tr, "torch_topk_ms": t_th, "speedup": t_th / t_tr,
               "triton_GBps_one_read": r_ * c * 4 / t_tr / 1e6}
        try:
            o = torch.empty(r_, 2048, dtype=torch.int32, device=dev)
            row["triton_graph_ms"] = bench_graph(lambda: tk.launch_topk(x, st, en, 2048, o, arch=ARCH))
            row["torch_topk_graph_ms"] = bench_graph(lambda: torch.topk(x, 2048, dim=1))
        except Exception as e:  # noqa: BLE001
            row["graph_error"] = str(e)[:200]
        out[key] = row
        log(key, row)
    try:  # per-kernel device time of one top-k at [64, 131072] (torch profiler)
        from torch.profiler import ProfilerActivity, profile

        x = torch.randn(64, 131072, device=dev)
        st = torch.zeros(64, dtype=torch.int32, device=dev)
        en = torch.full((64,), 131072, dtype=torch.int32, device=dev)
        o = torch.empty(64, 2048, dtype=torch.int32, device=dev)
        for _ in range(3):
            tk.launch_topk(x, st, en, 2048, o, arch=ARCH)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                tk.launch_topk(x, st, en, 2048, o, arch=ARCH)
            torch.cuda.synchronize()
        per = {}
        for ev in prof.key_averages():
            dt = getattr(ev, "device_time_total", None) or getattr(ev, "cuda_time_total", 0)
            if dt:
                per[ev.key] = dt / 20  # us per top-k call
        out["profile_64x131072_us_per_kernel"] = per
        log("topk kernels (us per call):", per)
    except Exception as e:  # noqa: BLE001
        out["profile_error"] = f"{type(e).__name__}: {str(e)[:200]}"
    if sweep:
        x = torch.randn(64, 131072, device=dev)
        st = torch.zeros(64, dtype=torch.int32, device=dev)
        en = torch.full((64,), 131072, dtype=torch.int32, device=dev)
        o = torch.empty(64, 2048, dtype=torch.int32, device=dev)
        for name, meta, opts in [
            ("default", {}, {}),
            ("rb5", {"RADIX_BITS": 5}, {}),
            ("rb8", {"RADIX_BITS": 8}, {}),
            ("blk1024_w4", {"BLOCK": 1024}, {"num_warps": 4}),
            ("blk4096", {"BLOCK": 4096}, {}),
            ("progs512", {"PROGRAMS": 512}, {}),
            ("progs2048", {"PROGRAMS": 2048}, {}),
            ("sel_w8", {"SELECT_WARPS": 8}, {}),
            ("sel_blk4096", {"SELECT_BLOCK": 4096}, {}),
            ("tlev2", {"T_LEVELS": 2}, {}),
            ("groups8k", {"GROUPS_PER_K": 8}, {}),
            ("groups2k", {"GROUPS_PER_K": 2}, {}),
        ]:
            over = {**meta, **opts}
            try:
                t = bench(lambda: tk.launch_topk(x, st, en, 2048, o, arch=ARCH, meta=over), rep=50)
                tg = bench_graph(lambda: tk.launch_topk(x, st, en, 2048, o, arch=ARCH, meta=over))
                r = {"ms": t, "graph_ms": tg}
            except Exception as e:  # noqa: BLE001
                r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            out[f"sweep_{name}"] = r
            log(name, r)
    return out


def aiter_paged_logits(mod, q, cache, w, lens, table):
    """aiter's paged indexer (``_deepgemm_fp8_paged_mqa_logits`` with the launch of its wrapper
    ``deepgemm_fp8_paged_mqa_logits``: all heads per program, 64-token chunks, 5 context
    splits). It reads page-size-1 records (128 FP8 values then the fp32 scale, 132 bytes per
    token) by token id, so the same keys are copied into that layout first (outside the timing).
    Returns a no-argument call giving logits [B * next_n, max_model_len] fp32. Its causal mask
    keeps positions <= len - j for MTP token j (ours: <= len - next_n + j).
    Raises ValueError for a cache of 2 GiB or more: the kernel's byte offsets are 32-bit (on the
    H200, B=128 x 128K tokens gave wrong logits with next_n 1 and an illegal address with next_n 2,
    docs/results/indexer-peers-h200-v5)."""
    b, nn, h, d = q.shape
    page = cache.page_size
    ctx = table.shape[1] * page
    if cache.buffer.numel() >= 2 ** 31:
        raise ValueError(f"aiter paged logits: cache of {cache.buffer.numel() / 2 ** 30:.1f} GiB needs 64-bit "
                         "offsets, which the kernel does not use; not run")
    pos = torch.arange(ctx, device=q.device)
    token = (table.long()[:, pos // page] * page + pos % page)  # [B, ctx] token ids
    from rocm_dsa.cache import indexer_cache_views

    values, scales = indexer_cache_views(cache.buffer, d)
    rec = torch.empty(values.shape[0] * page, d + 4, dtype=torch.uint8, device=q.device)
    rec[:, :d] = values.reshape(-1, d)
    rec[:, d:] = scales.reshape(-1, 1).view(torch.uint8).reshape(-1, 4)
    kv = rec[:, :d].view(q.dtype)
    kv_scale = rec[:, d:].view(torch.float32)
    idx = token.to(torch.int32).contiguous()
    out = torch.empty(b * nn, ctx, dtype=torch.float32, device=q.device)

    def call():
        mod._deepgemm_fp8_paged_mqa_logits[(b * nn * 5,)](
            b, nn, h, q, q.stride(0), q.stride(1), q.stride(2), kv, kv.stride(0), kv_scale, kv_scale.stride(0),
            lens, idx, w, w.stride(0), out, out.stride(0), ctx, idx.shape[1],
            ChunkQ=h, ChunkK=64, HiddenDim=d, SplitKV=5)
        return out
    return call


@section("paged_speed")
def paged_speed(dev, fp8, quick, sweep, aiter_src=None):
    from rocm_dsa import ops
    from rocm_dsa.triton_kernels import indexer as ix

    out = {}
    aiter = None
    if aiter_src:
        try:
            aiter = load_aiter_kernels(aiter_src, "pa_mqa_logits")
        except Exception as e:  # noqa: BLE001
            out["aiter_error"] = f"load: {type(e).__name__}: {e}"
    if sweep:  # B=128, 32K context, next_n 1: memory bound, pick BLOCK_N / warps / stages
        q, cache, w, lens, table = make_paged(128, 32768, 1, 64, fp8, dev)
        lens.fill_(32768)
        nbytes = 128 * 32768 * 132 + 128 * table.shape[1] * 64 * 4
        for bn, nw, ns in [(128, 4, 2), (64, 4, 2), (256, 4, 2), (256, 8, 2), (512, 8, 2), (256, 4, 3), (128, 8, 3)]:
            undo = cfg_patch(ix, "indexer_logits_paged", {"BLOCK_N": bn}, {"num_warps": nw, "num_stages": ns})
            try:
                t = bench(lambda: ops.indexer_logits_paged(q, cache, w, lens, table, provider="triton"), rep=50)
                r = {"us": t * 1e3, "GBps": nbytes / t / 1e6}
            except Exception as e:  # noqa: BLE001
                r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            finally:
                undo()
            out[f"sweep_BN{bn}_w{nw}_s{ns}"] = r
            log("paged sweep", bn, nw, ns, r)
    for b in (64, 128):
        for ctx in (4096, 32768, 131072):
            for nn in (1, 2):
                if quick and (ctx == 131072 or nn == 2):
                    continue
                q, cache, w, lens, table = make_paged(b, ctx, nn, 64, fp8, dev)
                lens.fill_(ctx)
                key = f"B{b}_ctx{ctx}_nextn{nn}"
                t = bench(lambda: ops.indexer_logits_paged(q, cache, w, lens, table, provider="triton"))
                kv_bytes = b * ctx * 132
                out_bytes = b * nn * table.shape[1] * 64 * 4
                tf = bench(lambda: ops.indexer_topk_paged(q, cache, w, lens, table, k=2048, return_slots=True,
                                                          provider="triton"))
                row = {"logits_ms": t, "logits_GBps": (kv_bytes + out_bytes) / t / 1e6,
                       "logits_TFLOPs": 2 * b * nn * ctx * 64 * 128 / t / 1e9, "fused_topk_ms": tf}
                try:
                    row["fused_topk_graph_ms"] = bench_graph(lambda: ops.indexer_topk_paged(
                        q, cache, w, lens, table, k=2048, return_slots=True, provider="triton"))
                except Exception as e:  # noqa: BLE001
                    row["graph_error"] = str(e)[:200]
                if aiter is not None:
                    try:
                        fa = aiter_paged_logits(aiter, q, cache, w, lens, table)
                        got = fa()[:, : ctx - nn + 1]
                        mine = ops.indexer_logits_paged(q, cache, w, lens, table, provider="triton")
                        mine = mine.reshape(got.shape[0], -1)[:, : ctx - nn + 1]
                        # every context is full (lens.fill_ above), so the first ctx - next_n + 1
                        # positions are the ones both causal masks keep (aiter leaves columns past
                        # a shorter context unwritten)
                        assert bool((lens == ctx).all())
                        row["aiter_vs_triton"] = diff(got, mine)
                        ta = bench(fa)
                        row.update({"aiter_logits_ms": ta, "aiter_logits_GBps": (kv_bytes + out_bytes) / ta / 1e6})
                    except Exception as e:  # noqa: BLE001
                        row["aiter_error"] = f"{type(e).__name__}: {str(e)[:300]}"
                out[key] = row
                log(key, row)
    return out


@section("fused_prefill_speed")
def fused_speed(dev, fp8):
    from rocm_dsa import ops

    args = make_ragged(4096, 65536, 64, fp8, dev)
    t_fused = bench(lambda: ops.indexer_topk(*args, k=2048, provider="triton"), rep=30)
    t_logits = bench(lambda: ops.indexer_logits(*args, provider="triton"), rep=30)
    logits = ops.indexer_logits(*args, provider="triton")
    t_topk = bench(lambda: ops.topk_indices(logits, args[4], args[5], k=2048, provider="triton"), rep=30)
    r = {"fused_ms": t_fused, "logits_ms": t_logits, "topk_on_logits_ms": t_topk}
    log(r)
    return r


def main():
    global ARCH, BUDGET_S
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--aiter-src", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--prefill-tokens", type=int, default=131072)
    ap.add_argument("--only", default="", help="comma list of sections")
    ap.add_argument("--budget", type=float, default=240.0, help="seconds after which sections are skipped")
    a = ap.parse_args()
    BUDGET_S = a.budget
    import triton

    from rocm_dsa.platform import detect

    dev = torch.device("cuda")
    plat = detect(dev)
    ARCH = plat.arch
    fp8 = plat.fp8_dtype
    RESULTS["machine"] = {"gpu": torch.cuda.get_device_name(), "arch": plat.arch, "torch": torch.__version__,
                          "triton": triton.__version__, "fp8": str(fp8), "argv": sys.argv}
    log(RESULTS["machine"])
    only = set(filter(None, a.only.split(",")))

    def want(name):
        return not only or name in only

    if want("ceilings"):
        ceilings(dev)
    if want("numerics"):
        numerics(dev, fp8, a.quick)
    if want("memory"):
        fused_memory(dev, fp8, a.prefill_tokens)
    if want("indexer"):
        indexer_speed(dev, fp8, a.aiter_src, a.sweep)
    if want("topk"):
        topk_speed(dev, a.sweep)
    if want("paged"):
        paged_speed(dev, fp8, a.quick, a.sweep, a.aiter_src)
    if want("fused"):
        fused_speed(dev, fp8)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench_indexer_topk.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)
    log("errors:", json.dumps(RESULTS["errors"], indent=1))
    summary(RESULTS)


def summary(res):
    s = res["sections"]
    print("\n=== summary (measured on", res["machine"]["gpu"], ") ===")
    c = s.get("ceilings", {})
    print(f"ceilings: copy {c.get('copy_GBps', 0):.0f} GB/s, bf16 mm {c.get('bf16_mm_TFLOPs', 0):.0f} TFLOP/s, "
          f"fp8 mm {c.get('fp8_mm_TFLOPs', 0):.0f} TFLOP/s")
    ix = s.get("indexer_speed") or {}
    if ix:
        tr, ai = ix.get("triton", {}), ix.get("aiter", {})
        print(f"indexer M=4096 N=65536 H=64: triton {tr.get('ms', 0):.3f} ms {tr.get('TFLOPs', 0):.0f} TFLOP/s; "
              f"aiter {ai.get('ms', float('nan')):.3f} ms {ai.get('TFLOPs', float('nan')):.0f} TFLOP/s "
              f"({ai.get('launch', ai.get('error', ''))})")
        if ix.get("sweep_best"):
            print("  best swept config:", ix["sweep_best"])
    for key, row in (s.get("topk_speed") or {}).items():
        if "torch_topk_ms" in row:
            print(f"topk {key}: triton {row['triton_ms'] * 1e3:.1f} us (graph {row.get('triton_graph_ms', 0) * 1e3:.1f}),"
                  f" torch.topk {row['torch_topk_ms'] * 1e3:.1f} us (graph {row.get('torch_topk_graph_ms', 0) * 1e3:.1f}),"
                  f" x{row['speedup']:.2f}")
    for key, row in (s.get("paged_speed") or {}).items():
        if "logits_ms" in row:
            print(f"paged {key}: {row['logits_ms'] * 1e3:.1f} us {row['logits_GBps']:.0f} GB/s; fused+topk "
                  f"{row['fused_topk_ms'] * 1e3:.1f} us (graph {row.get('fused_topk_graph_ms', 0) * 1e3:.1f})"
                  + (f"; aiter logits {row['aiter_logits_ms'] * 1e3:.1f} us" if "aiter_logits_ms" in row else ""))
        else:
            print(f"paged {key}: {row}")
    if s.get("fused_prefill_speed"):
        print("fused prefill 4096x65536:", s["fused_prefill_speed"])
    if s.get("fused_prefill_memory"):
        print("fused prefill memory:", s["fused_prefill_memory"])
    if s.get("numerics"):
        print("numerics:", json.dumps(s["numerics"]))
    print("errors:", res["errors"])


ARCH = "cuda"
if __name__ == "__main__":
    main()
