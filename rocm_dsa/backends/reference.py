"""Reference provider: the definition of every op, in PyTorch fp32 with explicit FP8 round trips.

Runs on any device torch supports (CPU included). Work is chunked over query rows and limited
to each chunk's key window so that CPU runs at DeepSeek-V3.2 widths stay within memory; it
favours clarity over speed. Semantics and sources are in :mod:`rocm_dsa.ops`.
"""

from __future__ import annotations

import torch

from ..cache import indexer_cache_gather, indexer_cache_views, mla_cache_rows, pack_mla_fp8, unpack_mla_fp8
from ..fp8 import quantize_fp8
from . import OPS, Provider

_BUDGET = 1 << 25  # fp32 elements of the largest intermediate per chunk (128 MiB)


def _row_chunks(rows: int, per_row: int):
    step = max(1, _BUDGET // max(1, per_row))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


# ---------------------------------------------------------------------------------------------
# building blocks (also used by tests through the public ops only)
# ---------------------------------------------------------------------------------------------
def _scores(q: torch.Tensor, k: torch.Tensor, k_scale: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """q [R, H, D] f32, k [C, D] f32, k_scale [C], weights [R, H] -> [R, C] f32."""
    s = torch.einsum("rhd,cd->rhc", q, k).clamp_min_(0)  # ReLU(q . k), [R, H, C]
    return torch.einsum("rhc,rh->rc", s, weights) * k_scale.unsqueeze(0)


def _topk_rows(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int) -> torch.Tensor:
    """Exact top-k of rows x [R, C] inside per-row column windows [lo, hi) -> [R, k] int64 columns.

    Ties to the lower column; -1 after the valid prefix; NaN and -inf are never candidates.
    """
    r, c = x.shape
    cols = torch.arange(c, device=x.device)
    cand = (cols >= lo.unsqueeze(1)) & (cols < hi.unsqueeze(1)) & ~torch.isnan(x) & (x != float("-inf"))
    xm = torch.where(cand, x, torch.full_like(x, float("-inf")))
    if c == 0:
        return torch.full((r, k), -1, dtype=torch.long, device=x.device)
    kk = min(k, c)
    kth = torch.topk(xm, kk, dim=1).values[:, -1]
    if k > c:
        kth = torch.full_like(kth, float("-inf"))
    gt = cand & (xm > kth.unsqueeze(1))
    eq = cand & (xm == kth.unsqueeze(1))
    need = (k - gt.sum(1)).unsqueeze(1)
    sel = gt | (eq & (torch.cumsum(eq.to(torch.int64), 1) <= need))
    # order the selected set: value descending, then column ascending (stable sort over columns)
    keyed = torch.where(sel, xm, torch.full_like(xm, float("-inf")))
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices[:, :kk]
    valid = torch.gather(sel, 1, order)
    out = torch.where(valid, order, torch.full_like(order, -1))
    if k > kk:
        out = torch.cat([out, torch.full((r, k - kk), -1, dtype=out.dtype, device=out.device)], 1)
    return out


def _ragged_topk_or_logits(q_fp8, k_fp8, k_scale, weights, ks, ke, k: int | None) -> torch.Tensor:
    t, h, _ = q_fp8.shape
    n = k_fp8.shape[0]
    dev = q_fp8.device
    ks_l, ke_l = ks.long().clamp(0, n), ke.long().clamp(0, n)
    out = (torch.full((t, n), float("-inf"), dtype=torch.float32, device=dev) if k is None
           else torch.full((t, k), -1, dtype=torch.int32, device=dev))
    kf = k_fp8.float()
    for r0, r1 in _row_chunks(t, h * max(n, 1)):
        lo, hi = ks_l[r0:r1], ke_l[r0:r1]
        c0, c1 = int(lo.min()), int(hi.max())
        if c1 <= c0:
            continue
        logits = _scores(q_fp8[r0:r1].float(), kf[c0:c1], k_scale[c0:c1].float(), weights[r0:r1])
        cols = torch.arange(c0, c1, device=dev)
        inside = (cols >= lo.unsqueeze(1)) & (cols < hi.unsqueeze(1))
        logits = torch.where(inside, logits, torch.full_like(logits, float("-inf")))
        if k is None:
            out[r0:r1, c0:c1] = logits
        else:
            top = _topk_rows(logits, lo - c0, hi - c0, k)
            rel = torch.where(top >= 0, top + c0 - lo.unsqueeze(1), top)
            out[r0:r1] = rel.to(torch.int32)
    return out


def _paged_topk_or_logits(q_fp8, buf, weights, context_lens, block_table, k: int | None,
                          return_slots: bool) -> torch.Tensor:
    b, next_n, h, d = q_fp8.shape
    page_size = buf.shape[1] // (d + 4)
    width = block_table.shape[1] * page_size
    dev = q_fp8.device
    out = (torch.full((b * next_n, width), float("-inf"), dtype=torch.float32, device=dev) if k is None
           else torch.full((b * next_n, k), -1, dtype=torch.int32, device=dev))
    lens = context_lens.tolist()
    for i in range(b):
        length = min(int(lens[i]), width)  # keys that exist in the page table
        if length <= 0:
            continue
        pos = torch.arange(length, device=dev)
        pages = block_table[i].long()[pos // page_size]
        present = (pages >= 0) & (pages < buf.shape[0])  # entries outside the cache: absent keys
        slots = torch.where(present, pages, torch.zeros_like(pages)) * page_size + pos % page_size
        kf, ksc = indexer_cache_gather(buf, slots, q_fp8.dtype, d)
        rows = slice(i * next_n, (i + 1) * next_n)
        logits = _scores(q_fp8[i].float(), kf.float(), ksc, weights[rows])  # [next_n, L]
        # last visible key of query j (inclusive), from the request's real length
        last = (int(lens[i]) - next_n + torch.arange(next_n, device=dev)).clamp_max(length - 1).unsqueeze(1)
        logits = torch.where((pos.unsqueeze(0) <= last) & present, logits, torch.full_like(logits, float("-inf")))
        if k is None:
            out[rows, :length] = logits
            continue
        zeros = torch.zeros(next_n, dtype=torch.long, device=dev)
        top = _topk_rows(logits, zeros, (last.squeeze(1) + 1).clamp_min(0), k)
        if return_slots:
            top = torch.where(top >= 0, slots[top.clamp_min(0)], top)
        out[rows] = top.to(torch.int32)
    return out


def _sparse_attention(q: torch.Tensor, rows: torch.Tensor, indices: torch.Tensor, sm_scale: float,
                      d_v: int, fp8_dtype: torch.dtype):
    """q [R, H, 576] bf16, rows [N, W] cache rows, indices [R, topk] -> out, max_logits, lse [R, H]."""
    r, h, _ = q.shape
    n, topk = rows.shape[0], indices.shape[1]
    dev = q.device
    out = torch.empty(r, h, d_v, dtype=torch.bfloat16, device=dev)
    max_logits = torch.empty(r, h, dtype=torch.float32, device=dev)
    lse = torch.empty(r, h, dtype=torch.float32, device=dev)
    if n == 0:  # an empty cache: every index is invalid
        return out.zero_(), max_logits.fill_(float("-inf")), lse.fill_(float("inf"))
    for r0, r1 in _row_chunks(r, topk * max(h, rows.shape[1])):
        idx = indices[r0:r1].long()
        valid = (idx >= 0) & (idx < n)
        g = rows[torch.where(valid, idx, torch.zeros_like(idx))]  # [rc, topk, W]
        kv = g.float() if rows.dtype == torch.bfloat16 else unpack_mla_fp8(g, fp8_dtype)
        # masked rows must not leak NaN/inf from whatever the placeholder slot holds
        kv = torch.where(valid.unsqueeze(-1), kv, torch.zeros_like(kv))
        s = torch.einsum("rhd,rkd->rhk", q[r0:r1].float(), kv) * sm_scale
        s = torch.where(valid.unsqueeze(1), s, torch.full_like(s, float("-inf")))
        m = s.amax(dim=-1)
        l = torch.logsumexp(s, dim=-1)
        l = torch.where(torch.isneginf(l), torch.full_like(l, float("inf")), l)
        p = torch.exp(s - l.unsqueeze(-1))
        out[r0:r1] = torch.einsum("rhk,rkd->rhd", p, kv[..., :d_v]).to(torch.bfloat16)
        max_logits[r0:r1] = m
        lse[r0:r1] = l
    return out, max_logits, lse


class ReferenceProvider(Provider):
    name = "reference"
    ops = frozenset(OPS)
    description = "PyTorch fp32 definition of every op (any device; slow)"

    def indexer_logits(self, q_fp8, k_fp8, k_scale, weights, ks, ke):
        return _ragged_topk_or_logits(q_fp8, k_fp8, k_scale, weights, ks, ke, None)

    def indexer_topk(self, q_fp8, k_fp8, k_scale, weights, ks, ke, k):
        return _ragged_topk_or_logits(q_fp8, k_fp8, k_scale, weights, ks, ke, k)

    def indexer_logits_paged(self, q_fp8, buf, weights, context_lens, block_table):
        return _paged_topk_or_logits(q_fp8, buf, weights, context_lens, block_table, None, False)

    def indexer_topk_paged(self, q_fp8, buf, weights, context_lens, block_table, k, return_slots):
        return _paged_topk_or_logits(q_fp8, buf, weights, context_lens, block_table, k, return_slots)

    def topk_indices(self, logits, starts, ends, k):
        r, c = logits.shape
        out = torch.empty(r, k, dtype=torch.int32, device=logits.device)
        lo_all, hi_all = starts.long().clamp(0, c), ends.long().clamp(0, c)
        for r0, r1 in _row_chunks(r, 4 * max(c, 1)):
            top = _topk_rows(logits[r0:r1], lo_all[r0:r1], hi_all[r0:r1], k)
            out[r0:r1] = torch.where(top >= 0, top - starts[r0:r1].long().unsqueeze(1), top).to(torch.int32)
        return out

    def sparse_mla_prefill(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        return _sparse_attention(q, mla_cache_rows(buf), indices[:, 0], sm_scale, d_v, fp8_dtype)

    def sparse_mla_decode(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        b, s_q, h, _ = q.shape
        out, _, lse = _sparse_attention(q.reshape(b * s_q, h, -1), mla_cache_rows(buf),
                                        indices.reshape(b * s_q, -1), sm_scale, d_v, fp8_dtype)
        return out.reshape(b, s_q, h, d_v), lse.reshape(b, s_q, h).transpose(1, 2).contiguous()

    def store_indexer_k(self, k, buf, slot_mapping, fp8_dtype, scale_fmt):
        values, scales = indexer_cache_views(buf)
        page_size = values.shape[1]
        keep = (slot_mapping >= 0) & (slot_mapping < values.shape[0] * page_size)
        slots = slot_mapping[keep].long()
        q, scale = quantize_fp8(k[keep], block_size=128, fp8_dtype=fp8_dtype, scale_fmt=scale_fmt)
        page, off = slots // page_size, slots % page_size
        values[page, off] = q.view(torch.uint8)
        scales[page, off] = scale[:, 0]

    def store_mla_kv(self, c_kv, k_rope, buf, slot_mapping, fp8_dtype):
        rows = mla_cache_rows(buf)
        keep = (slot_mapping >= 0) & (slot_mapping < rows.shape[0])
        slots = slot_mapping[keep].long()
        if rows.dtype == torch.bfloat16:
            rows[slots] = torch.cat([c_kv[keep].float(), k_rope[keep].float()], dim=-1).to(torch.bfloat16)
        else:
            rows[slots] = pack_mla_fp8(c_kv[keep].float(), k_rope[keep].float(), fp8_dtype)


PROVIDER = ReferenceProvider()
