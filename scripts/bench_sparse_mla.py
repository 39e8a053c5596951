#!/usr/bin/env python3
"""Sparse MLA + cache-store benchmark on one GPU: numerics at DeepSeek-V3.2 shapes against the
reference provider, then speed of the Triton kernels against the measured ceilings and, in the
same run, SGLang's ROCm Triton sparse-MLA kernels when their source is given.

What it measures (all on the GPU it runs on; label figures with that GPU, never as MI300X):
  ceilings   device-to-device copy bandwidth (bytes read + written) and a bf16 8192^3 matmul
  numerics   Triton vs reference provider (fp32 definition, chunked) at full shapes: decode
             B=64/128 H=16/128 topk 2048 (cache > 2 GiB: 64-bit addressing), s_q=2 FP8
             e4m3fn / e4m3fnuz, prefill T=4096 H=128; cache stores byte-exact
  decode     B in {1, 8, 64, 128} x H in {16, 64, 128} x context {4K, 32K, 128K}, topk 2048
  prefill    T in {1K, 4K, 16K} x H in {16, 128}, topk 2048 (all indices valid)
  tune       a few tile configs per key shape (``--tune``)
  stability  decode B=128 H=16 timed 6 times in a row (part ``stability``; ``--warm-pool`` reads
             the whole cache once before any timing)
Timing: CUDA-graph replay of one call, L2 flushed before each replay, device events, median of
``--reps`` after warm-up. GB/s counts the KV rows gathered once per query row + q + out (the
algorithmic bytes); TFLOP/s counts 2*H*topk*(576+512) per query row (all indices valid).

Peers: ``--sglang-dir DIR`` holding SGLang 0.5.23's ``triton_sparse_mla.py`` and
``triton_sparse_mla_decode.py`` (from the ``sglang`` wheel: sglang/kernels/ops/attention/dsa/;
never committed here). Their package imports are satisfied by small stubs written to a temp dir.
``--aiter-src DIR`` holding ``aiter/ops/triton/unified_attention_sparse_mla.py`` and
``aiter/ops/triton/_triton_kernels/unified_attention_sparse_mla.py`` from the amd-aiter wheel
(no ``__init__.py``: imported as a namespace package, so aiter's ROCm-only package init never
runs; never committed here): aiter's Triton sparse MLA, bf16 cache, output only (no LSE), run
with its own launch settings (written against 0.1.7.post2.dev18; other versions, or an
installed amd-aiter's site-packages folder as DIR, are untested).

Usage (H200 device call; write results to $OUT):
    python3 scripts/bench_sparse_mla.py --out $OUT --sglang-dir .peer/sglang_dsa \
        --aiter-src .whl/aiter_src --budget 270 [--tune]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback

import torch

SM_SCALE = 0.1352338
TOPK = 2048
PAGE = 64
T0 = time.time()
RESULTS: dict = {"device": None, "ceilings": {}, "numerics": [], "decode": [], "prefill": [], "store": [],
                 "tune": [], "errors": [], "notes": []}
ARGS = None
DEV = "cuda"  # "cpu" only for --smoke (TRITON_INTERPRET=1, tiny shapes, wall-clock timing)


def log(*a):
    print(f"[{time.time() - T0:6.1f}s]", *a, flush=True)


def left() -> float:
    return ARGS.budget - (time.time() - T0)


def save():
    os.makedirs(ARGS.out, exist_ok=True)
    with open(os.path.join(ARGS.out, "sparse_mla_results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1, default=str)
    with open(os.path.join(ARGS.out, "sparse_mla_results.md"), "w") as f:
        f.write(markdown())


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
_FLUSH = None
_FIRST = True


def timed(fn, reps: int, graph: bool = True, flush: str = "zero") -> float:
    """Median device time (ms) of fn() over reps. Before each run the L2 is flushed: ``zero``
    writes a 512 MB buffer (as Triton's do_bench does; it leaves dirty lines that the timed call
    writes back, 7-12 us on the H200, docs/results/decode-diag-h200-v5), ``read`` reads it (clean
    lines), ``none`` skips the flush."""
    global _FLUSH
    if DEV == "cpu":
        fn()
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t) * 1000 / reps
    if _FLUSH is None:
        _FLUSH = torch.empty(512 << 20, dtype=torch.uint8, device="cuda")
    fn()
    fn()
    torch.cuda.synchronize()
    run = fn
    if graph:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                fn()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                fn()
            run = g.replay
        except Exception as e:  # noqa: BLE001
            log("graph capture failed, timing eager calls:", type(e).__name__, str(e)[:120])
            torch.cuda.synchronize()
            run = fn
    global _FIRST
    times = []
    # the first timed case of a run reads up to 10 % slow on the H200 however it is warmed up
    # (seen with the same config timed first and last in one run): time it twice, keep the second
    for _ in range(reps * 2 if _FIRST else reps):
        if flush == "zero":
            _FLUSH.zero_()
        elif flush == "read":
            _FLUSH.view(torch.int64).amax()
        elif flush != "none":
            raise ValueError(f"flush: expected 'zero', 'read' or 'none', got {flush!r}")
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        run()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    if _FIRST:
        _FIRST, times = False, times[reps:]
    return statistics.median(times)


def ceilings():
    n = (4 << 30) if DEV == "cuda" else (16 << 20)
    src = torch.empty(n, dtype=torch.uint8, device=DEV)
    src.random_(0, 255)
    dst = torch.empty_like(src)
    ms = timed(lambda: dst.copy_(src), 10, graph=False)
    copy_gbs = 2 * n / ms / 1e6
    m = 8192 if DEV == "cuda" else 512
    a = torch.randn(m, m, device=DEV, dtype=torch.bfloat16)
    b = torch.randn(m, m, device=DEV, dtype=torch.bfloat16)
    ms_mm = timed(lambda: a @ b, 10, graph=False)
    tflops = 2 * m ** 3 / ms_mm / 1e9
    RESULTS["ceilings"] = {"copy_GBps": round(copy_gbs, 1), "bf16_matmul_TFLOPs": round(tflops, 1)}
    log("ceilings", RESULTS["ceilings"])


def gather_ceiling(pool: "Pool"):
    """torch.index_select of the decode sweep's rows (B=128, 2048 random rows of a 32K context
    each, 1152 B/row): (bytes read + bytes written) / time, i.e. a random-row copy rate."""
    idx = decode_indices(pool, small(128, 2), 1, small(32768, 2048)).view(-1).long()
    rows = pool.bf16.view(-1, 576)
    out = torch.empty(idx.numel(), 576, dtype=torch.bfloat16, device=DEV)
    ms = timed(lambda: torch.index_select(rows, 0, idx, out=out), 10, graph=False)
    RESULTS["ceilings"]["gather_copy_GBps"] = round(2 * idx.numel() * 1152 / ms / 1e6, 1)
    log("gather ceiling", RESULTS["ceilings"])


_GATHER_READ = None


def gather_read_call(rows: torch.Tensor, idx: torch.Tensor, block_r: int, keys: int, warps: int,
                     stages: int | None = None, fold: int = 0):
    """A no-argument launch of the read-only gather kernel: each program XOR-folds ``keys`` of a
    row's slots (``idx`` [B, topk] int32) of ``rows`` ([N, 288] int32 = 1152-B rows) into
    registers, BLOCK_R rows a step. ``fold`` > 0 maps every slot into the first ``fold`` rows (an
    L2-resident set). Used by the ceilings here and by scripts/h200_decode_diag.py."""
    global _GATHER_READ
    import triton
    import triton.language as tl

    if _GATHER_READ is None:
        @triton.jit
        def _gather_read(rows_ptr, idx_ptr, out_ptr, keys_per_prog, topk, BLOCK_R: tl.constexpr,
                         FOLD: tl.constexpr):
            r = tl.program_id(0)
            sp = tl.program_id(1)
            w = tl.arange(0, 256)
            w2 = tl.arange(0, 32)
            acc = tl.zeros([BLOCK_R, 256], tl.int32)
            acc2 = tl.zeros([BLOCK_R, 32], tl.int32)
            k_lo = sp * keys_per_prog
            for k0 in range(k_lo, k_lo + keys_per_prog, BLOCK_R):
                kk = k0 + tl.arange(0, BLOCK_R)
                m = kk < topk
                row = tl.load(idx_ptr + r * topk + kk, mask=m, other=0).to(tl.int64)
                if FOLD > 0:
                    row = row % FOLD
                acc ^= tl.load(rows_ptr + row[:, None] * 288 + w[None, :], mask=m[:, None], other=0)
                acc2 ^= tl.load(rows_ptr + row[:, None] * 288 + 256 + w2[None, :], mask=m[:, None], other=0)
            o = out_ptr + (r * tl.num_programs(1) + sp) * 288
            tl.store(o + w, tl.xor_sum(acc, axis=0))
            tl.store(o + 256 + w2, tl.xor_sum(acc2, axis=0))

        _GATHER_READ = _gather_read
    if keys % block_r:
        raise ValueError(f"keys: expected a multiple of block_r={block_r}, got {keys} (a program would "
                         "read into the next one's keys)")
    b, topk = idx.shape
    splits = triton.cdiv(topk, keys)
    out = torch.empty(b, splits, 288, dtype=torch.int32, device=rows.device)
    opts = {"num_warps": warps, **({"num_stages": stages} if stages else {})}
    kernel = _GATHER_READ
    return lambda: kernel[(b, splits)](rows, idx, out, keys, topk, BLOCK_R=block_r, FOLD=fold, **opts)


def gather_read_ceiling(pool: "Pool"):
    """A read-only random-row gather of the decode sweep's rows (B=128, 2048 random rows of a
    32K context each, 1152 B/row): a small Triton kernel (:func:`gather_read_call`) XOR-folds each
    gathered row into registers, many programs per SM; bytes read / time, the best of two
    tilings. The roofline of a decode kernel that streams the same rows once (no output rows
    written)."""
    b = small(128, 2)
    idx = decode_indices(pool, b, 1, small(32768, 2048)).view(b, TOPK)
    rows = pool.bf16.view(torch.int32).view(-1, 288)
    best = None
    for block_r, keys, warps in ((32, 256, 4), (16, 128, 4)):
        ms = timed(gather_read_call(rows, idx, block_r, keys, warps), 10)
        gbs = idx.numel() * 1152 / ms / 1e6
        best = gbs if best is None else max(best, gbs)
    RESULTS["ceilings"]["gather_read_GBps"] = round(best, 1)
    log("gather read ceiling", RESULTS["ceilings"])


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
class Pool:
    """One big paged latent cache (bf16 and FP8 records) shared by every case; requests own
    shuffled pages of it, so index spread follows the context length."""

    def __init__(self, slots: int, with_fp8: bool):
        self.slots = slots
        self.pages = slots // PAGE
        self.bf16 = torch.randn(self.pages, PAGE, 1, 576, device=DEV, dtype=torch.bfloat16)
        self.fp8 = {}
        if with_fp8:
            rec = torch.empty(self.pages, PAGE, 1, 656, dtype=torch.uint8, device=DEV)
            flat = rec.view(-1, 656)
            step = 1 << 20
            for r0 in range(0, flat.shape[0], step):
                # normal latents quantized per 128-value tile with arbitrary (not 2**k) fp32 scales
                part = flat[r0:r0 + step]
                n = part.shape[0]
                x = torch.randn(n, 4, 128, device=DEV)
                sc = x.abs().amax(-1) / 448.0 * (0.8 + 0.4 * torch.rand(n, 4, device=DEV))
                vals = (x / sc.unsqueeze(-1)).clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8)
                vals = torch.where(vals == 0x80, 0, vals).to(torch.uint8)  # e4m3fnuz reads the same bytes
                part[:, :512] = vals.view(n, 512)
                part[:, 512:528] = sc.view(torch.uint8)
                part[:, 528:] = torch.randn(n, 64, device=DEV).to(torch.bfloat16).view(torch.uint8)
            self.fp8["rec"] = rec

    def kv(self, fmt: str) -> torch.Tensor:
        return self.bf16 if fmt == "bf16" else self.fp8["rec"]


def decode_indices(pool: Pool, b: int, s_q: int, ctx: int, topk: int | None = None) -> torch.Tensor:
    """[b, s_q, topk] physical slots: per request ``topk`` distinct random positions of its
    context, mapped through a random page table (no two requests share a page)."""
    topk = topk or TOPK
    pages_per_req = ctx // PAGE
    assert b * pages_per_req <= pool.pages, "pool too small"
    table = torch.randperm(pool.pages, device=DEV)[: b * pages_per_req].view(b, pages_per_req)
    k = min(topk, ctx)
    pos = torch.rand(b * s_q, ctx, device=DEV).topk(k, dim=1).indices.view(b, s_q, k)
    slots = table.gather(1, (pos // PAGE).view(b, -1)).view(b, s_q, k) * PAGE + pos % PAGE
    out = torch.full((b, s_q, topk), -1, dtype=torch.int32, device=DEV)
    out[..., :k] = slots.to(torch.int32)
    return out


def small(x: int, cap: int) -> int:
    """x on the GPU; at most cap in the CPU smoke run."""
    return x if DEV == "cuda" else min(x, cap)


def queries(rows: int, h: int) -> torch.Tensor:
    return (torch.randn(rows, h, 576, device=DEV) * 0.5).to(torch.bfloat16)


def flops(rows: int, h: int) -> float:
    return 2.0 * rows * h * TOPK * (576 + 512)


def bytes_moved(rows: int, h: int, fmt: str) -> float:
    row_bytes = 1152 if fmt == "bf16" else 656
    return rows * TOPK * row_bytes + rows * h * 1152 + rows * h * 1024


# ---------------------------------------------------------------------------------------------
# SGLang peer
# ---------------------------------------------------------------------------------------------
_STUBS = {
    "sglang/__init__.py": "",
    "sglang/srt/__init__.py": "",
    "sglang/srt/utils.py": (
        "import torch\n"
        "def get_device_core_count(i=0):\n    return torch.cuda.get_device_properties(i).multi_processor_count\n"
        "def is_gfx95_supported():\n    return False\n"
        "def is_hip():\n    return torch.version.hip is not None\n"),
    "sglang/kernels/__init__.py": "",
    "sglang/kernels/ops/__init__.py": "",
    "sglang/kernels/ops/attention/__init__.py": "",
    "sglang/kernels/ops/attention/metadata.py": (
        "def q8kv8_topk_length_from_indices(*a, **k):\n    raise NotImplementedError('stub')\n"),
    "sglang/kernels/ops/quantization/__init__.py": "",
    "sglang/kernels/ops/quantization/fp8_kernel.py": (
        "import torch\ndef is_fp8_fnuz():\n    return False\n"),
    "sglang/kernels/ops/attention/dsa/__init__.py": "",
}


def load_sglang(src_dir: str):
    """Import SGLang's ROCm Triton sparse-MLA modules from their unmodified files + stubs."""
    root = tempfile.mkdtemp(prefix="sglang_peer_")
    for rel, text in _STUBS.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    dsa = os.path.join(root, "sglang/kernels/ops/attention/dsa")
    for name in ("triton_sparse_mla.py", "triton_sparse_mla_decode.py"):
        with open(os.path.join(src_dir, name)) as f, open(os.path.join(dsa, name), "w") as g:
            g.write(f.read())
    sys.path.insert(0, root)
    import sglang.kernels.ops.attention.dsa.triton_sparse_mla as fwd
    import sglang.kernels.ops.attention.dsa.triton_sparse_mla_decode as dec

    if ARGS.sglang_prefill_configs:
        import triton

        keep = []
        for spec in ARGS.sglang_prefill_configs.split(";"):
            bn, w, ns = (int(x) for x in spec.split(","))
            keep.append(triton.Config({"BLOCK_N": bn}, num_warps=w, num_stages=ns))
        fwd._sparse_mla_fwd_split_dim_kernel.configs = keep
        RESULTS["notes"].append(f"SGLang prefill autotune restricted to (BLOCK_N, warps, stages) = "
                                f"{ARGS.sglang_prefill_configs} for time")
    return fwd, dec


