"""Benchmark sweeps, roofline figures, result files, markdown and plots (``rocm-dsa bench``).

Sweeps (default shapes: DeepSeek-V3.2, as the Triton issue measures them):

* ``decode``  — :func:`rocm_dsa.ops.sparse_mla_decode`, B in {1, 8, 64, 128} x H in {16, 64, 128}
  x context {4K, 32K, 128K}, s_q = 1, top-k 2048, paged latent cache (page 64, shuffled pages).
* ``prefill`` — :func:`rocm_dsa.ops.sparse_mla_prefill`, T in {1K, 4K, 16K} x H in {16, 128};
  every query selects top-k distinct rows of a latent buffer of max(T, 2k) rows.
* ``indexer`` — ragged logits and fused indexer + top-k for a prefill chunk of T queries at the
  end of an N-key context (causal windows), (T, N) in {(4K, 16K), (4K, 64K), (1K, 128K)}; paged
  logits and fused paged top-k for decode, B in {1, 64, 128} x context {32K, 128K}.
* ``topk``    — :func:`rocm_dsa.ops.topk_indices`, rows {64, 4096} x columns {32K, 128K}, k 2048.
* ``dsa``     — the headline claim of DSA: the cost of one query token at context position L
  (1K ... 128K) for the whole DSA pipeline (fused indexer + top-k, then sparse MLA) against
  dense MLA attention over all L latent rows (torch ``scaled_dot_product_attention`` in the
  absorbed 576/512 form, one KV head shared by H query heads), for prefill (a chunk of Q query
  tokens at positions L-Q .. L-1) and decode (B requests, one token each). Dense attention is
  measured with every query seeing all L rows (no causal mask inside the chunk): that
  overstates the dense cost by at most Q / (2L).

Timing: on a GPU, device events around each call, after warm-up (the first call compiles),
with the L2 / Infinity Cache flushed before each call by writing a 512 MiB buffer (not timed);
the median of enough calls to fill a per-point time budget. On a CPU, ``time.perf_counter`` and
the median. Times are in microseconds.

Roofline: bytes moved and FLOPs per call come from :func:`cost` (the minimum traffic of the
op's contract: every input read once, every output written once; sparse MLA gathers each
selected latent row once per query). The ceilings are the measured copy bandwidth and matmul
rates of the machine (``ceilings="measured"``) or the datasheet peaks of
:mod:`rocm_dsa.platform` (``"datasheet"``). ``% roofline = 100 * max(bytes / bandwidth, flops /
peak) / time``; the indexer is held to the FP8 peak, attention to the bf16 peak, top-k to
bandwidth only.

``--model mi300x`` (:func:`model_rows`) computes the same bytes and FLOPs and divides them by
the datasheet figures of a part: an analytical lower bound on time, labelled as a prediction
everywhere it is printed or saved, never as a measurement.

Results are one plain dict (:func:`run_bench`), saved as msgpack or JSON with machine
metadata, turned into markdown (:func:`markdown_report`) and PNG plots (:func:`write_plots`,
matplotlib, imported only there).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform as _pyplatform
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from .platform import ARCHS, detect

__all__ = [
    "SWEEPS",
    "SCHEMA",
    "Point",
    "Cost",
    "sweep_points",
    "cost",
    "ceilings",
    "run_bench",
    "model_rows",
    "model_names",
    "save_results",
    "load_results",
    "markdown_report",
    "write_plots",
    "PlotError",
]

SCHEMA = "rocm-dsa-bench/1"
SWEEPS: tuple[str, ...] = ("decode", "prefill", "indexer", "topk", "dsa")

INDEX_HEADS, INDEX_DIM = 64, 128
MLA_DIM, MLA_DV = 576, 512
PAGE = 64
SM_SCALE = 0.1352338
ROW_BYTES = {"bf16": MLA_DIM * 2, "fp8": 656}

#: dense / sparse op names of the DSA sweep that are not rocm_dsa ops
DENSE_OPS = ("dense_mla_prefill", "dense_mla_decode")
DENSE_PROVIDER = "torch-sdpa"


# ---------------------------------------------------------------------------------------------
# points
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Point:
    """One measurement: an op at one shape.

    Attributes:
        sweep: one of :data:`SWEEPS`.
        op: a :mod:`rocm_dsa.ops` function name, or ``dense_mla_prefill`` / ``dense_mla_decode``.
        params: the shape, by name (B, T, H, ctx, N, R, C, k, kv, next_n, s_q, mode, ...).
    """

    sweep: str
    op: str
    params: tuple[tuple[str, Any], ...]

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)

    def label(self) -> str:
        return shape_label(self.op, self.p)


def _pt(sweep: str, op: str, **params: Any) -> Point:
    return Point(sweep, op, tuple(params.items()))


def _k(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else str(n)


def shape_label(op: str, p: dict[str, Any]) -> str:
    """Compact text of a shape, e.g. ``B=64 H=16 ctx=32K kv=bf16``."""
    keys = ("mode", "B", "T", "R", "next_n", "s_q", "H", "N", "C", "ctx", "k", "kv")
    out = []
    for key in keys:
        if key in p and p[key] is not None:
            v = p[key]
            if key in ("N", "C", "ctx", "T") and isinstance(v, int):
                v = _k(v)
            if key in ("next_n", "s_q") and v == 1:
                continue
            out.append(f"{key}={v}")
    return " ".join(out)


_DEFAULTS = {
    "decode": {"B": (1, 8, 64, 128), "H": (16, 64, 128), "ctx": (4096, 32768, 131072)},
    "prefill": {"T": (1024, 4096, 16384), "H": (16, 128)},
    "indexer_ragged": ((4096, 16384), (4096, 65536), (1024, 131072)),
    "indexer_paged": {"B": (1, 64, 128), "ctx": (32768, 131072)},
    "topk": {"R": (64, 4096), "C": (32768, 131072)},
    "dsa": {"ctx": tuple(1024 << i for i in range(8)), "Q": 256, "B": 32, "H": (128,)},
}
_QUICK = {
    "decode": {"B": (1, 2), "H": (16,), "ctx": (1024,)},
    "prefill": {"T": (16,), "H": (16,)},
    "indexer_ragged": ((16, 1024),),
    "indexer_paged": {"B": (2,), "ctx": (1024,)},
    "topk": {"R": (16,), "C": (2048,)},
    "dsa": {"ctx": (512, 1024, 2048, 4096), "Q": 4, "B": 2, "H": (16,)},
}
#: top-k width of the quick preset (small so that CPU runs still select from more candidates)
QUICK_TOPK = 256


def sweep_points(sweeps: Iterable[str] = SWEEPS, *, quick: bool = False, heads: Sequence[int] | None = None,
                 kv: str = "bf16", topk: int | None = None) -> list[Point]:
    """The points of the named sweeps.

    Args:
        sweeps: names from :data:`SWEEPS`.
        quick: a tiny preset for CPUs and CI (seconds with the reference provider).
        heads: MLA heads per TP rank (128 / TP) replacing the default head counts of the
            decode, prefill and dsa sweeps (the indexer always has 64 heads).
        kv: latent cache format, "bf16" (1152 B/token) or "fp8" (656-byte records).
        topk: indices per query (default: DeepSeek-V3.2's 2048; :data:`QUICK_TOPK` with ``quick``).
    Raises:
        ValueError: an unknown sweep or kv format, heads < 1, topk < 1.
    """
    sweeps = list(sweeps)
    bad = [s for s in sweeps if s not in SWEEPS]
    if bad:
        raise ValueError(f"sweep: expected names from {list(SWEEPS)}, got {bad}")
    if kv not in ROW_BYTES:
        raise ValueError(f"kv: expected 'bf16' or 'fp8', got {kv!r}")
    if heads is not None and (not heads or any(h < 1 for h in heads)):
        raise ValueError(f"heads: expected positive head counts, got {list(heads)}")
    if topk is None:
        topk = QUICK_TOPK if quick else 2048
    if topk < 1:
        raise ValueError(f"topk: expected >= 1, got {topk}")
    d = _QUICK if quick else _DEFAULTS
    pts: list[Point] = []
    if "decode" in sweeps:
        for h in heads or d["decode"]["H"]:
            for ctx in d["decode"]["ctx"]:
                for b in d["decode"]["B"]:
                    pts.append(_pt("decode", "sparse_mla_decode", B=b, s_q=1, H=h, ctx=ctx, k=topk, kv=kv))
    if "prefill" in sweeps:
        for h in heads or d["prefill"]["H"]:
            for t in d["prefill"]["T"]:
                pts.append(_pt("prefill", "sparse_mla_prefill", T=t, H=h, N=max(t, 2 * topk), k=topk, kv=kv))
    if "indexer" in sweeps:
        for t, n in d["indexer_ragged"]:
            for op in ("indexer_logits", "indexer_topk"):
                pts.append(_pt("indexer", op, T=t, N=n, H=INDEX_HEADS, k=topk))
        for ctx in d["indexer_paged"]["ctx"]:
            for b in d["indexer_paged"]["B"]:
                for op in ("indexer_logits_paged", "indexer_topk_paged"):
                    pts.append(_pt("indexer", op, B=b, next_n=1, H=INDEX_HEADS, ctx=ctx, k=topk))
    if "topk" in sweeps:
        for c in d["topk"]["C"]:
            for r in d["topk"]["R"]:
                pts.append(_pt("topk", "topk_indices", R=r, C=c, k=topk))
    if "dsa" in sweeps:
        dd = d["dsa"]
        for h in heads or dd["H"]:
            for ctx in dd["ctx"]:
                q = min(dd["Q"], ctx)
                pts.append(_pt("dsa", "indexer_topk", mode="prefill", T=q, N=ctx, H=INDEX_HEADS, k=topk))
                pts.append(_pt("dsa", "sparse_mla_prefill", mode="prefill", T=q, H=h, N=ctx, k=topk, kv=kv))
                pts.append(_pt("dsa", "dense_mla_prefill", mode="prefill", T=q, H=h, ctx=ctx))
                pts.append(_pt("dsa", "indexer_topk_paged", mode="decode", B=dd["B"], next_n=1, H=INDEX_HEADS,
                               ctx=ctx, k=topk))
                pts.append(_pt("dsa", "sparse_mla_decode", mode="decode", B=dd["B"], s_q=1, H=h, ctx=ctx, k=topk,
                               kv=kv))
                pts.append(_pt("dsa", "dense_mla_decode", mode="decode", B=dd["B"], H=h, ctx=ctx))
    return pts


# ---------------------------------------------------------------------------------------------
# cost model: bytes moved and FLOPs per call
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Cost:
    """Minimum HBM traffic and arithmetic of one call.

    Attributes:
        bytes: bytes read + written (each input once, each output once).
        flops: multiply-adds x 2 of the matrix work (0 for top-k).
        math: which matrix peak bounds the op: "fp8" (indexer), "bf16" (attention) or None.
        tokens: query tokens served by the call (per-token cost = time / tokens).
    """

    bytes: float
    flops: float
    math: str | None
    tokens: int


def _ragged_windows(t: int, n: int) -> int:
    """Keys scored in total by T queries at the end of an N-key context (causal)."""
    t = min(t, n)
    return t * (n - t) + t * (t + 1) // 2


def cost(op: str, p: dict[str, Any]) -> Cost:
    """Bytes and FLOPs of one call of ``op`` at shape ``p`` (see :func:`sweep_points`).

    Raises ValueError for an op without a model.
    """
    h, k = p.get("H", INDEX_HEADS), p.get("k", 2048)
    if op in ("indexer_logits", "indexer_topk"):
        t, n = p["T"], p["N"]
        scored = _ragged_windows(t, n)
        inputs = t * h * INDEX_DIM + t * h * 4 + n * (INDEX_DIM + 4) + 2 * t * 4
        out = t * n * 4 if op == "indexer_logits" else t * k * 4
        return Cost(inputs + out, 2.0 * h * INDEX_DIM * scored, "fp8", t)
    if op in ("indexer_logits_paged", "indexer_topk_paged"):
        b, nn, ctx = p["B"], p.get("next_n", 1), p["ctx"]
        pages = -(-ctx // PAGE)
        inputs = b * ctx * (INDEX_DIM + 4) + b * nn * h * (INDEX_DIM + 4) + b * (4 + 4 * pages)
        out = b * nn * pages * PAGE * 4 if op == "indexer_logits_paged" else b * nn * k * 4
        return Cost(inputs + out, 2.0 * h * INDEX_DIM * b * nn * ctx, "fp8", b * nn)
    if op == "topk_indices":
        r, c = p["R"], p["C"]
        return Cost(r * c * 4 + r * 8 + r * k * 4, 0.0, None, r)
    if op == "sparse_mla_decode":
        b, sq, ctx = p["B"], p.get("s_q", 1), p["ctx"]
        valid = min(k, ctx)
        rows = b * sq * valid * ROW_BYTES[p.get("kv", "bf16")]
        io = b * sq * (h * MLA_DIM * 2 + h * MLA_DV * 2 + h * 4 + k * 4)
        return Cost(rows + io, 2.0 * b * sq * h * valid * (MLA_DIM + MLA_DV), "bf16", b * sq)
    if op == "sparse_mla_prefill":
        t, n = p["T"], p["N"]
        valid = min(k, n)
        rows = t * valid * ROW_BYTES[p.get("kv", "bf16")]
        io = t * (h * MLA_DIM * 2 + h * MLA_DV * 2 + h * 8 + k * 4)
        return Cost(rows + io, 2.0 * t * h * valid * (MLA_DIM + MLA_DV), "bf16", t)
    if op == "dense_mla_decode":
        b, ctx = p["B"], p["ctx"]
        return Cost(b * ctx * MLA_DIM * 2 + b * h * (MLA_DIM + MLA_DV) * 2,
                    2.0 * b * h * ctx * (MLA_DIM + MLA_DV), "bf16", b)
    if op == "dense_mla_prefill":
        t, ctx = p["T"], p["ctx"]
        return Cost(ctx * MLA_DIM * 2 + t * h * (MLA_DIM + MLA_DV) * 2,
                    2.0 * t * h * ctx * (MLA_DIM + MLA_DV), "bf16", t)
    raise ValueError(f"op: no cost model for {op!r}")


def _footprint(op: str, p: dict[str, Any]) -> float:
    """Rough device bytes a point allocates (inputs + outputs + scratch), to skip what cannot fit."""
    h = p.get("H", INDEX_HEADS)
    if op == "sparse_mla_decode":
        return p["B"] * (-(-p["ctx"] // PAGE)) * PAGE * ROW_BYTES[p.get("kv", "bf16")] + p["B"] * p["ctx"] * 8
    if op == "sparse_mla_prefill":
        return p["N"] * ROW_BYTES[p.get("kv", "bf16")] + p["T"] * p["N"] * 4 + p["T"] * h * MLA_DIM * 4
    if op in ("indexer_logits", "indexer_topk"):
        return p["T"] * p["N"] * 4 * 2 + p["N"] * 132
    if op in ("indexer_logits_paged", "indexer_topk_paged"):
        return p["B"] * p["ctx"] * (132 + 8)
    if op == "topk_indices":
        return p["R"] * p["C"] * 4 * 3
    if op == "dense_mla_decode":
        return p["B"] * p["ctx"] * (MLA_DIM + MLA_DV) * 2 * 2 + p["B"] * h * p["ctx"] * 4
    if op == "dense_mla_prefill":
        return p["ctx"] * (MLA_DIM + MLA_DV) * 2 * 2 + p["T"] * h * p["ctx"] * 4
    return 0.0


# ---------------------------------------------------------------------------------------------
# ceilings
# ---------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time_s(fn: Callable[[], Any], device: torch.device, reps: int) -> float:
    """Median seconds of ``fn`` over ``reps`` calls after a warm-up (device events on a GPU)."""
    return statistics.median(time_call(fn, device, budget_s=0.0, min_reps=reps, max_reps=reps)) * 1e-6


def ceilings(device: torch.device, mode: str = "measured") -> dict[str, Any]:
    """Roofline ceilings of ``device``.

    Args:
        mode: "measured" = copy bandwidth of a large tensor copy (GB/s counting read + write),
            bf16 (fp32 on a CPU) and FP8 (``torch._scaled_mm``, where supported) matmul rates;
            "datasheet" = the peaks of :mod:`rocm_dsa.platform` (0 where none is known).
    Returns:
        {"source", "hbm_gbps", "bf16_tflops", "fp8_tflops", "notes"}; a figure that cannot be
        measured falls back to the datasheet, said in ``notes``.
    Raises:
        ValueError for an unknown mode.
    """
    if mode not in ("measured", "datasheet"):
        raise ValueError(f"ceilings: expected 'measured' or 'datasheet', got {mode!r}")
    plat = detect(device)
    sheet = {"hbm_gbps": plat.peak_hbm_gbps, "bf16_tflops": plat.peak_bf16_tflops,
             "fp8_tflops": plat.peak_fp8_tflops}
    if mode == "datasheet":
        return {"source": f"datasheet ({plat.name})", **sheet, "notes": []}
    notes: list[str] = []
    gpu = device.type == "cuda"
    nbytes = (512 << 20) if gpu else (64 << 20)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    t = _median_time_s(lambda: dst.copy_(src), device, 20 if gpu else 5)
    hbm = 2 * nbytes / t / 1e9
    n = 8192 if gpu else 512
    dt = torch.bfloat16 if gpu else torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    t = _median_time_s(lambda: a @ b, device, 10 if gpu else 3)
    bf16 = 2 * n ** 3 / t / 1e12
    if not gpu:
        notes.append("CPU: the bf16 ceiling is an fp32 matmul rate")
    fp8_rate = None
    if gpu:
        try:
            f8 = plat.fp8_dtype
            a8 = a.to(f8)
            b8 = b.to(f8).t().contiguous().t()
            one = torch.ones((), device=device, dtype=torch.float32)
            t = _median_time_s(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                               device, 10)
            fp8_rate = 2 * n ** 3 / t / 1e12
        except Exception as e:  # noqa: BLE001 - not every torch/GPU pair has an FP8 GEMM
            notes.append(f"fp8 matmul not measurable ({type(e).__name__}); using datasheet/bf16 x 2")
    if fp8_rate is None:
        fp8_rate = sheet["fp8_tflops"] or 2 * bf16
    return {"source": f"measured on {device}", "hbm_gbps": hbm, "bf16_tflops": bf16, "fp8_tflops": fp8_rate,
            "datasheet": sheet, "notes": notes}


def _roofline(c: Cost, ceil: dict[str, Any], seconds: float | None) -> dict[str, Any]:
    bw = ceil.get("hbm_gbps") or 0.0
    peak = {"fp8": ceil.get("fp8_tflops"), "bf16": ceil.get("bf16_tflops")}.get(c.math or "", 0.0) or 0.0
    t_mem = c.bytes / (bw * 1e9) if bw else 0.0
    t_math = c.flops / (peak * 1e12) if (peak and c.flops) else 0.0
    t_roof = max(t_mem, t_math)
    out = {"roof_us": t_roof * 1e6 if t_roof else None,
           "bound": ("compute" if t_math > t_mem else "memory") if t_roof else None}
    if seconds:
        out["gbps"] = c.bytes / seconds / 1e9
        out["tflops"] = c.flops / seconds / 1e12 if c.flops else None
        out["roofline_pct"] = 100.0 * t_roof / seconds if t_roof else None
    return out


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def _fp8(shape: Sequence[int], device: torch.device, scale: float = 1.0) -> torch.Tensor:
    from .fp8 import cast_to_fp8

    return cast_to_fp8(torch.randn(*shape, device=device) * scale, detect(device).fp8_dtype)


def _fill_rows(rows: torch.Tensor, kv: str, device: torch.device) -> None:
    """Fill [M, W] latent rows with random bf16 values or valid FP8 records (tiled)."""
    if kv == "bf16":
        for chunk in rows.split(1 << 20):
            chunk.normal_(0.0, 0.5)
        return
    from .cache import pack_mla_fp8

    tile = pack_mla_fp8(torch.randn(4096, 512, device=device), torch.randn(4096, 64, device=device),
                        detect(device).fp8_dtype)
    for s in range(0, rows.shape[0], tile.shape[0]):
        e = min(rows.shape[0], s + tile.shape[0])
        rows[s:e] = tile[: e - s]


def _latent_buffer(slots: int, kv: str, device: torch.device) -> torch.Tensor:
    pages = -(-slots // PAGE)
    if kv == "bf16":
        buf = torch.empty(pages, PAGE, 1, MLA_DIM, dtype=torch.bfloat16, device=device)
    else:
        buf = torch.empty(pages, PAGE, 1, ROW_BYTES["fp8"], dtype=torch.uint8, device=device)
    _fill_rows(buf.view(-1, buf.shape[-1]), kv, device)
    return buf


def _distinct_positions(rows: int, limits: Sequence[int] | int, k: int, device: torch.device) -> torch.Tensor:
    """[rows, k] int64: min(k, limit) distinct random positions in [0, limit) per row, then -1."""
    lim = [limits] * rows if isinstance(limits, int) else list(limits)
    out = torch.full((rows, k), -1, dtype=torch.int64, device=device)
    width = max(lim)
    step = max(1, (1 << 26) // max(1, width))
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        keys = torch.rand(r1 - r0, width, device=device)
        cols = torch.arange(width, device=device)
        keys = torch.where(cols < torch.tensor(lim[r0:r1], device=device).unsqueeze(1), keys,
                           torch.full_like(keys, -1.0))
        kk = min(k, width)
        top = torch.topk(keys, kk, dim=1)
        pos = torch.where(top.values >= 0, top.indices, torch.full_like(top.indices, -1))
        out[r0:r1, :kk] = pos
    return out


def _block_table(b: int, pages_per_req: int, device: torch.device) -> torch.Tensor:
    return torch.randperm(b * pages_per_req, device=device).to(torch.int32).reshape(b, pages_per_req)


def _indexer_cache(b: int, ctx: int, device: torch.device):
    """Paged indexer key cache with random keys for B requests of ctx tokens, and its table."""
    from .cache import indexer_cache_views
    from .fp8 import cast_to_fp8

    ppr = -(-ctx // PAGE)
    buf = torch.empty(b * ppr, PAGE * (INDEX_DIM + 4), dtype=torch.uint8, device=device)
    values, scales = indexer_cache_views(buf)
    fp8 = detect(device).fp8_dtype
    for s in range(0, buf.shape[0], 4096):
        e = min(buf.shape[0], s + 4096)
        values[s:e] = cast_to_fp8(torch.randn(e - s, PAGE, INDEX_DIM, device=device), fp8).view(torch.uint8)
        scales[s:e] = torch.rand(e - s, PAGE, device=device) * 0.01 + 0.001
    return buf, _block_table(b, ppr, device)


def _indexer_q(rows: int, device: torch.device):
    q = _fp8((rows, INDEX_HEADS, INDEX_DIM), device)
    w = torch.randn(rows, INDEX_HEADS, device=device) * (INDEX_HEADS ** -0.5) * (INDEX_DIM ** -0.5)
    return q, w


def _setup(op: str, p: dict[str, Any], device: torch.device) -> Callable[[str | None], Callable[[], Any]]:
    """Build the inputs of one point once; return ``bind(provider) -> call()`` running the op on them
    with that provider (None = the automatic choice)."""
    from . import ops
    from .cache import positions_to_slots

    i32 = torch.int32
    fp8 = detect(device).fp8_dtype
    k = p.get("k", 2048)
    if op == "sparse_mla_decode":
        b, sq, h, ctx, kv = p["B"], p.get("s_q", 1), p["H"], p["ctx"], p.get("kv", "bf16")
        ppr = -(-ctx // PAGE)
        cache = _latent_buffer(b * ppr * PAGE, kv, device)
        table = _block_table(b, ppr, device)
        pos = _distinct_positions(b * sq, ctx, k, device)
        idx = positions_to_slots(pos, table.repeat_interleave(sq, 0), PAGE).reshape(b, sq, k).contiguous()
        q = (torch.randn(b, sq, h, MLA_DIM, device=device) * 0.5).to(torch.bfloat16)
        return lambda prov: lambda: ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, fp8_dtype=fp8,
                                                          provider=prov)
    if op == "sparse_mla_prefill":
        t, h, n, kv = p["T"], p["H"], p["N"], p.get("kv", "bf16")
        rows = _latent_buffer(n, kv, device).reshape(-1, 1, ROW_BYTES[kv] if kv == "fp8" else MLA_DIM)[:n]
        if p.get("mode") == "prefill":  # dsa sweep: causal, query t sits at position n - t_count + t
            limits = [n - t + i + 1 for i in range(t)]
        else:
            limits = n
        idx = _distinct_positions(t, limits, k, device).to(i32).unsqueeze(1).contiguous()
        q = (torch.randn(t, h, MLA_DIM, device=device) * 0.5).to(torch.bfloat16)
        return lambda prov: lambda: ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, fp8_dtype=fp8,
                                                           provider=prov)
    if op in ("indexer_logits", "indexer_topk"):
        t, n = p["T"], p["N"]
        q, w = _indexer_q(t, device)
        kf = _fp8((n, INDEX_DIM), device)
        ks_scale = torch.rand(n, device=device) * 0.01 + 0.001
        ks = torch.zeros(t, dtype=i32, device=device)
        ke = torch.arange(n - t + 1, n + 1, dtype=i32, device=device)
        if op == "indexer_logits":
            return lambda prov: lambda: ops.indexer_logits(q, kf, ks_scale, w, ks, ke, provider=prov)
        return lambda prov: lambda: ops.indexer_topk(q, kf, ks_scale, w, ks, ke, k=k, provider=prov)
    if op in ("indexer_logits_paged", "indexer_topk_paged"):
        b, nn, ctx = p["B"], p.get("next_n", 1), p["ctx"]
        buf, table = _indexer_cache(b, ctx, device)
        q, w = _indexer_q(b * nn, device)
        q = q.reshape(b, nn, INDEX_HEADS, INDEX_DIM)
        lens = torch.full((b,), ctx, dtype=i32, device=device)
        if op == "indexer_logits_paged":
            return lambda prov: lambda: ops.indexer_logits_paged(q, buf, w, lens, table, provider=prov)
        return lambda prov: lambda: ops.indexer_topk_paged(q, buf, w, lens, table, k=k, return_slots=True,
                                                           provider=prov)
    if op == "topk_indices":
        r, c = p["R"], p["C"]
        logits = torch.randn(r, c, device=device)
        starts = torch.zeros(r, dtype=i32, device=device)
        ends = torch.full((r,), c, dtype=i32, device=device)
        return lambda prov: lambda: ops.topk_indices(logits, starts, ends, k=k, provider=prov)
    if op in DENSE_OPS:
        import torch.nn.functional as F

        h, ctx = p["H"], p["ctx"]
        b = p["B"] if op == "dense_mla_decode" else 1
        rows_q = h if op == "dense_mla_decode" else p["T"] * h
        kk = (torch.randn(b, 1, ctx, MLA_DIM, device=device) * 0.5).to(torch.bfloat16)
        vv = kk[..., :MLA_DV].contiguous()
        q = (torch.randn(b, 1, rows_q, MLA_DIM, device=device) * 0.5).to(torch.bfloat16)
        return lambda prov: lambda: F.scaled_dot_product_attention(q, kk, vv, scale=SM_SCALE)
    raise ValueError(f"op: no benchmark for {op!r}")


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
class _Flusher:
    """Writes a buffer larger than the last-level cache (H200 L2 50 MB, MI300X Infinity Cache
    256 MB) before each timed call so that every call starts cold."""

    def __init__(self, device: torch.device, enabled: bool):
        self.buf = torch.empty(512 << 20, dtype=torch.uint8, device=device) if (
            enabled and device.type == "cuda") else None

    def __call__(self) -> None:
        if self.buf is not None:
            self.buf.zero_()


def time_call(fn: Callable[[], Any], device: torch.device, *, budget_s: float = 0.5, min_reps: int = 3,
              max_reps: int = 100, flush: Callable[[], None] | None = None, warmup: bool = True) -> list[float]:
    """Times of ``fn`` in microseconds: device events on a GPU (each call after a cache flush),
    ``time.perf_counter`` on a CPU; as many calls as fit ``budget_s``, within [min_reps, max_reps].

    ``warmup``: make one untimed call first (False when the caller already made one; the first
    call compiles kernels).
    """
    if warmup:
        fn()
        _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    reps = int(max(min_reps, min(max_reps, budget_s // max(first, 1e-6))))
    if device.type == "cuda":
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        for s, e in evs:
            if flush:
                flush()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize(device)
        return [s.elapsed_time(e) * 1e3 for s, e in evs]
    times = [first * 1e6]
    for _ in range(reps - 1):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    return times


@contextlib.contextmanager
def _record_selection():
    """Record which provider :mod:`rocm_dsa.ops` selects inside the block (automatic choice)."""
    from . import ops

    seen: list[str] = []
    orig = ops.select

    def rec(case, provider=None):
        p = orig(case, provider)
        seen.append(p.name)
        return p

    ops.select = rec
    try:
        yield seen
    finally:
        ops.select = orig


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def machine_metadata(device: torch.device) -> dict[str, Any]:
    """Where a result was measured: host, OS, CPU, the device platform and the stack versions."""
    from .selfcheck import platform_info, versions

    cpu = _pyplatform.processor() or _pyplatform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "hostname": socket.gethostname(),
        "os": _pyplatform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "platform": platform_info(device),
        "versions": versions(),
        "env": {k: v for k, v in os.environ.items() if k.startswith(("ROCM_DSA", "TRITON_INTERPRET", "HIP_VISIBLE",
                                                                     "CUDA_VISIBLE"))},
    }


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_bench(
    points: Sequence[Point],
    *,
    providers: Sequence[str | None] = (None,),
    device: torch.device | str | None = None,
    ceilings_mode: str = "measured",
    budget_s: float | None = None,
    flush: bool = True,
    seed: int = 0,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    config: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure every point with every provider.

    Args:
        points: from :func:`sweep_points`.
        providers: provider names side by side; None = the automatic choice (the provider that
            actually ran is recorded in ``resolved``). Dense attention points run once, with
            torch SDPA.
        device: default: the current GPU, else the CPU.
        ceilings_mode: "measured" or "datasheet" (:func:`ceilings`).
        budget_s: time per point (default 0.5 s on a GPU, 0.2 s on a CPU).
        flush: flush the last-level cache before each timed call (GPU).
        seed: torch seed of the random inputs.
        on_point: called with each finished result row (progress bars).
        config: stored as ``config`` in the result document.
    Returns:
        the result document: {"schema", "kind": "measured", "created", "command", "machine",
        "ceilings", "config", "results": [row, ...]}. A row holds sweep, op, params, label,
        provider, resolved, status ("ok" / "skip" / "error"), reason, time_us (median),
        times_us (min/median/max, n), bytes, flops, math, tokens, per_token_us, gbps, tflops,
        roofline_pct, roof_us, bound.
    """
    from .backends import ProviderError

    device = torch.device(device) if device is not None else (
        torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu"))
    gpu = device.type == "cuda"
    budget = budget_s if budget_s is not None else (0.5 if gpu else 0.2)
    torch.manual_seed(seed)
    ceil = ceilings(device, ceilings_mode if gpu else "measured")
    if not gpu and ceilings_mode == "datasheet":
        ceil["notes"].append("CPU: no datasheet peaks, measured instead")
    flusher = _Flusher(device, flush)
    rows: list[dict[str, Any]] = []
    for pt in points:
        p = pt.p
        c = cost(pt.op, p)
        provs = [DENSE_PROVIDER] if pt.op in DENSE_OPS else list(providers)
        bind = None
        setup_error: dict[str, str] | None = None
        try:  # inputs once per point, shared by the providers
            if gpu:
                free, _ = torch.cuda.mem_get_info(device)
                need = _footprint(pt.op, p)
                if need > 0.85 * free:
                    raise MemoryError(f"needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free")
            bind = _setup(pt.op, p, device)
        except (MemoryError, torch.OutOfMemoryError) as e:
            setup_error = {"status": "skip", "reason": f"out of memory: {e}".splitlines()[0][:300]}
        except Exception as e:  # noqa: BLE001 - one failing point must not end the sweep
            setup_error = {"status": "error", "reason": f"inputs: {type(e).__name__}: {e}".splitlines()[0][:300]}
        for prov in provs:
            row: dict[str, Any] = {
                "sweep": pt.sweep, "op": pt.op, "params": p, "label": pt.label(),
                "provider": prov or "auto", "resolved": DENSE_PROVIDER if pt.op in DENSE_OPS else None,
                "status": "ok", "reason": "", "bytes": c.bytes, "flops": c.flops, "math": c.math,
                "tokens": c.tokens,
            }
            if setup_error:
                row.update(setup_error)
            else:
                try:
                    fn = bind(None if prov in (None, DENSE_PROVIDER) else prov)
                    with _record_selection() as seen:
                        fn()  # warm-up (compiles on first use); records the provider that ran
                    _sync(device)
                    if pt.op not in DENSE_OPS:
                        row["resolved"] = seen[-1] if seen else prov
                    times = time_call(fn, device, budget_s=budget, min_reps=5 if gpu else 2,
                                      max_reps=200 if gpu else 10, flush=flusher if flush else None, warmup=False)
                    med = statistics.median(times)
                    row.update(time_us=med, times_us={"min": min(times), "median": med, "max": max(times),
                                                      "n": len(times)},
                               per_token_us=med / max(1, c.tokens))
                    row.update(_roofline(c, ceil, med * 1e-6))
                except ProviderError as e:
                    row.update(status="skip", reason=str(e))
                except torch.OutOfMemoryError as e:
                    row.update(status="skip", reason=f"out of memory: {e}".splitlines()[0][:300])
                except Exception as e:  # noqa: BLE001 - one failing point must not end the sweep
                    row.update(status="error", reason=f"{type(e).__name__}: {e}".splitlines()[0][:300])
            rows.append(row)
            if on_point:
                on_point(row)
        bind = fn = None  # noqa: F841 - drop the inputs before the next point
        if gpu:
            torch.cuda.empty_cache()
    return {
        "schema": SCHEMA,
        "kind": "measured",
        "created": _now(),
        "command": list(sys.argv),
        "machine": machine_metadata(device),
        "ceilings": ceil,
        "config": dict(config or {}, budget_s=budget, flush=bool(flush and gpu), seed=seed),
        "results": rows,
    }


# ---------------------------------------------------------------------------------------------
# analytical model (--model)
# ---------------------------------------------------------------------------------------------
def model_names() -> dict[str, str]:
    """Part names accepted by ``--model`` -> arch (parts with datasheet peaks only)."""
    out = {}
    for arch, plat in ARCHS.items():
        if plat.peak_hbm_gbps and plat.peak_bf16_tflops:
            out[plat.name.lower().split()[0]] = arch
    return out


def model_rows(points: Sequence[Point], part: str) -> dict[str, Any]:
    """Analytical time estimate of every point on ``part`` (e.g. "mi300x"): bytes / datasheet
    bandwidth vs FLOPs / datasheet matrix peak (FP8 for the indexer, bf16 for attention), the
    larger of the two. A lower bound on time — a PREDICTION, not a measurement.

    Raises ValueError for an unknown part (the names of :func:`model_names`).
    """
    names = model_names()
    key = part.lower()
    if key not in names:
        raise ValueError(f"model: expected one of {sorted(names)}, got {part!r}")
    plat = ARCHS[names[key]]
    ceil = {"source": f"datasheet ({plat.name})", "hbm_gbps": plat.peak_hbm_gbps,
            "bf16_tflops": plat.peak_bf16_tflops, "fp8_tflops": plat.peak_fp8_tflops, "notes": []}
    rows = []
    for pt in points:
        p = pt.p
        c = cost(pt.op, p)
        r = _roofline(c, ceil, None)
        us = r["roof_us"]
        rows.append({
            "sweep": pt.sweep, "op": pt.op, "params": p, "label": pt.label(),
            "provider": "model", "resolved": f"model:{key}", "status": "predicted", "reason": "",
            "bytes": c.bytes, "flops": c.flops, "math": c.math, "tokens": c.tokens,
            "time_us": us, "per_token_us": us / max(1, c.tokens) if us else None,
            "gbps": c.bytes / (us * 1e-6) / 1e9 if us else None,
            "tflops": c.flops / (us * 1e-6) / 1e12 if (us and c.flops) else None,
            "roofline_pct": None, "roof_us": us, "bound": r["bound"],
        })
        if plat.arch in ("gfx942", "gfx950"):  # per-launch bytes/MFMA count of our HIP kernel
            from .mi300x_model import kernel_estimate

            est = kernel_estimate(pt.op, p, plat.arch)
            rows[-1]["hip_kernel"] = est.to_dict() if est else None
    return {
        "schema": SCHEMA,
        "kind": "model",
        "model": key,
        "created": _now(),
        "command": list(sys.argv),
        "machine": {"model_of": plat.name, "arch": plat.arch},
        "ceilings": ceil,
        "config": {},
        "results": rows,
    }


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def save_results(doc: dict[str, Any], path: str | Path) -> Path:
    """Write a result document: JSON when ``path`` ends in ``.json``, else msgpack.

    Raises OSError when the file cannot be written.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    plain = _plain(doc)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(plain, indent=1) + "\n", encoding="utf-8")
    else:
        import msgpack

        path.write_bytes(msgpack.packb(plain, use_bin_type=True))
    return path


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a result document written by :func:`save_results` (msgpack or JSON).

    Raises FileNotFoundError, or ValueError when the file is not a rocm-dsa result document.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:1] in (b"{", b"[") or path.suffix.lower() == ".json":
        doc = json.loads(raw.decode("utf-8"))
    else:
        import msgpack

        doc = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"results file {str(path)!r}: expected schema {SCHEMA!r}, got {got!r}")
    return doc


# ---------------------------------------------------------------------------------------------
# tables (shared by the CLI and the markdown report)
# ---------------------------------------------------------------------------------------------
def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if v == 0:
            return "0"
        mag = abs(v)
        if mag >= 1000:
            return f"{v:,.0f}"
        if mag >= 100:
            return f"{v:.0f}"
        if mag >= 10:
            return f"{v:.1f}"
        return f"{v:.{digits - 1}f}" if mag >= 1 else f"{v:.{digits}g}"
    return str(v)


def sweep_table(rows: Sequence[dict[str, Any]], sweep: str, op: str | None = None, *, with_op: bool = True,
                compact: bool = False) -> tuple[list[str], list[list[str]], str]:
    """One sweep's table (optionally one op) as (header, rows, common).

    Measured rows: op, shape, provider, time (µs), GB/s, TFLOP/s, % roofline, bound; skipped or
    failed points show their reason. Predicted rows (``--model``): op, shape, predicted µs,
    MB moved, GFLOP, bound, and the per-launch estimate of our HIP MFMA kernel where one exists. ``compact``: shape parameters equal in every row move to ``common``.
    """
    sel = [r for r in rows if r["sweep"] == sweep and (op is None or r["op"] == op)]
    common = ""
    labels = [r["label"] for r in sel]
    if compact and sel:
        keys = set.intersection(*(set(r["params"]) for r in sel))
        same = {k: sel[0]["params"][k] for k in keys if all(r["params"][k] == sel[0]["params"][k] for r in sel)}
        if len(sel) > 1:
            common = shape_label(sel[0]["op"], same)
            labels = [shape_label(r["op"], {k: v for k, v in r["params"].items() if k not in same}) for r in sel]
    model = bool(sel) and all(r["status"] == "predicted" for r in sel)
    first_h = ["op"] if with_op else []
    if model:
        header = first_h + ["shape", "predicted µs", "MB moved", "GFLOP", "bound", "HIP kernel µs"]
    else:
        header = first_h + ["shape", "provider", "time (µs)", "GB/s", "TFLOP/s", "% roofline", "bound"]
    out = []
    for r, label in zip(sel, labels):
        first = [r["op"]] if with_op else []
        if model:
            hip = r.get("hip_kernel") or {}
            out.append(first + [label, _fmt(r.get("time_us")), _fmt(r["bytes"] / 1e6), _fmt(r["flops"] / 1e9),
                                r.get("bound") or "–", _fmt(hip.get("predicted_us")) if hip else "–"])
            continue
        prov = r["provider"]
        if r.get("resolved") and r["resolved"] != prov:
            prov = f"{prov}→{r['resolved']}"
        if r["status"] == "ok":
            out.append(first + [label, prov, _fmt(r.get("time_us")), _fmt(r.get("gbps")), _fmt(r.get("tflops")),
                                _fmt(r.get("roofline_pct")), r.get("bound") or "–"])
        else:
            out.append(first + [label, prov, r["status"], "", "", "", r.get("reason", "")[:160]])
    return header, out, common


def dsa_table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the DSA claim: per-token µs of indexer + top-k, sparse MLA, their sum,
    and dense MLA per mode, context and provider; ``dense / DSA`` > 1 is where sparse wins."""
    header = ["mode", "context", "H", "provider", "indexer+top-k", "sparse MLA", "DSA total", "dense MLA",
              "dense / DSA"]
    out = []
    for mode, ctx, h, prov, parts in _dsa_series(rows):
        dsa = parts.get("dsa")
        dense = parts.get("dense")
        ratio = dense / dsa if (dsa and dense) else None
        out.append([mode, _k(ctx), str(h), prov, _fmt(parts.get("indexer")), _fmt(parts.get("sparse")), _fmt(dsa),
                    _fmt(dense), _fmt(ratio)])
    return header, out


def _dsa_series(rows: Sequence[dict[str, Any]]):
    """[(mode, ctx, H, provider, {"indexer", "sparse", "dsa", "dense"} per-token µs)] sorted."""
    ok = [r for r in rows if r["sweep"] == "dsa" and r["status"] in ("ok", "predicted") and r.get("per_token_us")]
    dense: dict[tuple[str, int, int], float] = {}
    heads_of_mode: dict[tuple[str, int], set[int]] = {}
    for r in ok:
        p = r["params"]
        if r["op"] in DENSE_OPS:
            dense[(p["mode"], p["ctx"], p["H"])] = r["per_token_us"]
            heads_of_mode.setdefault((p["mode"], p["ctx"]), set()).add(p["H"])
    parts: dict[tuple[str, int, int, str], dict[str, float]] = {}
    for r in ok:
        if r["op"] in DENSE_OPS:
            continue
        p = r["params"]
        ctx = p.get("ctx", p.get("N"))
        prov = r["provider"]
        if r["op"].startswith("indexer"):
            for h in sorted(heads_of_mode.get((p["mode"], ctx), {None})):
                parts.setdefault((p["mode"], ctx, h, prov), {})["indexer"] = r["per_token_us"]
        else:
            parts.setdefault((p["mode"], ctx, p["H"], prov), {})["sparse"] = r["per_token_us"]
    out = []
    for (mode, ctx, h, prov), d in sorted(parts.items(), key=lambda kv: (kv[0][0] != "prefill", kv[0][2] or 0,
                                                                       kv[0][3], kv[0][1])):
        if "indexer" in d and "sparse" in d:
            d["dsa"] = d["indexer"] + d["sparse"]
        if (mode, ctx, h) in dense:
            d["dense"] = dense[(mode, ctx, h)]
        out.append((mode, ctx, h, prov, d))
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    return "\n".join(lines)


def markdown_report(docs: Sequence[dict[str, Any]], *, plots: str | None = None) -> str:
    """Markdown of saved result documents: machine, ceilings, one table per sweep, the DSA claim.

    ``plots``: a directory (relative to where the markdown will live) whose PNGs are linked.
    Analytical documents are titled as predictions.
    """
    out = ["# rocm-dsa benchmark results", "",
           "Generated by `rocm-dsa bench --report` from saved result files; do not edit by hand.", ""]
    for doc in docs:
        cfg = doc.get("config", {})
        if doc.get("kind") == "model":
            out += [f"## ANALYTICAL ESTIMATE — {doc['machine'].get('model_of')} ({doc['machine'].get('arch')})", "",
                    "**Predictions, not measurements**: time = max(bytes / datasheet bandwidth, FLOPs / datasheet "
                    "matrix peak) per call, a lower bound that no kernel reaches. Nothing here ran on that GPU.", ""]
        else:
            m = doc.get("machine", {})
            plat = m.get("platform", {})
            ver = m.get("versions", {})
            out += [f"## Measured on {plat.get('device_name', '?')} ({plat.get('arch', '?')})", "",
                    f"- date: {doc.get('created')}",
                    f"- command: `{' '.join(doc.get('command', []))}`",
                    f"- host: {m.get('hostname')} · {m.get('os')} · {m.get('cpu')}",
                    "- versions: " + ", ".join(f"{k} {v}" for k, v in ver.items() if v),
                    f"- timing: {'device events, cache flushed per call' if cfg.get('flush') else 'wall clock'}, "
                    f"median, budget {cfg.get('budget_s')} s per point", ""]
        c = doc.get("ceilings", {})
        out += [f"Ceilings ({c.get('source')}): {_fmt(c.get('hbm_gbps'))} GB/s, bf16 {_fmt(c.get('bf16_tflops'))} "
                f"TFLOP/s, fp8 {_fmt(c.get('fp8_tflops'))} TFLOP/s." + (
                    " " + "; ".join(c.get("notes", [])) if c.get("notes") else ""), ""]
        rows = doc.get("results", [])
        for sweep in SWEEPS:
            if sweep == "dsa":
                continue
            header, body, _ = sweep_table(rows, sweep)
            if body:
                out += [f"### {sweep}", "", _md_table(header, body), ""]
        header, body = dsa_table(rows)
        if body:
            ks = sorted({r["params"].get("k") for r in rows if r["sweep"] == "dsa" and r["params"].get("k")})
            out += ["### DSA vs dense MLA: µs per query token at context position L", "",
                    f"DSA = fused indexer + top-k (k = {', '.join(map(str, ks))}), then sparse MLA; "
                    "dense = attention over all L latent rows (torch SDPA, absorbed 576/512 form). "
                    "`dense / DSA` > 1: sparse wins.", "",
                    _md_table(header, body), ""]
    if plots:
        out += ["## Plots", ""]
        for name in ("dsa_cost_per_token.png", "roofline.png", "scaling_decode.png", "scaling_prefill.png",
                     "scaling_indexer.png", "scaling_topk.png"):
            out.append(f"![{name}]({plots.rstrip('/')}/{name})")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
class PlotError(RuntimeError):
    """Plots cannot be drawn (matplotlib is not installed)."""


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _kfmt(plt):
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _pos: _k(int(round(x))) if x >= 1 else f"{x:g}")


def _title(doc: dict[str, Any]) -> str:
    if doc.get("kind") == "model":
        return f"ANALYTICAL ESTIMATE for {doc['machine'].get('model_of')} (predicted, not measured)"
    plat = doc.get("machine", {}).get("platform", {})
    return f"measured on {plat.get('device_name', '?')} ({plat.get('arch', '?')})"


def _plot_dsa(doc, plt, path: Path) -> bool:
    series = _dsa_series(doc["results"])
    if not series:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=False)
    for ax, mode in zip(axes, ("prefill", "decode")):
        lines: dict[tuple[Any, str], list[tuple[int, dict[str, float]]]] = {}
        for m, ctx, h, prov, d in series:
            if m == mode:
                lines.setdefault((h, prov), []).append((ctx, d))
        dense_done = set()
        for (h, prov), pts in sorted(lines.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1])):
            pts.sort()
            if any("dsa" in d for _, d in pts):
                ax.plot([c for c, d in pts if "dsa" in d], [d["dsa"] for _, d in pts if "dsa" in d], "o-", lw=2,
                        label=f"DSA total ({prov}, H={h})")
                ax.plot([c for c, d in pts if "indexer" in d], [d["indexer"] for _, d in pts if "indexer" in d],
                        ":", lw=1, label=f"  indexer + top-k ({prov})")
                ax.plot([c for c, d in pts if "sparse" in d], [d["sparse"] for _, d in pts if "sparse" in d],
                        "--", lw=1, label=f"  sparse MLA ({prov}, H={h})")
            if h not in dense_done and any("dense" in d for _, d in pts):
                dense_done.add(h)
                ax.plot([c for c, d in pts if "dense" in d], [d["dense"] for _, d in pts if "dense" in d], "s-",
                        color="black", lw=2, label=f"dense MLA attention (H={h})")
            # first context where the DSA total is below dense
            for c, d in pts:
                if "dsa" in d and "dense" in d and d["dsa"] < d["dense"]:
                    ax.axvline(c, color="grey", lw=0.8, ls="-.")
                    ax.annotate(f"sparse wins from {_k(c)}", (c, d["dsa"]), textcoords="offset points",
                                xytext=(4, -14), fontsize=8, color="grey")
                    break
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(_kfmt(plt))
        ax.set_yscale("log")
        ax.set_xlabel("context length L (token position)")
        ax.set_ylabel("µs per query token")
        ax.set_title(f"{mode}: one query token at position L")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("cost per query token: dense MLA grows with L; DSA's attention stays at k rows (plus a light "
                 f"O(L) FP8 indexer)\n{_title(doc)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_roofline(doc, plt, path: Path) -> bool:
    rows = [r for r in doc["results"] if r["status"] in ("ok", "predicted") and r.get("flops") and r.get("time_us")]
    c = doc.get("ceilings", {})
    bw = c.get("hbm_gbps") or 0
    if not rows or not bw:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ai = [r["flops"] / r["bytes"] for r in rows]
    lo, hi = min(ai + [1.0]) / 2, max(ai + [1000.0]) * 2
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    for name, peak, style in (("bf16", c.get("bf16_tflops"), "-"), ("fp8", c.get("fp8_tflops"), "--")):
        if peak:
            ax.plot(xs, [min(peak, bw * x / 1e3) for x in xs], style, color="black", lw=1,
                    label=f"roof: {_fmt(bw)} GB/s, {name} {_fmt(peak)} TFLOP/s")
    markers = "osD^v<>pPX*"
    provs = sorted({r["provider"] for r in rows})
    ops_ = sorted({r["op"] for r in rows})
    cmap = plt.get_cmap("tab10")
    for r in rows:
        ax.scatter(r["flops"] / r["bytes"], r["flops"] / (r["time_us"] * 1e-6) / 1e12,
                   color=cmap(ops_.index(r["op"]) % 10), marker=markers[provs.index(r["provider"]) % len(markers)],
                   s=28, alpha=0.85)
    for i, op in enumerate(ops_):
        ax.scatter([], [], color=cmap(i % 10), marker="o", label=op)
    for j, prov in enumerate(provs):
        ax.scatter([], [], color="grey", marker=markers[j % len(markers)], label=f"provider {prov}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("TFLOP/s")
    ax.set_title(f"roofline — {_title(doc)}\nceilings: {c.get('source')}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _scaling_axes(sweep: str, op: str) -> tuple[str, tuple[str, ...]]:
    """(x parameter, series parameters) of one op's scaling subplot."""
    if sweep == "decode":
        return "B", ("H", "ctx")
    if sweep == "prefill":
        return "T", ("H",)
    if sweep == "indexer":
        return ("ctx", ("B",)) if op.endswith("_paged") else ("N", ("T",))
    return "C", ("R",)


_SCALING = ("decode", "prefill", "indexer", "topk")


def _plot_scaling(doc, plt, sweep: str, path: Path) -> bool:
    rows = [r for r in doc["results"] if r["sweep"] == sweep and r["status"] in ("ok", "predicted")
            and r.get("time_us")]
    if not rows:
        return False
    ops_ = sorted({r["op"] for r in rows})
    ncol = min(len(ops_), 4)
    nrow = -(-len(ops_) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(max(7.0, 5.0 * ncol), 4.2 * nrow), squeeze=False)
    for ax in axes.flat[len(ops_):]:
        ax.set_visible(False)
    for ax, op in zip(axes.flat, ops_):
        xkey, skeys = _scaling_axes(sweep, op)
        lines: dict[tuple[str, ...], list[tuple[float, float]]] = {}
        for r in rows:
            if r["op"] != op:
                continue
            p = r["params"]
            name = (r["provider"],) + tuple(f"{k}={_k(p[k]) if isinstance(p[k], int) else p[k]}"
                                            for k in skeys if k in p)
            lines.setdefault(name, []).append((p[xkey], r["time_us"]))
        for name, pts in sorted(lines.items()):
            pts.sort()
            ax.plot([a for a, _ in pts], [b for _, b in pts], "o-", label=" ".join(name))
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(_kfmt(plt))
        ax.set_yscale("log")
        ax.set_xlabel(xkey)
        ax.set_ylabel("µs per call")
        ax.set_title(op, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"{sweep} scaling — {_title(doc)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_plots(doc: dict[str, Any], directory: str | Path) -> list[Path]:
    """Draw PNGs of a result document into ``directory``: ``dsa_cost_per_token.png`` (the DSA
    claim), ``roofline.png``, ``scaling_<sweep>.png``. Plots without data are not written.

    Raises PlotError when matplotlib is missing, OSError when the directory cannot be written.
    """
    plt = _plt()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    written = []
    if _plot_dsa(doc, plt, d / "dsa_cost_per_token.png"):
        written.append(d / "dsa_cost_per_token.png")
    if doc.get("kind") != "model" and _plot_roofline(doc, plt, d / "roofline.png"):
        written.append(d / "roofline.png")
    for sweep in _SCALING:
        if _plot_scaling(doc, plt, sweep, d / f"scaling_{sweep}.png"):
            written.append(d / f"scaling_{sweep}.png")
    return written
