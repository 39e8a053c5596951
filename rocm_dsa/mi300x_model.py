"""Static cost model of the HIP MFMA kernels on MI300X (gfx942) and MI355X (gfx950): a PREDICTION.

For one launch of ``hip/indexer_mfma.hip`` (paged FP8 indexer) or ``hip/sparse_mla_decode.hip``
(sparse MLA decode + split-K merge) at a given shape, this module counts, from the kernels' own
tiling (the same launch heuristics as :mod:`rocm_dsa.backends.hip`):

* ``bytes``: the bytes the kernels request from memory, each request counted once per workgroup
  that makes it (no credit for L2 / Infinity-Cache reuse between workgroups: head blocks of one
  decode row re-read its latent rows, MTP rows of one request re-read its keys);
* ``mfma``: MFMA instructions per launch, by mnemonic, and their FLOPs;

and predicts ``max(bytes / HBM bandwidth, MFMA FLOPs / dense matrix peak)`` with the datasheet
figures of :mod:`rocm_dsa.platform` (MI300X: 5.3 TB/s, 2614.9 TFLOP/s FP8, 1307.4 TFLOP/s
bf16). A lower bound: it ignores launch overhead, latency, occupancy and partial waves of
workgroups. Nothing here ran on an AMD GPU; anyone with the hardware can check the claim by
timing the same shapes (``rocm-dsa bench --provider hip`` on gfx942).

``python -m rocm_dsa.mi300x_model [--arch gfx942|gfx950] [--json]`` prints the swept shapes of
``rocm-dsa bench`` (decode and paged-indexer sweeps).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

from .platform import ARCHS

__all__ = ["KernelEstimate", "indexer_logits_paged_estimate", "sparse_mla_decode_estimate", "kernel_estimate",
           "sweep_estimates", "MFMA_FLOPS"]

#: FLOPs of one MFMA instruction (2 * M * N * K)
MFMA_FLOPS: dict[str, int] = {
    "v_mfma_f32_16x16x32_fp8_fp8": 2 * 16 * 16 * 32,
    "v_mfma_f32_16x16x128_f8f6f4": 2 * 16 * 16 * 128,
    "v_mfma_f32_16x16x16_bf16": 2 * 16 * 16 * 16,
    "v_mfma_f32_16x16x32_bf16": 2 * 16 * 16 * 32,
}
_FP8 = {"v_mfma_f32_16x16x32_fp8_fp8", "v_mfma_f32_16x16x128_f8f6f4"}
_INDEX_D = 128
_MLA_D, _MLA_DV = 576, 512
_ROW_BYTES = {"bf16": _MLA_D * 2, "fp8": 656}
_TILE = 16  # keys per MFMA N tile (indexer) / slots per tile (decode)


@dataclasses.dataclass(frozen=True)
class KernelEstimate:
    """Predicted cost of one launch (all kernels of the op) on one arch.

    Attributes:
        op: "indexer_logits_paged" or "sparse_mla_decode".
        arch / part: "gfx942" / "MI300X", ...
        shape: the shape, by name (B, next_n / s_q, H, ctx, k, kv ...).
        bytes: bytes requested from memory (see module docstring), per launch.
        mfma: MFMA mnemonic -> instructions per launch.
        mfma_flops: FLOPs of those instructions.
        workgroups: workgroups of the main kernel (split-K merge not included).
        config: launch parameters (pages per workgroup, splits, head blocks).
        hbm_us / mfma_us: bytes / bandwidth and FLOPs / dense peak (FP8 peak for FP8 MFMAs,
            bf16 peak for bf16 ones), microseconds.
        predicted_us: max of the two; bound: "memory" or "mfma".
    """

    op: str
    arch: str
    part: str
    shape: dict[str, Any]
    bytes: float
    mfma: dict[str, int]
    mfma_flops: float
    workgroups: int
    config: dict[str, Any]
    hbm_us: float
    mfma_us: float
    predicted_us: float
    bound: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finish(op: str, arch: str, shape: dict[str, Any], nbytes: float, mfma: dict[str, int], workgroups: int,
            config: dict[str, Any]) -> KernelEstimate:
    plat = ARCHS[arch]
    flops = float(sum(MFMA_FLOPS[m] * n for m, n in mfma.items()))
    mfma_s = sum(MFMA_FLOPS[m] * n / ((plat.peak_fp8_tflops if m in _FP8 else plat.peak_bf16_tflops) * 1e12)
                 for m, n in mfma.items())
    hbm_us = nbytes / (plat.peak_hbm_gbps * 1e9) * 1e6
    mfma_us = mfma_s * 1e6
    return KernelEstimate(op, arch, plat.name, dict(shape), float(nbytes), dict(mfma), flops, int(workgroups),
                          dict(config), hbm_us, mfma_us, max(hbm_us, mfma_us),
                          "memory" if hbm_us >= mfma_us else "mfma")


def _check_arch(arch: str) -> None:
    if arch not in ("gfx942", "gfx950"):
        raise ValueError(f"arch: expected 'gfx942' or 'gfx950', got {arch!r}")


def indexer_logits_paged_estimate(*, B: int, ctx: int, next_n: int = 1, H: int = 64, page_size: int = 64,
                                  max_pages: int | None = None, arch: str = "gfx942") -> KernelEstimate:
    """One launch of ``_paged_indexer_logits_kernel`` (hip/indexer_mfma.hip).

    Every request has ``ctx`` tokens (the causal MTP bound: row j sees ctx - next_n + j + 1
    keys); the block table has ``max_pages`` (default ceil(ctx / page_size)) pages per request.
    Per visible 16-key tile and row: 16 x 132 key bytes, H / 16 x (4 x 16x16x32 FP8 on gfx942 |
    1 x 16x16x128 FP8 on gfx950). Every output column is written (-inf past the context).
    Raises ValueError for an unknown arch, H not in {16, 32, 64} or a page size not a multiple of 16.
    """
    from .backends.hip import indexer_pages_per_wg, launch_config

    _check_arch(arch)
    if H not in (16, 32, 64) or page_size % 16:
        raise ValueError(f"H / page_size: expected H in (16, 32, 64) and page_size % 16 == 0, got {H} / {page_size}")
    maxp = max_pages if max_pages is not None else -(-ctx // page_size)
    width = maxp * page_size
    rows = B * next_n
    tiles = 0
    for j in range(next_n):
        visible = max(0, min(ctx - next_n + j + 1, width))
        tiles += -(-visible // _TILE)
    tiles *= B
    key_bytes = tiles * _TILE * (_INDEX_D + 4)
    inputs = rows * H * (_INDEX_D + 4) + B * 4 + tiles * 4  # q, weights, context_lens, a table entry per tile
    out = rows * width * 4
    mnem = "v_mfma_f32_16x16x32_fp8_fp8" if arch == "gfx942" else "v_mfma_f32_16x16x128_f8f6f4"
    per_tile = (H // 16) * (4 if arch == "gfx942" else 1)
    ppw = indexer_pages_per_wg(rows, maxp, ARCHS[arch].num_cus, launch_config("indexer_logits_paged", arch))
    wgs = rows * -(-maxp // ppw)
    shape = {"B": B, "next_n": next_n, "H": H, "ctx": ctx, "page_size": page_size}
    return _finish("indexer_logits_paged", arch, shape, key_bytes + inputs + out, {mnem: tiles * per_tile}, wgs,
                   {"pages_per_wg": ppw, "max_pages": maxp})


def sparse_mla_decode_estimate(*, B: int, H: int, k: int = 2048, s_q: int = 1, ctx: int | None = None,
                               kv: str = "bf16", arch: str = "gfx942") -> KernelEstimate:
    """One call of sparse MLA decode (``_decode_sparse_mla_kernel`` + ``_merge_sparse_mla_kernel``
    when split).

    ``k`` slots per query row, of which min(k, ctx) are valid (the rest -1: not read). Each head
    block (64 heads; H = 16 / 32: one block of H) gathers the valid rows once (bf16 1152 B or FP8
    656 B); every 16-slot tile costs H / 16 x (36 QK + 32 PV 16x16x16 bf16 MFMAs on gfx942 |
    18 QK 16x16x32 + 32 PV 16x16x16 on gfx950). Split-K partials (f32) are written and read back.
    Raises ValueError for an unknown arch / kv format or an unsupported head count.
    """
    from .backends.hip import decode_num_splits, launch_config

    _check_arch(arch)
    if kv not in _ROW_BYTES:
        raise ValueError(f"kv: expected 'bf16' or 'fp8', got {kv!r}")
    if not (H in (16, 32) or (H > 0 and H % 64 == 0)):
        raise ValueError(f"H: expected 16, 32 or a multiple of 64, got {H}")
    rows = B * s_q
    hpw = min(H, 64)
    hb = H // hpw
    valid = min(k, ctx) if ctx is not None else k
    splits = decode_num_splits(rows, H, k, ARCHS[arch].num_cus, launch_config("sparse_mla_decode", arch))
    kv_bytes = rows * hb * valid * _ROW_BYTES[kv]
    io = rows * (H * _MLA_D * 2 + H * _MLA_DV * 2 + H * 4) + rows * hb * k * 4
    part = 2 * rows * splits * H * (_MLA_DV + 1) * 4 if splits > 1 else 0
    tiles = rows * hb * -(-k // _TILE)
    ht = hpw // 16
    if arch == "gfx942":
        mfma = {"v_mfma_f32_16x16x16_bf16": tiles * ht * (36 + 32)}
    else:
        mfma = {"v_mfma_f32_16x16x32_bf16": tiles * ht * 18, "v_mfma_f32_16x16x16_bf16": tiles * ht * 32}
    shape = {"B": B, "s_q": s_q, "H": H, "k": k, "ctx": ctx, "kv": kv}
    return _finish("sparse_mla_decode", arch, shape, kv_bytes + io + part, mfma, rows * hb * splits,
                   {"num_splits": splits, "head_blocks": hb, "heads_per_wg": hpw})


def kernel_estimate(op: str, params: dict[str, Any], arch: str = "gfx942") -> KernelEstimate | None:
    """The estimate of a ``rocm-dsa bench`` point (:class:`rocm_dsa.benchmark.Point` params) for
    the HIP MFMA kernel that serves ``op``; None for ops without one."""
    if op == "indexer_logits_paged":
        return indexer_logits_paged_estimate(B=params["B"], ctx=params["ctx"], next_n=params.get("next_n", 1),
                                             H=params.get("H", 64), arch=arch)
    if op == "sparse_mla_decode":
        return sparse_mla_decode_estimate(B=params["B"], H=params["H"], k=params.get("k", 2048),
                                          s_q=params.get("s_q", 1), ctx=params.get("ctx"),
                                          kv=params.get("kv", "bf16"), arch=arch)
    return None


def sweep_estimates(arch: str = "gfx942", kv: str = "bf16") -> list[KernelEstimate]:
    """Estimates at the shapes of ``rocm-dsa bench``'s decode and paged-indexer sweeps."""
    from .benchmark import sweep_points

    out = []
    for pt in sweep_points(("decode", "indexer"), kv=kv):
        est = kernel_estimate(pt.op, pt.p, arch)
        if est is not None:
            out.append(est)
    return out


