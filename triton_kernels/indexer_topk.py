"""Fused indexer + top-k launchers (ragged prefill and paged decode) that never build the
full [T, N] logits.

Query rows are processed in chunks whose logits fit a fixed workspace (``WORKSPACE_MB`` in
``configs/<arch>/indexer_topk*.json``, 256 MiB by default): the indexer kernel writes one
chunk's logits inside each row's window only (blocks outside every window are not written,
nothing is filled with -inf), then the radix-select top-k of :mod:`.topk` reads exactly those
windows and emits request-local positions, or, for the paged form with ``return_slots``,
physical KV slots through the block table. Peak extra memory is the workspace plus the top-k
histograms, independent of T (a 128K-token prefill at N = 128K needs 64 GiB as full fp32
logits and stays under ``WORKSPACE_MB`` + a few MiB here). No host synchronization: chunk sizes
come from shapes only.

Semantics: ``topk_indices(indexer_logits(...), ks, ke, k)`` and its paged analogue
(DeepSeek-V3.2 Indexer; SGLang's NSA indexer with page-table translation of the result).
"""

from __future__ import annotations

import torch

from ._common import get_config
from .indexer import _launch_paged, _launch_ragged
from .topk import launch_topk

__all__ = ["indexer_topk", "indexer_topk_paged"]


def _chunk_rows(count: int, row_bytes: int, op: str, arch: str, **facts) -> int:
    budget = int(get_config(op, arch, **facts).meta["WORKSPACE_MB"]) << 20
    return max(1, min(count, budget // max(1, row_bytes)))


def indexer_topk(q_fp8: torch.Tensor, k_fp8: torch.Tensor, k_scale: torch.Tensor, weights: torch.Tensor,
                 ks: torch.Tensor, ke: torch.Tensor, k: int, *, arch: str) -> torch.Tensor:
    """Fused ragged indexer + top-k; the ``triton`` provider's ``indexer_topk``.

    Args: as :func:`rocm_dsa.triton_kernels.indexer.indexer_logits`, plus ``k`` (output width).
    Returns:
        [T, k] int32 positions relative to ks[t] of the k largest logits of each row (ties to
        the lower position, -1 padded), the set of ``topk_indices(indexer_logits(...))``.
    """
    t, h, _ = q_fp8.shape
    n = k_fp8.shape[0]
    dev = q_fp8.device
    out = torch.empty(t, k, dtype=torch.int32, device=dev)
    if t == 0:
        return out
    if n == 0:
        return out.fill_(-1)
    rows = _chunk_rows(t, n * 4, "indexer_topk", arch, heads=h, rows=t, columns=n)
    ws = torch.empty(rows, n, dtype=torch.float32, device=dev)
    for r0 in range(0, t, rows):
        r1 = min(t, r0 + rows)
        chunk = ws[: r1 - r0]
        _launch_ragged(q_fp8[r0:r1], k_fp8, k_scale, weights[r0:r1], ks[r0:r1], ke[r0:r1], chunk, 0, n, arch,
                       fill_outside=False)
        launch_topk(chunk, ks[r0:r1], ke[r0:r1], k, out[r0:r1], arch=arch)
    return out


def indexer_topk_paged(q_fp8: torch.Tensor, buf: torch.Tensor, weights: torch.Tensor, context_lens: torch.Tensor,
                       block_table: torch.Tensor, k: int, return_slots: bool, *, arch: str) -> torch.Tensor:
    """Fused paged indexer + top-k; the ``triton`` provider's ``indexer_topk_paged``.

    Args: as :func:`rocm_dsa.triton_kernels.indexer.indexer_logits_paged`, plus ``k`` and
        ``return_slots`` (map positions to ``block_table[b, p // page_size] * page_size +
        p % page_size``).
    Returns:
        [B * next_n, k] int32 positions (or slots); row b*next_n + j ranks positions
        0 .. min(context_lens[b], W) - next_n + j; -1 padded.
    """
    b, next_n, h, d = q_fp8.shape
    page_size = buf.shape[1] // (d + 4)
    width = block_table.shape[1] * page_size
    dev = q_fp8.device
    out = torch.empty(b * next_n, k, dtype=torch.int32, device=dev)
    if b == 0:
        return out
    if width == 0:
        return out.fill_(-1)
    # window of row b*next_n + j: [0, min(ctx, W) - next_n + j + 1), computed on the device
    last = context_lens.clamp(max=width).unsqueeze(1) - next_n + torch.arange(next_n, device=dev, dtype=torch.int32)
    ends = (last + 1).clamp_(min=0).reshape(-1).to(torch.int32)
    starts = torch.zeros_like(ends)
    reqs = _chunk_rows(b, next_n * width * 4, "indexer_topk_paged", arch, heads=h, next_n=next_n, rows=b,
                       columns=width)
    ws = torch.empty(reqs * next_n, width, dtype=torch.float32, device=dev)
    for b0 in range(0, b, reqs):
        b1 = min(b, b0 + reqs)
        rows = slice(b0 * next_n, b1 * next_n)
        chunk = ws[: (b1 - b0) * next_n]
        _launch_paged(q_fp8[b0:b1], buf, weights[rows], context_lens[b0:b1], block_table[b0:b1], chunk, arch,
                      fill_outside=False)
        launch_topk(chunk, starts[rows], ends[rows], k, out[rows], arch=arch,
                    block_table=block_table[b0:b1] if return_slots else None, rows_per_table=next_n,
                    page_size=page_size)
    return out

#: no kernels of its own (it composes indexer.py and topk.py), see rocm_dsa.compile
COMPILE_SPECS: list = []
