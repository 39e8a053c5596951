"""``hip`` provider: C++ kernels from ``hip/`` built as a torch extension on first use.

Ops: ``topk_indices`` (exact radix top-k, k <= 2048), ``store_indexer_k`` and ``store_mla_kv``
(byte-exact cache stores). The same sources build with hipcc on ROCm torch (gfx942 / gfx950,
wave64) and with nvcc on CUDA torch (wave32), so the numerics are checked on NVIDIA hardware
too; on AMD they are compile-checked only (``rocm-dsa compile``). Other ops fall back to other
providers through :func:`rocm_dsa.backends.select`.

Unavailable, with the reason, when torch sees no GPU or the toolchain (hipcc/nvcc, ninja, a host
C++ compiler) is missing; importing this module never compiles anything. Semantics: see
:mod:`rocm_dsa.ops` (top-k: DeepSeek-V3.2 ``index_score.topk`` with SGLang's -1 padding; stores:
DeepSeek-V3.2 ``act_quant`` + SGLang's cache layouts).
"""

from __future__ import annotations

import os

import torch

from .. import hipext
from ..platform import detect
from . import Case, Provider

__all__ = ["HipProvider", "PROVIDER", "topk", "topk_block_size"]

_MAX_K = 2048


def topk_block_size(rows: int, num_sms: int) -> int:
    """Workgroup size of the top-k kernel: 1024 threads while rows leave multiprocessors idle
    (one workgroup per row; more threads = more loads in flight per row), 512 once there are at
    least two rows per multiprocessor (two resident workgroups each)."""
    return 512 if num_sms > 0 and rows >= 2 * num_sms else 1024


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
    Returns:
        [R, k] int32 positions relative to the window start (or KV slots), the exact set of the
        k largest candidates (not NaN, not -inf; +inf first), value-descending then
        column-ascending, -1 after the valid prefix.
    Raises:
        HipBuildError: the extension cannot be built; RuntimeError for bad arguments (message
        names the argument).
    """
    if (ends is None) == (lengths is None):
        raise ValueError("topk: pass exactly one of ends (ragged rows) and lengths (decode rows)")
    if not 1 <= k <= _MAX_K:
        raise ValueError(f"k: expected 1 <= k <= {_MAX_K}, got {k}")
    ext = hipext.load()
    if block is None:
        block = topk_block_size(logits.shape[0], detect(logits.device).num_cus)
    if cap is None:
        cap = int(os.environ.get("ROCM_DSA_HIP_TOPK_CAP", "0") or 0)
    return ext.topk(logits, starts, ends, lengths, int(next_n), block_table, int(page_size), int(k), int(cap),
                    int(block), out)


class HipProvider(Provider):
    name = "hip"
    ops = frozenset({"topk_indices", "store_indexer_k", "store_mla_kv"})
    devices = frozenset({"cuda"})
    description = "HIP/CUDA C++ kernels (hip/): exact radix top-k, cache stores; built on first use"

    def unavailable_reason(self) -> str | None:
        return hipext.unavailable_reason()

    def case_reasons(self, case: Case) -> list[str]:
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

    def store_indexer_k(self, k, buf, slot_mapping, fp8_dtype, scale_fmt):
        hipext.load().store_indexer_k(k, buf, slot_mapping, fp8_dtype == torch.float8_e4m3fnuz,
                                      scale_fmt == "ue8m0")

    def store_mla_kv(self, c_kv, k_rope, buf, slot_mapping, fp8_dtype):
        hipext.load().store_mla_kv(c_kv, k_rope, buf, slot_mapping, fp8_dtype == torch.float8_e4m3fnuz)


PROVIDER = HipProvider()
