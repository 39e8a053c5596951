"""Random inputs shared by the Triton kernel tests (fresh data per call, never all zero)."""

from __future__ import annotations

import torch

from rocm_dsa.cache import IndexerKCache


def ragged_inputs(t, h, n, fp8_dtype, device, *, windows="random"):
    q = (torch.randn(t, h, 128) * 2).to(fp8_dtype).to(device)
    k = (torch.randn(n, 128) * 2).to(fp8_dtype).to(device)
    k_scale = (torch.rand(n) + 0.5).to(device)
    w = torch.randn(t, h).to(device)
    if windows == "causal":  # prefill of one request: token i sees keys [0, n - t + i]
        ke = torch.arange(n - t + 1, n + 1, dtype=torch.int32)
        ks = torch.zeros(t, dtype=torch.int32)
    else:
        ks = torch.randint(0, n // 2, (t,), dtype=torch.int32)
        ke = (ks + torch.randint(0, n, (t,), dtype=torch.int32)).clamp(max=n)
        ke[0] = ks[0]  # an empty window
        ks[-1], ke[-1] = 0, n  # the whole key range
    return q, k, k_scale, w, ks.to(device), ke.to(device)


def paged_inputs(b, next_n, h, fp8_dtype, device, *, page_size=64, max_pages=4, lens=None):
    num_pages = b * max_pages + 3
    cache = IndexerKCache(num_pages, page_size=page_size, fp8_dtype=fp8_dtype, device=device)
    n_slots = num_pages * page_size
    cache.store(torch.randn(n_slots, 128, device=device), torch.randperm(n_slots, device=device),
                provider="reference")
    q = (torch.randn(b, next_n, h, 128) * 2).to(fp8_dtype).to(device)
    w = torch.randn(b * next_n, h, device=device)
    width = max_pages * page_size
    if lens is None:
        lens = torch.randint(1, width + 1, (b,))
    ctx = torch.as_tensor(lens, dtype=torch.int32).to(device)
    table = torch.randperm(num_pages)[: b * max_pages].reshape(b, max_pages).to(torch.int32).to(device)
    return q, cache, w, ctx, table
