"""``hip`` provider: C++ kernels from ``hip/`` built as a torch extension on first use.

Ops: ``topk_indices`` (exact radix top-k, k <= 2048), ``store_indexer_k`` and ``store_mla_kv``
(byte-exact cache stores), ``indexer_logits_paged`` (FP8 MFMA on gfx942 / gfx950) and
``sparse_mla_decode`` (bf16 MFMA, bf16 or 656-byte FP8 latent cache, split-K + LSE merge). The
same sources build with hipcc on ROCm torch (gfx942 / gfx950, wave64) and with nvcc on CUDA torch
(wave32), so the numerics are checked on NVIDIA hardware too; on AMD they are compile-checked
only (``rocm-dsa compile``). Other ops fall back to other providers through
:func:`rocm_dsa.backends.select`.

Paths (:data:`PATHS`): the two MFMA kernels have a portable path of the same source (no matrix
cores: FP32 FMAs in the MFMA C-fragment layout) that every non-gfx942/gfx950 device runs. It
exists to execute the shared indexing / paging / masking / softmax / merge code on NVIDIA GPUs;
it is several times slower than tensor-core kernels, so there it is served only when asked for
with ``ROCM_DSA_HIP_PORTABLE=1`` (then ``provider="hip"`` or the automatic choice may pick it).
Launch heuristics (pages per workgroup, split-K) are data: ``rocm_dsa/configs/<arch>/hip_<op>.json``
over ``configs/default/hip_<op>.json``.

Unavailable, with the reason, when torch sees no GPU or the toolchain (hipcc/nvcc, ninja, a host
C++ compiler) is missing; importing this module never compiles anything. Semantics: see
:mod:`rocm_dsa.ops` (top-k: DeepSeek-V3.2 ``index_score.topk`` with SGLang's -1 padding; stores:
DeepSeek-V3.2 ``act_quant`` + SGLang's cache layouts).
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from typing import Any

import torch

from .. import hipext
from ..platform import detect
from . import Case, Provider

__all__ = ["HipProvider", "PROVIDER", "PATHS", "topk", "topk_block_size", "topk_splits", "launch_config",
           "indexer_pages_per_wg", "decode_num_splits", "indexer_logits_paged", "sparse_mla_decode"]

_MAX_K = 2048
#: archs with the MFMA code paths, and the FP8 encoding their matrix cores read
MFMA_ARCHS: dict[str, torch.dtype] = {"gfx942": torch.float8_e4m3fnuz, "gfx950": torch.float8_e4m3fn}
#: opt-in for the portable (non-MFMA) path of the MFMA kernels on other devices
PORTABLE_ENV = "ROCM_DSA_HIP_PORTABLE"
_MFMA_OPS = frozenset({"indexer_logits_paged", "sparse_mla_decode"})

#: op -> where each code path of the hip provider is compiled and executed (for ``rocm-dsa check``)
PATHS: dict[str, str] = {
    "indexer_logits_paged": "MFMA v_mfma_f32_16x16x32_fp8_fp8 (gfx942) / 16x16x128_f8f6f4 (gfx950): compiled for "
                            "gfx942/gfx950, not executed here; portable path (same source, FP32 FMAs): executed on "
                            "the H200 via nvcc (opt-in " + PORTABLE_ENV + "=1) and on the CPU (host emulation, tests)",
    "sparse_mla_decode": "MFMA v_mfma_f32_16x16x16_bf16 (+16x16x32_bf16 on gfx950): compiled for gfx942/gfx950, not "
                         "executed here; portable path: executed on the H200 via nvcc (opt-in " + PORTABLE_ENV +
                         "=1) and on the CPU (host emulation, tests)",
    "topk_indices": "one source, no MFMA: executed on the H200 via nvcc; compiled for gfx942/gfx950",
    "store_indexer_k": "one source, no MFMA: executed on the H200 via nvcc; compiled for gfx942/gfx950",
    "store_mla_kv": "one source, no MFMA: executed on the H200 via nvcc; compiled for gfx942/gfx950",
}


@functools.lru_cache(maxsize=None)
def launch_config(op: str, arch: str) -> dict[str, Any]:
    """Launch heuristics of the HIP kernel ``op`` on ``arch``: the ``default`` dict of
    ``rocm_dsa/configs/default/hip_<op>.json`` updated by ``configs/<arch>/hip_<op>.json`` when it
    exists. Raises FileNotFoundError when the default file is missing."""
    merged: dict[str, Any] = {}
    found = False
    for where in ("default", arch):
        path = resources.files("rocm_dsa").joinpath("configs").joinpath(where).joinpath(f"hip_{op}.json")
        if path.is_file():
            with path.open() as f:
                merged.update(json.load(f).get("default", {}))
            found = True
    if not found:
        raise FileNotFoundError(f"no launch config for HIP op {op!r}: expected rocm_dsa/configs/default/hip_{op}.json")
    return merged


def indexer_pages_per_wg(rows: int, max_pages: int, num_cus: int, cfg: dict[str, Any]) -> int:
    """Logical pages per workgroup of the paged indexer: the fewest that still leave
    ``workgroups_per_cu`` workgroups per compute unit (rows x chunks), clamped to
    [1, ``max_pages_per_wg``]."""
    target = max(1, int(cfg["workgroups_per_cu"]) * max(1, num_cus))
    ppw = -(-rows * max_pages // target)
    return int(min(max(ppw, 1), int(cfg["max_pages_per_wg"]), max(1, max_pages)))


def decode_num_splits(rows: int, heads: int, topk: int, num_cus: int, cfg: dict[str, Any]) -> int:
    """Split-K factor of sparse MLA decode: enough splits for rows x head blocks x splits to reach
    ``workgroups_per_cu`` workgroups per compute unit, each split keeping at least
    ``min_keys_per_split`` of the top-k list (and one 16-slot tile)."""
    head_blocks = max(1, heads // min(heads, 64))
    target = max(1, int(cfg["workgroups_per_cu"]) * max(1, num_cus))
    want = -(-target // max(1, rows * head_blocks))
    cap = max(1, topk // int(cfg["min_keys_per_split"]))
    return int(max(1, min(want, cap, -(-topk // 16))))


def indexer_logits_paged(q_fp8, buf, weights, context_lens, block_table, *, pages_per_wg: int | None = None,
                         out: torch.Tensor | None = None) -> torch.Tensor:
    """Paged indexer logits on the GPU (the kernel behind the provider's op; arguments as
    :func:`rocm_dsa.ops.indexer_logits_paged` with the raw buffer).

    ``pages_per_wg`` overrides the launch heuristic (tests); ``out``: preallocated
    [B*next_n, max_pages*page_size] f32. Raises HipBuildError / RuntimeError (argument named).
    """
    ext = hipext.load()
    if pages_per_wg is None:
        plat = detect(q_fp8.device)
        b, next_n = q_fp8.shape[0], q_fp8.shape[1]
        pages_per_wg = indexer_pages_per_wg(b * next_n, block_table.shape[1], plat.num_cus,
                                            launch_config("indexer_logits_paged", plat.arch))
    if block_table.stride(-1) != 1:
        block_table = block_table.contiguous()
    return ext.indexer_logits_paged(q_fp8, buf, weights, context_lens, block_table, int(pages_per_wg), out)


def sparse_mla_decode(q, buf, indices, sm_scale: float, fp8_dtype: torch.dtype, *,
                      num_splits: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse MLA decode on the GPU: (out [B, s_q, H, 512] bf16, lse [B, H, s_q] f32), arguments
    as :func:`rocm_dsa.ops.sparse_mla_decode` with the raw cache buffer. ``num_splits`` overrides
    the split-K heuristic (tests). Raises HipBuildError / RuntimeError (argument named)."""
    ext = hipext.load()
    if num_splits is None:
        plat = detect(q.device)
        b, s_q, h = q.shape[0], q.shape[1], q.shape[2]
        num_splits = decode_num_splits(b * s_q, h, indices.shape[-1], plat.num_cus,
                                       launch_config("sparse_mla_decode", plat.arch))
    out, lse = ext.sparse_mla_decode(q, buf, indices, float(sm_scale), fp8_dtype == torch.float8_e4m3fnuz,
                                     int(num_splits))
    return out, lse


