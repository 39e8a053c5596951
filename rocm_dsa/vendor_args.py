"""Argument translation between the rocm-dsa op contracts and vendor kernels (FlashMLA,
DeepGEMM, aiter).

Every function here is pure PyTorch, runs on any device (the CPU included) and does no vendor
call, so CPU tests check each one against the reference provider: e.g. pad heads, run the
reference on the padded inputs, unpad, and compare with the unpadded reference.

What each vendor needs, and which function provides it:

* Head counts. FlashMLA's sparse kernels take H in {64, 128}; aiter's MLA decode H in {16, 128}.
  :func:`head_plan` picks the padded count (and splits counts above the largest size into
  groups); :func:`pad_heads` / :func:`unpad_heads` add and drop zero query heads. Heads are
  independent in attention, so padding never changes the real heads' results; it costs
  ``padded / real`` times the query-side work (:func:`head_padding_overhead`): 4x for TP 8
  (H = 16) on FlashMLA, 2x for TP 4 (H = 32). The KV rows are still read once per query row.
* Invalid indices. The contract calls -1 and anything >= the number of KV rows invalid, anywhere
  in a row. FlashMLA's decode kernel checks only ``== -1`` (it does no bound check), so
  :func:`normalize_indices` rewrites every negative or out-of-range entry to exactly -1.
* Top-k width. FlashMLA needs topk a multiple of its tile (64 on SM90, 128 elsewhere);
  :func:`pad_topk` appends -1 columns (invalid entries cost a masked tile, nothing else).
* Log-sum-exp. The contract returns natural-log LSE with +inf (and max_logits -inf, out 0) for
  a row with no valid index. :func:`normalize_lse` converts base-2 statistics (FlashMLA's
  ``return_log2_lse=True``) and enforces that convention; :func:`zero_empty_rows` zeroes the
  output of such rows.
* FP8 encodings. gfx942 matrix units take e4m3fnuz only. :func:`fnuz_indexer_operands` converts
  OCP operands with :func:`rocm_dsa.fp8.ocp_to_fnuz` and doubles k_scale and the head weights
  (ReLU is positively homogeneous), which leaves every logit unchanged.
* Index compaction (aiter MLA at page size 1): :func:`compact_indices` turns [R, topk] rows with
  invalid entries into flat per-row KV index lists plus an indptr.
* Key layouts. DeepGEMM's paged indexer cache is byte-identical to ours
  (:func:`deepgemm_indexer_cache`, a view). aiter's paged indexer kernel reads per-token
  records (128 FP8 bytes then the fp32 scale) at page size 1: :func:`aiter_indexer_records`
  gathers the visible keys of each request into that layout (one gather of 132 B per key).
* Windows. :func:`paged_row_lengths` gives each decode/MTP row's number of visible keys;
  :func:`mask_columns` writes -inf outside per-row windows; :func:`expand_compressed_logits`
  turns DeepGEMM's window-relative ("compressed") logits back into [T, N];
  :func:`aligned_starts` moves window starts down to aiter's key tile (its ragged logits kernel
  mis-addresses tiles that start unaligned, see the function).
* Top-k results. :func:`finish_topk` turns any vendor's candidate columns into the contract's
  result: exact set of finite/+inf entries, value-descending then column-ascending order,
  -1 tail, window-relative positions.

Semantics sources: FlashMLA ``flash_mla_interface.py`` and ``tests/ref.py`` (sparse prefill and
decode), DeepGEMM ``tests/test_attention.py`` (``fp8_fp4_mqa_logits`` with ``max_seqlen_k``,
``fp8_fp4_paged_mqa_logits`` with per-token context lengths), aiter ``ops/triton/fp8_mqa_logits.py``,
``ops/triton/pa_mqa_logits.py``, ``csrc/kernels/topk_per_row_kernels.cu`` and ``mla.py``.
"""

from __future__ import annotations

import math

import torch

from .cache import indexer_cache_views
from .fp8 import ocp_to_fnuz

__all__ = [
    "head_plan",
    "head_padding_overhead",
    "pad_heads",
    "unpad_heads",
    "normalize_indices",
    "pad_topk",
    "round_up",
    "normalize_lse",
    "zero_empty_rows",
    "fnuz_indexer_operands",
    "fnuz_indexer_cache",
    "compact_indices",
    "paged_row_lengths",
    "mask_columns",
    "expand_compressed_logits",
    "aligned_starts",
    "deepgemm_indexer_cache",
    "aiter_indexer_records",
    "request_token_slots",
    "aiter_paged_indexer_inputs",
    "mla_paged_view",
    "finish_topk",
    "describe_error",
    "LN2",
]