def _fmt_bytes(b: float) -> str:
    return f"{b / 1e6:.1f} MB" if b < 1e9 else f"{b / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rocm_dsa.mi300x_model", description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="gfx942", choices=("gfx942", "gfx950"))
    ap.add_argument("--kv", default="bf16", choices=("bf16", "fp8"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    rows = sweep_estimates(a.arch, a.kv)
    if a.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1))
        return 0
    print(f"PREDICTED (not measured) per launch on {ARCHS[a.arch].name} ({a.arch}): max(bytes / "
          f"{ARCHS[a.arch].peak_hbm_gbps / 1000:g} TB/s, MFMA FLOPs / dense peak)")
    print(f"{'op':22} {'shape':38} {'bytes':>10} {'MFMA instr':>12} {'WGs':>7} {'hbm µs':>9} {'mfma µs':>9} "
          f"{'pred µs':>9} bound")
    for r in rows:
        shape = " ".join(f"{k}={v}" for k, v in r.shape.items() if v is not None)
        n = sum(r.mfma.values())
        print(f"{r.op:22} {shape:38} {_fmt_bytes(r.bytes):>10} {n:>12,} {r.workgroups:>7} {r.hbm_us:9.1f} "
              f"{r.mfma_us:9.1f} {r.predicted_us:9.1f} {r.bound}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
