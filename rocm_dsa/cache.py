"""Paged caches of a DSA layer and their byte layouts.

Indexer key cache (DeepGEMM / SGLang ``index_k_with_scale`` layout):
    buffer: [num_pages, page_size * (D + 4)] uint8, D = 128, page_size = 64.
    In each page, bytes [0, page_size*D) hold the FP8 keys token-major (token i at i*D), then
    bytes [page_size*D, page_size*(D+4)) hold one fp32 scale per token. Values and scales are
    separate regions of the page, not per-token records (132 bytes per token in all).

MLA latent cache, one row per token: [c_kv (512) | k_rope (64)].
    bf16: [num_pages, page_size, 1, 576] bfloat16 = 1152 B/token.
    fp8:  [num_pages, page_size, 1, 656] uint8 = 656 B/token, FlashMLA's FP8 sparse layout:
          bytes 0..511 c_kv as FP8 (4 tiles of 128), bytes 512..527 four fp32 scales (one per
          tile, powers of two when written here, but read as stored), bytes 528..655 the 64
          k_rope values in bf16 (not quantized).

Slots: ``slot = page * page_size + offset`` as int64 (caches pass 2 GiB, so byte offsets never
go through 32-bit math); ``slot_mapping`` entries < 0 mean "do not store" (padding tokens).

The free functions here are the layout codecs: they define the bytes, and the reference
provider and tests use them. Kernels write the same bytes.
"""

from __future__ import annotations

import torch

from ._checks import check_positive
from .fp8 import check_fp8_dtype, quantize_fp8

__all__ = [
    "IndexerKCache",
    "MLAKVCache",
    "MLA_FP8_RECORD_BYTES",
    "indexer_cache_views",
    "indexer_cache_gather",
    "pack_mla_fp8",
    "unpack_mla_fp8",
    "mla_cache_rows",
    "positions_to_slots",
]