#: natural log of 2: ``ln(x) = log2(x) * LN2``
LN2 = math.log(2.0)

_ROW_BUDGET = 1 << 24  # elements of the largest index intermediate per chunk


def round_up(x: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``x`` (x >= 0, multiple >= 1)."""
    if multiple < 1:
        raise ValueError(f"multiple: expected >= 1, got {multiple}")
    return -(-int(x) // multiple) * multiple


# ---------------------------------------------------------------------------------------------
# heads
# ---------------------------------------------------------------------------------------------
def head_plan(heads: int, sizes: tuple[int, ...]) -> tuple[int, int]:
    """How to run ``heads`` query heads on a kernel that accepts only head counts in ``sizes``.

    Returns ``(per_call, calls)``: pad the heads to ``per_call * calls`` and run ``calls`` launches
    of ``per_call`` heads each. ``heads <= max(sizes)``: one call with the smallest size that
    fits (16 -> 64 on FlashMLA). Larger counts: groups of ``max(sizes)``, the last one padded.

    Raises ValueError for heads < 1 or an empty ``sizes``.
    """
    if heads < 1:
        raise ValueError(f"heads: expected >= 1, got {heads}")
    if not sizes:
        raise ValueError("sizes: expected at least one supported head count")
    srt = sorted(sizes)
    for s in srt:
        if heads <= s:
            return s, 1
    return srt[-1], -(-heads // srt[-1])


def head_padding_overhead(heads: int, sizes: tuple[int, ...]) -> float:
    """Query-side work multiplier of :func:`head_plan`: padded heads / real heads (1.0 = none)."""
    per_call, calls = head_plan(heads, sizes)
    return per_call * calls / heads


def pad_heads(x: torch.Tensor, total: int, dim: int = -2) -> torch.Tensor:
    """Zero-pad ``x`` along its head dimension ``dim`` to ``total`` heads (contiguous result).

    Returns ``x`` itself when it already has ``total`` heads. Raises ValueError when it has more.
    """
    h = x.shape[dim]
    if h == total:
        return x
    if h > total:
        raise ValueError(f"x: has {h} heads along dim {dim}, more than total={total}")
    shape = list(x.shape)
    shape[dim] = total
    out = x.new_zeros(shape)
    out.narrow(dim, 0, h).copy_(x)
    return out


def unpad_heads(x: torch.Tensor, heads: int, dim: int = -2) -> torch.Tensor:
    """The first ``heads`` heads of ``x`` along ``dim``, contiguous (``x`` itself if nothing to drop)."""
    if x.shape[dim] == heads:
        return x
    return x.narrow(dim, 0, heads).contiguous()


# ---------------------------------------------------------------------------------------------
# indices
# ---------------------------------------------------------------------------------------------
def normalize_indices(indices: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Rewrite every invalid index to exactly -1.

    Args:
        indices: [..., topk] int32/int64 KV rows or slots.
        num_rows: number of addressable rows (slots) of the KV buffer.
    Returns:
        int32 tensor of the same shape: entries < 0 or >= ``num_rows`` become -1, others keep
        their value. (FlashMLA's decode kernel treats only -1 as invalid and would address any
        other out-of-range value.)
    """
    idx = indices.to(torch.int32)
    bad = (idx < 0) | (idx >= num_rows)
    return torch.where(bad, torch.full_like(idx, -1), idx)


def pad_topk(indices: torch.Tensor, multiple: int) -> torch.Tensor:
    """Append -1 columns so the last dim is a multiple of ``multiple`` (the input if it already is)."""
    topk = indices.shape[-1]
    want = round_up(topk, multiple)
    if want == topk:
        return indices
    pad = indices.new_full((*indices.shape[:-1], want - topk), -1)
    return torch.cat([indices, pad], dim=-1)


def compact_indices(indices: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten [R, topk] index rows into per-row KV index lists without the invalid entries.

    Args:
        indices: [R, topk] int rows; < 0 or >= ``num_rows`` invalid, anywhere in a row.
        num_rows: KV rows addressable.
    Returns:
        (kv_indices [M] int32 valid entries in row order, kv_indptr [R + 1] int32 start of each
        row's list, counts [R] int32). Duplicates are kept (each occurrence counts, as in the
        contract). This is aiter's ``mla_decode_fwd`` input at page size 1 (one "request" per
        query row; ``kv_last_page_lens`` = 1). Synchronizes with the device for M.
    """
    idx = indices.reshape(indices.shape[0], -1).long()
    valid = (idx >= 0) & (idx < num_rows)
    counts = valid.sum(1).to(torch.int32)
    indptr = torch.zeros(idx.shape[0] + 1, dtype=torch.int32, device=idx.device)
    indptr[1:] = torch.cumsum(counts, 0)
    return idx[valid].to(torch.int32), indptr, counts


# ---------------------------------------------------------------------------------------------
# attention statistics
# ---------------------------------------------------------------------------------------------
def normalize_lse(lse: torch.Tensor, max_logits: torch.Tensor | None = None, *,
                  log2: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Bring vendor attention statistics to the contract's conventions (elementwise, any shape).

    Args:
        lse: log-sum-exp of scaled scores, one entry per (query, head).
        max_logits: optional max of scaled scores, same shape.
        log2: the statistics are base 2 (scores multiplied by log2(e), FlashMLA's
            ``return_log2_lse=True``): convert to natural log (multiply by ln 2).
    Returns:
        (lse, max_logits) in natural log; an entry whose lse is not finite (-inf, NaN or +inf:
        a row with no valid index) becomes lse = +inf and max_logits = -inf (FlashMLA
        ``tests/ref.py``: "lonely" queries).
    """
    if log2:
        lse = lse * LN2
        if max_logits is not None:
            max_logits = max_logits * LN2
    empty = ~torch.isfinite(lse)
    lse = torch.where(empty, torch.full_like(lse, float("inf")), lse)
    if max_logits is not None:
        max_logits = torch.where(empty, torch.full_like(max_logits, float("-inf")), max_logits)
    return lse, max_logits


def zero_empty_rows(out: torch.Tensor, lse: torch.Tensor) -> torch.Tensor:
    """out [..., d_v] with rows whose ``lse`` ([...], same leading shape) is +inf set to 0 (NaN-safe)."""
    return torch.where(torch.isposinf(lse).unsqueeze(-1), torch.zeros_like(out), out)


# ---------------------------------------------------------------------------------------------
# FP8 encodings
# ---------------------------------------------------------------------------------------------
def fnuz_indexer_operands(q_fp8: torch.Tensor, k_fp8: torch.Tensor, k_scale: torch.Tensor,
                          weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Indexer operands in e4m3fnuz (gfx942 MFMA input) with identical logits.

    OCP e4m3fn ``q_fp8`` / ``k_fp8`` are reinterpreted as fnuz (same bytes, half the value, see
    :func:`rocm_dsa.fp8.ocp_to_fnuz`); ``k_scale`` and ``weights`` are doubled so that
    ``k_scale * sum_h w * relu(q . k)`` is unchanged (powers of two: exact in fp32). Operands
    already in fnuz are returned as they are.

    Raises TypeError when q and k have different FP8 dtypes.
    """
    if q_fp8.dtype != k_fp8.dtype:
        raise TypeError(f"k_fp8: expected {q_fp8.dtype} like q_fp8, got {k_fp8.dtype}")
    if q_fp8.dtype == torch.float8_e4m3fnuz:
        return q_fp8, k_fp8, k_scale, weights
    q2, _ = ocp_to_fnuz(q_fp8)
    k2, ks2 = ocp_to_fnuz(k_fp8, k_scale)
    return q2, k2, ks2, weights * 2


def fnuz_indexer_cache(buf: torch.Tensor, head_dim: int = 128) -> torch.Tensor:
    """A copy of a paged indexer key cache [P, page*(D+4)] uint8 with OCP keys turned into fnuz
    (bytes via :func:`rocm_dsa.fp8.ocp_to_fnuz`, scales doubled): same logits, gfx942 layout."""
    values, scales = indexer_cache_views(buf, head_dim)
    out = buf.clone()
    ov, osc = indexer_cache_views(out, head_dim)
    q, s = ocp_to_fnuz(values.view(torch.float8_e4m3fn), scales)
    ov.copy_(q.view(torch.uint8))
    osc.copy_(s)
    return out


# ---------------------------------------------------------------------------------------------
# windows and logits layouts
# ---------------------------------------------------------------------------------------------
def paged_row_lengths(context_lens: torch.Tensor, next_n: int, width: int) -> torch.Tensor:
    """Visible keys of each paged-indexer row: [B] lens -> [B * next_n] int32.

    Row r = b * next_n + j sees keys 0 ... context_lens[b] - next_n + j (inclusive), so its
    length is ``context_lens[b] - next_n + j + 1``, clamped to [0, width] (width = the page
    table's capacity, ``max_pages * page_size``). This is DeepGEMM's per-token ``context_lens``
    ([B, next_n] after a reshape) and aiter's ``top_k_per_row_decode`` row end.
    """
    j = torch.arange(next_n, device=context_lens.device, dtype=torch.int64)
    lens = context_lens.long().unsqueeze(1) - next_n + 1 + j.unsqueeze(0)
    return lens.clamp(0, width).reshape(-1).to(torch.int32)


def mask_columns(logits: torch.Tensor, lo: torch.Tensor | None, hi: torch.Tensor,
                 *, nan_to_neginf: bool = False) -> torch.Tensor:
    """New [R, C] tensor: ``logits`` inside each row's window [lo[r], hi[r]) and -inf outside.

    ``lo`` None means 0. With ``nan_to_neginf``, NaN inside the window also becomes -inf (so a
    vendor top-k never ranks it). Works on strided (padded-row) inputs; chunked over rows.
    """
    r, c = logits.shape
    out = torch.empty(r, c, dtype=logits.dtype, device=logits.device)
    cols = torch.arange(c, device=logits.device)
    step = max(1, _ROW_BUDGET // max(1, c))
    for r0 in range(0, r, step):
        r1 = min(r, r0 + step)
        keep = cols.unsqueeze(0) < hi[r0:r1].long().unsqueeze(1)
        if lo is not None:
            keep &= cols.unsqueeze(0) >= lo[r0:r1].long().unsqueeze(1)
        x = logits[r0:r1]
        if nan_to_neginf:
            keep &= ~torch.isnan(x)
        out[r0:r1] = torch.where(keep, x, torch.full_like(x, float("-inf")))
    return out


def expand_compressed_logits(comp: torch.Tensor, ks: torch.Tensor, ke: torch.Tensor, n: int) -> torch.Tensor:
    """Window-relative logits -> the contract's [T, N] layout.

    Args:
        comp: [T, W] (any row stride): ``comp[t, j]`` is the logit of key ``ks[t] + j`` for
            ``j < ke[t] - ks[t]``; columns beyond are garbage (DeepGEMM ``fp8_fp4_mqa_logits``
            with ``max_seqlen_k = W``).
        ks, ke: [T] int32 windows (0 <= ks <= ke <= N, ke - ks <= W).
        n: number of keys N.
    Returns:
        [T, N] float32: ``comp[t, s - ks[t]]`` for ks[t] <= s < ke[t], -inf elsewhere.
    """
    t, w = comp.shape
    out = torch.empty(t, n, dtype=torch.float32, device=comp.device)
    if t == 0 or n == 0:
        return out
    cols = torch.arange(n, device=comp.device)
    step = max(1, _ROW_BUDGET // max(1, n))
    for r0 in range(0, t, step):
        r1 = min(t, r0 + step)
        rel = cols.unsqueeze(0) - ks[r0:r1].long().unsqueeze(1)
        inside = (rel >= 0) & (rel < (ke[r0:r1] - ks[r0:r1]).long().unsqueeze(1))
        vals = torch.gather(comp[r0:r1].float(), 1, rel.clamp(0, max(w - 1, 0)))
        out[r0:r1] = torch.where(inside, vals, torch.full_like(vals, float("-inf")))
    return out


def aligned_starts(ks: torch.Tensor, block: int) -> torch.Tensor:
    """Window starts moved down to a multiple of ``block`` (int32).

    aiter's ragged ``fp8_mqa_logits`` kernel walks full key tiles from ``start`` up to
    ``floor(end / block) * block`` and then one masked tail tile addressed from that aligned
    end, without re-basing its pointers: with an unaligned start the last full tile can run past
    ``end`` (unmasked writes, and key reads past N) and the tail reads the wrong keys. Aligned
    starts keep every tile on the same grid; the extra columns [aligned, ks) are then masked
    away with :func:`mask_columns`.
    """
    return (ks.long() // block * block).to(torch.int32)


# ---------------------------------------------------------------------------------------------
# cache layouts
# ---------------------------------------------------------------------------------------------
def deepgemm_indexer_cache(buf: torch.Tensor, head_dim: int = 128) -> torch.Tensor:
    """Our paged indexer cache [P, page*(D+4)] uint8 as DeepGEMM's fused cache [P, page, 1, D+4].

    A view, no copy: both put a page's FP8 keys first (token-major, D bytes each) and then its
    fp32 scales (DeepGEMM ``kv_cache_cast_to_fp8`` in tests/test_attention.py); the [page, 1,
    D+4] shape only gives the kernel the page size and the D+4 stride it checks.
    """
    indexer_cache_views(buf, head_dim)  # validates
    page = buf.shape[1] // (head_dim + 4)
    return buf.view(buf.shape[0], page, 1, head_dim + 4)


def aiter_indexer_records(buf: torch.Tensor, slots: torch.Tensor, head_dim: int = 128) -> torch.Tensor:
    """Per-token indexer records [M, 1, 1, D+4] uint8 (D FP8 bytes, then the fp32 scale) of ``slots`` [M].

    aiter's ``deepgemm_fp8_paged_mqa_logits`` reads key ``i`` at ``i * (D+4)`` with its scale
    right behind it (page size 1), while our pages keep values and scales in separate regions:
    this gathers the keys a call needs into aiter's layout (132 bytes per key).
    """
    values, scales = indexer_cache_views(buf, head_dim)
    page = values.shape[1]
    s = slots.long()
    p, o = s // page, s % page
    rec = torch.empty(s.numel(), head_dim + 4, dtype=torch.uint8, device=buf.device)
    rec[:, :head_dim] = values[p, o]
    rec[:, head_dim:] = scales[p, o].contiguous().view(torch.uint8).view(-1, 4)
    return rec.view(-1, 1, 1, head_dim + 4)


def request_token_slots(block_table: torch.Tensor, lengths: torch.Tensor,
                        page_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Physical slots of tokens 0 .. lengths[b] - 1 of every request, requests back to back.

    Args:
        block_table: [B, max_pages] int32 page table.
        lengths: [B] int tokens of each request to list (<= max_pages * page_size).
        page_size: tokens per page.
    Returns:
        (slots [sum(lengths)] int64, offsets [B] int64 where request b's tokens start).
        Synchronizes with the device for the total.
    """
    lens = lengths.long().clamp_min(0)
    offsets = torch.cumsum(lens, 0) - lens
    total = int(lens.sum())
    req = torch.repeat_interleave(torch.arange(lens.numel(), device=lens.device), lens)
    pos = torch.arange(total, device=lens.device) - offsets[req]
    pages = block_table.long()[req, pos // page_size]
    return pages * page_size + pos % page_size, offsets


def aiter_paged_indexer_inputs(buf: torch.Tensor, context_lens: torch.Tensor, block_table: torch.Tensor,
                               next_n: int, head_dim: int = 128):
    """Inputs of aiter's ``deepgemm_fp8_paged_mqa_logits`` for our paged indexer call.

    Every query token runs as its own row with next_n = 1 (aiter's own multi-token mask is
    ``key <= context_len - token``, not the MTP rule of the contract), seeing keys
    [0, lens[r]) of its request (:func:`paged_row_lengths`). The keys of each request are
    gathered once into per-token records (:func:`aiter_indexer_records`).

    Returns:
        (records [M, 1, 1, D+4] uint8, kv_indices [B*next_n, max_len] int32 record of each
        (row, position), lens [B*next_n] int32, width = max_pages * page_size). Positions at or
        past a row's length hold in-range indices that the kernel masks.
    """
    page = buf.shape[1] // (head_dim + 4)
    width = block_table.shape[1] * page
    b = context_lens.shape[0]
    lens = paged_row_lengths(context_lens, next_n, width)
    req_len = lens.view(b, next_n)[:, -1]
    slots, offsets = request_token_slots(block_table, req_len, page)
    records = aiter_indexer_records(buf, slots, head_dim)
    max_len = max(1, int(req_len.max())) if b else 1
    pos = torch.arange(max_len, device=buf.device)
    last = (offsets + req_len.long() - 1).clamp_min(0)
    idx = torch.minimum(offsets.unsqueeze(1) + pos.unsqueeze(0), last.unsqueeze(1))
    idx = idx.clamp(0, max(records.shape[0] - 1, 0)).repeat_interleave(next_n, dim=0)
    return records, idx.to(torch.int32).contiguous(), lens, width


def mla_paged_view(buf: torch.Tensor, block: int = 64) -> torch.Tensor:
    """An MLA cache buffer as [num_blocks, block_size, 1, W] for FlashMLA's paged decode (a view).

    A 4-D [P, page, 1, W] buffer is returned as is. A flat [N, 1, W] / [N, W] buffer becomes
    [N / block, block, 1, W] when ``block`` divides N, else [N, 1, 1, W]: either way slot s is
    flat row s, because ``slot = page * page_size + offset`` addresses the same row for any
    page size.
    """
    w = buf.shape[-1]
    if buf.dim() == 4:
        return buf
    n = buf.numel() // w
    b = block if n % block == 0 else 1
    return buf.reshape(n // b, b, 1, w)


# ---------------------------------------------------------------------------------------------
# top-k results
# ---------------------------------------------------------------------------------------------
def finish_topk(cols: torch.Tensor, logits: torch.Tensor, starts: torch.Tensor | None, k: int,
                ends: torch.Tensor | None = None) -> torch.Tensor:
    """Turn vendor top-k candidates into the contract's result.

    Args:
        cols: [R, K] int absolute columns of ``logits`` chosen by a vendor kernel (any order;
            -1 or out-of-range = none). K >= k for the set to be exact.
        logits: [R, C] the values the columns were chosen from.
        starts: [R] window starts (None = 0): results are ``column - starts[r]``.
        k: output width.
        ends: [R] window ends (None = C): columns outside [starts, ends) are dropped.
    Returns:
        [R, k] int32: candidates whose logit is finite or +inf (NaN and -inf dropped), ordered by
        value descending then column ascending, truncated to k, -1 after the valid prefix.
        (aiter's ``top_k_per_row_*`` returns unordered columns and, for a short row, every
        column of the window including -inf ones.)
    """
    r, kk = cols.shape
    c = logits.shape[1]
    col = cols.long()
    lo = starts.long().unsqueeze(1) if starts is not None else torch.zeros(r, 1, dtype=torch.long,
                                                                          device=cols.device)
    hi = ends.long().unsqueeze(1).clamp(max=c) if ends is not None else torch.full(
        (r, 1), c, dtype=torch.long, device=cols.device)
    inb = (col >= lo) & (col < hi) & (col >= 0) & (col < c)
    safe = torch.where(inb, col, torch.zeros_like(col))
    vals = torch.gather(logits, 1, safe).float()
    valid = inb & ~torch.isnan(vals) & (vals != float("-inf"))
    big = torch.iinfo(torch.int64).max
    # order: value descending, then column ascending; invalid entries last
    key_col = torch.where(valid, col, torch.full_like(col, big))
    o1 = torch.sort(key_col, dim=1, stable=True).indices
    v1 = torch.gather(torch.where(valid, vals, torch.full_like(vals, float("-inf"))), 1, o1)
    valid1 = torch.gather(valid, 1, o1)
    # invalid -> below every valid value (valid values are > -inf), keeps them after the prefix
    o2 = torch.sort(torch.where(valid1, v1, torch.full_like(v1, float("-inf"))), dim=1, descending=True,
                    stable=True).indices
    order = torch.gather(o1, 1, o2)
    col_s = torch.gather(col, 1, order)
    val_s = torch.gather(valid, 1, order)
    res = torch.where(val_s, col_s - lo, torch.full_like(col_s, -1))
    if kk >= k:
        res = res[:, :k]
    else:
        res = torch.cat([res, torch.full((r, k - kk), -1, dtype=res.dtype, device=res.device)], 1)
    return res.to(torch.int32).contiguous()


def describe_error(e: BaseException) -> str:
    """``Type: message`` of an exception and of those it was raised from, joined by `` <- ``.

    A vendor library that fails to load (``torch.ops.load_library``) reports only "Could not
    load this library"; the loader's own message (the missing .so, the undefined symbol) is in
    the cause, and an unavailability reason must show it.
    """
    parts, seen = [], set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        parts.append(f"{type(cur).__name__}: {cur}")
        cur = cur.__cause__ or cur.__context__
    return " <- ".join(parts)