AITER = None  # aiter's unified_attention_sparse_mla, when --aiter-src is given
AITER_NAME = "aiter triton"


def load_aiter(src_dir: str):
    """aiter's Triton sparse MLA entry point from its unmodified wheel files (namespace import);
    the impl name carries the wheel's version when its ``aiter/_version.py`` is there too."""
    global AITER_NAME
    import re

    sys.path.insert(0, src_dir)
    from aiter.ops.triton.unified_attention_sparse_mla import unified_attention_sparse_mla

    ver = os.path.join(src_dir, "aiter/_version.py")
    if os.path.exists(ver):
        with open(ver) as f:
            m = re.search(r"['\"]([^'\"]+)['\"]", f.read())
        AITER_NAME = f"aiter-{m.group(1)} triton" if m else AITER_NAME
    return unified_attention_sparse_mla


def aiter_call(q: torch.Tensor, kv: torch.Tensor, idx: torch.Tensor, ctx: int, seqs: int):
    """aiter's sparse MLA: ``q`` [tokens, H, 576], ``kv`` the paged bf16 cache [pages, page_size,
    1, 576], ``idx`` [tokens, topk] physical slots, ``seqs`` sequences of tokens // seqs query
    tokens each (decode: one token per sequence; prefill: one sequence). Returns a no-argument
    call giving out [tokens, H, 512] bf16."""
    tokens = q.shape[0]
    out = torch.empty(tokens, q.shape[1], 512, dtype=torch.bfloat16, device=q.device)
    per = tokens // seqs
    cu_q = torch.arange(0, tokens + 1, per, dtype=torch.int32, device=q.device)
    seq_k = torch.full((seqs,), ctx, dtype=torch.int32, device=q.device)
    table = torch.zeros(seqs, 1, dtype=torch.int32, device=q.device)  # the kernel reads slots, not pages
    idx2 = idx.reshape(tokens, -1)

    def call():
        AITER(q, kv, out, cu_q, per, seq_k, ctx, SM_SCALE, idx2, table, 512)
        return out
    return call


