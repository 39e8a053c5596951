"""Exact per-row top-k (radix select over order-preserving float keys) and its launcher.

Keys: each float maps to a uint32 whose unsigned order is the float order (-0 first becomes
+0 so equal values tie; then negative -> all bits flipped, else the sign bit set), so +inf
ranks above every finite value. Candidates are the columns inside the row's window whose value
is neither NaN nor -inf.

Wide rows (C > CAP, CAP = a few times k) go through a filter that keeps the work per element
to a few instructions, so the rows are read three times at near memory speed:

1. ``_blockmax_topk_kernel`` (grid R x S segments): the maximum of every group of G
   consecutive window columns (G chosen so that a row has >= 4k groups).
2. ``_threshold_topk_kernel`` (one program per row): a lower bound tau of the k-th largest
   group maximum, from the first T_LEVELS radix levels over the group maxima. At least k groups
   have their maximum >= tau, so at least k candidates are >= tau: every top-k element is.
3. ``_count_topk_kernel`` then ``_compact_topk_kernel`` (R x S): count the candidates >= tau
   per segment, then write their keys and columns, in column order, into a [R, CAP] buffer.
4. ``_select_topk_kernel`` (one program per row): exact radix select (all 32 key bits,
   RADIX_BITS per level, stops once the threshold bin is taken whole) over the buffer, then a
   pass that writes, in column order, every candidate above the threshold prefix and the first
   ``need`` equal to it (ties to the lower column), and -1 in the tail.

A row whose filtered set overflows CAP (heavy ties at the threshold, adversarial data) is
selected by the same program directly from the row: slower, never wrong. Rows with C <= CAP
only run step 4. Exact by construction; deterministic (no atomics). The output prefix is in
column order, not value order (the contract compares sets).

Semantics: DeepSeek-V3.2 ``index_score.topk`` with the window mask; SGLang ``fast_topk`` -1
padding. The radix-select / threshold-filter scheme is the classic one (e.g. Alabi et al.,
"Fast k-selection algorithms for GPUs"; Zhang et al., "RadiK"), written for Triton here.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ._common import get_config

__all__ = ["topk_indices", "launch_topk"]

# The key is inlined in every kernel (the interpreter pays per nested call):
#   x = where(x == 0, 0, x); bits = bitcast(x); key = bits ^ (sign ? 0xFFFFFFFF : 0x80000000)


@triton.jit
def _select_digit(h, need, prefix, mask, level, RADIX_BITS: tl.constexpr, NB: tl.constexpr):
    """One radix level: from the histogram h [NB] of the next digit among candidates matching
    (prefix, mask), pick the digit holding the need-th largest; returns the new
    (prefix, mask, need, resolved) where resolved = the whole bin is taken."""
    offs_b = tl.arange(0, NB)
    bits = tl.minimum(RADIX_BITS, 32 - level * RADIX_BITS)
    shift = (32 - level * RADIX_BITS - bits).to(tl.uint32)
    ge = tl.cumsum(h, axis=0, reverse=True)  # candidates with digit >= b
    b = tl.max(tl.where(ge >= need, offs_b, 0), axis=0)
    # one reduction for both counts: bins above b in the low 32 bits, bin b in the high ones
    h64 = tl.where(offs_b >= b, h, 0).to(tl.int64)
    packed = tl.sum(tl.where(offs_b > b, h64, h64 << 32), axis=0)
    above = (packed & 0xFFFFFFFF).to(tl.int32)
    in_bin = (packed >> 32).to(tl.int32)
    prefix = prefix | (b.to(tl.uint32) << shift)
    mask = mask | (((1 << bits) - 1).to(tl.uint32) << shift)
    need = need - above
    return prefix, mask, need, (need >= in_bin).to(tl.int32)


@triton.jit
def _segment_bounds(starts_ptr, ends_ptr, row, seg, C, SEG):
    lo = tl.minimum(tl.maximum(tl.load(starts_ptr + row), 0), C)
    hi = tl.minimum(tl.maximum(tl.load(ends_ptr + row), lo), C)
    c0 = tl.minimum(lo + seg * SEG, hi)
    c1 = tl.minimum(c0 + SEG, hi)
    return lo, c0, c1


@triton.jit
def _blockmax_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    bmax_ptr,  # f32 [R, NG]: max candidate of window columns [lo + g*G, lo + (g+1)*G), -inf if none
    C,
    SEG,
    stride_xr,
    stride_mr,
    G: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    lo, c0, c1 = _segment_bounds(starts_ptr, ends_ptr, row, tl.program_id(1), C, SEG)
    x_row = x_ptr + row.to(tl.int64) * stride_xr
    m_row = bmax_ptr + row.to(tl.int64) * stride_mr
    for c in range(c0, c1, BLOCK):
        cols = c + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < c1, other=float("-inf"))
        x = tl.where(x == x, x, float("-inf"))
        gmax = tl.max(tl.reshape(x, [BLOCK // G, G]), axis=1)
        groups = (c - lo) // G + tl.arange(0, BLOCK // G)
        tl.store(m_row + groups, gmax, mask=groups * G < c1 - lo)


@triton.jit
def _threshold_topk_kernel(
    bmax_ptr,  # f32 [R, NG]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R] uint32 key bits: every top-k candidate has key >= tau
    C,
    k,
    stride_mr,
    G: tl.constexpr,
    T_LEVELS: tl.constexpr,
    RADIX_BITS: tl.constexpr,
    NB: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    lo, _, hi = _segment_bounds(starts_ptr, ends_ptr, row, 0, C, C)
    ng = (hi - lo + G - 1) // G
    m_row = bmax_ptr + row.to(tl.int64) * stride_mr
    offs_b = tl.arange(0, NB)
    prefix = tl.zeros([], dtype=tl.uint32)
    mask = tl.zeros([], dtype=tl.uint32)
    need = k + tl.zeros([], dtype=tl.int32)
    resolved = tl.zeros([], dtype=tl.int32)
    # the first BLOCK maxima stay in registers across the levels (all of them when NG <= BLOCK)
    offs0 = tl.arange(0, BLOCK)
    x0 = tl.load(m_row + offs0, mask=offs0 < ng, other=float("-inf"))
    bits0 = tl.where(x0 == 0.0, 0.0, x0).to(tl.uint32, bitcast=True)
    key0 = bits0 ^ tl.where((bits0 >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
    cand0 = x0 != float("-inf")
    for level in range(T_LEVELS):
        if resolved == 0:
            shift = (32 - level * RADIX_BITS - tl.minimum(RADIX_BITS, 32 - level * RADIX_BITS)).to(tl.uint32)
            match = cand0 & ((key0 & mask) == prefix)
            digit = tl.where(match, ((key0 >> shift) & (NB - 1)).to(tl.int32), 0)
            junk = BLOCK - tl.sum(match.to(tl.int32), axis=0)
            acc = tl.histogram(digit, NB) - tl.where(offs_b == 0, junk, 0)
            for c in range(BLOCK, ng, BLOCK):
                offs = c + tl.arange(0, BLOCK)
                x = tl.load(m_row + offs, mask=offs < ng, other=float("-inf"))
                bits_x = tl.where(x == 0.0, 0.0, x).to(tl.uint32, bitcast=True)
                key = bits_x ^ tl.where((bits_x >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
                match = (x != float("-inf")) & ((key & mask) == prefix)
                digit = tl.where(match, ((key >> shift) & (NB - 1)).to(tl.int32), 0)
                junk = BLOCK - tl.sum(match.to(tl.int32), axis=0)  # non-matching, counted in bin 0
                acc += tl.histogram(digit, NB) - tl.where(offs_b == 0, junk, 0)
            prefix, mask, need, resolved = _select_digit(acc, need, prefix, mask, level, RADIX_BITS, NB)
    tl.store(tau_ptr + row, prefix.to(tl.int32, bitcast=True))


@triton.jit
def _count_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R]
    cnt_ptr,  # i32 [R, S]: candidates >= tau per segment
    C,
    S,
    SEG,
    stride_xr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    seg = tl.program_id(1)
    _, c0, c1 = _segment_bounds(starts_ptr, ends_ptr, row, seg, C, SEG)
    tau = tl.load(tau_ptr + row).to(tl.uint32, bitcast=True)
    x_row = x_ptr + row.to(tl.int64) * stride_xr
    n = tl.zeros([], dtype=tl.int32)
    for c in range(c0, c1, BLOCK):
        cols = c + tl.arange(0, BLOCK)
        x = tl.load(x_row + cols, mask=cols < c1, other=float("nan"))
        bits_x = tl.where(x == 0.0, 0.0, x).to(tl.uint32, bitcast=True)
        key = bits_x ^ tl.where((bits_x >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
        n += tl.sum(((x == x) & (x != float("-inf")) & (key >= tau)).to(tl.int32), axis=0)
    tl.store(cnt_ptr + row.to(tl.int64) * S + seg, n)


@triton.jit
def _compact_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R]
    cnt_ptr,  # i32 [R, S]
    buf_ptr,  # i32 [R, 2, CAP]: keys of the candidates >= tau in column order, then their columns
    C,
    S,
    SEG,
    CAP,
    stride_xr,
    S_BLOCK: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0)
    seg = tl.program_id(1)
    offs_s = tl.arange(0, S_BLOCK)
    counts = tl.load(cnt_ptr + row.to(tl.int64) * S + offs_s, mask=offs_s < S, other=0)
    total = tl.sum(counts, axis=0)
    if total <= CAP:  # else the select kernel reads the row itself
        base = tl.sum(tl.where(offs_s < seg, counts, 0), axis=0)
        _, c0, c1 = _segment_bounds(starts_ptr, ends_ptr, row, seg, C, SEG)
        tau = tl.load(tau_ptr + row).to(tl.uint32, bitcast=True)
        x_row = x_ptr + row.to(tl.int64) * stride_xr
        b_row = buf_ptr + row.to(tl.int64) * (2 * CAP)
        for c in range(c0, c1, BLOCK):
            cols = c + tl.arange(0, BLOCK)
            x = tl.load(x_row + cols, mask=cols < c1, other=float("nan"))
            bits_x = tl.where(x == 0.0, 0.0, x).to(tl.uint32, bitcast=True)
            key = bits_x ^ tl.where((bits_x >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
            keep = (x == x) & (x != float("-inf")) & (key >= tau)
            pos = base + tl.cumsum(keep.to(tl.int32), axis=0) - 1
            tl.store(b_row + pos, key.to(tl.int32, bitcast=True), mask=keep)
            tl.store(b_row + CAP + pos, cols, mask=keep)
            base += tl.sum(keep.to(tl.int32), axis=0)


@triton.jit
def _select_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    cnt_ptr,  # i32 [R, S] (USE_BUFFER)
    buf_ptr,  # i32 [R, 2, CAP] keys then columns (USE_BUFFER)
    out_ptr,  # i32 [R, k], rows contiguous
    bt_ptr,  # i32 [R // rows_per_table, max_pages] (MAP_SLOTS)
    C,
    S,
    CAP,
    k,
    stride_xr,
    stride_btb,
    rows_per_table,
    RADIX_BITS: tl.constexpr,
    NB: tl.constexpr,
    S_BLOCK: tl.constexpr,
    BLOCK: tl.constexpr,
    USE_BUFFER: tl.constexpr,
    MAP_SLOTS: tl.constexpr,
    PAGE_SIZE: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(starts_ptr + row)
    lo, _, hi = _segment_bounds(starts_ptr, ends_ptr, row, 0, C, C)
    x_row = x_ptr + row.to(tl.int64) * stride_xr + lo
    b_row = buf_ptr + row.to(tl.int64) * (2 * CAP)
    n = hi - lo
    from_buf = tl.zeros([], dtype=tl.int32)
    if USE_BUFFER:
        offs_s = tl.arange(0, S_BLOCK)
        total = tl.sum(tl.load(cnt_ptr + row.to(tl.int64) * S + offs_s, mask=offs_s < S, other=0), axis=0)
        from_buf = (total <= CAP).to(tl.int32)
        n = tl.where(from_buf != 0, total, n)
    offs_b = tl.arange(0, NB)
    prefix = tl.zeros([], dtype=tl.uint32)
    mask = tl.zeros([], dtype=tl.uint32)
    need = k + tl.zeros([], dtype=tl.int32)
    resolved = tl.zeros([], dtype=tl.int32)
    for level in range((32 + RADIX_BITS - 1) // RADIX_BITS):
        if resolved == 0:
            shift = (32 - level * RADIX_BITS - tl.minimum(RADIX_BITS, 32 - level * RADIX_BITS)).to(tl.uint32)
            acc = tl.zeros([NB], dtype=tl.int32)
            for c in range(0, n, BLOCK):
                offs = c + tl.arange(0, BLOCK)
                inb = offs < n
                if from_buf != 0:
                    key = tl.load(b_row + offs, mask=inb, other=0).to(tl.uint32, bitcast=True)
                    cand = inb
                else:
                    x = tl.load(x_row + offs, mask=inb, other=float("nan"))
                    bits_x = tl.where(x == 0.0, 0.0, x).to(tl.uint32, bitcast=True)
                    key = bits_x ^ tl.where((bits_x >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
                    cand = (x == x) & (x != float("-inf"))
                match = cand & ((key & mask) == prefix)
                digit = tl.where(match, ((key >> shift) & (NB - 1)).to(tl.int32), 0)
                junk = BLOCK - tl.sum(match.to(tl.int32), axis=0)  # non-matching, counted in bin 0
                acc += tl.histogram(digit, NB) - tl.where(offs_b == 0, junk, 0)
            prefix, mask, need, resolved = _select_digit(acc, need, prefix, mask, level, RADIX_BITS, NB)
    # write: keys above the prefix, then the first `need` equal to it, in column order
    out_row = out_ptr + row.to(tl.int64) * k
    base = tl.zeros([], dtype=tl.int32)
    eq_run = tl.zeros([], dtype=tl.int32)
    for c in range(0, n, BLOCK):
        offs = c + tl.arange(0, BLOCK)
        inb = offs < n
        if from_buf != 0:
            key = tl.load(b_row + offs, mask=inb, other=0).to(tl.uint32, bitcast=True)
            col = tl.load(b_row + CAP + offs, mask=inb, other=0)
            cand = inb
        else:
            x = tl.load(x_row + offs, mask=inb, other=float("nan"))
            bits_x = tl.where(x == 0.0, 0.0, x).to(tl.uint32, bitcast=True)
            key = bits_x ^ tl.where((bits_x >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
            col = lo + offs
            cand = (x == x) & (x != float("-inf"))
        key = key & mask
        eq = cand & (key == prefix)
        eq_rank = eq_run + tl.cumsum(eq.to(tl.int32), axis=0) - 1
        sel = (cand & (key > prefix)) | (eq & (eq_rank < need))
        pos = base + tl.cumsum(sel.to(tl.int32), axis=0) - 1
        val = col - start
        if MAP_SLOTS:
            page = tl.load(bt_ptr + (row // rows_per_table).to(tl.int64) * stride_btb + val // PAGE_SIZE,
                           mask=sel, other=0)
            val = page * PAGE_SIZE + val % PAGE_SIZE
        tl.store(out_row + pos, val, mask=sel)
        eq_run += tl.sum(eq.to(tl.int32), axis=0)
        base += tl.sum(sel.to(tl.int32), axis=0)
    for p in range(base, k, BLOCK):
        offs = p + tl.arange(0, BLOCK)
        tl.store(out_row + offs, tl.full([BLOCK], -1, tl.int32), mask=offs < k)


def _pow2_floor(v: int) -> int:
    return 1 << (max(1, v).bit_length() - 1)


@functools.lru_cache(maxsize=256)
def _plan(arch: str, r: int, c: int, k: int, radix_bits: int | None, cap: int | None, overrides: tuple) -> tuple:
    """Launch constants of one (shape, k) on ``arch``, computed once so that an eager call pays
    no host work beyond its launches: (CAP, NG, S, SEG, S_BLOCK, group-max / count / compact
    keywords, threshold keywords, select keywords)."""
    cfg = get_config("topk_indices", arch, rows=r, columns=c, k=k)
    m = {**cfg.meta, **{key: v for key, v in overrides if key.isupper()}}
    seg_opts = {**cfg.options, **{key: v for key, v in overrides if not key.isupper()}}
    rb = radix_bits or m["RADIX_BITS"]
    block = m["BLOCK"]
    cap = cap or max(m["CAP_MIN"], m["CAP_PER_K"] * k)
    select_opts = {**cfg.options, "num_warps": m["SELECT_WARPS"]}
    g = max(1, min(m["MAX_GROUP"], _pow2_floor(c // (m["GROUPS_PER_K"] * k)), block))
    ng = triton.cdiv(c, g)
    s = max(1, min(m["MAX_SEGMENTS"], triton.cdiv(c, block), triton.cdiv(m["PROGRAMS"], r)))
    seg = triton.cdiv(triton.cdiv(c, s), block) * block
    s = triton.cdiv(c, seg)
    s_block = max(2, triton.next_power_of_2(s))
    threshold = dict(G=g, T_LEVELS=m["T_LEVELS"], RADIX_BITS=rb, NB=1 << rb,
                     BLOCK=m.get("THRESHOLD_BLOCK", m["SELECT_BLOCK"]), **select_opts)
    select = dict(RADIX_BITS=rb, NB=1 << rb, BLOCK=m["SELECT_BLOCK"], **select_opts)
    return cap, g, ng, s, seg, s_block, dict(BLOCK=block, **seg_opts), threshold, select


def launch_topk(logits: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, k: int, out: torch.Tensor, *,
                arch: str, block_table: torch.Tensor | None = None, rows_per_table: int = 1,
                page_size: int = 1, radix_bits: int | None = None, cap: int | None = None,
                meta: dict | None = None) -> None:
    """Exact top-k of ``logits`` [R, C] f32 rows inside [starts, ends) into ``out`` [R, k] int32.

    Writes ``column - starts[r]``, or with ``block_table`` [R // rows_per_table, max_pages]
    int32 the physical slot ``block_table[r // rows_per_table, p // page_size] * page_size +
    p % page_size`` of that position p. Workspace for C > CAP (one allocation): group maxima
    [R, C / G] f32, [R, S] counts, a [R, 2, CAP] key + column buffer (CAP = max(CAP_MIN,
    CAP_PER_K * k)).
    ``logits`` rows may be a strided view (unit column stride). ``radix_bits``, ``cap`` and
    ``meta`` (config keys: CAPS constexprs, lowercase segment-kernel launch options, e.g.
    ``{"BLOCK": 4096, "num_warps": 4}``) override the config (tests, benchmarks). Launch
    constants are cached per (arch, shape, k, overrides).
    """
    r, c = logits.shape
    if r == 0:
        return
    if out.shape != (r, k) or out.stride() != (k, 1):
        raise ValueError(f"out: expected a [R={r}, k={k}] int32 tensor with contiguous rows, got shape "
                         f"{list(out.shape)} strides {list(out.stride())}")
    cap, g, ng, s, seg, s_block, seg_kw, threshold, select = _plan(arch, r, c, k, radix_bits, cap,
                                                                   tuple(sorted((meta or {}).items())))
    slots = block_table is not None
    bt = block_table if slots else out
    stride_xr = logits.stride(0)
    if c <= cap:
        _select_topk_kernel[(r,)](logits, starts, ends, out, out, out, bt, c, 1, cap, k, stride_xr,
                                  bt.stride(0), rows_per_table, S_BLOCK=2, USE_BUFFER=False, MAP_SLOTS=slots,
                                  PAGE_SIZE=page_size, **select)
        return
    # one allocation for the workspace: group maxima, tau, counts, key and column buffers
    ws = torch.empty(r * (ng + 1 + s + 2 * cap), dtype=torch.int32, device=logits.device)
    bmax = ws[:r * ng].view(torch.float32)
    tau = ws[r * ng:r * (ng + 1)]
    cnt = ws[r * (ng + 1):r * (ng + 1 + s)]
    buf = ws[r * (ng + 1 + s):]
    _blockmax_topk_kernel[(r, s)](logits, starts, ends, bmax, c, seg, stride_xr, ng, G=g, **seg_kw)
    _threshold_topk_kernel[(r,)](bmax, starts, ends, tau, c, k, ng, **threshold)
    _count_topk_kernel[(r, s)](logits, starts, ends, tau, cnt, c, s, seg, stride_xr, **seg_kw)
    _compact_topk_kernel[(r, s)](logits, starts, ends, tau, cnt, buf, c, s, seg, cap, stride_xr, S_BLOCK=s_block,
                                 **seg_kw)
    _select_topk_kernel[(r,)](logits, starts, ends, cnt, buf, out, bt, c, s, cap, k, stride_xr,
                              bt.stride(0), rows_per_table, S_BLOCK=s_block, USE_BUFFER=True, MAP_SLOTS=slots,
                              PAGE_SIZE=page_size, **select)


def topk_indices(logits: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, k: int, *,
                 arch: str) -> torch.Tensor:
    """Exact per-row top-k; the ``triton`` provider's ``topk_indices``.

    Args:
        logits: [R, C] float32 (row stride free, unit column stride).
        starts, ends: [R] int32 column window [starts, ends) of each row (clamped to [0, C]).
        k: output width (any k >= 1; DeepSeek-V3.2 uses 2048).
        arch: target arch for the config lookup.
    Returns:
        [R, k] int32 ``column - starts[r]`` of the k largest candidates (not NaN, not -inf;
        +inf highest), ties to the lower column, -1 padded; prefix in column order.
    """
    r = logits.shape[0]
    out = torch.empty(r, k, dtype=torch.int32, device=logits.device)
    launch_topk(logits, starts, ends, k, out, arch=arch)
    return out


def compile_specs(arch: str) -> list:
    """Ahead-of-time AMD compile specs (``rocm-dsa compile``) of every top-k kernel at
    [64, 131072], k = 2048 (DeepSeek-V3.2), configs as the launcher resolves them."""
    from rocm_dsa.compile import CompileSpec

    r, c, k = 64, 131072, 2048
    cfg = get_config("topk_indices", arch, rows=r, columns=c, k=k)
    m, o = cfg.meta, cfg.options
    rb, block = m["RADIX_BITS"], m["BLOCK"]
    g = max(1, min(m["MAX_GROUP"], _pow2_floor(c // (m["GROUPS_PER_K"] * k)), block))
    s = max(1, min(m["MAX_SEGMENTS"], triton.cdiv(c, block), triton.cdiv(m["PROGRAMS"], r)))
    seg_launch = dict(num_warps=o.get("num_warps", 4), num_stages=o.get("num_stages", 2),
                      waves_per_eu=o.get("waves_per_eu", 0))
    row_launch = dict(seg_launch, num_warps=m["SELECT_WARPS"])
    x = {"x_ptr": "*fp32", "starts_ptr": "*i32", "ends_ptr": "*i32"}
    big = ("x_ptr",)
    specs = [
        CompileSpec(name=f"topk_blockmax G={g} BLOCK={block}", fn=_blockmax_topk_kernel,
                    signature={**x, "bmax_ptr": "*fp32", "C": "i32", "SEG": "i32", "stride_xr": "i32",
                               "stride_mr": "i32"},
                    constexprs={"G": g, "BLOCK": block}, aligned=("stride_xr", "stride_mr", "SEG"),
                    large_tensors=big, note=cfg.source, **seg_launch),
        CompileSpec(name=f"topk_threshold T_LEVELS={m['T_LEVELS']} RADIX_BITS={rb}", fn=_threshold_topk_kernel,
                    signature={"bmax_ptr": "*fp32", "starts_ptr": "*i32", "ends_ptr": "*i32", "tau_ptr": "*i32",
                               "C": "i32", "k": "i32", "stride_mr": "i32"},
                    constexprs={"G": g, "T_LEVELS": m["T_LEVELS"], "RADIX_BITS": rb, "NB": 1 << rb,
                                "BLOCK": m.get("THRESHOLD_BLOCK", m["SELECT_BLOCK"])},
                    aligned=("stride_mr",), note=cfg.source, **row_launch),
        CompileSpec(name=f"topk_count BLOCK={block}", fn=_count_topk_kernel,
                    signature={**x, "tau_ptr": "*i32", "cnt_ptr": "*i32", "C": "i32", "S": "i32", "SEG": "i32",
                               "stride_xr": "i32"},
                    constexprs={"BLOCK": block}, aligned=("stride_xr", "SEG"), large_tensors=big, note=cfg.source,
                    **seg_launch),
        CompileSpec(name=f"topk_compact BLOCK={block}", fn=_compact_topk_kernel,
                    signature={**x, "tau_ptr": "*i32", "cnt_ptr": "*i32", "buf_ptr": "*i32",
                               "C": "i32", "S": "i32", "SEG": "i32", "CAP": "i32", "stride_xr": "i32"},
                    constexprs={"S_BLOCK": max(2, triton.next_power_of_2(s)), "BLOCK": block},
                    aligned=("stride_xr", "SEG", "CAP"), large_tensors=big, note=cfg.source, **seg_launch),
    ]
    for use_buffer, slots in ((True, False), (True, True), (False, False)):
        specs.append(CompileSpec(
            name=f"topk_select RADIX_BITS={rb}" + (" buffer" if use_buffer else " row") + (" slots" if slots else ""),
            fn=_select_topk_kernel,
            signature={**x, "cnt_ptr": "*i32", "buf_ptr": "*i32", "out_ptr": "*i32",
                       "bt_ptr": "*i32", "C": "i32", "S": "i32", "CAP": "i32", "k": "i32", "stride_xr": "i32",
                       "stride_btb": "i32", "rows_per_table": "i32"},
            constexprs={"RADIX_BITS": rb, "NB": 1 << rb, "S_BLOCK": max(2, triton.next_power_of_2(s)),
                        "BLOCK": m["SELECT_BLOCK"], "USE_BUFFER": use_buffer, "MAP_SLOTS": slots, "PAGE_SIZE": 64},
            aligned=("stride_xr", "CAP", "k"), large_tensors=big, note=cfg.source, **row_launch))
    return specs
