"""Triton indexer logits (ragged and paged) against the reference provider."""

from __future__ import annotations

import pytest
import torch

from rocm_dsa import ops
from rocm_dsa.platform import detect
from rocm_dsa.testing import assert_close, poison
from triton_inputs import paged_inputs, ragged_inputs

# fp32 accumulation order differs from the reference's einsum: tight, but not bitwise
TOL = dict(dtype=torch.float32, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("heads", [16, 64])
def test_ragged_matches_reference(fp8_dtype, heads, device):
    args = ragged_inputs(21, heads, 150, fp8_dtype, device)
    got = ops.indexer_logits(*args, provider="triton")
    want = ops.indexer_logits(*args, provider="reference")
    assert_close(got, want, **TOL)


def test_ragged_causal_blocks_and_poison(device):
    """Two token blocks whose windows miss whole key blocks; every output element written."""
    from rocm_dsa.triton_kernels.indexer import _launch_ragged

    q, k, k_scale, w, ks, ke = ragged_inputs(70, 32, 260, torch.float8_e4m3fn, device, windows="causal")
    ks[:64] = 200  # first token block only sees keys >= 200: leading key blocks are skipped
    ke[:64] = torch.maximum(ke[:64], ks[:64])
    out = poison(torch.empty(70, 260, device=device))
    _launch_ragged(q, k, k_scale, w, ks, ke, out, 0, 260, detect(out.device).arch)
    want = ops.indexer_logits(q, k, k_scale, w, ks, ke, provider="reference")
    assert not torch.isnan(out).any()
    assert_close(out, want, **TOL)


@pytest.mark.parametrize("next_n,heads", [(1, 64), (2, 16), (3, 32), (4, 16)])
def test_paged_matches_reference(fp8_dtype, next_n, heads, device):
    # contexts: empty, shorter than next_n, inside a page, across pages, the full table
    lens = [0, next_n - 1, 37, 130, 256][: 5]
    q, cache, w, ctx, table = paged_inputs(len(lens), next_n, heads, fp8_dtype, device, lens=lens)
    got = ops.indexer_logits_paged(q, cache, w, ctx, table, provider="triton")
    want = ops.indexer_logits_paged(q, cache, w, ctx, table, provider="reference")
    assert_close(got, want, **TOL)


def test_paged_small_pages_and_poison(device):
    from rocm_dsa.triton_kernels.indexer import _launch_paged

    q, cache, w, ctx, table = paged_inputs(3, 2, 16, torch.float8_e4m3fnuz, device, page_size=16, max_pages=5,
                                           lens=[80, 17, 3])
    out = poison(torch.empty(6, 80, device=device))
    _launch_paged(q, cache.buffer, w, ctx, table, out, detect(out.device).arch)
    want = ops.indexer_logits_paged(q, cache, w, ctx, table, provider="reference")
    assert not torch.isnan(out).any()
    assert_close(out, want, **TOL)
