"""Paged caches of one DSA layer with a page table per request.

Both caches of a layer (the FP8 indexer key cache and the MLA latent cache) share ONE page table,
as in SGLang's DSA backend: a token's slot ``page * page_size + offset`` addresses both, so the
paged top-k can return slots (``indexer_topk_paged(..., return_slots=True)``) that
``sparse_mla_decode`` reads directly. Pages are handed out from a free list that can be shuffled,
so logical and physical pages differ (what a serving engine's allocator produces after a while).
"""

from __future__ import annotations

import torch

from ..cache import IndexerKCache, MLAKVCache

__all__ = ["PagedKVCaches"]


class PagedKVCaches:
    """The indexer key cache and the MLA latent cache of one layer, plus request page tables.

    Args:
        num_pages: physical pages of each cache.
        page_size: tokens per page (64: DeepGEMM's paged MQA logits and FlashMLA's sparse decode).
        kv_dtype: MLA latent cache format, "bf16" (1152 B/token) or "fp8" (656-byte records).
        fp8_dtype: FP8 encoding of both caches (e4m3fnuz on gfx942, e4m3fn elsewhere).
        device: where the buffers live.
        shuffle_seed: None = pages handed out in order; an int = a seeded random order.
    Raises:
        ValueError: bad sizes or kv_dtype (from the cache classes).
    """

    def __init__(self, num_pages: int, *, page_size: int = 64, kv_dtype: str = "bf16",
                 fp8_dtype: torch.dtype = torch.float8_e4m3fn, device: torch.device | str = "cpu",
                 shuffle_seed: int | None = None):
        self.indexer = IndexerKCache(num_pages, page_size=page_size, fp8_dtype=fp8_dtype, device=device)
        self.mla = MLAKVCache(num_pages, page_size=page_size, kv_dtype=kv_dtype, fp8_dtype=fp8_dtype,
                              device=device)
        self.page_size = page_size
        self.device = torch.device(device)
        if shuffle_seed is None:
            order = list(range(num_pages))
        else:
            order = torch.randperm(num_pages, generator=torch.Generator().manual_seed(shuffle_seed)).tolist()
        self._free = order[::-1]  # pop() from the end hands pages out in `order`
        self.pages: list[list[int]] = []
        self.seq_lens: list[int] = []

    @property
    def fp8_dtype(self) -> torch.dtype:
        return self.indexer.fp8_dtype

    @property
    def num_pages(self) -> int:
        return self.indexer.num_pages

    def add_request(self) -> int:
        """Register an empty request; returns its id (0, 1, ...)."""
        self.pages.append([])
        self.seq_lens.append(0)
        return len(self.pages) - 1

    def reserve(self, req: int, new_tokens: int) -> torch.Tensor:
        """Append ``new_tokens`` positions to request ``req`` (allocating pages) and return their
        slots [new_tokens] int64. Raises RuntimeError when the pool is out of pages."""
        start = self.seq_lens[req]
        end = start + new_tokens
        need = -(-end // self.page_size) - len(self.pages[req])
        if need > len(self._free):
            raise RuntimeError(f"PagedKVCaches: out of pages (request {req} needs {need} more, "
                               f"{len(self._free)} free of {self.num_pages})")
        for _ in range(max(0, need)):
            self.pages[req].append(self._free.pop())
        self.seq_lens[req] = end
        return self.slots(req, torch.arange(start, end))

    def slots(self, req: int, positions: torch.Tensor) -> torch.Tensor:
        """Physical slots [M] int64 of request-local ``positions`` [M] (all < seq_len)."""
        table = torch.tensor(self.pages[req], dtype=torch.int64)
        pos = positions.long().cpu()
        return (table[pos // self.page_size] * self.page_size + pos % self.page_size).to(self.device)

    def block_table(self, reqs: list[int], *, min_pages: int = 1) -> torch.Tensor:
        """Page table [len(reqs), max_pages] int32 on the cache device. Entries past a request's
        pages hold 0 (a valid page number, so a kernel that over-reads stays in bounds)."""
        width = max([min_pages] + [len(self.pages[r]) for r in reqs])
        out = torch.zeros(len(reqs), width, dtype=torch.int32)
        for i, r in enumerate(reqs):
            out[i, : len(self.pages[r])] = torch.tensor(self.pages[r], dtype=torch.int32)
        return out.to(self.device)

    def context_lens(self, reqs: list[int]) -> torch.Tensor:
        """[len(reqs)] int32 tokens in the cache of each request."""
        return torch.tensor([self.seq_lens[r] for r in reqs], dtype=torch.int32, device=self.device)

    def bytes_per_token(self) -> dict[str, int]:
        """Cache bytes per token: {"indexer": 132, "mla": 1152 or 656}."""
        return {"indexer": self.indexer.bytes_per_token, "mla": self.mla.bytes_per_token}
