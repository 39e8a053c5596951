"""The ``hip`` provider's kernels on a GPU against the reference provider (skipped without a GPU
or toolchain, with the reason). Full-size numerics and timing: scripts/hip_topk_check.py."""

from __future__ import annotations

import pytest
import torch

from rocm_dsa import hipext, ops
from rocm_dsa.cache import IndexerKCache, MLAKVCache
from rocm_dsa.testing import poison

_WHY = hipext.unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(_WHY is not None, reason=_WHY or "")]

INF = float("inf")


def _by_column(t: torch.Tensor) -> torch.Tensor:
    """The reference's rows with the valid prefix in ascending order: the hip kernel's output
    (same set, column order, -1 after it)."""
    big = torch.iinfo(torch.int32).max
    s = torch.where(t >= 0, t, torch.full_like(t, big)).sort(1).values
    return torch.where(s == big, torch.full_like(s, -1), s)


def _rows(r, c, dev):
    return torch.zeros(r, dtype=torch.int32, device=dev), torch.full((r,), c, dtype=torch.int32, device=dev)


@pytest.mark.parametrize("cap", [None, 16])
@pytest.mark.parametrize("shape,k", [((8, 5000), 2048), ((4, 70_000), 2048), ((16, 300), 64), ((3, 2049), 2048)])
def test_topk_matches_reference_exactly(shape, k, cap):
    from rocm_dsa.backends.hip import topk

    dev = torch.device("cuda")
    x = torch.randn(*shape, device=dev)
    x[0, : shape[1] // 2] = 0.0  # zero-dominated row
    x[-1, ::3] = -INF
    s, e = _rows(shape[0], shape[1], dev)
    out = poison(torch.empty(shape[0], k, dtype=torch.int32, device=dev))
    got = topk(x, starts=s, ends=e, k=k, cap=cap, out=out)
    want = ops.topk_indices(x, s, e, k=k, provider="reference")
    assert torch.equal(got.cpu(), _by_column(want.cpu()))
    assert torch.equal(topk(x, starts=s, ends=e, k=k, cap=cap), got)  # deterministic


def test_topk_op_dispatch_and_ragged():
    dev = torch.device("cuda")
    x = torch.randn(6, 3000, device=dev)
    s = torch.tensor([0, 10, 500, 2990, -5, 3000], dtype=torch.int32, device=dev)
    e = torch.tensor([3000, 2100, 400, 3100, 100, 3000], dtype=torch.int32, device=dev)
    got = ops.topk_indices(x, s, e, k=256, provider="hip")
    want = ops.topk_indices(x, s, e, k=256, provider="reference")
    assert torch.equal(got.cpu(), _by_column(want.cpu()))


def test_topk_paged_slots():
    from rocm_dsa.backends.hip import PROVIDER
    from rocm_dsa.cache import positions_to_slots

    dev = torch.device("cuda")
    b, next_n, page, maxp = 3, 2, 64, 40
    lens = torch.tensor([2500, 64, 1], dtype=torch.int32, device=dev)
    bt = torch.randperm(200, device=dev)[: b * maxp].view(b, maxp).to(torch.int32)
    logits = torch.randn(b * next_n, maxp * page, device=dev)
    pos = PROVIDER.topk_indices_paged(logits, lens, bt, next_n, 2048, False)
    slots = PROVIDER.topk_indices_paged(logits, lens, bt, next_n, 2048, True)
    r = torch.arange(b * next_n, device=dev)
    hi = (lens.long()[r // next_n] - next_n + r % next_n + 1).clamp(0, maxp * page).to(torch.int32)
    want = _by_column(ops.topk_indices(logits, torch.zeros_like(hi), hi, k=2048, provider="reference"))
    assert torch.equal(pos.cpu(), want.cpu())
    assert torch.equal(slots.cpu(), positions_to_slots(want, bt.repeat_interleave(next_n, 0), page).cpu())


@pytest.mark.parametrize("kdtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("scale_fmt", ["ue8m0", None])
def test_store_indexer_k_bytes(fp8_dtype, kdtype, scale_fmt):
    dev = torch.device("cuda")
    n = 300
    k = (torch.randn(n, 128, device=dev) * 3).to(kdtype)
    slots = torch.randperm(40 * 64, device=dev)[:n].to(torch.int64)
    slots[::17] = -1
    a = IndexerKCache(40, fp8_dtype=fp8_dtype, device=dev)
    b = IndexerKCache(40, fp8_dtype=fp8_dtype, device=dev)
    poison(a.buffer)
    b.buffer.copy_(a.buffer)
    ops.store_indexer_k(k, a, slots, scale_fmt=scale_fmt, provider="hip")
    ops.store_indexer_k(k, b, slots, scale_fmt=scale_fmt, provider="reference")
    assert torch.equal(a.buffer, b.buffer)


@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8"])
def test_store_mla_kv_bytes(fp8_dtype, kv_dtype):
    dev = torch.device("cuda")
    n = 257
    c = torch.randn(n, 512, device=dev).bfloat16()
    r = torch.randn(n, 64, device=dev).bfloat16()
    slots = torch.randperm(30 * 64, device=dev)[:n].to(torch.int32)
    slots[5] = -1
    a = MLAKVCache(30, kv_dtype=kv_dtype, fp8_dtype=fp8_dtype, device=dev)
    b = MLAKVCache(30, kv_dtype=kv_dtype, fp8_dtype=fp8_dtype, device=dev)
    poison(a.buffer.view(torch.uint8))
    b.buffer.copy_(a.buffer)
    ops.store_mla_kv(c, r, a, slots, provider="hip")
    ops.store_mla_kv(c, r, b, slots, provider="reference")
    assert torch.equal(a.buffer.view(torch.uint8), b.buffer.view(torch.uint8))


@pytest.fixture
def portable(monkeypatch):
    """Off gfx942 / gfx950 the MFMA kernels run their portable path, opt-in."""
    monkeypatch.setenv("ROCM_DSA_HIP_PORTABLE", "1")


@pytest.mark.parametrize("next_n", [1, 2])
def test_indexer_logits_paged_matches_reference(portable, next_n):
    from rocm_dsa.platform import detect
    from rocm_dsa.testing import assert_close

    dev = torch.device("cuda")
    fp8 = detect(dev).fp8_dtype
    cache = IndexerKCache(40, fp8_dtype=fp8, device=dev)
    cache.store(torch.randn(40 * 64, 128, device=dev), torch.arange(40 * 64, device=dev), provider="reference")
    b = 3
    q = (torch.randn(b, next_n, 64, 128, device=dev) * 2).to(fp8)
    w = torch.randn(b * next_n, 64, device=dev) * 0.02
    lens = torch.tensor([700, 1, 64 * 12], dtype=torch.int32, device=dev)
    bt = torch.randperm(40, device=dev)[:36].view(b, 12).to(torch.int32)
    got = ops.indexer_logits_paged(q, cache, w, lens, bt, provider="hip")
    want = ops.indexer_logits_paged(q, cache, w, lens, bt, provider="reference")
    assert_close(got, want, dtype=torch.float32, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("heads,kv_dtype", [(16, "bf16"), (64, "fp8"), (128, "bf16")])
def test_sparse_mla_decode_matches_reference(portable, heads, kv_dtype):
    from rocm_dsa.testing import assert_close

    dev = torch.device("cuda")
    cache = MLAKVCache(20, kv_dtype=kv_dtype, device=dev)
    n = 20 * 64
    cache.store(torch.randn(n, 512, device=dev), torch.randn(n, 64, device=dev), torch.arange(n, device=dev),
                provider="reference")
    q = torch.randn(2, 2, heads, 576, device=dev).bfloat16()
    idx = torch.randint(-1, n + 10, (2, 2, 300), dtype=torch.int32, device=dev)
    idx[1, 1] = -1
    out, lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=0.1352338, provider="hip")
    want_out, want_lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=0.1352338, provider="reference")
    assert_close(out, want_out)
    assert_close(lse, want_lse, dtype=torch.float32, atol=1e-4, rtol=1e-5)