def peer_sanity(peer: str, got: torch.Tensor, ref_out: torch.Tensor, what: str):
    """Record (notes and log) how a peer's output compares with ours: the sanity check that it
    computes the same attention, on a sweep's first case."""
    from rocm_dsa.testing import compare

    RESULTS["notes"].append(f"{peer} {what} vs ours: {compare(got.view_as(ref_out), ref_out).__dict__}")
    log(RESULTS["notes"][-1])


# ---------------------------------------------------------------------------------------------
# parts
# ---------------------------------------------------------------------------------------------
def numerics(pool: Pool, arch: str):
    from rocm_dsa import ops
    from rocm_dsa.testing import assert_close, compare

    def rec(name, got, want, extra=None):
        d = {k: compare(g, w).__dict__ for k, g, w in zip(("out", "lse", "max_logits"), got, want)}
        try:  # the test suite's rule: bf16 tolerance for out, tight fp32 for lse / max_logits
            assert_close(got[0], want[0], name="out")
            for g, w in zip(got[1:], want[1:]):
                assert_close(g, w, dtype=torch.float32, atol=1e-3, rtol=1e-5)
            ok = True
        except AssertionError as e:
            ok = False
            RESULTS["errors"].append(f"numerics {name}: {e}")
        RESULTS["numerics"].append({"case": name, "ok": ok, **{f"{k}_{m}": round(v[m], 8) if isinstance(v[m], float)
                                                                else v[m] for k, v in d.items()
                                                                for m in ("max_abs", "cosine", "nonfinite_mismatch")},
                                    **(extra or {})})
        log("numerics", name, "OK" if ok else "MISMATCH", {k: (v["max_abs"], v["cosine"]) for k, v in d.items()})

    cases = [("decode B=64 H=16 ctx=32K bf16", 64, 1, 16, 32768, "bf16", torch.float8_e4m3fn),
             ("decode B=128 H=128 ctx=128K bf16 (cache 19 GB: 64-bit offsets)", 128, 1, 128, 131072, "bf16",
              torch.float8_e4m3fn),
             ("decode B=8 s_q=2 H=64 ctx=32K fp8-e4m3fn", 8, 2, 64, 32768, "fp8", torch.float8_e4m3fn),
             ("decode B=8 s_q=2 H=16 ctx=32K fp8-e4m3fnuz (integer decoder)", 8, 2, 16, 32768, "fp8",
              torch.float8_e4m3fnuz)]
    for name, b, s_q, h, ctx, fmt, fp8 in cases:
        if left() < 60:
            break
        b, ctx = small(b, 2), small(ctx, 2048)
        try:
            kv = pool.kv(fmt)
            idx = decode_indices(pool, b, s_q, ctx)
            idx[0, 0, :100] = -1
            idx[-1, -1, :] = -1
            q = queries(b * s_q, h).view(b, s_q, h, 576)
            got = ops.sparse_mla_decode(q, kv, idx, sm_scale=SM_SCALE, fp8_dtype=fp8, provider="triton")
            want = ops.sparse_mla_decode(q, kv, idx, sm_scale=SM_SCALE, fp8_dtype=fp8, provider="reference")
            rec(name, got, want)
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"numerics {name}: {type(e).__name__}: {e}")
            log("ERROR", name, traceback.format_exc())
    for name, t, h, fmt in (("prefill T=4096 H=128 bf16", 4096, 128, "bf16"), ("prefill T=1024 H=16 fp8-e4m3fn",
                                                                                 1024, 16, "fp8")):
        if left() < 60:
            break
        t = small(t, 8)
        try:
            kv = pool.kv(fmt).view(-1, 1, pool.kv(fmt).shape[-1])
            idx = decode_indices(pool, 1, t, small(65536, 4096)).view(t, 1, TOPK)
            idx[:3, 0, :50] = -1
            idx[5, 0, :] = -1
            q = queries(t, h)
            got = ops.sparse_mla_prefill(q, kv, idx, sm_scale=SM_SCALE, fp8_dtype=torch.float8_e4m3fn,
                                         provider="triton")
            want = ops.sparse_mla_prefill(q, kv, idx, sm_scale=SM_SCALE, fp8_dtype=torch.float8_e4m3fn,
                                          provider="reference")
            rec(name, (got[0], got[2], got[1]), (want[0], want[2], want[1]))
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"numerics {name}: {type(e).__name__}: {e}")
            log("ERROR", name, traceback.format_exc())
    # cache stores: byte-exact at serving sizes, into the big pools (64-bit slots), and speed
    try:
        n = small(16384, 64)
        c_kv, k_rope = torch.randn(n, 512, device=DEV).to(torch.bfloat16), torch.randn(n, 64, device=DEV)
        slots = torch.randperm(pool.slots, device=DEV)[:n]
        slots[:8] = torch.arange(pool.slots - 8, pool.slots, device=DEV)
        for fmt, fp8 in (("bf16", None), ("fp8", torch.float8_e4m3fn), ("fp8", torch.float8_e4m3fnuz)):
            buf = pool.kv(fmt)
            rows_view = buf.view(-1, buf.shape[-1])
            before = rows_view[slots].clone()
            ops.store_mla_kv(c_kv, k_rope.to(torch.bfloat16), buf, slots, fp8_dtype=fp8, provider="triton")
            got = rows_view[slots].clone()
            rows_view[slots] = before
            ops.store_mla_kv(c_kv, k_rope.to(torch.bfloat16), buf, slots, fp8_dtype=fp8, provider="reference")
            want = rows_view[slots].clone()
            same = bool(torch.equal(got.view(torch.uint8) if got.dtype == torch.uint8 else got.view(torch.int16),
                                    want.view(torch.uint8) if want.dtype == torch.uint8 else want.view(torch.int16)))
            ms = timed(lambda: ops.store_mla_kv(c_kv, k_rope.to(torch.bfloat16), buf, slots, fp8_dtype=fp8,
                                                provider="triton"), 10, graph=False)
            nbytes = n * (512 + 64) * 2 + n * (1152 if fmt == "bf16" else 656)
            RESULTS["store"].append({"op": f"store_mla_kv {fmt} {fp8 or ''}".strip(), "tokens": n, "byte_exact": same,
                                     "ms": round(ms, 4), "GBps": round(nbytes / ms / 1e6, 1)})
            log("store", RESULTS["store"][-1])
        from rocm_dsa.cache import IndexerKCache

        for fp8 in (torch.float8_e4m3fn, torch.float8_e4m3fnuz):
            cache = IndexerKCache(n // PAGE * 4, page_size=PAGE, fp8_dtype=fp8, device=DEV)
            ref = IndexerKCache(n // PAGE * 4, page_size=PAGE, fp8_dtype=fp8, device=DEV)
            k = torch.randn(n, 128, device=DEV).to(torch.bfloat16)
            sl = torch.randperm(n * 4, device=DEV)[:n]
            cache.store(k, sl, provider="triton")
            ref.store(k, sl, provider="reference")
            same = bool(torch.equal(cache.buffer, ref.buffer))
            ms = timed(lambda: cache.store(k, sl, provider="triton"), 10, graph=False)
            RESULTS["store"].append({"op": f"store_indexer_k {fp8}", "tokens": n, "byte_exact": same,
                                     "ms": round(ms, 4), "GBps": round(n * (256 + 132) / ms / 1e6, 1)})
            log("store", RESULTS["store"][-1])
    except Exception as e:  # noqa: BLE001
        RESULTS["errors"].append(f"store: {type(e).__name__}: {e}")
        log("ERROR store", traceback.format_exc())
    save()


def ours_decode(q, kv, idx, fp8, arch, config=None):
    from rocm_dsa.triton_kernels.sparse_mla import sparse_mla_decode

    return lambda: sparse_mla_decode(q, kv, idx, SM_SCALE, 512, fp8, arch=arch, config=config)


def ours_prefill(q, kv, idx, fp8, arch, config=None):
    from rocm_dsa.triton_kernels.sparse_mla import sparse_mla_prefill

    return lambda: sparse_mla_prefill(q, kv, idx, SM_SCALE, 512, fp8, arch=arch, config=config)


def entry(kind, impl, shape, fmt, ms, rows, h, config=None):
    c = RESULTS["ceilings"]
    gbs = bytes_moved(rows, h, fmt) / ms / 1e6
    tfl = flops(rows, h) / ms / 1e9
    e = {"kind": kind, "impl": impl, **shape, "kv": fmt, "us": round(ms * 1000, 1), "GBps": round(gbs, 1),
         "TFLOPs": round(tfl, 1), "pct_copy_bw": round(100 * gbs / c["copy_GBps"], 1) if c else None,
         "pct_matmul": round(100 * tfl / c["bf16_matmul_TFLOPs"], 1) if c else None}
    if config:
        e["config"] = config
    return e


def decode_sweep(pool: Pool, arch: str, peer, fmts=("bf16",)):
    batches = [int(x) for x in ARGS.batches.split(",")]
    heads = [int(x) for x in ARGS.heads.split(",")]
    ctxs = [int(x) for x in ARGS.contexts.split(",")]
    aiter_checked = set()  # head counts whose aiter output was compared with ours
    for fmt in fmts:
        for ctx in ctxs:
            for h in heads:
                for b in batches:
                    if fmt != "bf16" and (ctx != 32768 or b < 64):
                        continue
                    if left() < 20:
                        return
                    shape = {"B": b, "H": h, "ctx": ctx, "s_q": 1}
                    try:
                        kv = pool.kv(fmt)
                        idx = decode_indices(pool, b, 1, ctx)
                        q = queries(b, h).view(b, 1, h, 576)
                        cfg = best_config("decode", h, fmt)
                        ms = timed(ours_decode(q, kv, idx, torch.float8_e4m3fn, arch, cfg), ARGS.reps)
                        RESULTS["decode"].append(entry("decode", "rocm-dsa triton", shape, fmt, ms, b, h, cfg))
                        log(RESULTS["decode"][-1])
                        if peer is not None and fmt == "bf16":
                            qv = q.view(b, h, 576)
                            kv_flat = kv.view(-1, 1, 576)
                            idx3 = idx.view(b, 1, TOPK)
                            fn = lambda: peer[1].triton_sparse_mla_decode(qv[..., :512], qv[..., 512:], kv_flat,  # noqa: E731
                                                                          idx3, SM_SCALE, 512)
                            ms = timed(fn, ARGS.reps)
                            RESULTS["decode"].append(entry("decode", "sglang-0.5.23 triton", shape, fmt, ms, b, h))
                            log(RESULTS["decode"][-1])
                        if AITER is not None and fmt == "bf16":
                            fn = aiter_call(q.view(b, h, 576), kv, idx, ctx, b)
                            if h not in aiter_checked:
                                aiter_checked.add(h)
                                peer_sanity("aiter", fn(), ours_decode(q, kv, idx, torch.float8_e4m3fn, arch, cfg)()[0],
                                            f"decode B={b} H={h}")
                            ms = timed(fn, ARGS.reps)
                            RESULTS["decode"].append(entry("decode", AITER_NAME, shape, fmt, ms, b, h))
                            log(RESULTS["decode"][-1])
                    except Exception as e:  # noqa: BLE001
                        RESULTS["errors"].append(f"decode {shape} {fmt}: {type(e).__name__}: {e}")
                        log("ERROR", shape, traceback.format_exc()[-800:])
                    save()


def prefill_sweep(pool: Pool, arch: str, peer):
    ts = [int(x) for x in ARGS.tokens.split(",")]
    for fmt in ("bf16", "fp8"):
        for h in (16, 128):
            for t in ts:
                if fmt == "fp8" and t != 4096:
                    continue
                if left() < 25:
                    return
                shape = {"T": t, "H": h}
                try:
                    kv = pool.kv(fmt).view(-1, 1, pool.kv(fmt).shape[-1])
                    idx = decode_indices(pool, 1, t, small(65536, 4096)).view(t, 1, TOPK)
                    q = queries(t, h)
                    reps = max(3, ARGS.reps // (4 if t * h >= 16384 * 64 else 1))
                    cfg = best_config("prefill", h, fmt)
                    ms = timed(ours_prefill(q, kv, idx, torch.float8_e4m3fn, arch, cfg), reps)
                    RESULTS["prefill"].append(entry("prefill", "rocm-dsa triton", shape, fmt, ms, t, h, cfg))
                    log(RESULTS["prefill"][-1])
                    ref = None  # ours (JSON config) for the peers' sanity checks at the first T, once
                    if peer is not None and fmt == "bf16" and left() > 40:
                        fn = lambda: peer[0].triton_sparse_mla_fwd(q[..., :512], q[..., 512:], kv, idx,  # noqa: E731
                                                                   SM_SCALE, 512)
                        if t == ts[0]:
                            ref = ours_prefill(q, kv, idx, torch.float8_e4m3fn, arch)()[0]
                            peer_sanity("sglang", fn()[0], ref, f"prefill H={h} T={t}")
                        ms = timed(fn, reps)
                        RESULTS["prefill"].append(entry("prefill", "sglang-0.5.23 triton", shape, fmt, ms, t, h))
                        log(RESULTS["prefill"][-1])
                    if AITER is not None and fmt == "bf16" and left() > 40:
                        fn = aiter_call(q, pool.kv(fmt), idx, small(65536, 4096), 1)
                        if t == ts[0]:
                            if ref is None:
                                ref = ours_prefill(q, kv, idx, torch.float8_e4m3fn, arch)()[0]
                            peer_sanity("aiter", fn(), ref, f"prefill H={h} T={t}")
                        ms = timed(fn, reps)
                        RESULTS["prefill"].append(entry("prefill", AITER_NAME, shape, fmt, ms, t, h))
                        log(RESULTS["prefill"][-1])
                except Exception as e:  # noqa: BLE001
                    RESULTS["errors"].append(f"prefill {shape} {fmt}: {type(e).__name__}: {e}")
                    log("ERROR", shape, traceback.format_exc()[-800:])
                save()


def stability(pool: Pool, arch: str):
    """Decode B=128 H=16 bf16 (JSON config) timed 6 times in a row, fresh indices each time:
    shows whether early timings in a run read slow."""
    b, h, ctx = small(128, 2), 16, small(32768, 2048)
    for i in range(6):
        idx = decode_indices(pool, b, 1, ctx)
        q = queries(b, h).view(b, 1, h, 576)
        ms = timed(ours_decode(q, pool.kv("bf16"), idx, torch.float8_e4m3fn, arch), ARGS.reps)
        e = entry("decode", "rocm-dsa triton", {"B": b, "H": h, "ctx": ctx, "s_q": 1}, "bf16", ms, b, h)
        e["repeat"] = i
        RESULTS.setdefault("stability", []).append(e)
        log("stability", e)
    save()


# (kind, shape, fmt) -> config overrides tried; {} = the JSON config. The winner of each family is
# applied to the sweep shapes of its head bucket (H <= 16 / H > 16) and recorded in the results.
TUNE = {
    ("decode", (64, 16, 32768), "bf16"): [
        {}, {"BLOCK_K": 64, "num_stages": 2}, {"BLOCK_K": 64, "num_warps": 8, "num_stages": 2},
        {"BLOCK_K": 32, "num_stages": 3, "programs_per_unit": 1}, {"BLOCK_K": 16, "num_stages": 4}],
    ("decode", (128, 128, 32768), "bf16"): [
        {}, {"BLOCK_K": 64, "num_warps": 4, "num_stages": 2}, {"BLOCK_K": 32, "num_warps": 8, "num_stages": 3},
        {"BLOCK_H": 16, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_H": 64, "BLOCK_K": 32, "num_warps": 8, "num_stages": 2}],
    ("prefill", (4096, 128), "bf16"): [
        {}, {"BLOCK_K": 64, "num_warps": 4, "num_stages": 2}, {"BLOCK_K": 32, "num_warps": 8, "num_stages": 3},
        {"BLOCK_H": 16, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2},
        {"BLOCK_H": 64, "BLOCK_K": 32, "num_warps": 8, "num_stages": 2}],
    ("prefill", (4096, 16), "bf16"): [
        {}, {"BLOCK_K": 32, "num_stages": 3}, {"BLOCK_K": 64, "num_warps": 8, "num_stages": 2}],
    ("decode", (64, 16, 32768), "fp8"): [
        {}, {"BLOCK_K": 64, "num_warps": 8}, {"BLOCK_K": 32, "num_warps": 4, "programs_per_unit": 4}],
    ("decode", (128, 128, 32768), "fp8"): [
        {}, {"BLOCK_H": 64, "BLOCK_K": 32, "num_warps": 8}, {"BLOCK_K": 16, "num_warps": 8, "num_stages": 3}],
}
# --tune-wide: the options still open for the Hopper targets. Overrides merge onto the JSON config
# (sm90 decode H >= 64 bf16 already has WIDE_LATENT + IDX_AHEAD), so the decode entries switch
# them off explicitly; every earlier sweep (8 warps, BLOCK_K 32 with 3-5 stages, 16 warps for
# H=128, ...) is recorded in docs/results/sparse-mla-tune-h200*
TUNE_WIDE = {
    ("decode", (128, 128, 32768), "bf16"): [
        {}, {"WIDE_LATENT": 0, "IDX_AHEAD": 0}, {"WIDE_LATENT": 0}, {"IDX_AHEAD": 0}],
    ("prefill", (4096, 128), "bf16"): [{}, {"WIDE_LATENT": 1, "IDX_AHEAD": 1}],
    ("decode", (128, 16, 32768), "bf16"): [{}],
    ("decode", (64, 16, 32768), "bf16"): [{}],
}
# --tune-splits: small-batch decode: split sizes (the split count sets how many programs run and
# how many partials the merge combines) and, for H >= 64, the 16-head tile of H <= 16. The
# fourth session's earlier entries (split sizes, heads_per_program: a row's heads over 2-4
# programs sharing its KV rows through L2, slower everywhere and removed) are recorded in
# docs/results/sparse-mla-merge-h200-v4
_H16_TILE = {"BLOCK_H": 16, "BLOCK_K": 64, "num_warps": 4, "num_stages": 3, "Q_IN_LOOP": 0, "UNCHAIN_QK": 0,
             "WIDE_LATENT": 0, "IDX_AHEAD": 1, "programs_per_unit": 0.97}
TUNE_SPLITS = {
    ("decode", (1, 16, 32768), "bf16"): [{}],
    ("decode", (1, 64, 32768), "bf16"): [
        {}, _H16_TILE, {**_H16_TILE, "programs_per_unit": 2},
        {"BLOCK_H": 32, "BLOCK_K": 64, "num_warps": 4, "num_stages": 2, "Q_IN_LOOP": 0, "UNCHAIN_QK": 0,
         "WIDE_LATENT": 0}],
    ("decode", (1, 128, 32768), "bf16"): [{}, _H16_TILE, {**_H16_TILE, "programs_per_unit": 2}],
    ("decode", (4, 128, 32768), "bf16"): [{}, _H16_TILE],
    ("decode", (8, 64, 32768), "bf16"): [{}, _H16_TILE],
    ("decode", (8, 128, 32768), "bf16"): [{}, _H16_TILE],
    ("decode", (1, 128, 32768), "fp8"): [{}, {"BLOCK_H": 16, "BLOCK_K": 32, "num_warps": 4, "programs_per_unit": 4}],
}
# --tune-table fp8: the 656-byte FP8 records on Hopper: UNCHAIN_QK (the softmax behind the runtime
# branch: the q.k dots split over the two warp groups instead of both computing them; sm90
# compile: 52 instead of 80 wgmma per key block) with 64-key blocks; the first fp8 sweep (UNCHAIN_QK
# alone 3 %, with BLOCK_K 64 1.28x at B=128 H=128) is in docs/results/sparse-mla-merge-h200-v4
_U64 = {"UNCHAIN_QK": 1, "BLOCK_K": 64}
TUNE_FP8 = {
    ("decode", (128, 128, 32768), "fp8"): [
        {}, _U64, {**_U64, "num_stages": 3}, {**_U64, "num_stages": 3, "programs_per_unit": 1}],
    ("decode", (64, 64, 32768), "fp8"): [
        {}, {**_U64, "num_stages": 3}, {**_U64, "num_stages": 3, "programs_per_unit": 1}],
    ("decode", (8, 128, 32768), "fp8"): [
        {}, {**_U64, "num_stages": 3}, {**_U64, "num_stages": 3, "programs_per_unit": 1}],
    ("decode", (64, 16, 32768), "fp8"): [
        {}, {"BLOCK_K": 64, "programs_per_unit": 2}, {"BLOCK_K": 64, "num_stages": 3, "programs_per_unit": 0.97}],
    ("prefill", (4096, 128), "fp8"): [{}, {**_U64, "BLOCK_H": 64}, {**_U64, "BLOCK_H": 64, "num_stages": 3}],
    ("prefill", (4096, 16), "fp8"): [{}, {"BLOCK_K": 64}, {"BLOCK_K": 64, "num_stages": 3, "num_warps": 4}],
}
TUNE_TABLES = {"default": TUNE, "wide": TUNE_WIDE, "splits": TUNE_SPLITS, "fp8": TUNE_FP8}
BEST: dict = {}  # (kind, "small"|"large", fmt) -> (us, config)


def bucket(h: int) -> str:
    return "small" if h <= 16 else "large"


def best_config(kind: str, h: int, fmt: str) -> dict | None:
    found = BEST.get((kind, bucket(h), fmt))
    return found[1] if found and found[1] else None


def tune(pool: Pool, arch: str):
    """Time each config of the tune table; each output is compared with the JSON config's output
    (``vs_default``: max abs, cosine, mismatches) and a config that disagrees (cos < 0.9999 or a
    non-finite mismatch) is recorded but never chosen."""
    from rocm_dsa.testing import compare

    for (kind, shape, fmt), configs in TUNE_TABLES[ARGS.tune_table].items():
        for cfg in configs:
            if left() < 25:
                return
            try:
                kv = pool.kv(fmt)
                if kind == "decode":
                    b, h, ctx = shape
                    b, ctx = small(b, 2), small(ctx, 2048)
                    idx = decode_indices(pool, b, 1, ctx)
                    q = queries(b, h).view(b, 1, h, 576)
                    fn = ours_decode(q, kv, idx, torch.float8_e4m3fn, arch, cfg)
                    out = fn()[0]
                    ms = timed(fn, ARGS.reps)
                    e = entry("decode", "rocm-dsa triton", {"B": b, "H": h, "ctx": ctx, "s_q": 1}, fmt, ms, b, h, cfg)
                else:
                    t, h = shape
                    t = small(t, 8)
                    kvf = kv.view(-1, 1, kv.shape[-1])
                    idx = decode_indices(pool, 1, t, small(65536, 4096)).view(t, 1, TOPK)
                    q = queries(t, h)
                    fn = ours_prefill(q, kvf, idx, torch.float8_e4m3fn, arch, cfg)
                    out = fn()[0]
                    ms = timed(fn, max(3, ARGS.reps // 2))
                    e = entry("prefill", "rocm-dsa triton", {"T": t, "H": h}, fmt, ms, t, h, cfg)
                if not cfg:  # the JSON config itself
                    ref_out = out
                elif kind == "decode":
                    ref_out = ours_decode(q, kv, idx, torch.float8_e4m3fn, arch)()[0]
                else:
                    ref_out = ours_prefill(q, kvf, idx, torch.float8_e4m3fn, arch)()[0]
                d = compare(out, ref_out)
                e["vs_default"] = {"max_abs": d.max_abs, "cos": d.cosine, "mismatches": d.nonfinite_mismatch}
                agrees = d.cosine >= 0.9999 and d.nonfinite_mismatch == 0
                RESULTS["tune"].append(e)
                log("tune", e)
                key = (kind, bucket(h), fmt)
                if agrees and (key not in BEST or ms * 1000 < BEST[key][0]):
                    BEST[key] = (ms * 1000, cfg)
            except Exception as ex:  # noqa: BLE001
                RESULTS["errors"].append(f"tune {kind} {shape} {fmt} {cfg}: {type(ex).__name__}: {str(ex)[:300]}")
                log("ERROR tune", cfg, str(ex)[:300])
            save()


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def markdown() -> str:
    dev = RESULTS.get("device") or "GPU"
    c = RESULTS["ceilings"]
    lines = [f"# Sparse MLA on {dev} (measured by scripts/bench_sparse_mla.py)", "",
             f"Ceilings measured in the same run: copy {c.get('copy_GBps')} GB/s, "
             f"bf16 matmul {c.get('bf16_matmul_TFLOPs')} TFLOP/s, random 1152-B row gather (index_select, "
             f"read+write) {c.get('gather_copy_GBps')} GB/s, the same rows read only (Triton) "
             f"{c.get('gather_read_GBps')} GB/s. Command: `{RESULTS.get('command')}`", ""]
    if RESULTS["numerics"]:
        lines += ["## Numerics vs reference provider", "", "| case | ok | out max abs | out cos | lse max abs |",
                  "|---|---|---|---|---|"]
        for n in RESULTS["numerics"]:
            lines.append(f"| {n['case']} | {n['ok']} | {n['out_max_abs']:.3g} | {n['out_cosine']:.6f} | "
                         f"{n['lse_max_abs']:.3g} |")
        lines.append("")
    if RESULTS["store"]:
        lines += ["## Cache stores", "", "| op | tokens | byte-exact | us | GB/s |", "|---|---|---|---|---|"]
        for s in RESULTS["store"]:
            lines.append(f"| {s['op']} | {s['tokens']} | {s['byte_exact']} | {s['ms'] * 1000:.1f} | {s['GBps']} |")
        lines.append("")
    for kind, keys in (("decode", ("B", "H", "ctx")), ("prefill", ("T", "H"))):
        rows = RESULTS[kind]
        if not rows:
            continue
        lines += [f"## {kind} ({dev}; topk 2048)", "",
                  "| " + " | ".join(keys) + " | kv | impl | us | GB/s | % copy | TFLOP/s | % matmul | config |",
                  "|" + "---|" * (len(keys) + 8)]
        for r in rows:
            lines.append("| " + " | ".join(str(r[k]) for k in keys) +
                         f" | {r['kv']} | {r['impl']} | {r['us']} | {r['GBps']} | {r['pct_copy_bw']} | "
                         f"{r['TFLOPs']} | {r['pct_matmul']} | {r.get('config') or ''} |")
        lines.append("")
    if RESULTS["tune"]:
        lines += ["## Tuning sweep", "", "| kind | shape | kv | config | us | GB/s | TFLOP/s |", "|---|---|---|---|---|---|---|"]
        for r in RESULTS["tune"]:
            shape = {k: r[k] for k in ("B", "H", "ctx", "T") if k in r}
            lines.append(f"| {r['kind']} | {shape} | {r['kv']} | {r.get('config')} | {r['us']} | {r['GBps']} | "
                         f"{r['TFLOPs']} |")
        lines.append("")
    if RESULTS["notes"] or RESULTS["errors"]:
        lines += ["## Notes / errors", ""] + [f"- {n}" for n in RESULTS["notes"]] + \
                 [f"- ERROR {e}" for e in RESULTS["errors"]]
    return "\n".join(lines) + "\n"


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT", "bench_out"))
    p.add_argument("--sglang-dir", default=None, help="folder with SGLang's triton_sparse_mla*.py (peer)")
    p.add_argument("--aiter-src", default=None,
                   help="folder with aiter's unified_attention_sparse_mla files from the amd-aiter wheel (peer)")
    p.add_argument("--sglang-prefill-configs", default="32,4,1;64,4,1;32,4,2;64,4,2",
                   help="restrict SGLang's prefill autotune to these 'BLOCK_N,warps,stages;...' ('' = all)")
    p.add_argument("--budget", type=float, default=270.0, help="seconds; parts are skipped when it runs out")
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--batches", default="1,8,64,128")
    p.add_argument("--heads", default="16,64,128")
    p.add_argument("--contexts", default="4096,32768,131072")
    p.add_argument("--tokens", default="1024,4096,16384")
    p.add_argument("--parts", default="ceilings,numerics,decode,prefill,tune")
    p.add_argument("--tune", action="store_true", help="run the tile tuning sweep (part 'tune')")
    p.add_argument("--tune-table", default="default", choices=sorted(TUNE_TABLES),
                   help="with --tune: which table of configs to sweep")
    p.add_argument("--tune-wide", dest="tune_table", action="store_const", const="wide",
                   help="= --tune-table wide: TUNE_WIDE, the options still open for the Hopper targets")
    p.add_argument("--tune-splits", dest="tune_table", action="store_const", const="splits",
                   help="= --tune-table splits: TUNE_SPLITS, small-batch decode splits")
    p.add_argument("--warm-pool", action="store_true", help="read the whole latent cache once before any timing")
    p.add_argument("--smoke", action="store_true",
                   help="CPU smoke test of this script: TRITON_INTERPRET=1, tiny shapes, no peers")
    ARGS = p.parse_args()
    RESULTS["command"] = "python3 " + " ".join(sys.argv)
    global DEV, TOPK, AITER
    if ARGS.smoke:
        DEV, TOPK = "cpu", 64
        os.environ["TRITON_INTERPRET"] = "1"

        def capped(csv: str, cap: int) -> str:
            return ",".join(dict.fromkeys(str(min(int(x), cap)) for x in csv.split(",")))
        # the smoke pool (64K slots) holds B x context <= 64K: decode at B <= 2, contexts <= 4K
        ARGS.batches, ARGS.contexts = capped(ARGS.batches, 2), capped(ARGS.contexts, 4096)
    elif not torch.cuda.is_available():
        sys.exit("bench_sparse_mla: needs a CUDA/ROCm GPU (or --smoke)")
    from rocm_dsa.platform import detect

    plat = detect(torch.device(DEV))
    arch = plat.arch
    RESULTS["device"] = f"{torch.cuda.get_device_name() if DEV == 'cuda' else 'CPU interpreter'} ({arch})"
    import triton

    RESULTS["versions"] = {"torch": torch.__version__, "triton": triton.__version__}
    log("device", RESULTS["device"], RESULTS["versions"])
    parts = ARGS.parts.split(",")
    peer = None
    if ARGS.sglang_dir:
        try:
            peer = load_sglang(ARGS.sglang_dir)
            log("SGLang peer kernels loaded")
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"sglang peer: {type(e).__name__}: {e}")
            log("ERROR sglang", traceback.format_exc()[-800:])
    if ARGS.aiter_src and not ARGS.smoke:
        try:
            AITER = load_aiter(ARGS.aiter_src)
            log("aiter peer kernel loaded:", AITER_NAME)
        except Exception as e:  # noqa: BLE001
            RESULTS["errors"].append(f"aiter peer: {type(e).__name__}: {e}")
            log("ERROR aiter", traceback.format_exc()[-800:])
    if "ceilings" in parts:
        ceilings()
    pool = Pool(128 * 131072 if DEV == "cuda" else 64 * 1024, with_fp8=True)
    log("pool ready", pool.slots, "slots")
    if ARGS.warm_pool:  # read the whole cache once before any timing (page tables / TLBs warm)
        t = time.time()
        for buf in (pool.bf16.view(-1), pool.fp8["rec"].view(-1)):
            for c in buf.split(1 << 30):
                c.view(torch.uint8).sum(dtype=torch.int64) if c.dtype == torch.uint8 else c.float().sum()
        torch.cuda.synchronize() if DEV == "cuda" else None
        log(f"pool read once in {time.time() - t:.1f}s")
    save()
    if "numerics" in parts:
        numerics(pool, arch)
    if "ceilings" in parts:
        gather_ceiling(pool)
        gather_read_ceiling(pool)
    if "stability" in parts:
        stability(pool, arch)
    if "tune" in parts and ARGS.tune:  # before the sweeps: each family's winner is used there
        tune(pool, arch)
        RESULTS["tuned_configs"] = {"/".join(k): v for k, v in BEST.items()}
        log("tuned", RESULTS["tuned_configs"])
    if "decode" in parts:
        decode_sweep(pool, arch, peer, fmts=("bf16", "fp8"))
    if "prefill" in parts:
        prefill_sweep(pool, arch, peer)
    save()
    log("done")


if __name__ == "__main__":
    main()