def topk_block_size(rows: int, num_sms: int) -> int:
    """Workgroup size of the top-k kernel: 1024 threads while rows leave multiprocessors idle
    (one workgroup per row; more threads = more loads in flight per row), 512 once there are at
    least two rows per multiprocessor (two resident workgroups each)."""
    return 512 if num_sms > 0 and rows >= 2 * num_sms else 1024


def topk_splits(rows: int, cols: int, num_sms: int) -> int:
    """Workgroups per row of the top-k split threshold pass (1 = none).

    With fewer rows than multiprocessors the one selection workgroup per row leaves most of the
    GPU idle while it streams the row; the split pass lets ``splits`` workgroups per row gather
    the sampled-threshold candidates of one chunk each: at most one split workgroup per
    multiprocessor in all (H200, 132 SMs, 64 x 131072 randn: 2 splits 36.0 us, 1: 45.6, 3: 46.0,
    4: 42.5; 128 x 65536: 1 split 35.5 us), chunks of at least 8192 columns,
    at most 16 per row; no split below 2. Long rows only (C >= 32768). ``ROCM_DSA_HIP_TOPK_SPLITS``
    overrides the choice (an integer; 1 disables the pass).
    """
    env = os.environ.get("ROCM_DSA_HIP_TOPK_SPLITS", "")
    if env:
        return max(1, min(64, int(env)))
    if num_sms <= 0 or rows <= 0 or cols < 32768:
        return 1
    s = min(num_sms // rows, cols // 8192, 16)
    return s if s >= 2 else 1


def topk(
    logits: torch.Tensor,
    *,
    starts: torch.Tensor | None = None,
    ends: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    next_n: int = 1,
    block_table: torch.Tensor | None = None,
    page_size: int = 64,
    k: int = 2048,
    cap: int | None = None,
    block: int | None = None,
    out: torch.Tensor | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """Exact per-row top-k on the GPU (the kernel behind the provider's ``topk_indices``).

    Args:
        logits: [R, C] float32 on a GPU, unit column stride (C < 2^31).
        starts, ends: [R] int32 ragged windows [starts, ends) (prefill); starts may be None (0).
        lengths: [B] int32 request lengths instead of ``ends`` (decode / MTP): row
            r = b * next_n + j sees columns 0 ... lengths[b] - next_n + j (inclusive).
        block_table: [B or R, max_pages] int32: map positions to KV slots
            ``block_table[b, pos // page_size] * page_size + pos % page_size`` (b = r // next_n
            with ``lengths``, else r).
        k: 1 <= k <= 2048.
        cap: LDS candidate capacity (power of two >= 16; None = the device default, 4096 on
            gfx942, 8192 on gfx950 / H100 / H200). Smaller values force the exact global-memory
            fallback (tests).
        block: workgroup size 512 or 1024 (None = :func:`topk_block_size`).
        out: optional preallocated [R, k] int32 output (graph capture).
        splits: workgroups per row of the split threshold pass, 1 ... 64 (None =
            :func:`topk_splits`; 1 = one workgroup per row). Any value gives the same exact result:
            a candidate slice that overflows is detected and the row takes the exact path.
    Returns:
        [R, k] int32 positions relative to the window start (or KV slots), the exact set of the
        k largest candidates (not NaN, not -inf), in ascending column order (deterministic),
        -1 after the valid prefix.
    Raises:
        HipBuildError: the extension cannot be built; RuntimeError for bad arguments (message
        names the argument).
    """
    if (ends is None) == (lengths is None):
        raise ValueError("topk: pass exactly one of ends (ragged rows) and lengths (decode rows)")
    if not 1 <= k <= _MAX_K:
        raise ValueError(f"k: expected 1 <= k <= {_MAX_K}, got {k}")
    ext = hipext.load()
    if block is None or splits is None:
        num_sms = detect(logits.device).num_cus
        if block is None:
            block = topk_block_size(logits.shape[0], num_sms)
        if splits is None:
            splits = topk_splits(logits.shape[0], logits.shape[1], num_sms)
    if cap is None:
        cap = int(os.environ.get("ROCM_DSA_HIP_TOPK_CAP", "0") or 0)
    return ext.topk(logits, starts, ends, lengths, int(next_n), block_table, int(page_size), int(k), int(cap),
                    int(block), out, int(splits))


class HipProvider(Provider):
    name = "hip"
    ops = frozenset({"topk_indices", "store_indexer_k", "store_mla_kv", "indexer_logits_paged", "sparse_mla_decode"})
    devices = frozenset({"cuda"})
    description = ("HIP/CUDA C++ kernels (hip/): exact radix top-k, cache stores, paged FP8 indexer and sparse MLA "
                   "decode (MFMA on gfx942/gfx950: compiled, not executed here; portable path elsewhere, opt-in "
                   f"{PORTABLE_ENV}=1); built on first use")
    paths = PATHS

    def unavailable_reason(self) -> str | None:
        return hipext.unavailable_reason()

    def case_reasons(self, case: Case) -> list[str]:
        reasons: list[str] = []
        if case.op in _MFMA_OPS and case.arch not in MFMA_ARCHS and os.environ.get(PORTABLE_ENV, "") != "1":
            reasons.append(f"{case.op}: MFMA kernel for gfx942/gfx950; its portable path on {case.arch} is a "
                           f"validation path (set {PORTABLE_ENV}=1 to use it)")
        if case.op == "indexer_logits_paged":
            if case.heads not in (16, 32, 64):
                reasons.append(f"indexer heads must be 16, 32 or 64, got {case.heads}")
            ps = case.get("page_size")
            if ps is not None and ps % 16:
                reasons.append(f"page_size must be a multiple of 16, got {ps}")
            native = MFMA_ARCHS.get(case.arch)
            qdt = case.dtype("q_fp8")
            if native is not None and qdt is not None and qdt != native:
                reasons.append(f"{case.arch} FP8 MFMA reads {native}, got q_fp8 {qdt}")
            return reasons
        if case.op == "sparse_mla_decode":
            h = case.heads
            if h is not None and not (h in (16, 32) or (h > 0 and h % 64 == 0)):
                reasons.append(f"heads must be 16, 32 or a multiple of 64, got {h}")
            return reasons
        if case.op == "topk_indices":
            k = case.get("k")
            if k is not None and k > _MAX_K:
                return [f"top-k supports k <= {_MAX_K}, got k={k}"]
            c = case.get("columns")
            if c is not None and c >= 2**31:
                return [f"top-k supports rows of < 2^31 columns, got {c}"]
        return []

    def topk_indices(self, logits, starts, ends, k):
        return topk(logits, starts=starts, ends=ends, k=k)

    def topk_indices_paged(self, logits, context_lens, block_table, next_n, k, return_slots, *, out=None):
        """Top-k stage of ``indexer_topk_paged`` over materialized paged logits.

        logits [B*next_n, max_pages*page_size] f32, context_lens [B] int32, block_table
        [B, max_pages] int32 -> [B*next_n, k] int32 request-local positions, or KV slots when
        ``return_slots`` (page size = logits width // max_pages). Same row windows as
        :func:`rocm_dsa.ops.indexer_topk_paged` (row b*next_n+j sees keys 0 ...
        context_lens[b] - next_n + j).
        """
        page_size = logits.shape[1] // max(1, block_table.shape[1])
        return topk(logits, lengths=context_lens, next_n=next_n,
                    block_table=block_table if return_slots else None, page_size=max(1, page_size), k=k, out=out)

    def indexer_logits_paged(self, q_fp8, buf, weights, context_lens, block_table):
        return indexer_logits_paged(q_fp8, buf, weights, context_lens, block_table)

    def sparse_mla_decode(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        return sparse_mla_decode(q, buf, indices, sm_scale, fp8_dtype)

    def store_indexer_k(self, k, buf, slot_mapping, fp8_dtype, scale_fmt):
        hipext.load().store_indexer_k(k, buf, slot_mapping, fp8_dtype == torch.float8_e4m3fnuz,
                                      scale_fmt == "ue8m0")

    def store_mla_kv(self, c_kv, k_rope, buf, slot_mapping, fp8_dtype):
        hipext.load().store_mla_kv(c_kv, k_rope, buf, slot_mapping, fp8_dtype == torch.float8_e4m3fnuz)


PROVIDER = HipProvider()