KV_LORA_RANK = 512
ROPE_DIM = 64
MLA_DIM = KV_LORA_RANK + ROPE_DIM  # 576
MLA_TILE = 128
MLA_FP8_RECORD_BYTES = KV_LORA_RANK + 4 * (KV_LORA_RANK // MLA_TILE) + 2 * ROPE_DIM  # 656


# ---------------------------------------------------------------------------------------------
# indexer key cache
# ---------------------------------------------------------------------------------------------
def indexer_cache_views(buffer: torch.Tensor, head_dim: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of an indexer key-cache buffer: (values [P, page_size, D] uint8, scales [P, page_size] f32).

    Raises ValueError when the buffer is not [num_pages, page_size * (head_dim + 4)] uint8.
    """
    if buffer.dtype != torch.uint8 or buffer.dim() != 2 or buffer.shape[1] % (head_dim + 4):
        raise ValueError(
            f"kv_cache: expected uint8 [num_pages, page_size*{head_dim + 4}], "
            f"got {buffer.dtype} {tuple(buffer.shape)}"
        )
    num_pages = buffer.shape[0]
    page_size = buffer.shape[1] // (head_dim + 4)
    values = buffer[:, : page_size * head_dim].view(num_pages, page_size, head_dim)
    scales = buffer[:, page_size * head_dim :].view(torch.float32)
    return values, scales


def indexer_cache_gather(
    buffer: torch.Tensor, slots: torch.Tensor, fp8_dtype: torch.dtype, head_dim: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Read keys by slot: slots [M] int64 -> (k_fp8 [M, D] fp8_dtype, k_scale [M] f32)."""
    values, scales = indexer_cache_views(buffer, head_dim)
    page_size = values.shape[1]
    slots = slots.long()
    page, off = slots // page_size, slots % page_size
    return values[page, off].view(fp8_dtype), scales[page, off]


# ---------------------------------------------------------------------------------------------
# MLA latent cache
# ---------------------------------------------------------------------------------------------
def pack_mla_fp8(c_kv: torch.Tensor, k_rope: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    """Encode latent rows as 656-byte FP8 records.

    Args:
        c_kv: [N, 512] float (normalized latent).
        k_rope: [N, 64] float (RoPE already applied), stored as bf16.
        fp8_dtype: e4m3fn or e4m3fnuz (gfx942).
    Returns:
        [N, 656] uint8. Scales are powers of two (``quantize_fp8(scale_fmt="ue8m0")``, tile 128).
    """
    check_fp8_dtype(fp8_dtype)
    n = c_kv.shape[0]
    q, scale = quantize_fp8(c_kv, block_size=MLA_TILE, fp8_dtype=fp8_dtype, scale_fmt="ue8m0")
    out = torch.empty(n, MLA_FP8_RECORD_BYTES, dtype=torch.uint8, device=c_kv.device)
    out[:, :KV_LORA_RANK] = q.view(torch.uint8)
    out[:, KV_LORA_RANK : KV_LORA_RANK + 16] = scale.float().contiguous().view(torch.uint8)
    out[:, KV_LORA_RANK + 16 :] = k_rope.to(torch.bfloat16).contiguous().view(torch.uint8)
    return out


def unpack_mla_fp8(records: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    """Decode 656-byte records [..., 656] uint8 -> [..., 576] float32 (c_kv * scale | k_rope).

    The stored fp32 scales are used exactly as written (any value, not only powers of two).
    """
    check_fp8_dtype(fp8_dtype)
    lead = records.shape[:-1]
    r = records.reshape(-1, MLA_FP8_RECORD_BYTES)
    vals = r[:, :KV_LORA_RANK].contiguous().view(fp8_dtype).float().view(-1, 4, MLA_TILE)
    scale = r[:, KV_LORA_RANK : KV_LORA_RANK + 16].contiguous().view(torch.float32)
    rope = r[:, KV_LORA_RANK + 16 :].contiguous().view(torch.bfloat16).float()
    latent = (vals * scale.unsqueeze(-1)).reshape(-1, KV_LORA_RANK)
    return torch.cat([latent, rope], dim=-1).reshape(*lead, MLA_DIM)


def mla_cache_rows(buffer: torch.Tensor) -> torch.Tensor:
    """Flat per-slot view of an MLA cache buffer: [num_slots, 576] bf16 or [num_slots, 656] uint8.

    Accepts [num_pages, page_size, 1, W], [num_pages, page_size, W], [N, 1, W] or [N, W].
    """
    w = buffer.shape[-1]
    if not ((buffer.dtype == torch.bfloat16 and w == MLA_DIM)
            or (buffer.dtype == torch.uint8 and w == MLA_FP8_RECORD_BYTES)):
        raise ValueError(
            f"kv_cache: expected bfloat16 [..., {MLA_DIM}] or uint8 [..., {MLA_FP8_RECORD_BYTES}], "
            f"got {buffer.dtype} {tuple(buffer.shape)}"
        )
    return buffer.reshape(-1, w)


def positions_to_slots(
    positions: torch.Tensor, block_table: torch.Tensor, page_size: int
) -> torch.Tensor:
    """Map request-local token positions to physical cache slots through a page table.

    Args:
        positions: [R, K] int (request-local positions; < 0 = invalid, kept as -1).
        block_table: [R, max_pages] int32 physical page of each logical page, one row per
            position row (repeat a request's row for each of its query rows).
        page_size: tokens per page.
    Returns:
        [R, K] int32 slots ``block_table[r, pos // page_size] * page_size + pos % page_size``,
        -1 where the position is invalid. (Semantics: SGLang's page-table translation of
        top-k results before sparse MLA.)
    """
    pos = positions.long()
    valid = pos >= 0
    safe = torch.where(valid, pos, torch.zeros_like(pos))
    pages = torch.gather(block_table.long(), 1, safe // page_size)
    slots = pages * page_size + safe % page_size
    return torch.where(valid, slots, torch.full_like(slots, -1)).to(torch.int32)


# ---------------------------------------------------------------------------------------------
# cache objects
# ---------------------------------------------------------------------------------------------
class IndexerKCache:
    """Paged FP8 indexer key cache of one layer (layout in the module docstring).

    Args:
        num_pages: pages to allocate.
        page_size: tokens per page (64, as DeepGEMM's paged MQA logits expects).
        head_dim: indexer head dim (128).
        fp8_dtype: torch.float8_e4m3fn or torch.float8_e4m3fnuz (gfx942).
        device: where the buffer lives.
    """

    def __init__(self, num_pages: int, *, page_size: int = 64, head_dim: int = 128,
                 fp8_dtype: torch.dtype = torch.float8_e4m3fn, device: torch.device | str = "cpu"):
        check_positive("num_pages", num_pages)
        check_positive("page_size", page_size)
        if head_dim != 128:
            raise ValueError(f"head_dim: expected 128 (the indexer ops' key width), got {head_dim}")
        self.page_size = page_size
        self.head_dim = head_dim
        self.fp8_dtype = check_fp8_dtype(fp8_dtype)
        self.buffer = torch.zeros(num_pages, page_size * (head_dim + 4), dtype=torch.uint8, device=device)

    @property
    def num_pages(self) -> int:
        return self.buffer.shape[0]

    @property
    def bytes_per_token(self) -> int:
        return self.head_dim + 4

    def store(self, k: torch.Tensor, slot_mapping: torch.Tensor, *, provider: str | None = None) -> None:
        """Quantize keys k [N, D] (float) and store them at ``slot_mapping`` [N] int64."""
        from . import ops

        ops.store_indexer_k(k, self, slot_mapping, provider=provider)

    def gather(self, slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_fp8 [M, D], k_scale [M] f32) of the given slots [M] (for checks and references)."""
        return indexer_cache_gather(self.buffer, slots, self.fp8_dtype, self.head_dim)


class MLAKVCache:
    """Paged MLA latent cache of one layer: bf16 rows of 576 or 656-byte FP8 records.

    Args:
        num_pages: pages to allocate.
        page_size: tokens per page (64 for FlashMLA's sparse kernels).
        kv_dtype: "bf16" or "fp8".
        fp8_dtype: FP8 encoding of "fp8" records (e4m3fnuz on gfx942, e4m3fn elsewhere).
        device: where the buffer lives.
    """

    def __init__(self, num_pages: int, *, page_size: int = 64, kv_dtype: str = "bf16",
                 fp8_dtype: torch.dtype = torch.float8_e4m3fn, device: torch.device | str = "cpu"):
        if kv_dtype not in ("bf16", "fp8"):
            raise ValueError(f"kv_dtype: expected 'bf16' or 'fp8', got {kv_dtype!r}")
        check_positive("num_pages", num_pages)
        check_positive("page_size", page_size)
        self.page_size = page_size
        self.kv_dtype = kv_dtype
        self.fp8_dtype = check_fp8_dtype(fp8_dtype)
        if kv_dtype == "bf16":
            self.buffer = torch.zeros(num_pages, page_size, 1, MLA_DIM, dtype=torch.bfloat16, device=device)
        else:
            self.buffer = torch.zeros(num_pages, page_size, 1, MLA_FP8_RECORD_BYTES, dtype=torch.uint8,
                                      device=device)

    @property
    def num_pages(self) -> int:
        return self.buffer.shape[0]

    @property
    def bytes_per_token(self) -> int:
        return MLA_DIM * 2 if self.kv_dtype == "bf16" else MLA_FP8_RECORD_BYTES

    def store(self, c_kv: torch.Tensor, k_rope: torch.Tensor, slot_mapping: torch.Tensor, *,
              provider: str | None = None) -> None:
        """Store latents c_kv [N, 512] and k_rope [N, 64] at ``slot_mapping`` [N] int64."""
        from . import ops

        ops.store_mla_kv(c_kv, k_rope, self, slot_mapping, provider=provider)

    def gather(self, slots: torch.Tensor) -> torch.Tensor:
        """Dequantized rows [M, 576] float32 of the given slots [M]."""
        rows = mla_cache_rows(self.buffer)[slots.long()]
        return rows.float() if self.kv_dtype == "bf16" else unpack_mla_fp8(rows, self.fp8_dtype)

