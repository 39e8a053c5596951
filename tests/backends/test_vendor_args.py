"""Argument translations for vendor kernels (rocm_dsa.vendor_args) against the reference provider.

Each test applies a translation, runs the reference provider (or a small model of the vendor
kernel's documented behaviour) on the translated inputs, translates back and compares with the
reference on the original inputs. CPU only, small shapes.
"""

from __future__ import annotations

import math

import pytest
import torch

import rocm_dsa.ops as ops
import rocm_dsa.vendor_args as va
from rocm_dsa.cache import IndexerKCache, MLAKVCache, indexer_cache_gather, positions_to_slots
from rocm_dsa.fp8 import cast_to_fp8
from rocm_dsa.testing import assert_close, assert_topk_equal
from aiter_model import aiter_ragged_model

REF = "reference"
SM_SCALE = 0.1352338
FN, FNUZ = torch.float8_e4m3fn, torch.float8_e4m3fnuz
I32 = torch.int32


def _mla_cache(kv_format: str, num_pages: int = 6, page: int = 16):
    cache = MLAKVCache(num_pages, page_size=page, kv_dtype=kv_format, fp8_dtype=FN)
    n = num_pages * page
    cache.store(torch.randn(n, 512), torch.randn(n, 64), torch.arange(n), provider=REF)
    return cache


def _indices(rows: int, topk: int, n: int) -> torch.Tensor:
    idx = torch.randint(0, n, (rows, topk), dtype=I32)
    idx[0, ::3] = -1          # scattered invalid entries
    idx[1, 5:9] = n + 7       # out of range
    idx[2, 1] = -9            # negative other than -1
    idx[-1] = -1              # a row with no valid index
    return idx


# ---------------------------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("heads,sizes,plan,overhead", [
    (16, (64, 128), (64, 1), 4.0), (32, (64, 128), (64, 1), 2.0), (64, (64, 128), (64, 1), 1.0),
    (96, (64, 128), (128, 1), 128 / 96), (128, (64, 128), (128, 1), 1.0), (256, (64, 128), (128, 2), 1.0),
    (200, (64, 128), (128, 2), 256 / 200), (16, (16, 128), (16, 1), 1.0), (32, (16, 128), (128, 1), 4.0),
])
def test_head_plan(heads, sizes, plan, overhead):
    assert va.head_plan(heads, sizes) == plan
    assert va.head_padding_overhead(heads, sizes) == pytest.approx(overhead)


def test_head_plan_rejects_bad_arguments():
    with pytest.raises(ValueError, match="heads"):
        va.head_plan(0, (64,))
    with pytest.raises(ValueError, match="sizes"):
        va.head_plan(8, ())
    with pytest.raises(ValueError, match="total"):
        va.pad_heads(torch.zeros(2, 8, 4), 4, dim=1)


