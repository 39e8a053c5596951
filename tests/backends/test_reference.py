"""The reference provider against the contracts of rocm_dsa.ops (DESIGN §2).

Every expected value here is computed independently in float64 from the unpaged inputs
(plain einsum / softmax / sort), never by calling the reference's own helpers, so a mistake
in the reference shows up as a difference. The calls go through the public ops with
``provider="reference"``.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import rocm_dsa.backends.reference as reference
import rocm_dsa.ops as ops
from rocm_dsa.cache import IndexerKCache, MLAKVCache, positions_to_slots
from rocm_dsa.fp8 import cast_to_fp8, quantize_fp8
from rocm_dsa.testing import assert_close, assert_topk_equal

REF = "reference"
SM_SCALE = 0.1352338
INF = math.inf
FN, FNUZ = torch.float8_e4m3fn, torch.float8_e4m3fnuz
I32 = torch.int32


# ---------------------------------------------------------------------------------------------
# independent float64 definitions (small, written from the contract text)
# ---------------------------------------------------------------------------------------------
def dense_index_scores(q: torch.Tensor, k: torch.Tensor, k_scale: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """q [T, H, D] fp8, k [N, D] fp8, k_scale [N], w [T, H] -> [T, N] float64, no mask."""
    dots = torch.einsum("thd,nd->thn", q.double(), k.double()).clamp_min(0)
    return torch.einsum("thn,th->tn", dots, w.double()) * k_scale.double()


def sorted_topk(values: list[float], lo: int, hi: int, k: int, start: int) -> list[int]:
    """Exact top-k by a full sort: candidates are columns in [lo, hi) that are neither NaN nor
    -inf; larger value first (+inf first of all), ties by lower column; -1 padded."""
    cand = [c for c in range(max(lo, 0), min(hi, len(values)))
            if not math.isnan(values[c]) and values[c] != -INF]
    cand.sort(key=lambda c: (-values[c], c))
    top = [c - start for c in cand[:k]]
    return top + [-1] * (k - len(top))


def decode_mla_rows(rows: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    """Cache rows [M, 576] bf16 or [M, 656] uint8 records -> [M, 576] float64."""
    if rows.dtype == torch.bfloat16:
        return rows.double()
    vals = rows[:, :512].contiguous().view(fp8_dtype).double()
    scale = rows[:, 512:528].contiguous().view(torch.float32).double().repeat_interleave(128, dim=1)
    rope = rows[:, 528:656].contiguous().view(torch.bfloat16).double()
    return torch.cat([vals * scale, rope], dim=1)


def sparse_attention64(q: torch.Tensor, kv64: torch.Tensor, idx: torch.Tensor, scale: float):
    """q [R, H, 576], kv64 [N, 576] f64, idx [R, topk]: softmax over the valid entries of each
    row (0 <= i < N, duplicates counted per occurrence) -> out [R, H, 512], max, lse [R, H]."""
    r, h, _ = q.shape
    n = kv64.shape[0]
    out = torch.zeros(r, h, 512, dtype=torch.float64)
    mx = torch.full((r, h), -INF, dtype=torch.float64)
    lse = torch.full((r, h), INF, dtype=torch.float64)
    for i in range(r):
        sel = [j for j in idx[i].tolist() if 0 <= j < n]
        if not sel:
            continue
        kv = kv64[sel]
        s = q[i].double() @ kv.T * scale
        mx[i] = s.max(dim=1).values
        lse[i] = torch.logsumexp(s, dim=1)
        out[i] = torch.softmax(s, dim=1) @ kv[:, :512]
    return out, mx, lse


def dense_causal_attention64(q: torch.Tensor, kv64: torch.Tensor, lo: list[int], hi: list[int], scale: float):
    """Plain attention of query r over every key in [lo[r], hi[r]) -> out [R, H, 512], lse [R, H]."""
    s = torch.einsum("rhd,nd->rhn", q.double(), kv64) * scale
    cols = torch.arange(kv64.shape[0])
    mask = (cols >= torch.tensor(lo).view(-1, 1)) & (cols < torch.tensor(hi).view(-1, 1))
    s = s.masked_fill(~mask.unsqueeze(1), -INF)
    return torch.softmax(s, dim=-1) @ kv64[:, :512], torch.logsumexp(s, dim=-1)


def assert_selection_is_top(idx_row: list[int], scores: torch.Tensor, lo: int, hi: int, tol: float):
    """The chosen request-local positions are the largest float64 scores in [lo, hi), up to
    float32 rounding: no unchosen score exceeds a chosen one by more than ``tol``."""
    chosen = [lo + p for p in idx_row if p >= 0]
    rest = sorted(set(range(lo, hi)) - set(chosen))
    if chosen and rest:
        assert float(scores[chosen].min()) >= float(scores[rest].max()) - tol


# ---------------------------------------------------------------------------------------------
# fixtures of random inputs
# ---------------------------------------------------------------------------------------------
def rand_fp8(shape, fp8_dtype, scale=2.0) -> torch.Tensor:
    return cast_to_fp8(torch.randn(*shape) * scale, fp8_dtype)


def ragged_batch(lengths, prefixes, fp8_dtype, heads=64):
    """Requests back to back in one key buffer: request i has prefixes[i] cached keys then
    lengths[i] new tokens; each new token sees the prefix and the new tokens up to itself."""
    ks, ke, owner = [], [], []
    base = 0
    for i, (n_new, n_pre) in enumerate(zip(lengths, prefixes)):
        for t in range(n_new):
            ks.append(base)
            ke.append(base + n_pre + t + 1)
            owner.append(i)
        base += n_pre + n_new
    n_keys, t_rows = base, len(ks)
    q = rand_fp8((t_rows, heads, 128), fp8_dtype)
    k = rand_fp8((n_keys, 128), fp8_dtype)
    # later keys score higher: a non-causal or window-ignoring top-k would pick future keys
    k_scale = (torch.rand(n_keys) + 0.5) * (1 + torch.arange(n_keys) / 16)
    w = torch.rand(t_rows, heads) / heads + 1e-3
    return q, k, k_scale.float(), w.float(), torch.tensor(ks, dtype=I32), torch.tensor(ke, dtype=I32), owner


# ---------------------------------------------------------------------------------------------
# 1 + 3 + 4: ragged prefill (several requests, one with a cached prefix)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [16, 2048])
def test_ragged_prefill_indices_stay_in_request_and_causal(fp8_dtype, k):
    lengths, prefixes = [40, 37, 23], [0, 0, 50]
    q, kk, k_scale, w, ks, ke, owner = ragged_batch(lengths, prefixes, fp8_dtype)
    scores = dense_index_scores(q, kk, k_scale, w)

    logits = ops.indexer_logits(q, kk, k_scale, w, ks, ke, provider=REF)
    assert logits.shape == (q.shape[0], kk.shape[0]) and logits.dtype == torch.float32
    cols = torch.arange(kk.shape[0])
    inside = (cols >= ks.long().view(-1, 1)) & (cols < ke.long().view(-1, 1))
    assert torch.isneginf(logits[~inside]).all()
    assert torch.isfinite(logits[inside]).all()
    assert_close(logits[inside], scores[inside], dtype=torch.float32, rtol=1e-5, atol=1e-5 * float(scores.abs().max()))

    fused = ops.indexer_topk(q, kk, k_scale, w, ks, ke, k=k, provider=REF)
    unfused = ops.topk_indices(logits, ks, ke, k=k, provider=REF)
    assert fused.shape == (q.shape[0], k) and fused.dtype == I32
    assert_topk_equal(fused, unfused)
    for t in range(q.shape[0]):
        lo, hi = int(ks[t]), int(ke[t])
        own = hi - lo  # prefix + causal keys of this token
        for out in (fused, unfused):
            row = out[t].tolist()
            valid = [p for p in row if p >= 0]
            # request-local and causal: inside [0, own), never a key of another request or later
            assert all(0 <= p < own for p in valid), (t, owner[t], valid)
            assert len(valid) == min(k, own) and row[len(valid):] == [-1] * (k - len(valid))
        assert_selection_is_top(fused[t].tolist(), scores[t], lo, hi, tol=1e-4 * float(scores[t].abs().max()))
    # the cached-prefix request's first query sees its 50 prefix keys + itself
    first_c = lengths[0] + lengths[1]
    assert int(ke[first_c] - ks[first_c]) == 51
    if k >= 51:
        assert sorted(p for p in fused[first_c].tolist() if p >= 0) == list(range(51))


def test_ragged_prefill_tie_breaks_toward_lower_position(fp8_dtype):
    """Identical keys give identical logits: the k lowest request-local positions win."""
    lengths, prefixes = [30, 20], [0, 10]
    q, kk, k_scale, w, ks, ke, _ = ragged_batch(lengths, prefixes, fp8_dtype, heads=8)
    kk = kk[:1].expand_as(kk).contiguous()
    k_scale = torch.ones_like(k_scale)
    out = ops.indexer_topk(q, kk, k_scale, w, ks, ke, k=6, provider=REF)
    for t in range(q.shape[0]):
        n = int(ke[t] - ks[t])
        assert out[t].tolist() == list(range(min(6, n))) + [-1] * (6 - min(6, n))


# ---------------------------------------------------------------------------------------------
# context shorter than k: all candidates, and sparse == dense causal attention
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k,lengths,prefixes", [(8, [3, 5, 8, 12], [0, 0, 0, 2]), (2048, [40, 37, 9], [0, 0, 50])])
def test_short_context_selects_every_key_and_matches_dense_attention(fp8_dtype, k, lengths, prefixes):
    q, kk, k_scale, w, ks, ke, _ = ragged_batch(lengths, prefixes, fp8_dtype, heads=16)
    idx = ops.indexer_topk(q, kk, k_scale, w, ks, ke, k=k, provider=REF)
    assert idx.shape == (q.shape[0], k)
    short = [t for t in range(q.shape[0]) if int(ke[t] - ks[t]) <= k]
    assert short
    for t in short:
        n = int(ke[t] - ks[t])
        row = idx[t].tolist()
        assert sorted(row[:n]) == list(range(n)) and row[n:] == [-1] * (k - n)

    # sparse MLA over those indices (request-local -> rows of the key buffer) == dense causal;
    # every request, first and last token included, at a third of the rows to keep CPU time low
    short = sorted(set(short[::3]) | {short[0], short[-1]} | {t for t in short if t + 1 not in short})
    rows = torch.where(idx >= 0, idx + ks.view(-1, 1), idx)[short]
    kv = torch.randn(kk.shape[0], 1, 576).to(torch.bfloat16)
    qm = torch.randn(len(short), 16, 576).to(torch.bfloat16)
    out, mx, lse = ops.sparse_mla_prefill(qm, kv, rows.unsqueeze(1).contiguous(), sm_scale=SM_SCALE, provider=REF)
    want_out, want_lse = dense_causal_attention64(qm, kv[:, 0].double(), ks[short].tolist(), ke[short].tolist(),
                                                  SM_SCALE)
    assert_close(out, want_out, dtype=torch.bfloat16, name="out")
    assert_close(lse, want_lse, dtype=torch.float32, name="lse")
    assert torch.isfinite(mx).all()


@pytest.mark.parametrize("kv_dtype", ["bf16", "fp8"])
@pytest.mark.parametrize("k", [8, 2048])
def test_paged_decode_short_context_matches_dense_attention(fp8_dtype, kv_dtype, k):
    """Paged chain: indexer_topk_paged(return_slots=True) -> sparse_mla_decode over a latent
    cache that shares the (shuffled) page table; contexts shorter than k select everything,
    so the result is dense causal attention over keys 0 .. L - next_n + j."""
    page, next_n, heads = 8, 2, 16
    lens = [5, 17, 30]
    maxp = 5
    perm = torch.randperm(3 * maxp).to(I32)
    bt = perm.view(3, maxp).contiguous()
    icache = IndexerKCache(3 * maxp, page_size=page, fp8_dtype=fp8_dtype)
    mcache = MLAKVCache(3 * maxp, page_size=page, kv_dtype=kv_dtype, fp8_dtype=fp8_dtype)
    lat = [torch.randn(n, 576) for n in lens]
    for b, n in enumerate(lens):
        slots = positions_to_slots(torch.arange(n).view(1, -1), bt[b:b + 1], page)[0].long()
        icache.store(torch.randn(n, 128), slots, provider=REF)
        mcache.store(lat[b][:, :512].contiguous(), lat[b][:, 512:].contiguous(), slots, provider=REF)
    q_idx = rand_fp8((3, next_n, heads, 128), fp8_dtype)
    w = torch.rand(3 * next_n, heads)
    ctx = torch.tensor(lens, dtype=I32)
    slots = ops.indexer_topk_paged(q_idx, icache, w, ctx, bt, k=k, return_slots=True, provider=REF)
    assert slots.shape == (3 * next_n, k)
    qm = torch.randn(3, next_n, heads, 576).to(torch.bfloat16)
    out, lse = ops.sparse_mla_decode(qm, mcache, slots.view(3, next_n, k), sm_scale=SM_SCALE, provider=REF)
    assert out.shape == (3, next_n, heads, 512) and lse.shape == (3, heads, next_n)

    flat = mcache.buffer.view(-1, mcache.buffer.shape[-1])
    for b, n in enumerate(lens):
        # the latent each position holds, decoded from the raw cache bytes at its physical slot
        phys = positions_to_slots(torch.arange(n).view(1, -1), bt[b:b + 1], page)[0].long()
        kv64 = decode_mla_rows(flat[phys], fp8_dtype)
        if kv_dtype == "bf16":
            assert torch.equal(kv64, lat[b].to(torch.bfloat16).double())
        for j in range(next_n):
            last = n - next_n + j  # inclusive
            if k >= last + 1:
                assert sorted(slots[b * next_n + j, :last + 1].tolist()) == sorted(phys[:last + 1].tolist())
            sel = slots[b * next_n + j]
            sel = sel[sel >= 0]
            assert set(sel.tolist()) <= set(phys[:last + 1].tolist())
            if k < last + 1:
                continue  # not every key fits: not dense
            want_out, want_lse = dense_causal_attention64(qm[b, j:j + 1], kv64, [0], [last + 1], SM_SCALE)
            assert_close(out[b, j], want_out[0], dtype=torch.bfloat16, name="out")
            assert_close(lse[b, :, j], want_lse[0], dtype=torch.float32, name="lse")


# ---------------------------------------------------------------------------------------------
# 5/6: sparse MLA edge cases against float64 on the valid set
# ---------------------------------------------------------------------------------------------
def _edge_index_rows(n: int, topk: int = 64) -> torch.Tensor:
    """Index rows that stress invalid handling; n = number of valid rows/slots."""
    g = torch.Generator().manual_seed(1)
    r = lambda m: torch.randint(0, n, (m,), generator=g)  # noqa: E731
    rows = torch.stack([
        torch.cat([torch.full((20,), -1), r(topk - 20)]),  # leading 16+ invalid
        torch.cat([r(10), torch.full((21,), -1), r(topk - 31)]),  # -1 in the middle
        torch.cat([r(topk - 6), torch.tensor([n, n + 7, 2**31 - 1, n, -1, n + 1])]),  # >= N mixed in
        torch.full((topk,), -1),  # fully invalid
        torch.where(torch.arange(topk) % 2 == 0, torch.full((topk,), -1), torch.full((topk,), n + 3)),  # all invalid
        r(8).repeat(topk // 8),  # each index 8 times
        r(topk),  # all valid
        torch.cat([torch.full((topk - 1,), -1), r(1)]),  # one valid, last
    ])
    return rows.to(I32)


def _fill_mla(kv_format: str, num_pages: int, page: int, fp8_dtype):
    if kv_format == "bf16":
        cache = MLAKVCache(num_pages, page_size=page)
        cache.buffer.copy_(torch.randn(cache.buffer.shape))
    else:
        cache = MLAKVCache(num_pages, page_size=page, kv_dtype="fp8", fp8_dtype=fp8_dtype)
        n = num_pages * page
        c_kv = torch.randn(n, 512) * torch.tensor([0.05, 1.0, 8.0, 0.5]).repeat_interleave(128)
        cache.store(c_kv, torch.randn(n, 64), torch.arange(n), provider=REF)
    return cache


KV_FORMATS = [("bf16", FN), ("fp8", FN), ("fp8", FNUZ)]
KV_IDS = ["bf16", "fp8-e4m3fn", "fp8-e4m3fnuz"]


def _check_sparse(out, mx, lse, q, rows64, idx):
    want_out, want_mx, want_lse = sparse_attention64(q, rows64, idx, SM_SCALE)
    for t in (out, lse) + (() if mx is None else (mx,)):
        assert not torch.isnan(t.float()).any()
    dead = ~((idx >= 0) & (idx < rows64.shape[0])).any(dim=1)
    assert dead.any()
    assert (out[dead] == 0).all() and torch.isposinf(lse[dead]).all()
    assert_close(out, want_out, dtype=torch.bfloat16, name="out")
    assert_close(lse, want_lse, dtype=torch.float32, name="lse")
    if mx is not None:
        assert torch.isneginf(mx[dead]).all()
        assert_close(mx, want_mx, dtype=torch.float32, name="max_logits")


@pytest.mark.parametrize("kv_format,fp8_dtype", KV_FORMATS, ids=KV_IDS)
@pytest.mark.parametrize("heads", [16, 32, 64, 128])
def test_sparse_mla_prefill_edge_rows(kv_format, fp8_dtype, heads):
    cache = _fill_mla(kv_format, 6, 16, fp8_dtype)
    flat = cache.buffer.view(96, -1)
    idx = _edge_index_rows(96)
    q = torch.randn(idx.shape[0], heads, 576).to(torch.bfloat16)
    # a raw buffer [N, 1, W] (prefill's usual form) and the cache object give the same result
    raw = flat.view(96, 1, -1)
    out, mx, lse = ops.sparse_mla_prefill(q, raw, idx.unsqueeze(1).contiguous(), sm_scale=SM_SCALE,
                                          fp8_dtype=fp8_dtype, provider=REF)
    assert out.shape == (8, heads, 512) and out.dtype == torch.bfloat16
    assert mx.shape == lse.shape == (8, heads) and lse.dtype == mx.dtype == torch.float32
    _check_sparse(out, mx, lse, q, decode_mla_rows(flat, fp8_dtype), idx)
    out2, mx2, lse2 = ops.sparse_mla_prefill(q, cache, idx.unsqueeze(1).contiguous(), sm_scale=SM_SCALE, provider=REF)
    assert torch.equal(out2, out) and torch.equal(lse2, lse) and torch.equal(mx2, mx)


@pytest.mark.parametrize("kv_format,fp8_dtype", KV_FORMATS, ids=KV_IDS)
@pytest.mark.parametrize("heads,s_q", [(16, 1), (32, 2), (64, 3), (128, 4), (128, 1), (16, 4)])
def test_sparse_mla_decode_edge_rows(kv_format, fp8_dtype, heads, s_q):
    cache = _fill_mla(kv_format, 4, 32, fp8_dtype)
    n = 4 * 32
    rows = _edge_index_rows(n)
    b = -(-rows.shape[0] // s_q)
    idx = rows[torch.arange(b * s_q) % rows.shape[0]].view(b, s_q, -1).contiguous()
    q = torch.randn(b, s_q, heads, 576).to(torch.bfloat16)
    out, lse = ops.sparse_mla_decode(q, cache, idx, sm_scale=SM_SCALE, provider=REF)
    assert out.shape == (b, s_q, heads, 512) and lse.shape == (b, heads, s_q)
    lse_rows = lse.transpose(1, 2).reshape(b * s_q, heads)  # [B, H, s_q] as FlashMLA returns it
    _check_sparse(out.view(b * s_q, heads, 512), None, lse_rows, q.view(b * s_q, heads, 576),
                  decode_mla_rows(cache.buffer.view(n, -1), fp8_dtype), idx.view(b * s_q, -1))


@pytest.mark.parametrize("kv_format,fp8_dtype", KV_FORMATS, ids=KV_IDS)
def test_sparse_mla_ignores_garbage_in_unselected_slots(kv_format, fp8_dtype):
    """Slots no valid index points at (slot 0 included, the usual placeholder for masked
    entries) may hold NaN/inf garbage, e.g. a fresh cache page: results stay NaN-free."""
    cache = _fill_mla(kv_format, 2, 16, fp8_dtype)
    flat = cache.buffer.view(32, -1)
    garbage = [0, 1, 5, 31]
    if kv_format == "bf16":
        flat[garbage] = float("nan")
        flat[1] = float("inf")
    else:
        flat[garbage] = 0xFF  # e4m3fn NaN values, NaN fp32 scales, NaN bf16 rope
        flat[1, 512:528] = torch.tensor([float("inf")] * 4).view(torch.uint8)
    idx = _edge_index_rows(32)
    live = ~torch.isin(idx, torch.tensor(garbage, dtype=I32))
    idx = torch.where(live, idx, torch.full_like(idx, -1))  # never select a garbage slot
    q = torch.randn(idx.shape[0], 16, 576).to(torch.bfloat16)
    out, mx, lse = ops.sparse_mla_prefill(q, cache, idx.unsqueeze(1).contiguous(), sm_scale=SM_SCALE,
                                          provider=REF)
    rows64 = decode_mla_rows(flat, fp8_dtype)
    rows64[garbage] = 0.0  # never read by a correct kernel
    _check_sparse(out, mx, lse, q, rows64, idx)
    out_d, lse_d = ops.sparse_mla_decode(q.view(2, 4, 16, 576), cache, idx.view(2, 4, -1), sm_scale=SM_SCALE,
                                         provider=REF)
    assert torch.equal(out_d.view(8, 16, 512), out)
    assert torch.equal(lse_d.transpose(1, 2).reshape(8, 16), lse)


def test_sparse_mla_duplicates_count_per_occurrence():
    kv = torch.randn(4, 1, 576).to(torch.bfloat16)
    q = torch.randn(1, 2, 576).to(torch.bfloat16)
    twice = ops.sparse_mla_prefill(q, kv, torch.tensor([[[0, 0, 1, -1]]], dtype=I32), sm_scale=SM_SCALE,
                                   provider=REF)
    once = ops.sparse_mla_prefill(q, kv, torch.tensor([[[0, 1, -1, -1]]], dtype=I32), sm_scale=SM_SCALE,
                                  provider=REF)
    s = (q[0].double() @ kv[:2, 0].double().T) * SM_SCALE  # [H, 2]
    w = torch.softmax(s + torch.log(torch.tensor([2.0, 1.0], dtype=torch.float64)), dim=1)
    assert_close(twice[0][0], w @ kv[:2, 0, :512].double(), dtype=torch.bfloat16)
    assert_close(twice[2][0], torch.logsumexp(s, 1) + torch.log1p(torch.exp(s[:, 0] - torch.logsumexp(s, 1))),
                 dtype=torch.float32)
    assert not torch.equal(twice[0], once[0])


# ---------------------------------------------------------------------------------------------
# 2: paged indexer logits with MTP (next_n = 1..4), shuffled pages
# ---------------------------------------------------------------------------------------------
def _paged_indexer_case(fp8_dtype, next_n, lens, page=16, heads=32, spare_pages=2):
    maxp = max(-(-n // page) for n in lens) + 1
    num_pages = len(lens) * maxp + spare_pages
    perm = torch.randperm(num_pages).to(I32)
    bt = perm[: len(lens) * maxp].view(len(lens), maxp).contiguous()
    cache = IndexerKCache(num_pages, page_size=page, fp8_dtype=fp8_dtype)
    # fill every page (unused ones too) with other keys: reading past the context shows up
    cache.store(torch.randn(num_pages * page, 128) * 3, torch.arange(num_pages * page), provider=REF)
    keys = []
    for b, n in enumerate(lens):
        k = torch.randn(n, 128, dtype=torch.bfloat16)
        pos = torch.arange(n)
        slots = bt[b].long()[pos // page] * page + pos % page
        ops.store_indexer_k(k, cache, slots, provider=REF)
        kq, ksc = quantize_fp8(k, fp8_dtype=fp8_dtype, scale_fmt="ue8m0")  # unpaged copy
        keys.append((kq, ksc[:, 0]))
    q = rand_fp8((len(lens), next_n, heads, 128), fp8_dtype)
    w = torch.randn(len(lens) * next_n, heads) / heads  # negative head weights are allowed
    return cache, bt, keys, q, w


@pytest.mark.parametrize("next_n", [1, 2, 3, 4])
def test_paged_logits_mtp_visibility_and_values(fp8_dtype, next_n):
    lens = [37, 64, 90, next_n + 2]
    page = 16
    cache, bt, keys, q, w = _paged_indexer_case(fp8_dtype, next_n, lens, page)
    ctx = torch.tensor(lens, dtype=I32)
    logits = ops.indexer_logits_paged(q, cache, w, ctx, bt, provider=REF)
    assert logits.shape == (len(lens) * next_n, bt.shape[1] * page) and logits.dtype == torch.float32
    for b, n in enumerate(lens):
        kq, ksc = keys[b]
        dense = dense_index_scores(q[b], kq, ksc, w[b * next_n:(b + 1) * next_n])  # [next_n, n]
        for j in range(next_n):
            row = logits[b * next_n + j]
            last = n - next_n + j  # query j of n sees keys 0 .. L - n + j
            assert torch.isfinite(row[:last + 1]).all()
            assert torch.isneginf(row[last + 1:]).all()
            assert_close(row[:last + 1], dense[j, :last + 1], dtype=torch.float32, rtol=1e-5,
                         atol=1e-5 * float(dense.abs().max()))


@pytest.mark.parametrize("next_n", [1, 3])
@pytest.mark.parametrize("k", [16, 2048])
def test_paged_topk_positions_and_slots(fp8_dtype, next_n, k):
    lens = [37, 64, 90, next_n + 2]
    page = 16
    cache, bt, keys, q, w = _paged_indexer_case(fp8_dtype, next_n, lens, page)
    ctx = torch.tensor(lens, dtype=I32)
    logits = ops.indexer_logits_paged(q, cache, w, ctx, bt, provider=REF)
    pos = ops.indexer_topk_paged(q, cache, w, ctx, bt, k=k, provider=REF)
    slots = ops.indexer_topk_paged(q, cache, w, ctx, bt, k=k, return_slots=True, provider=REF)
    assert pos.shape == slots.shape == (len(lens) * next_n, k) and pos.dtype == slots.dtype == I32
    ends = torch.tensor([n - next_n + j + 1 for n in lens for j in range(next_n)], dtype=I32)
    unfused = ops.topk_indices(logits, torch.zeros_like(ends), ends, k=k, provider=REF)
    assert_topk_equal(pos, unfused)
    bt_rows = bt.repeat_interleave(next_n, dim=0)
    assert torch.equal(slots, positions_to_slots(pos, bt_rows, page))
    for r in range(pos.shape[0]):
        b, j = divmod(r, next_n)
        n_vis = lens[b] - next_n + j + 1
        row = pos[r].tolist()
        valid = [p for p in row if p >= 0]
        assert len(valid) == min(k, n_vis) and all(0 <= p < n_vis for p in valid)
        for p, s in zip(row, slots[r].tolist()):  # physical slot of each chosen position
            assert s == (-1 if p < 0 else int(bt[b, p // page]) * page + p % page)
        kq, ksc = keys[b]
        dense = dense_index_scores(q[b, j:j + 1], kq, ksc, w[r:r + 1])[0]
        assert_selection_is_top(row, dense, 0, n_vis, tol=1e-4 * float(dense.abs().max()))


def test_paged_tie_breaks_toward_lower_position():
    page, next_n = 4, 2
    cache = IndexerKCache(8, page_size=page)
    one = torch.randn(1, 128)
    bt = torch.tensor([[7, 1, 5, 0], [2, 6, 3, 4]], dtype=I32)
    ctx = torch.tensor([13, 9], dtype=I32)
    for b in range(2):
        p = torch.arange(int(ctx[b]))
        cache.store(one.expand(len(p), 128).contiguous(), bt[b].long()[p // page] * page + p % page, provider=REF)
    q = rand_fp8((2, next_n, 4, 128), FN)
    out = ops.indexer_topk_paged(q, cache, torch.rand(4, 4), ctx, bt, k=5, provider=REF)
    assert out.tolist() == [[0, 1, 2, 3, 4]] * 4


def test_paged_context_longer_than_the_page_table_is_clamped():
    """context_lens beyond the block table's capacity: only existing keys are scored, and the
    causal bound still comes from the real length (keys 0 .. L - next_n + j)."""
    page, next_n = 4, 3
    cache = IndexerKCache(4, page_size=page)
    cache.store(torch.randn(16, 128), torch.arange(16), provider=REF)
    bt = torch.tensor([[3, 1]], dtype=I32)  # capacity 8 keys
    q = rand_fp8((1, next_n, 4, 128), FN)
    w = torch.rand(next_n, 4)
    for length, visible in [(9, [7, 8, 8]), (100, [8, 8, 8]), (8, [6, 7, 8])]:
        out = ops.indexer_logits_paged(q, cache, w, torch.tensor([length], dtype=I32), bt, provider=REF)
        assert torch.isfinite(out).sum(1).tolist() == visible


# ---------------------------------------------------------------------------------------------
# 3: top-k exactness
# ---------------------------------------------------------------------------------------------
def _check_topk(logits, starts, ends, k):
    got = ops.topk_indices(logits, starts, ends, k=k, provider=REF)
    assert got.shape == (logits.shape[0], k) and got.dtype == I32
    for r in range(logits.shape[0]):
        want = sorted_topk(logits[r].double().tolist(), int(starts[r]), int(ends[r]), k, int(starts[r]))
        assert got[r].tolist() == want, (r, logits[r].tolist())
    return got


def test_topk_random_rows_match_a_full_sort():
    logits = torch.randn(6, 300)
    _check_topk(logits, torch.zeros(6, dtype=I32), torch.full((6,), 300, dtype=I32), 64)
    _check_topk(logits, torch.tensor([0, 10, 100, 299, 5, 50], dtype=I32),
                torch.tensor([300, 200, 101, 300, 5, 80], dtype=I32), 32)


def test_topk_ties_toward_lower_column():
    many = torch.randint(0, 4, (5, 200)).float()
    got = _check_topk(many, torch.zeros(5, dtype=I32), torch.full((5,), 200, dtype=I32), 70)
    assert (got >= 0).all()
    flat = torch.full((3, 100), 1.25)
    got = _check_topk(flat, torch.tensor([0, 7, 90], dtype=I32), torch.tensor([100, 50, 100], dtype=I32), 16)
    assert got[0].tolist() == list(range(16)) and got[1].tolist() == list(range(16))
    assert got[2].tolist() == list(range(10)) + [-1] * 6


def test_topk_nan_and_infinities():
    x = torch.tensor([[1.0, float("nan"), -INF, INF, 2.0, float("nan"), INF, -INF, 0.5, -1e30]])
    got = _check_topk(x, torch.zeros(1, dtype=I32), torch.full((1,), 10, dtype=I32), 8)
    # +inf first (lower column first), NaN and -inf never chosen
    assert got[0].tolist() == [3, 6, 4, 0, 8, 9, -1, -1]
    only_bad = torch.tensor([[float("nan"), -INF, float("nan")]])
    assert _check_topk(only_bad, torch.zeros(1, dtype=I32), torch.full((1,), 3, dtype=I32), 4)[0].tolist() == [-1] * 4


def test_topk_windows_and_k_larger_than_columns():
    x = torch.randn(5, 12)
    starts = torch.tensor([0, 3, 6, 12, 15], dtype=I32)
    ends = torch.tensor([12, 3, 40, 12, 20], dtype=I32)  # full, empty, clamped end, empty at C, past C
    got = _check_topk(x, starts, ends, 20)
    assert (got[1] == -1).all() and (got[3] == -1).all() and (got[4] == -1).all()
    assert sorted(got[2][:6].tolist()) == list(range(6))  # relative to the start
    assert (got[2][6:] == -1).all()
    _check_topk(torch.randn(3, 0), torch.zeros(3, dtype=I32), torch.zeros(3, dtype=I32), 4)


VALUES = st.sampled_from([-INF, -2.0, -0.5, 0.0, 0.5, 1.0, 3.0, INF, math.nan]) | st.floats(
    -1e6, 1e6, allow_nan=False, width=32)


@given(data=st.data(), rows=st.integers(1, 4), cols=st.integers(1, 40), k=st.integers(1, 48))
def test_topk_property(data, rows, cols, k):
    vals = data.draw(st.lists(st.lists(VALUES, min_size=cols, max_size=cols), min_size=rows, max_size=rows))
    starts = data.draw(st.lists(st.integers(0, cols + 2), min_size=rows, max_size=rows))
    ends = data.draw(st.lists(st.integers(0, cols + 3), min_size=rows, max_size=rows))
    got = _check_topk(torch.tensor(vals, dtype=torch.float32), torch.tensor(starts, dtype=I32),
                      torch.tensor(ends, dtype=I32), k)
    assert_topk_equal(got, got)  # a -1-free prefix, no duplicates


# ---------------------------------------------------------------------------------------------
# chunking inside the reference never changes a result
# ---------------------------------------------------------------------------------------------
def test_row_chunking_gives_identical_results(monkeypatch, fp8_dtype):
    q, kk, k_scale, w, ks, ke, _ = ragged_batch([40, 37, 23], [0, 0, 50], fp8_dtype, heads=8)
    logits = ops.indexer_logits(q, kk, k_scale, w, ks, ke, provider=REF)
    top = ops.indexer_topk(q, kk, k_scale, w, ks, ke, k=16, provider=REF)
    tk = ops.topk_indices(logits, ks, ke, k=16, provider=REF)
    kv = torch.randn(kk.shape[0], 1, 576).to(torch.bfloat16)
    qm = torch.randn(q.shape[0], 4, 576).to(torch.bfloat16)
    idx = torch.where(top >= 0, top + ks.view(-1, 1), top).unsqueeze(1).contiguous()
    att = ops.sparse_mla_prefill(qm, kv, idx, sm_scale=SM_SCALE, provider=REF)

    monkeypatch.setattr(reference, "_BUDGET", 5000)  # a few rows per chunk
    logits2 = ops.indexer_logits(q, kk, k_scale, w, ks, ke, provider=REF)
    assert torch.equal(torch.isneginf(logits2), torch.isneginf(logits))
    assert_close(logits2, logits, rtol=1e-6, atol=1e-6 * float(logits[torch.isfinite(logits)].abs().max()))
    assert_topk_equal(ops.indexer_topk(q, kk, k_scale, w, ks, ke, k=16, provider=REF), top)
    assert torch.equal(ops.topk_indices(logits, ks, ke, k=16, provider=REF), tk)
    att2 = ops.sparse_mla_prefill(qm, kv, idx, sm_scale=SM_SCALE, provider=REF)
    for a, b in zip(att2, att):
        assert_close(a, b, dtype=torch.float32 if a.dtype == torch.float32 else torch.bfloat16)


@pytest.mark.parametrize("provider", ["reference", "triton"])
def test_sparse_mla_empty_batches_and_empty_cache(provider):
    """B = 0, s_q = 0, T = 0 give empty outputs of the right shapes; an empty cache makes every
    index invalid (out 0, lse +inf, max_logits -inf)."""
    import os

    if provider == "triton" and not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("triton needs a GPU or TRITON_INTERPRET=1")
    kv = torch.randn(8, 1, 576).bfloat16()
    for b, s_q in ((0, 1), (2, 0)):
        q = torch.randn(b, s_q, 16, 576).bfloat16()
        out, lse = ops.sparse_mla_decode(q, kv, torch.zeros(b, s_q, 4, dtype=torch.int32), sm_scale=0.1,
                                         provider=provider)
        assert out.shape == (b, s_q, 16, 512) and lse.shape == (b, 16, s_q)
    out, ml, lse = ops.sparse_mla_prefill(torch.randn(0, 16, 576).bfloat16(), kv,
                                          torch.zeros(0, 1, 4, dtype=torch.int32), sm_scale=0.1, provider=provider)
    assert out.shape == (0, 16, 512) and ml.shape == lse.shape == (0, 16)
    q = torch.randn(3, 16, 576).bfloat16()
    out, ml, lse = ops.sparse_mla_prefill(q, kv[:0], torch.full((3, 1, 4), -1, dtype=torch.int32), sm_scale=0.1,
                                          provider=provider)
    assert torch.equal(out.float(), torch.zeros_like(out.float()))
    assert bool(torch.isposinf(lse).all()) and bool(torch.isneginf(ml).all())


@pytest.mark.parametrize("provider", ["reference", "triton"])
def test_paged_indexer_block_table_entries_outside_the_cache(provider):
    """Block-table entries < 0 or >= num_pages mark their keys absent: -inf logits, never
    selected, never read (no wrap-around to the last page, no out-of-bounds read)."""
    import os

    if provider == "triton" and not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"):
        pytest.skip("triton needs a GPU or TRITON_INTERPRET=1")
    torch.manual_seed(11)
    from rocm_dsa.cache import IndexerKCache

    cache = IndexerKCache(4, page_size=4)
    cache.store(torch.randn(16, 128), torch.arange(16, dtype=torch.int64), provider="reference")
    q, _ = ops.quantize_fp8(torch.randn(1, 1, 64, 128))
    w = torch.rand(1, 64)
    bt = torch.tensor([[1, 9, -1, 2]], dtype=torch.int32)
    ctx = torch.tensor([16], dtype=torch.int32)
    logits = ops.indexer_logits_paged(q, cache, w, ctx, bt, provider=provider)
    assert bool(torch.isneginf(logits[0, 4:12]).all())
    assert bool(torch.isfinite(logits[0, :4]).all()) and bool(torch.isfinite(logits[0, 12:16]).all())
    ref = ops.indexer_logits_paged(q, cache, w, ctx, bt.clamp(0, 3).masked_fill((bt < 0) | (bt > 3), 0),
                                   provider="reference")
    torch.testing.assert_close(logits[0, :4], ref[0, :4], rtol=2e-3, atol=1e-3)
    top = ops.indexer_topk_paged(q, cache, w, ctx, bt, k=16, return_slots=True, provider=provider)
    valid = top[0][top[0] >= 0]
    assert valid.numel() == 8 and bool(((valid // 4 == 1) | (valid // 4 == 2)).all())
