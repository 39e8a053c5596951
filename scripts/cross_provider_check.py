#!/usr/bin/env python3
"""Cross-provider agreement and side-by-side timing on one GPU (written for the H200).

For every op of rocm_dsa.ops and every provider that can run it here (reference, triton, hip,
flashmla, deepgemm, aiter), on identical random inputs at DeepSeek-V3.2 shapes:

  agreement  each provider's output against the reference provider (the definition):
             attention outputs within the bf16 tolerance of rocm_dsa.testing, LSE/max_logits
             within the bf16 tolerance too (they come from bf16 MMA), indexer logits within an
             FP8-MMA accumulation tolerance (rtol 2e-3, atol 1e-3 x row scale), top-k index sets
             exactly (fused indexer + top-k: rows that differ must differ only by near-ties at
             the k-th logit, which is reported), cache stores byte-exact.
             The reference runs on a prefix of the rows (the ops are row-wise), so the whole
             check stays inside the time budget.
  timing     CUDA events around one call, L2 flushed (512 MiB write) before each call, median
             of up to 20 calls after warm-up (the first call builds / JIT-compiles / autotunes).
             TFLOP/s for sparse MLA counts 2*rows*H*topk*(576+512) (all indices valid);
             the indexer counts 2*H*128 per visible (query, key) pair; top-k and stores GB/s
             of the bytes read + written.

Providers that cannot run a case are listed with their reasons (ProviderError text).
Results: $OUT/cross_provider.json and $OUT/cross_provider.md (also printed at the end).
Label figures with the GPU they ran on (an H200 is not an MI300X).

Usage (H200 device call):
    python3 scripts/cross_provider_check.py --out $OUT --budget 230 [--providers flashmla,deepgemm,...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback

import torch

T0 = time.time()
SM_SCALE = 0.1352338
TOPK = 2048
PAGE = 64
ALL_PROVIDERS = ("reference", "flashmla", "deepgemm", "triton", "hip", "aiter")
ARGS = None
DEV = "cuda"  # "cpu" only for --cpu-smoke (plumbing check: tiny shapes, wall-clock timing)
RESULTS: dict = {"device": None, "torch": torch.__version__, "cases": [], "providers": {}, "errors": []}


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def left() -> float:
    return ARGS.budget - (time.time() - T0)


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
_FLUSH = None


def sync():
    if DEV != "cpu":
        torch.cuda.synchronize()


def timed_ms(fn, max_reps: int = 20, max_s: float = 0.6) -> float:
    global _FLUSH
    if DEV == "cpu":
        fn()
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    if _FLUSH is None:
        _FLUSH = torch.empty(512 << 20, dtype=torch.uint8, device=DEV)
    fn()  # warm-up after the checked call
    times = []
    t_end = time.time() + max_s
    while len(times) < max_reps and (len(times) < 3 or time.time() < t_end):
        _FLUSH.zero_()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------
def cmp_float(name, got, want, *, dtype=None, atol=None, rtol=None, min_cos=None):
    from rocm_dsa.testing import assert_close, compare

    d = compare(got, want)
    rec = {"name": name, "max_abs": d.max_abs, "max_rel": d.max_rel, "cos": d.cosine,
           "nonfinite_mismatch": d.nonfinite_mismatch}
    try:
        assert_close(got, want, dtype=dtype, atol=atol, rtol=rtol, min_cos=min_cos, name=name)
        rec["ok"] = True
    except AssertionError as e:
        rec["ok"] = False
        rec["why"] = str(e)
    return rec


def cmp_logits(name, got, want):
    fin = torch.isfinite(want)
    scale = float(want[fin].abs().max()) if bool(fin.any()) else 1.0
    return cmp_float(name, got, want, dtype=torch.float32, atol=1e-3 * scale, rtol=2e-3, min_cos=1 - 1e-5)


def cmp_topk(name, got, want, ref_logits=None, starts=None, slots_of=None):
    """Exact per-row sets; with ``ref_logits`` rows that differ are classified as near-ties."""
    a = got.detach().cpu().long()
    e = want.detach().cpu().long()
    rows_bad, ties = [], 0
    for r in range(e.shape[0]):
        sa = {v for v in a[r].tolist() if v >= 0}
        se = {v for v in e[r].tolist() if v >= 0}
        if sa == se:
            continue
        if ref_logits is not None:
            off = 0 if starts is None else int(starts[r])
            row = ref_logits[r].detach().cpu().double()
            miss = [row[v + off].item() for v in se - sa if 0 <= v + off < row.numel()]
            extra = [row[v + off].item() for v in sa - se if 0 <= v + off < row.numel()]
            if miss and extra and len(miss) == len(extra):
                kth = min(row[v + off].item() for v in se)
                spread = max(abs(x - kth) for x in miss + extra)
                if spread <= 2e-3 * max(1.0, abs(kth)):
                    ties += 1
                    continue
        rows_bad.append(r)
    rec = {"name": name, "rows": int(e.shape[0]), "rows_differ": len(rows_bad) + ties, "near_tie_rows": ties,
           "ok": not rows_bad}
    if rows_bad:
        r = rows_bad[0]
        sa = {v for v in a[r].tolist() if v >= 0}
        se = {v for v in e[r].tolist() if v >= 0}
        rec["why"] = f"row {r}: missing {sorted(se - sa)[:8]}, extra {sorted(sa - se)[:8]}"
    return rec


def cmp_bytes(name, got, want):
    eq = got.view(torch.uint8) == want.view(torch.uint8)
    return {"name": name, "bytes_differ": int((~eq).sum()), "ok": bool(eq.all())}


# ---------------------------------------------------------------------------------------------
# cases: each builds inputs once, then run(provider) -> outputs, check(outputs, reference)
# ---------------------------------------------------------------------------------------------
def rand_fp8(shape, scale=2.0):
    from rocm_dsa.fp8 import cast_to_fp8

    return cast_to_fp8(torch.randn(shape, device=DEV) * scale, torch.float8_e4m3fn)


class Case:
    op = ""
    label = ""
    flops = 0.0
    bytes = 0.0

    def run(self, provider):  # full shape
        raise NotImplementedError

    def run_ref(self):  # reference on the checked prefix
        raise NotImplementedError

    def check(self, out, ref):
        raise NotImplementedError


class MLAPrefill(Case):
    op = "sparse_mla_prefill"

    def __init__(self, t, h, n, topk=TOPK, ref_rows=256):
        self.label = f"T={t} H={h} N={n} topk={topk} kv=bf16"
        self.q = (torch.randn(t, h, 576, device=DEV) * 0.5).to(torch.bfloat16)
        self.kv = (torch.randn(n, 1, 576, device=DEV)).to(torch.bfloat16)
        self.idx = torch.argsort(torch.rand(t, n, device=DEV), dim=1)[:, :topk].to(torch.int32).unsqueeze(1).contiguous()
        self.m = min(ref_rows, t)
        self.flops = 2.0 * t * h * topk * (576 + 512)
        self.bytes = t * topk * 1152 + t * h * (576 + 512) * 2

    def run(self, p):
        from rocm_dsa import ops

        return ops.sparse_mla_prefill(self.q, self.kv, self.idx, sm_scale=SM_SCALE, provider=p)

    def run_ref(self):
        from rocm_dsa import ops

        return ops.sparse_mla_prefill(self.q[: self.m].contiguous(), self.kv, self.idx[: self.m].contiguous(),
                                      sm_scale=SM_SCALE, provider="reference")

    def check(self, out, ref):
        m = self.m
        return [cmp_float("out", out[0][:m], ref[0]),
                cmp_float("max_logits", out[1][:m], ref[1], dtype=torch.bfloat16),
                cmp_float("lse", out[2][:m], ref[2], dtype=torch.bfloat16)]


class MLAEdges(Case):
    """Correctness only: invalid entries anywhere, out-of-range slots, empty rows, heads 16."""

    op = "sparse_mla_decode"

    def __init__(self, kv_format, h=16, b=8, s_q=2, topk=128):
        from rocm_dsa.cache import MLAKVCache

        self.label = f"edges B={b} s_q={s_q} H={h} topk={topk} kv={kv_format} (-1, >=N, empty rows)"
        self.timing = False
        cache = MLAKVCache(64, page_size=PAGE, kv_dtype=kv_format, fp8_dtype=torch.float8_e4m3fn, device=DEV)
        n = 64 * PAGE
        cache.store(torch.randn(n, 512, device=DEV), torch.randn(n, 64, device=DEV),
                    torch.arange(n, device=DEV), provider="reference")
        self.cache = cache
        self.q = (torch.randn(b, s_q, h, 576, device=DEV) * 0.5).to(torch.bfloat16)
        idx = torch.randint(0, n, (b, s_q, topk), device=DEV, dtype=torch.int32)
        idx[0, :, ::3] = -1
        idx[1, 0, :10] = n + 100
        idx[2, 1, 5:20] = -7
        idx[3] = -1
        self.idx = idx
        self.m = b

    def run(self, p):
        from rocm_dsa import ops

        return ops.sparse_mla_decode(self.q, self.cache, self.idx, sm_scale=SM_SCALE, provider=p)

    def run_ref(self):
        return self.run("reference")

    def check(self, out, ref):
        return [cmp_float("out", out[0], ref[0]), cmp_float("lse", out[1], ref[1], dtype=torch.bfloat16)]


class MLADecode(Case):
    op = "sparse_mla_decode"

    def __init__(self, kv_format, b, h, ctx, s_q=1, topk=TOPK, ref_rows=16):
        from rocm_dsa.cache import MLAKVCache

        self.label = f"B={b} s_q={s_q} H={h} ctx={ctx // 1024}K topk={topk} kv={kv_format}"
        pages_per = ctx // PAGE
        cache = MLAKVCache(b * pages_per, page_size=PAGE, kv_dtype=kv_format, fp8_dtype=torch.float8_e4m3fn,
                           device=DEV)
        n = b * pages_per * PAGE
        for s0 in range(0, n, 1 << 20):
            s1 = min(n, s0 + (1 << 20))
            cache.store(torch.randn(s1 - s0, 512, device=DEV), torch.randn(s1 - s0, 64, device=DEV),
                        torch.arange(s0, s1, device=DEV), provider="reference")
        self.cache = cache
        table = torch.randperm(b * pages_per, device=DEV).view(b, pages_per)
        pos = torch.argsort(torch.rand(b * s_q, ctx, device=DEV), 1)[:, :topk].view(b, s_q, topk)
        rows = table.repeat_interleave(s_q, 0).view(b, s_q, -1)
        self.idx = (torch.gather(rows, 2, pos // PAGE) * PAGE + pos % PAGE).to(torch.int32).contiguous()
        self.q = (torch.randn(b, s_q, h, 576, device=DEV) * 0.5).to(torch.bfloat16)
        self.m = min(ref_rows, b)
        self.flops = 2.0 * b * s_q * h * topk * (576 + 512)
        row_b = 656 if kv_format == "fp8" else 1152
        self.bytes = b * s_q * (topk * row_b + h * (576 + 512) * 2)

    def run(self, p):
        from rocm_dsa import ops

        return ops.sparse_mla_decode(self.q, self.cache, self.idx, sm_scale=SM_SCALE, provider=p)

    def run_ref(self):
        from rocm_dsa import ops

        return ops.sparse_mla_decode(self.q[: self.m].contiguous(), self.cache, self.idx[: self.m].contiguous(),
                                     sm_scale=SM_SCALE, provider="reference")

    def check(self, out, ref):
        m = self.m
        return [cmp_float("out", out[0][:m], ref[0]), cmp_float("lse", out[1][:m], ref[1], dtype=torch.bfloat16)]


class IndexerRagged(Case):
    def __init__(self, op, t, n, h=64, ref_rows=128):
        self.op = op
        self.label = f"T={t} N={n // 1024}K H={h} causal" + (f" k={TOPK}" if op == "indexer_topk" else "")
        self.q = rand_fp8((t, h, 128))
        self.k = rand_fp8((n, 128))
        self.sc = torch.exp2(torch.randint(-3, 1, (n,), device=DEV).float())
        self.w = torch.randn(t, h, device=DEV) * (h ** -0.5) * (128 ** -0.5)
        self.ks = torch.zeros(t, dtype=torch.int32, device=DEV)
        self.ke = (torch.arange(t, device=DEV) + (n - t) + 1).to(torch.int32)
        self.m = min(ref_rows, t)
        pairs = float((self.ke - self.ks).sum())
        self.flops = 2.0 * h * 128 * pairs
        self.bytes = n * 132 + t * h * 132 + (t * n * 4 if op == "indexer_logits" else t * TOPK * 4)

    def args(self, m=None):
        s = slice(0, m)
        return (self.q[s].contiguous(), self.k, self.sc, self.w[s].contiguous(), self.ks[s].contiguous(),
                self.ke[s].contiguous())

    def run(self, p):
        from rocm_dsa import ops

        if self.op == "indexer_logits":
            return ops.indexer_logits(*self.args(), provider=p)
        return ops.indexer_topk(*self.args(), k=TOPK, provider=p)

    def run_ref(self):
        from rocm_dsa import ops

        logits = ops.indexer_logits(*self.args(self.m), provider="reference")
        if self.op == "indexer_logits":
            return logits
        return ops.indexer_topk(*self.args(self.m), k=TOPK, provider="reference"), logits

    def check(self, out, ref):
        m = self.m
        if self.op == "indexer_logits":
            return [cmp_logits("logits", out[:m], ref)]
        return [cmp_topk("indices", out[:m], ref[0], ref_logits=ref[1], starts=self.ks[:m])]


class IndexerPaged(Case):
    def __init__(self, op, b, ctx, next_n=1, h=64, ref_rows=16):
        from rocm_dsa.cache import IndexerKCache

        self.op = op
        self.label = f"B={b} next_n={next_n} ctx={ctx // 1024}K H={h}" + (" k=2048 slots" if "topk" in op else "")
        pages_per = ctx // PAGE
        cache = IndexerKCache(b * pages_per, page_size=PAGE, fp8_dtype=torch.float8_e4m3fn, device=DEV)
        n = b * pages_per * PAGE
        for s0 in range(0, n, 1 << 20):
            s1 = min(n, s0 + (1 << 20))
            cache.store(torch.randn(s1 - s0, 128, device=DEV), torch.arange(s0, s1, device=DEV),
                        provider="reference")
        self.cache = cache
        self.table = torch.randperm(b * pages_per, device=DEV).view(b, pages_per).to(torch.int32)
        self.lens = torch.randint(ctx // 2, ctx + 1, (b,), device=DEV, dtype=torch.int32)
        self.q = rand_fp8((b, next_n, h, 128))
        self.w = torch.randn(b * next_n, h, device=DEV) * (h ** -0.5) * (128 ** -0.5)
        self.next_n = next_n
        self.m = min(ref_rows, b)
        pairs = float(self.lens.sum()) * next_n
        self.flops = 2.0 * h * 128 * pairs
        self.bytes = float(self.lens.sum()) * 132 + b * next_n * (ctx * 4 if op == "indexer_logits_paged" else TOPK * 4)

    def args(self, m=None):
        s = slice(0, m)
        rows = slice(0, None if m is None else m * self.next_n)
        return (self.q[s].contiguous(), self.cache.buffer, self.w[rows].contiguous(), self.lens[s].contiguous(),
                self.table[s].contiguous())

    def run(self, p):
        from rocm_dsa import ops

        if self.op == "indexer_logits_paged":
            return ops.indexer_logits_paged(*self.args(), provider=p)
        return ops.indexer_topk_paged(*self.args(), k=TOPK, return_slots=True, provider=p)

    def run_ref(self):
        from rocm_dsa import ops

        logits = ops.indexer_logits_paged(*self.args(self.m), provider="reference")
        if self.op == "indexer_logits_paged":
            return logits
        pos = ops.indexer_topk_paged(*self.args(self.m), k=TOPK, return_slots=False, provider="reference")
        return None, logits, pos

    def check(self, out, ref):
        rows = self.m * self.next_n
        if self.op == "indexer_logits_paged":
            return [cmp_logits("logits", out[:rows], ref)]
        # slots -> request-local positions (inverse page table), so that rows that differ can be
        # classified as near-ties on the reference logits
        table = self.table[: self.m].long()
        inv = torch.full((self.cache.num_pages,), -1, dtype=torch.long, device=table.device)
        for b in range(table.shape[0]):
            inv[table[b]] = torch.arange(table.shape[1], device=table.device)
        s = out[:rows].long()
        pos = torch.where(s >= 0, inv[s.clamp_min(0) // PAGE] * PAGE + s.clamp_min(0) % PAGE, s)
        return [cmp_topk("positions (from slots)", pos, ref[2], ref_logits=ref[1])]


class TopK(Case):
    op = "topk_indices"

    def __init__(self, rows, cols, ref_rows=256):
        self.label = f"R={rows} C={cols // 1024}K k={TOPK} ragged windows"
        self.x = torch.randn(rows, cols, device=DEV)
        self.starts = torch.randint(0, cols // 4, (rows,), device=DEV, dtype=torch.int32)
        self.ends = torch.randint(cols // 2, cols + 1, (rows,), device=DEV, dtype=torch.int32)
        self.m = min(ref_rows, rows)
        self.bytes = float((self.ends - self.starts).sum()) * 4 + rows * TOPK * 4

    def run(self, p):
        from rocm_dsa import ops

        return ops.topk_indices(self.x, self.starts, self.ends, k=TOPK, provider=p)

    def run_ref(self):
        from rocm_dsa import ops

        m = self.m
        return ops.topk_indices(self.x[:m].contiguous(), self.starts[:m].contiguous(), self.ends[:m].contiguous(),
                                k=TOPK, provider="reference")

    def check(self, out, ref):
        return [cmp_topk("indices", out[: self.m], ref)]


class Store(Case):
    def __init__(self, op, n, kv_format="fp8"):
        from rocm_dsa.cache import IndexerKCache, MLAKVCache

        self.op = op
        self.n = n
        self.label = f"N={n // 1024}K" + (f" kv={kv_format}" if op == "store_mla_kv" else "")
        pages = 2 * n // PAGE
        self.slots = torch.randperm(pages * PAGE, device=DEV)[:n]
        if op == "store_indexer_k":
            self.k = torch.randn(n, 128, device=DEV).to(torch.bfloat16)
            self.make = lambda: IndexerKCache(pages, page_size=PAGE, device=DEV)
            self.bytes = n * (256 + 132 + 8)
        else:
            self.c = torch.randn(n, 512, device=DEV).to(torch.bfloat16)
            self.r = torch.randn(n, 64, device=DEV).to(torch.bfloat16)
            self.make = lambda: MLAKVCache(pages, page_size=PAGE, kv_dtype=kv_format, device=DEV)
            self.bytes = n * (1152 + (656 if kv_format == "fp8" else 1152) + 8)
        self.m = n

    def run(self, p):
        from rocm_dsa import ops

        cache = self.make()
        if self.op == "store_indexer_k":
            ops.store_indexer_k(self.k, cache, self.slots, provider=p)
        else:
            ops.store_mla_kv(self.c, self.r, cache, self.slots, provider=p)
        return cache.buffer

    def run_ref(self):
        return self.run("reference")

    def check(self, out, ref):
        return [cmp_bytes("cache bytes", out, ref)]


def build_cases(quick: bool) -> list[Case]:
    if quick:
        return [MLAPrefill(256, 64, 4096, ref_rows=64), MLADecode("fp8", 8, 64, 4096), MLAEdges("fp8"),
                MLAEdges("bf16"), IndexerRagged("indexer_logits", 256, 4096), IndexerPaged("indexer_logits_paged", 4, 8192),
                TopK(64, 16384), Store("store_mla_kv", 4096)]
    return [
        MLAPrefill(4096, 128, 8192), MLAPrefill(4096, 64, 8192), MLAPrefill(4096, 16, 8192),
        MLADecode("fp8", 128, 128, 4096), MLADecode("fp8", 128, 16, 4096), MLADecode("fp8", 64, 64, 4096, s_q=2),
        MLADecode("bf16", 128, 128, 4096),
        MLAEdges("fp8"), MLAEdges("bf16"),
        IndexerRagged("indexer_logits", 2048, 16384), IndexerPaged("indexer_logits_paged", 64, 32768),
        IndexerPaged("indexer_logits_paged", 64, 32768, next_n=2),
        TopK(2048, 32768), IndexerRagged("indexer_topk", 2048, 16384), IndexerPaged("indexer_topk_paged", 64, 32768),
        Store("store_indexer_k", 65536), Store("store_mla_kv", 65536, "fp8"), Store("store_mla_kv", 65536, "bf16"),
    ]


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def provider_status(names):
    from rocm_dsa.backends import get_provider

    out = {}
    for n in names:
        try:
            why = get_provider(n).unavailable_reason()
        except Exception as e:  # noqa: BLE001
            why = f"{type(e).__name__}: {e}"
        out[n] = why or "available"
    return out


def run_case(case: Case, providers) -> dict:
    from rocm_dsa.backends import ProviderError

    rec = {"op": case.op, "shape": case.label, "flops": case.flops, "bytes": case.bytes, "providers": {}}
    log(f"{case.op} {case.label}")
    try:
        ref = case.run_ref()
        sync()
    except Exception as e:  # noqa: BLE001
        rec["error"] = f"reference failed: {type(e).__name__}: {e}"
        log(rec["error"])
        return rec
    timing = getattr(case, "timing", True)
    for p in providers:
        if p == "reference" and DEV != "cpu":
            continue
        entry: dict = {}
        rec["providers"][p] = entry
        if left() < 15:
            entry["skipped"] = "time budget"
            continue
        try:
            t = time.time()
            out = case.run(p)
            sync()
            entry["first_call_s"] = round(time.time() - t, 3)
        except ProviderError as e:
            entry["unsupported"] = str(e).split(": ", 1)[-1][:300]
            continue
        except Exception as e:  # noqa: BLE001
            entry["error"] = f"{type(e).__name__}: {e}"[:500]
            RESULTS["errors"].append({"op": case.op, "shape": case.label, "provider": p,
                                      "trace": traceback.format_exc()[-2000:]})
            log(f"  {p}: ERROR {entry['error']}")
            continue
        entry["checks"] = case.check(out, ref)
        entry["ok"] = all(c["ok"] for c in entry["checks"])
        del out
        if timing:
            try:
                ms = timed_ms(lambda: case.run(p))
                entry["ms"] = ms
                if case.flops:
                    entry["tflops"] = case.flops / ms / 1e9
                if case.bytes:
                    entry["gbps"] = case.bytes / ms / 1e6
            except Exception as e:  # noqa: BLE001
                entry["timing_error"] = f"{type(e).__name__}: {e}"[:300]
        bad = [c for c in entry["checks"] if not c["ok"]]
        log(f"  {p}: {'OK' if not bad else 'MISMATCH ' + '; '.join(c.get('why', '')[:160] for c in bad)}"
            + (f"  {entry['ms'] * 1e3:.1f} us" if "ms" in entry else "")
            + (f"  {entry['tflops']:.0f} TFLOP/s" if "tflops" in entry else "")
            + (f"  {entry['gbps']:.0f} GB/s" if "gbps" in entry and "tflops" not in entry else ""))
    return rec


def markdown() -> str:
    dev = RESULTS["device"]
    lines = [f"# Cross-provider agreement and timing ({dev}, measured)", "",
             f"torch {RESULTS['torch']}; reference = rocm_dsa reference provider (fp32 definition) on a row prefix; "
             "times: CUDA events, L2 flushed, median after warm-up. TFLOP/s for sparse MLA counts "
             "2*rows*H*topk*(576+512); indexer 2*H*128 per visible pair; GB/s for top-k and stores.", "",
             "## Providers", ""]
    for n, s in RESULTS["providers"].items():
        lines.append(f"- `{n}`: {s}")
    provs = [p for p in ALL_PROVIDERS if p != "reference" or DEV == "cpu"]
    lines += ["", "## Results", "", "| op | shape | " + " | ".join(provs) + " |",
              "|---|---|" + "---|" * len(provs)]
    for c in RESULTS["cases"]:
        cells = []
        for p in provs:
            e = c["providers"].get(p)
            if not e:
                cells.append("")
            elif "unsupported" in e:
                cells.append("n/a")
            elif "skipped" in e:
                cells.append("skipped")
            elif "error" in e:
                cells.append("ERROR")
            else:
                mark = "ok" if e.get("ok") else "**MISMATCH**"
                perf = ""
                if "ms" in e:
                    perf = f" {e['ms'] * 1e3:.1f} us"
                    if "tflops" in e:
                        perf += f", {e['tflops']:.0f} TF/s"
                    elif "gbps" in e:
                        perf += f", {e['gbps']:.0f} GB/s"
                cells.append(mark + perf)
        lines.append(f"| {c['op']} | {c['shape']} | " + " | ".join(cells) + " |")
    notes = []
    for c in RESULTS["cases"]:
        if "error" in c:
            notes.append(f"- {c['op']} {c['shape']}: {c['error']}")
        for p, e in c["providers"].items():
            if "error" in e:
                notes.append(f"- {c['op']} {c['shape']} `{p}`: {e['error'][:300]}")
            for chk in e.get("checks", []):
                if not chk["ok"]:
                    notes.append(f"- {c['op']} {c['shape']} `{p}` {chk['name']}: {chk.get('why', '')[:300]}")
                elif chk.get("near_tie_rows"):
                    notes.append(f"- {c['op']} {c['shape']} `{p}`: {chk['near_tie_rows']} rows differ only by "
                                 "near-ties at the k-th logit")
    unsupported = sorted({(p, e["unsupported"][:160]) for c in RESULTS["cases"] for p, e in c["providers"].items()
                          if "unsupported" in e})
    if notes:
        lines += ["", "## Mismatches, errors, notes", ""] + notes
    if unsupported:
        lines += ["", "## n/a reasons (first per provider and reason)", ""]
        lines += [f"- `{p}`: {r}" for p, r in unsupported]
    return "\n".join(lines) + "\n"


def save():
    os.makedirs(ARGS.out, exist_ok=True)
    with open(os.path.join(ARGS.out, "cross_provider.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)
    with open(os.path.join(ARGS.out, "cross_provider.md"), "w") as f:
        f.write(markdown())


def main(argv=None) -> int:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.environ.get("OUT", "cross_provider_out"))
    ap.add_argument("--budget", type=float, default=230.0, help="seconds; later cases are skipped past it")
    ap.add_argument("--providers", default=",".join(ALL_PROVIDERS))
    ap.add_argument("--quick", action="store_true", help="small shapes (a smoke run)")
    ap.add_argument("--cpu-smoke", action="store_true", help="plumbing check on the CPU (implies --quick)")
    ARGS = ap.parse_args(argv)
    global DEV
    if ARGS.cpu_smoke:
        DEV, ARGS.quick = "cpu", True
    elif not torch.cuda.is_available():
        print("needs a GPU", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    if DEV == "cpu":
        RESULTS["device"] = "CPU (plumbing smoke run, not a measurement)"
    else:
        props = torch.cuda.get_device_properties(0)
        RESULTS["device"] = f"{props.name}, {props.multi_processor_count} SMs"
    names = [p for p in ARGS.providers.split(",") if p]
    RESULTS["providers"] = provider_status(names)
    for n, s in RESULTS["providers"].items():
        log(f"provider {n}: {s}")
    order = [p for p in ("flashmla", "deepgemm", "triton", "aiter", "hip") if p in names
             and RESULTS["providers"][p] == "available"]
    if DEV == "cpu":
        order = ["reference"]
    for case in build_cases(ARGS.quick):
        if left() < 20:
            RESULTS["cases"].append({"op": case.op, "shape": case.label, "providers": {},
                                     "error": "skipped: time budget"})
            continue
        RESULTS["cases"].append(run_case(case, order))
        del case
        if DEV != "cpu":
            torch.cuda.empty_cache()
        save()
    save()
    print(markdown())
    bad = [c for c in RESULTS["cases"] for e in c["providers"].values() if e.get("ok") is False]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
