"""Fused Triton indexer + top-k (ragged and paged) against the reference provider."""

from __future__ import annotations

import pytest
import torch

from rocm_dsa import ops
from rocm_dsa.testing import assert_topk_equal

from triton_inputs import paged_inputs, ragged_inputs


@pytest.mark.parametrize("heads", [16, 64])
def test_ragged(fp8_dtype, heads, device):
    args = ragged_inputs(9, heads, 300, fp8_dtype, device)
    got = ops.indexer_topk(*args, k=64, provider="triton")
    assert_topk_equal(got, ops.indexer_topk(*args, k=64, provider="reference"))


def test_ragged_ties_and_small_workspace(device, monkeypatch):
    """Integer-valued inputs give tied logits; a tiny workspace forces several row chunks."""
    from rocm_dsa.triton_kernels import indexer_topk as it

    q, k, k_scale, w, ks, ke = ragged_inputs(7, 16, 200, torch.float8_e4m3fn, device, windows="causal")
    q = torch.randint(-2, 3, q.shape).to(torch.float8_e4m3fn).to(device)
    k = torch.randint(-2, 3, k.shape).to(torch.float8_e4m3fn).to(device)
    k_scale = torch.ones_like(k_scale)
    w = torch.ones_like(w)
    monkeypatch.setattr(it, "_chunk_rows", lambda count, *a, **kw: 3)
    got = ops.indexer_topk(q, k, k_scale, w, ks, ke, k=40, provider="triton")
    assert_topk_equal(got, ops.indexer_topk(q, k, k_scale, w, ks, ke, k=40, provider="reference"))


@pytest.mark.parametrize("next_n", [1, 2, 4])
@pytest.mark.parametrize("return_slots", [False, True])
def test_paged(next_n, return_slots, device):
    lens = [0, 70, 256]
    q, cache, w, ctx, table = paged_inputs(3, next_n, 16, torch.float8_e4m3fnuz, device, lens=lens)
    kw = dict(k=48, return_slots=return_slots)
    got = ops.indexer_topk_paged(q, cache, w, ctx, table, provider="triton", **kw)
    assert_topk_equal(got, ops.indexer_topk_paged(q, cache, w, ctx, table, provider="reference", **kw))


def test_paged_h64_fn_chunks(device, monkeypatch):
    from rocm_dsa.triton_kernels import indexer_topk as it

    q, cache, w, ctx, table = paged_inputs(3, 3, 64, torch.float8_e4m3fn, device, page_size=16, max_pages=6,
                                           lens=[96, 40, 2])
    monkeypatch.setattr(it, "_chunk_rows", lambda count, *a, **kw: 2)
    got = ops.indexer_topk_paged(q, cache, w, ctx, table, k=30, return_slots=True, provider="triton")
    assert_topk_equal(got, ops.indexer_topk_paged(q, cache, w, ctx, table, k=30, return_slots=True,
                                                  provider="reference"))