@pytest.mark.parametrize("kv_format", ["bf16", "fp8"])
@pytest.mark.parametrize("heads", [16, 32])
def test_padded_heads_prefill_equals_unpadded(kv_format, heads):
    cache = _mla_cache(kv_format)
    n = cache.num_pages * cache.page_size
    t = 5
    q = torch.randn(t, heads, 576).to(torch.bfloat16)
    idx = _indices(t, 24, n).unsqueeze(1)
    want = ops.sparse_mla_prefill(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    per_call, calls = va.head_plan(heads, (64, 128))
    qp = va.pad_heads(q, per_call * calls, dim=1)
    assert qp.shape == (t, 64, 576) and torch.equal(qp[:, :heads], q) and not qp[:, heads:].any()
    got = ops.sparse_mla_prefill(qp, cache, idx, sm_scale=SM_SCALE, provider=REF)
    for g, w, name in zip(got, want, ("out", "max_logits", "lse")):
        assert_close(va.unpad_heads(g, heads, 1), w, dtype=torch.float32 if name != "out" else None, name=name)


@pytest.mark.parametrize("heads", [16, 32])
def test_padded_heads_decode_equals_unpadded(heads):
    cache = _mla_cache("fp8")
    n = cache.num_pages * cache.page_size
    b, s_q = 3, 2
    q = torch.randn(b, s_q, heads, 576).to(torch.bfloat16)
    idx = _indices(b * s_q, 16, n).view(b, s_q, 16)
    out, lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    qp = va.pad_heads(q, 64, dim=2)
    out_p, lse_p = ops.sparse_mla_decode(qp, cache, idx, sm_scale=SM_SCALE, provider=REF)
    assert_close(va.unpad_heads(out_p, heads, 2), out, name="out")
    assert_close(va.unpad_heads(lse_p, heads, 1), lse, name="lse")


# ---------------------------------------------------------------------------------------------
# indices
# ---------------------------------------------------------------------------------------------
def test_normalize_indices_only_minus_one_is_invalid_and_results_are_unchanged():
    cache = _mla_cache("fp8")
    n = cache.num_pages * cache.page_size
    idx = _indices(4, 32, n).view(2, 2, 32)
    norm = va.normalize_indices(idx, n)
    assert norm.dtype == I32
    assert bool(((norm == -1) | ((norm >= 0) & (norm < n))).all())
    valid = (idx >= 0) & (idx < n)
    assert torch.equal(norm[valid], idx[valid]) and bool((norm[~valid] == -1).all())
    q = torch.randn(2, 2, 16, 576).to(torch.bfloat16)
    a = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    b = ops.sparse_mla_decode(q, cache, norm, sm_scale=SM_SCALE, provider=REF)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("topk,multiple,want", [(20, 64, 64), (64, 64, 64), (65, 64, 128), (2048, 128, 2048)])
def test_pad_topk_appends_invalid_columns_without_changing_results(topk, multiple, want):
    idx = torch.randint(0, 50, (3, 1, topk), dtype=I32)
    padded = va.pad_topk(idx, multiple)
    assert padded.shape[-1] == want and torch.equal(padded[..., :topk], idx)
    assert bool((padded[..., topk:] == -1).all())
    if topk <= 64:
        rows = torch.randn(50, 1, 576).to(torch.bfloat16)
        q = torch.randn(3, 16, 576).to(torch.bfloat16)
        a = ops.sparse_mla_prefill(q, rows, idx, sm_scale=SM_SCALE, provider=REF)
        b = ops.sparse_mla_prefill(q, rows, padded, sm_scale=SM_SCALE, provider=REF)
        for x, y in zip(a, b):
            assert_close(y, x, dtype=torch.float32)


def test_compact_indices_lists_valid_entries_in_order_and_attention_over_them_matches():
    n, topk, heads = 40, 12, 16
    rows = torch.randn(n, 576).to(torch.bfloat16)
    idx = _indices(6, topk, n)
    idx[3, :4] = torch.tensor([7, 7, 7, 2])  # duplicates count per occurrence
    kv_indices, indptr, counts = va.compact_indices(idx, n)
    assert indptr.dtype == kv_indices.dtype == counts.dtype == I32
    assert int(indptr[-1]) == kv_indices.numel() and torch.equal(indptr[1:] - indptr[:-1], counts)
    for r in range(idx.shape[0]):
        want = [v for v in idx[r].tolist() if 0 <= v < n]
        assert kv_indices[indptr[r]:indptr[r + 1]].tolist() == want
    # model of aiter's page-size-1 MLA decode over the compacted lists
    q = torch.randn(6, heads, 576).to(torch.bfloat16)
    out, _, lse = ops.sparse_mla_prefill(q, rows.unsqueeze(1), idx.unsqueeze(1), sm_scale=SM_SCALE, provider=REF)
    for r in range(6):
        sel = kv_indices[indptr[r]:indptr[r + 1]].long()
        if sel.numel() == 0:
            assert bool(torch.isposinf(lse[r]).all()) and not out[r].any()
            continue
        s = q[r].float() @ rows[sel].float().T * SM_SCALE
        assert_close(lse[r], torch.logsumexp(s, 1), dtype=torch.float32, atol=1e-3, rtol=1e-4)
        assert_close(out[r], (torch.softmax(s, 1) @ rows[sel, :512].float()).to(torch.bfloat16))


# ---------------------------------------------------------------------------------------------
# LSE conventions
# ---------------------------------------------------------------------------------------------
def test_normalize_lse_converts_base2_and_marks_empty_rows():
    s = torch.randn(4, 3, 10) * 3
    s[1, 2] = -math.inf                                   # empty row
    lse_nat = torch.logsumexp(s, -1)
    lse2 = lse_nat / va.LN2                               # what a log2 kernel would report
    ml2 = s.amax(-1) / va.LN2
    lse2[2, 0] = float("nan")                             # a kernel's NaN for an empty row
    lse, ml = va.normalize_lse(lse2, ml2, log2=True)
    fin = torch.isfinite(lse_nat)
    fin[2, 0] = False
    assert_close(lse[fin], lse_nat[fin], dtype=torch.float32)
    assert_close(ml[fin], s.amax(-1)[fin], dtype=torch.float32)
    assert bool(torch.isposinf(lse[~fin]).all()) and bool(torch.isneginf(ml[~fin]).all())
    out = torch.full((4, 3, 8), float("nan"))
    out[fin] = 1.0
    z = va.zero_empty_rows(out, lse)
    assert not z[~fin].any() and bool((z[fin] == 1).all())
    same, none = va.normalize_lse(lse_nat)
    assert none is None and torch.equal(same[torch.isfinite(lse_nat)], lse_nat[torch.isfinite(lse_nat)])


# ---------------------------------------------------------------------------------------------
# FP8 encodings
# ---------------------------------------------------------------------------------------------
def _indexer_inputs(t=6, n=70, h=8, d=128, dtype=FN):
    q = cast_to_fp8(torch.randn(t, h, d) * 3, dtype)
    k = cast_to_fp8(torch.randn(n, d) * 3, dtype)
    q.view(torch.uint8)[0, 0, :4] = 0x80 if dtype == FN else 0  # OCP -0 bytes must become +0
    k_scale = torch.exp2(torch.randint(-4, 3, (n,)).float())
    w = torch.randn(t, h)
    ks = torch.tensor([0, 3, 10, 0, 65, 128][:t], dtype=I32).clamp_max(n)
    ke = torch.tensor([1, 40, 10, 70, 70, 70][:t], dtype=I32).clamp_max(n)
    return q, k, k_scale, w, ks, ke


def test_fnuz_indexer_operands_keep_every_logit():
    q, k, ks_, w, ks, ke = _indexer_inputs()
    want = ops.indexer_logits(q, k, ks_, w, ks, ke, provider=REF)
    q2, k2, s2, w2 = va.fnuz_indexer_operands(q, k, ks_, w)
    assert q2.dtype == k2.dtype == FNUZ
    assert not bool((q2.view(torch.uint8) == 0x80).any())
    got = ops.indexer_logits(q2, k2, s2, w2, ks, ke, provider=REF)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert_close(got, want, dtype=torch.float32)
    same = va.fnuz_indexer_operands(q2, k2, s2, w2)
    assert all(a is b for a, b in zip(same, (q2, k2, s2, w2)))
    with pytest.raises(TypeError, match="k_fp8"):
        va.fnuz_indexer_operands(q, k2, s2, w)


def _paged_indexer(next_n=2, lens=(5, 33, 64), page=16, heads=8, dtype=FN, spare=2):
    b = len(lens)
    maxp = -(-max(lens) // page) + 1
    cache = IndexerKCache(b * maxp + spare, page_size=page, fp8_dtype=dtype)
    perm = torch.randperm(cache.num_pages)[: b * maxp].view(b, maxp).to(I32)
    for i, length in enumerate(lens):
        pos = torch.arange(length)
        cache.store(torch.randn(length, 128), positions_to_slots(pos.view(1, -1), perm[i:i + 1], page).view(-1).long(),
                    provider=REF)
    q = cast_to_fp8(torch.randn(b, next_n, heads, 128) * 2, dtype)
    w = torch.randn(b * next_n, heads)
    return q, cache, w, torch.tensor(lens, dtype=I32), perm


def test_fnuz_indexer_cache_keeps_paged_logits():
    q, cache, w, lens, table = _paged_indexer()
    want = ops.indexer_logits_paged(q, cache, w, lens, table, provider=REF)
    buf2 = va.fnuz_indexer_cache(cache.buffer)
    assert buf2.data_ptr() != cache.buffer.data_ptr()
    q2 = va.fnuz_indexer_operands(q, q, torch.ones(1), w)[0]
    got = ops.indexer_logits_paged(q2, buf2, w * 2, lens, table, provider=REF)
    assert torch.equal(torch.isfinite(got), torch.isfinite(want))
    assert_close(got, want, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------
# windows and logits layouts
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("next_n", [1, 2, 3])
def test_paged_row_lengths_are_the_reference_visibility(next_n):
    q, cache, w, lens, table = _paged_indexer(next_n=next_n, lens=(1, 2, 40, 64))
    want = ops.indexer_logits_paged(q, cache, w, lens, table, provider=REF)
    got = va.paged_row_lengths(lens, next_n, want.shape[1])
    assert got.dtype == I32 and got.shape == (lens.numel() * next_n,)
    assert torch.equal(got.long(), torch.isfinite(want).sum(1))
    # context longer than the page table: clamped to its width
    assert va.paged_row_lengths(torch.tensor([500], dtype=I32), 2, 64).tolist() == [64, 64]


def test_mask_columns_windows_and_nan():
    x = torch.randn(5, 30)
    x[1, 4] = float("nan")
    lo = torch.tensor([0, 2, 29, 5, 0], dtype=I32)
    hi = torch.tensor([30, 10, 30, 5, 0], dtype=I32)
    got = va.mask_columns(x, lo, hi, nan_to_neginf=True)
    cols = torch.arange(30)
    for r in range(5):
        inside = (cols >= lo[r]) & (cols < hi[r])
        assert torch.equal(got[r][inside & ~torch.isnan(x[r])], x[r][inside & ~torch.isnan(x[r])])
        assert bool(torch.isneginf(got[r][~inside | torch.isnan(x[r])]).all())
    assert bool(torch.isnan(va.mask_columns(x, lo, hi)[1, 4]))
    strided = torch.randn(5, 40)[:, :30]  # padded rows, as vendor outputs come
    assert torch.equal(va.mask_columns(strided, None, hi), va.mask_columns(strided.contiguous(), None, hi))


def test_expand_compressed_logits_equals_reference():
    q, k, ks_, w, ks, ke = _indexer_inputs()
    want = ops.indexer_logits(q, k, ks_, w, ks, ke, provider=REF)
    n = k.shape[0]
    comp = torch.full((q.shape[0], n + 24), 123.0)[:, :n]  # garbage past each window, padded stride
    for t in range(q.shape[0]):
        comp[t, : ke[t] - ks[t]] = want[t, ks[t]:ke[t]]
    assert torch.equal(va.expand_compressed_logits(comp, ks, ke, n), want)


def test_aligned_starts_make_the_aiter_tile_walk_exact():
    q, k, ks_, w, ks, ke = _indexer_inputs(t=6, n=300)
    ks = torch.tensor([0, 10, 130, 5, 250, 299], dtype=I32)
    ke = torch.tensor([300, 140, 140, 5, 300, 300], dtype=I32)
    want = ops.indexer_logits(q, k, ks_, w, ks, ke, provider=REF)
    full = ops.indexer_logits(q, k, ks_, w, torch.zeros_like(ks), torch.full_like(ke, 300), provider=REF)
    naive = aiter_ragged_model(full, ks, ke, 128)
    assert not torch.equal(naive, want)  # unaligned starts: wrong columns
    a = va.aligned_starts(ks, 128)
    assert a.tolist() == [0, 0, 128, 0, 128, 256]
    got = va.mask_columns(aiter_ragged_model(full, a, ke, 128), ks, ke)
    assert torch.equal(got, want)


# ---------------------------------------------------------------------------------------------
# cache layouts
# ---------------------------------------------------------------------------------------------
def test_deepgemm_cache_view_is_our_bytes_in_its_fused_layout():
    q, cache, w, lens, table = _paged_indexer()
    fused = va.deepgemm_indexer_cache(cache.buffer)
    p, page = cache.num_pages, cache.page_size
    assert fused.shape == (p, page, 1, 132) and fused.data_ptr() == cache.buffer.data_ptr()
    # DeepGEMM's reading of a block: page*128 key bytes, then page fp32 scales
    flat = fused.reshape(p, -1)
    vals = flat[:, : page * 128].reshape(p, page, 128).view(FN)
    scales = flat[:, page * 128:].contiguous().view(torch.float32)
    slots = torch.arange(p * page)
    k, s = indexer_cache_gather(cache.buffer, slots, FN)
    assert torch.equal(vals.reshape(-1, 128).view(torch.uint8), k.view(torch.uint8))
    assert torch.equal(scales.reshape(-1), s)
    with pytest.raises(ValueError, match="kv_cache"):
        va.deepgemm_indexer_cache(torch.zeros(2, 100, dtype=torch.uint8))


def _aiter_paged_model(q, records, w, lens, kv_indices):
    """aiter's paged logits kernel at next_n = 1: row r scores records kv_indices[r, c] for c < lens[r]."""
    rows = q.shape[0]
    width = kv_indices.shape[1]
    out = torch.full((rows, width), float("-inf"))
    rec = records.view(-1, 132)
    kf = rec[:, :128].contiguous().view(FN).float()
    ks = rec[:, 128:].contiguous().view(torch.float32).view(-1)
    for r in range(rows):
        n = int(lens[r])
        if n == 0:
            continue
        sel = kv_indices[r, :n].long()
        s = torch.einsum("hd,cd->hc", q[r, 0].float(), kf[sel]).clamp_min(0)
        out[r, :n] = (s * w[r].unsqueeze(1)).sum(0) * ks[sel]
    return out


@pytest.mark.parametrize("next_n", [1, 3])
def test_aiter_paged_inputs_reproduce_the_reference(next_n):
    q, cache, w, lens, table = _paged_indexer(next_n=next_n, lens=(1, 17, 64, 3))
    want = ops.indexer_logits_paged(q, cache, w, lens, table, provider=REF)
    records, kv_indices, row_lens, width = va.aiter_paged_indexer_inputs(cache.buffer, lens, table, next_n)
    assert records.shape[1:] == (1, 1, 132) and records.shape[0] == int(lens.clamp_max(width).sum())
    assert width == want.shape[1] and kv_indices.shape[0] == lens.numel() * next_n
    assert int(kv_indices.max()) < records.shape[0] and int(kv_indices.min()) >= 0
    got = _aiter_paged_model(q.reshape(-1, 1, q.shape[2], 128), records, w, row_lens, kv_indices)
    full = torch.full_like(want, float("-inf"))
    full[:, : got.shape[1]] = got
    assert torch.equal(torch.isfinite(full), torch.isfinite(want))
    assert_close(full, want, dtype=torch.float32)


def test_request_token_slots_follow_the_page_table():
    table = torch.tensor([[3, 1, 4], [0, 2, 5]], dtype=I32)
    slots, offsets = va.request_token_slots(table, torch.tensor([5, 9]), 4)
    assert offsets.tolist() == [0, 5]
    want = torch.cat([positions_to_slots(torch.arange(5).view(1, -1), table[:1], 4).view(-1),
                      positions_to_slots(torch.arange(9).view(1, -1), table[1:], 4).view(-1)])
    assert torch.equal(slots, want.long())


@pytest.mark.parametrize("n,block,shape", [(128, 64, (2, 64, 1, 656)), (96, 64, (96, 1, 1, 656))])
def test_mla_paged_view_keeps_slot_addressing(n, block, shape):
    buf = torch.randint(0, 255, (n, 1, 656), dtype=torch.uint8)
    v = va.mla_paged_view(buf, block)
    assert v.shape == shape and v.data_ptr() == buf.data_ptr()
    s = torch.arange(n)
    assert torch.equal(v[s // v.shape[1], s % v.shape[1], 0], buf[:, 0])
    four = buf.view(n // 16, 16, 1, 656)
    assert va.mla_paged_view(four) is four


# ---------------------------------------------------------------------------------------------
# top-k results
# ---------------------------------------------------------------------------------------------
def test_finish_topk_from_unordered_supersets_equals_reference():
    r, c, k = 5, 300, 32
    x = torch.randn(r, c)
    x[1, 50:60] = float("-inf")
    x[2, 7] = float("nan")
    x[3, 100] = float("inf")
    starts = torch.tensor([0, 40, 0, 90, 10], dtype=I32)
    ends = torch.tensor([300, 70, 20, 300, 10], dtype=I32)
    want = ops.topk_indices(x, starts, ends, k=k, provider=REF)
    masked = va.mask_columns(x, starts, ends, nan_to_neginf=True)
    # a vendor's answer: the 48 best absolute columns of the masked row (window as [0, end)), shuffled,
    # or every column of [0, end) for short rows, -1 padded
    cand = torch.full((r, 64), -1, dtype=torch.long)
    for i in range(r):
        e = int(ends[i])
        cols = torch.arange(e) if e <= 48 else torch.topk(masked[i, :e], 48).indices
        cand[i, : cols.numel()] = cols[torch.randperm(cols.numel())]
    got = va.finish_topk(cand, masked, starts, k, ends)
    assert torch.equal(got, want)  # same set, same order
    got8 = va.finish_topk(cand, masked, starts, 8, ends)
    assert torch.equal(got8, ops.topk_indices(x, starts, ends, k=8, provider=REF))
    wide = va.finish_topk(cand[:, :4], masked, starts, 6, ends)
    assert wide.shape == (r, 6) and bool((wide[:, 4:] == -1).all())


def test_finish_topk_ties_order_by_lower_column():
    x = torch.tensor([[1.0, 3.0, 3.0, 2.0, 3.0]])
    cand = torch.tensor([[4, 2, 1, 0, 3]])
    got = va.finish_topk(cand, x, None, 5)
    assert got.tolist() == [[1, 2, 4, 3, 0]]
    assert_topk_equal(got, ops.topk_indices(x, torch.zeros(1, dtype=I32), torch.full((1,), 5, dtype=I32),
                                            k=5, provider=REF))
