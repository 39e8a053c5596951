"""Exact per-row top-k (radix select over order-preserving float keys) and its launcher.

Keys: each float maps to a uint32 whose unsigned order is the float order (-0 first becomes
+0 so equal values tie; then negative -> all bits flipped, else the sign bit set), so +inf
ranks above every finite value. NaN and -inf are no candidates and get key 0, below every
candidate key (>= 0x00800000).

Wide rows (C > CAP, CAP = a few times k) go through a filter whose passes over the row do a
few instructions per element (plain float compares, no keys), so they run near memory speed:

1. ``_groupmax_topk_kernel`` (R x S segments): the maximum of every group of G columns (G
   chosen so that a row has >= GROUPS_PER_K * k groups), and per segment the largest and the
   smallest of those maxima (as keys).
2. ``_threshold_topk_kernel`` (one program per row): a lower bound tau of the k-th largest group
   maximum from T_LEVELS radix levels over the group maxima: at least k groups have their
   maximum >= tau, so every top-k element is >= tau and there are at least k of them (tau = 0:
   every candidate, when fewer than k groups hold one).
3. ``_count_topk_kernel`` then ``_compact_topk_kernel`` (R x S): count the elements >= tau per
   segment, then write them (column << 32 | float bits) in column order into a [R, CAP] buffer.
   With GROUP_SKIP, groups whose maximum is below tau are not read at all.
4. ``_select_topk_kernel`` (one program per row): exact radix select over the buffer (keys
   shifted by tau so the digits start at the highest bit in use; RADIX_BITS per level; stops
   once the threshold bin is taken whole), then one pass that writes, in column order, every
   candidate above the threshold and the first ``need`` equal to it (ties to the lower column),
   and -1 in the tail.

A row whose filtered set overflows CAP (heavy ties at the threshold, adversarial data) is
selected by the same program directly from the row: slower, never wrong. Rows with C <= CAP
only run step 4. Exact by construction; deterministic (no atomics, no order-dependent sums).
The output prefix is in column order, not value order (the contract compares sets).

Triton lowers ``tl.histogram`` with warp ballots (Triton <= 3.6: cost per element grows with
bins * log2(bins), so 5-6 bit digits are the cheap ones) or with one shared-memory atomic per
element (later versions); elements outside the current radix prefix are masked out of the
histogram where Triton takes a mask.

Semantics: DeepSeek-V3.2 ``index_score.topk`` with the window mask; SGLang ``fast_topk`` -1
padding. The radix-select / threshold-filter scheme is the classic one (e.g. Alabi et al.,
"Fast k-selection algorithms for GPUs"; Zhang et al., "RadiK"), written for Triton here.
"""

from __future__ import annotations

import functools
import inspect

import torch
import triton
import triton.language as tl

from ._common import get_config

__all__ = ["topk_indices", "launch_topk"]

#: whether this Triton's tl.histogram takes a mask
_HIST_MASK = "mask" in inspect.signature(tl.histogram).parameters


@triton.jit
def _topk_keys(x):
    """uint32 keys of f32 ``x`` (unsigned order = float order, -0 == +0); 0 for NaN and -inf."""
    bits = tl.where(x == 0.0, 0.0, x).to(tl.uint32, bitcast=True)
    key = bits ^ tl.where((bits >> 31) != 0, 0xFFFFFFFF, 0x80000000).to(tl.uint32)
    return tl.where((x == x) & (x != float("-inf")), key, tl.zeros_like(key))


@triton.jit
def _key_float(tau):
    """The f32 v with: for every candidate x, x >= v <=> key(x) >= tau (tau a uint32 key)."""
    t = tl.maximum(tau, 0x00800000)  # 0x00800000 = key of -FLT_MAX: excludes -inf and NaN
    return tl.where(t >= 0x80000000, t ^ 0x80000000, ~t).to(tl.float32, bitcast=True)


@triton.jit
def _block_keys(x_ptr, buf_ptr, offs, n, from_buf):
    """Keys of elements ``offs`` (< n; key 0 beyond): of the row's floats, or of the float bits
    in the low halves of the buffer's int64 entries."""
    if from_buf:
        v = tl.load(buf_ptr + offs, mask=offs < n, other=0xFF800000)  # -inf bits: key 0
        key = _topk_keys(v.to(tl.int32).to(tl.float32, bitcast=True))
    else:
        key = _topk_keys(tl.load(x_ptr + offs, mask=offs < n, other=float("nan")))
    return key


@triton.jit
def _block_cols(buf_ptr, lo, offs, n, from_buf):
    if from_buf:
        col = (tl.load(buf_ptr + offs, mask=offs < n, other=0) >> 32).to(tl.int32)
    else:
        col = lo + offs
    return col


@triton.jit
def _key_range(key0, x_ptr, buf_ptr, n, from_buf, BLOCK: tl.constexpr):
    """(smallest, largest) candidate key among elements [0, n), the first BLOCK in ``key0``;
    (0xFFFFFFFF, 0) without candidates."""
    lo = tl.min(tl.where(key0 != 0, key0, 0xFFFFFFFF), axis=0)
    hi = tl.max(key0, axis=0)
    for c in range(BLOCK, n, BLOCK):
        key = _block_keys(x_ptr, buf_ptr, c + tl.arange(0, BLOCK), n, from_buf)
        lo = tl.minimum(lo, tl.min(tl.where(key != 0, key, 0xFFFFFFFF), axis=0))
        hi = tl.maximum(hi, tl.max(key, axis=0))
    return lo, hi


@triton.jit
def _key_bits(lo, hi):
    """Bits needed for hi - lo, in [1, 32] (an upper bound: uint32 -> f32 rounds up at most)."""
    f = (hi - lo).to(tl.float32).to(tl.uint32, bitcast=True)
    return tl.minimum(tl.maximum(((f >> 23) & 0xFF).to(tl.int32) - 126, 1), 32)


@triton.jit
def _hist(key, base, prefix, mask, shift, dmask, NB: tl.constexpr, HIST_MASK: tl.constexpr):
    """Histogram [NB] of the digit ((key - base) >> shift) & dmask of the candidates (key != 0)
    whose shifted key matches (prefix, mask); the others are left out."""
    s = key - base
    m = (key != 0) & ((s & mask) == prefix)
    digit = ((s >> shift) & dmask).to(tl.int32)
    if HIST_MASK:
        h = tl.histogram(digit, NB, mask=m)
    else:  # Triton without histogram masks: count them in bin 0, then take them out
        h = tl.histogram(tl.where(m, digit, 0), NB)
        h -= tl.where(tl.arange(0, NB) == 0, tl.sum((m == 0).to(tl.int32), axis=0), 0)
    return h


@triton.jit
def _select_digit(h, need, prefix, mask, shift, bits, NB: tl.constexpr):
    """One radix level: from the exact histogram h [NB] of the digit at ``shift`` among the
    elements matching (prefix, mask), pick the bin b holding the need-th largest (bin 0 when
    there are fewer than need); returns the new (prefix, mask, need, count in b)."""
    offs_b = tl.arange(0, NB)
    ge = tl.cumsum(h, axis=0, reverse=True)  # elements with digit >= bin
    gt = ge - h
    # exactly one bin: the one where the count reaches need, else bin 0
    sel = (gt < need) & ((ge >= need) | (offs_b == 0))
    packed = tl.sum(tl.where((ge < need) & ~sel, h, 0).to(tl.int64) + (tl.where(sel, h, 0).to(tl.int64) << 32), 0)
    b = tl.sum(tl.where(sel, offs_b, 0), axis=0)  # independent of the sum above
    prefix = prefix | (b.to(tl.uint32) << shift)
    mask = mask | (((1 << bits) - 1).to(tl.uint32) << shift)
    return prefix, mask, need - (packed & 0xFFFFFFFF).to(tl.int32), (packed >> 32).to(tl.int32)


@triton.jit
def _radix_select(key0, x_ptr, buf_ptr, n, from_buf, k, base, top, LEVELS: tl.constexpr,
                  RADIX_BITS: tl.constexpr, NB: tl.constexpr, BLOCK: tl.constexpr, HIST_MASK: tl.constexpr):
    """(prefix, mask, need, short) for the k-th largest candidate key among elements [0, n)
    (the first BLOCK in ``key0``, in registers; the rest loaded per level), on keys shifted by
    ``base`` (<= every candidate key) whose differences fit ``top`` bits, so the digits start at
    the highest bit in use. After LEVELS levels (or once the threshold bin is taken whole) every
    candidate with ((key - base) & mask) > prefix is in the top k and the first ``need`` with
    ((key - base) & mask) == prefix complete it; base + prefix alone is a lower bound of the
    k-th largest key. short = 1: fewer than k candidates."""
    prefix = tl.zeros([], dtype=tl.uint32)
    mask = tl.zeros([], dtype=tl.uint32)
    need = k + tl.zeros([], dtype=tl.int32)
    done = tl.zeros([], dtype=tl.int32)
    short = tl.zeros([], dtype=tl.int32)
    for level in range(LEVELS):
        hi_bit = top - level * RADIX_BITS
        if (done == 0) & (hi_bit > 0):
            bits = tl.minimum(RADIX_BITS, hi_bit)
            shift = (hi_bit - bits).to(tl.uint32)
            dmask = ((1 << bits) - 1).to(tl.uint32)
            h = _hist(key0, base, prefix, mask, shift, dmask, NB, HIST_MASK)
            for c in range(BLOCK, n, BLOCK):
                key = _block_keys(x_ptr, buf_ptr, c + tl.arange(0, BLOCK), n, from_buf)
                h += _hist(key, base, prefix, mask, shift, dmask, NB, HIST_MASK)
            prefix, mask, need, in_bin = _select_digit(h, need, prefix, mask, shift, bits, NB)
            if level == 0:
                short = (need > in_bin).to(tl.int32)
            done = (need >= in_bin).to(tl.int32)
    return prefix, mask, need, short


@triton.jit
def _emit_block(key, col, offs, n, base, prefix, mask, need, done, eq_run, out_row, start, bt_row,
                MAP_SLOTS: tl.constexpr, PAGE_SIZE: tl.constexpr):
    """Write the selected elements of one block (column order) at out_row[done...]; returns the
    updated (done, eq_run = equal-to-threshold candidates seen so far)."""
    cand = (offs < n) & (key != 0)
    km = (key - base) & mask
    above = cand & (km > prefix)
    eq = cand & (km == prefix)
    inc = tl.cumsum(above.to(tl.int32) + (eq.to(tl.int32) << 16), axis=0)  # both counts, one scan
    eq_inc = eq_run + (inc >> 16)
    taken = tl.minimum(eq_run, need)
    sel = above | (eq & (eq_inc <= need))
    pos = done + (inc & 0xFFFF) + tl.minimum(eq_inc, need) - taken - 1
    val = col - start
    if MAP_SLOTS:
        page = tl.load(bt_row + val // PAGE_SIZE, mask=sel, other=0)
        val = page * PAGE_SIZE + val % PAGE_SIZE
    tl.store(out_row + pos, val, mask=sel)
    tot = tl.max(inc, axis=0)
    done += (tot & 0xFFFF) + tl.minimum(eq_run + (tot >> 16), need) - taken
    return done, eq_run + (tot >> 16)


@triton.jit
def _window(starts_ptr, ends_ptr, row, C):
    lo = tl.minimum(tl.maximum(tl.load(starts_ptr + row), 0), C)
    hi = tl.minimum(tl.maximum(tl.load(ends_ptr + row), lo), C)
    return lo, hi


@triton.jit
def _groupmax_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    bmax_ptr,  # f32 [R, NG]: max of columns [g*G, (g+1)*G) inside the window (-inf if none)
    range_ptr,  # i32 [R, S, 2]: largest group-maximum key of the segment, ~smallest candidate one
    C,
    S,  # segments per row
    SEG,  # columns per segment (a multiple of BLOCK)
    stride_xr,
    NG,  # groups per row = the row stride of bmax
    G: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    row = pid // S
    seg = pid - row * S
    lo, hi = _window(starts_ptr, ends_ptr, row, C)
    x_row = x_ptr + row.to(tl.int64) * stride_xr
    m_row = bmax_ptr + row.to(tl.int64) * NG
    c0 = seg * SEG
    kmax = tl.zeros([BLOCK // G], dtype=tl.uint32)
    kinv = tl.zeros([BLOCK // G], dtype=tl.uint32)
    for c in range(c0 + tl.maximum(lo - c0, 0) // BLOCK * BLOCK, tl.minimum(c0 + SEG, hi), BLOCK):
        cols = c + tl.arange(0, BLOCK)
        if (c >= lo) & (c + BLOCK <= hi):  # inside the window: no mask, vector loads
            x = tl.load(x_row + cols)
        else:
            x = tl.load(x_row + cols, mask=(cols >= lo) & (cols < hi), other=float("-inf"))
        x = tl.where(x == x, x, float("-inf"))
        gmax = tl.max(tl.reshape(x, [BLOCK // G, G]), axis=1)
        groups = c // G + tl.arange(0, BLOCK // G)
        tl.store(m_row + groups, gmax, mask=groups < NG)
        key = _topk_keys(gmax)
        kmax = tl.maximum(kmax, key)
        kinv = tl.maximum(kinv, tl.where(key != 0, ~key, 0))
    r_out = range_ptr + (row.to(tl.int64) * S + seg) * 2
    tl.store(r_out, tl.max(kmax, axis=0).to(tl.int32, bitcast=True))
    tl.store(r_out + 1, tl.max(kinv, axis=0).to(tl.int32, bitcast=True))


@triton.jit
def _threshold_topk_kernel(
    bmax_ptr,  # f32 [R, NG]
    range_ptr,  # i32 [R, S, 2]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R, 2]: tau (uint32 key bits: every top-k candidate has key >= tau), row max key
    C,
    S,
    k,
    NG,
    G: tl.constexpr,
    T_LEVELS: tl.constexpr,
    RADIX_BITS: tl.constexpr,
    NB: tl.constexpr,
    S_BLOCK: tl.constexpr,
    BLOCK: tl.constexpr,
    HIST_MASK: tl.constexpr,
):
    row = tl.program_id(0)
    kmax = tl.zeros([], dtype=tl.uint32)
    kinv = tl.zeros([], dtype=tl.uint32)
    for s0 in range(0, S, S_BLOCK):
        offs_s = s0 + tl.arange(0, S_BLOCK)
        r_in = range_ptr + (row.to(tl.int64) * S + offs_s) * 2
        kmax = tl.maximum(kmax, tl.max(tl.load(r_in, mask=offs_s < S, other=0).to(tl.uint32, bitcast=True), 0))
        kinv = tl.maximum(kinv, tl.max(tl.load(r_in + 1, mask=offs_s < S, other=0).to(tl.uint32, bitcast=True), 0))
    base = tl.minimum(~kinv, kmax)
    lo, hi = _window(starts_ptr, ends_ptr, row, C)
    m_row = bmax_ptr + row.to(tl.int64) * NG + lo // G
    ng = tl.where(hi > lo, (hi + G - 1) // G - lo // G, 0)
    offs = tl.arange(0, BLOCK)
    key0 = _topk_keys(tl.load(m_row + offs, mask=offs < ng, other=float("-inf")))
    prefix, _, _, short = _radix_select(key0, m_row, m_row, ng, 0, k, base, _key_bits(base, kmax), T_LEVELS,
                                        RADIX_BITS, NB, BLOCK, HIST_MASK)
    tl.store(tau_ptr + row * 2, tl.where(short != 0, 0, base + prefix).to(tl.int32, bitcast=True))
    tl.store(tau_ptr + row * 2 + 1, kmax.to(tl.int32, bitcast=True))


@triton.jit
def _load_tile(x_row, m_row, c, lo, hi, NG, tau_f, G: tl.constexpr, BLOCK: tl.constexpr, WIDTH: tl.constexpr,
               GROUP_SKIP: tl.constexpr):
    """(columns, values) of the [BLOCK // WIDTH, WIDTH] tile of columns [c, c + BLOCK): -inf
    outside the window and, with GROUP_SKIP, in groups whose maximum is below tau (not read).
    Inside the window the mask is constant over a thread's WIDTH columns: vector loads."""
    cols = c + tl.arange(0, BLOCK // WIDTH)[:, None] * WIDTH + tl.arange(0, WIDTH)[None, :]
    if GROUP_SKIP:
        g = (c + tl.arange(0, BLOCK // WIDTH) * WIDTH) // G  # WIDTH divides G
        m = (tl.load(m_row + g, mask=g < NG, other=float("-inf")) >= tau_f)[:, None]
        if (c >= lo) & (c + BLOCK <= hi):
            x = tl.load(x_row + cols, mask=m, other=float("-inf"))
        else:
            x = tl.load(x_row + cols, mask=m & (cols >= lo) & (cols < hi), other=float("-inf"))
    else:
        if (c >= lo) & (c + BLOCK <= hi):
            x = tl.load(x_row + cols)
        else:
            x = tl.load(x_row + cols, mask=(cols >= lo) & (cols < hi), other=float("-inf"))
    return cols, x


@triton.jit
def _count_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R, 2]
    bmax_ptr,  # f32 [R, NG] (GROUP_SKIP)
    cnt_ptr,  # i32 [R, S]: elements >= tau per segment
    C,
    S,
    SEG,
    stride_xr,
    NG,
    G: tl.constexpr,
    BLOCK: tl.constexpr,
    WIDTH: tl.constexpr,  # columns per tile row (GROUP_SKIP: the group mask granule)
    GROUP_SKIP: tl.constexpr,
):
    pid = tl.program_id(0)
    row = pid // S
    seg = pid - row * S
    lo, hi = _window(starts_ptr, ends_ptr, row, C)
    tau_f = _key_float(tl.load(tau_ptr + row * 2).to(tl.uint32, bitcast=True))
    x_row = x_ptr + row.to(tl.int64) * stride_xr
    m_row = bmax_ptr + row.to(tl.int64) * NG
    c0 = seg * SEG
    n = tl.zeros([BLOCK // WIDTH, WIDTH], dtype=tl.int32)
    for c in range(c0 + tl.maximum(lo - c0, 0) // BLOCK * BLOCK, tl.minimum(c0 + SEG, hi), BLOCK):
        _, x = _load_tile(x_row, m_row, c, lo, hi, NG, tau_f, G, BLOCK, WIDTH, GROUP_SKIP)
        n += (x >= tau_f).to(tl.int32)
    tl.store(cnt_ptr + row.to(tl.int64) * S + seg, tl.sum(tl.sum(n, axis=1), axis=0))


@triton.jit
def _compact_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R, 2]
    bmax_ptr,  # f32 [R, NG] (GROUP_SKIP)
    cnt_ptr,  # i32 [R, S]
    buf_ptr,  # i64 [R, CAP]: column << 32 | float bits of the elements >= tau, in column order
    C,
    S,
    SEG,
    CAP,
    stride_xr,
    NG,
    G: tl.constexpr,
    BLOCK: tl.constexpr,
    WIDTH: tl.constexpr,  # columns per tile row: counted and ranked inside one thread
    S_BLOCK: tl.constexpr,
    GROUP_SKIP: tl.constexpr,
):
    pid = tl.program_id(0)
    row = pid // S
    seg = pid - row * S
    c_row = cnt_ptr + row.to(tl.int64) * S
    total = tl.zeros([], dtype=tl.int32)
    base = tl.zeros([], dtype=tl.int32)
    for s0 in range(0, S, S_BLOCK):
        offs_s = s0 + tl.arange(0, S_BLOCK)
        counts = tl.load(c_row + offs_s, mask=offs_s < S, other=0)
        total += tl.sum(counts, axis=0)
        base += tl.sum(tl.where(offs_s < seg, counts, 0), axis=0)
    if (total <= CAP) & (tl.load(c_row + seg) > 0):  # else the select reads the row itself
        lo, hi = _window(starts_ptr, ends_ptr, row, C)
        tau_f = _key_float(tl.load(tau_ptr + row * 2).to(tl.uint32, bitcast=True))
        x_row = x_ptr + row.to(tl.int64) * stride_xr
        m_row = bmax_ptr + row.to(tl.int64) * NG
        b_row = buf_ptr + row.to(tl.int64) * CAP
        c0 = seg * SEG
        for c in range(c0 + tl.maximum(lo - c0, 0) // BLOCK * BLOCK, tl.minimum(c0 + SEG, hi), BLOCK):
            cols, x = _load_tile(x_row, m_row, c, lo, hi, NG, tau_f, G, BLOCK, WIDTH, GROUP_SKIP)
            keep = (x >= tau_f).to(tl.int32)
            per = tl.sum(keep, axis=1)  # inside one thread
            first = tl.cumsum(per, axis=0) - per  # kept before this tile row
            pos = base + first[:, None] + tl.cumsum(keep, axis=1) - 1
            val = (cols.to(tl.int64) << 32) | (x.to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF)
            tl.store(b_row + pos, val, mask=(keep != 0) & (pos < CAP))
            base += tl.sum(per, axis=0)


@triton.jit
def _select_topk_kernel(
    x_ptr,  # f32 [R, C]
    starts_ptr,  # i32 [R]
    ends_ptr,  # i32 [R]
    tau_ptr,  # i32 [R, 2] (USE_BUFFER)
    cnt_ptr,  # i32 [R, S] (USE_BUFFER)
    buf_ptr,  # i64 [R, CAP] (USE_BUFFER)
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
    HIST_MASK: tl.constexpr,
):
    row = tl.program_id(0)
    start = tl.load(starts_ptr + row)
    lo, hi = _window(starts_ptr, ends_ptr, row, C)
    x_row = x_ptr + row.to(tl.int64) * stride_xr + lo
    b_row = buf_ptr + row.to(tl.int64) * CAP
    n = hi - lo
    if USE_BUFFER:
        total = tl.zeros([], dtype=tl.int32)
        for s0 in range(0, S, S_BLOCK):
            offs_s = s0 + tl.arange(0, S_BLOCK)
            total += tl.sum(tl.load(cnt_ptr + row.to(tl.int64) * S + offs_s, mask=offs_s < S, other=0), axis=0)
        from_buf = (total <= CAP).to(tl.int32)
        n = tl.where(from_buf != 0, total, n)
    else:  # a compile-time 0: no buffer code at all
        from_buf = 0
    offs = tl.arange(0, BLOCK)
    key0 = _block_keys(x_row, b_row, offs, n, from_buf)
    if from_buf != 0:  # every buffered key is in [tau, the row's largest key]
        base = tl.load(tau_ptr + row * 2).to(tl.uint32, bitcast=True)
        kmax = tl.load(tau_ptr + row * 2 + 1).to(tl.uint32, bitcast=True)
    else:
        kmin, kmax = _key_range(key0, x_row, b_row, n, from_buf, BLOCK)
        base = tl.minimum(kmin, kmax)
    prefix, mask, need, _ = _radix_select(key0, x_row, b_row, n, from_buf, k, base, _key_bits(base, kmax),
                                          (32 + RADIX_BITS - 1) // RADIX_BITS, RADIX_BITS, NB, BLOCK, HIST_MASK)
    out_row = out_ptr + row.to(tl.int64) * k
    bt_row = bt_ptr + (row // rows_per_table).to(tl.int64) * stride_btb
    done = tl.zeros([], dtype=tl.int32)
    eq_run = tl.zeros([], dtype=tl.int32)
    done, eq_run = _emit_block(key0, _block_cols(b_row, lo, offs, n, from_buf), offs, n, base, prefix, mask, need,
                               done, eq_run, out_row, start, bt_row, MAP_SLOTS, PAGE_SIZE)
    for c in range(BLOCK, n, BLOCK):
        o = c + offs
        done, eq_run = _emit_block(_block_keys(x_row, b_row, o, n, from_buf), _block_cols(b_row, lo, o, n, from_buf),
                                   o, n, base, prefix, mask, need, done, eq_run, out_row, start, bt_row, MAP_SLOTS,
                                   PAGE_SIZE)
    for p in range(0, k, BLOCK):  # (constant bounds: Triton 3.4 fails to compile range(done, k, BLOCK) here)
        o = p + offs
        tl.store(out_row + o, tl.full([BLOCK], -1, tl.int32), mask=(o < k) & (o >= done))


def _pow2_floor(v: int) -> int:
    return 1 << (max(1, v).bit_length() - 1)


@functools.lru_cache(maxsize=256)
def _plan(arch: str, r: int, c: int, k: int, radix_bits: int | None, cap: int | None, overrides: tuple) -> dict:
    """Launch constants of one (shape, k) on ``arch``, computed once so that an eager call pays
    no host work beyond its launches."""
    cfg = get_config("topk_indices", arch, rows=r, columns=c, k=k)
    m = {**cfg.meta, **{key: v for key, v in overrides if key.isupper()}}
    opts = {**cfg.options, **{key: v for key, v in overrides if not key.isupper()}}
    rb = radix_bits or m["RADIX_BITS"]
    trb = m.get("T_RADIX_BITS") or rb
    block = m["BLOCK"]
    cap = cap or max(m["CAP_MIN"], m["CAP_PER_K"] * k)
    row_opts = {**opts, "num_warps": m["SELECT_WARPS"]}
    g = max(1, min(m["MAX_GROUP"], _pow2_floor(c // (m["GROUPS_PER_K"] * k)), block))
    ng = triton.cdiv(c, g)
    s = max(1, min(m["MAX_SEGMENTS"], triton.cdiv(c, block), triton.cdiv(m["PROGRAMS"], r)))
    seg = triton.cdiv(triton.cdiv(c, s), block) * block
    s = triton.cdiv(c, seg)
    s_block = max(2, min(m["S_BLOCK_MAX"], triton.next_power_of_2(s)))
    sb = m["SELECT_BLOCK"]
    if not 1 <= sb <= 16384 or sb & (sb - 1):  # _emit_block packs two block counts (< 2^15) into one int32 scan
        raise ValueError(f"SELECT_BLOCK: expected a power of two <= 16384, got {sb}")
    if m["T_LEVELS"] < 1:  # level 0 also detects rows with fewer than k candidate groups
        raise ValueError(f"T_LEVELS: expected >= 1, got {m['T_LEVELS']}")
    hm = bool(m["HIST_MASK"]) and _HIST_MASK
    width = m["WIDTH"]
    skip = bool(m["GROUP_SKIP"]) and g % width == 0
    stream = dict(G=g, BLOCK=block, WIDTH=width, GROUP_SKIP=skip, **opts)
    return dict(
        cap=cap, ng=ng, s=s, seg=seg, g=g,
        groupmax=dict(G=g, BLOCK=block, **opts),
        threshold=dict(G=g, T_LEVELS=m["T_LEVELS"], RADIX_BITS=trb, NB=max(1 << trb, 32), S_BLOCK=s_block,
                       BLOCK=m["THRESHOLD_BLOCK"], HIST_MASK=hm, **{**opts, "num_warps": m["THRESHOLD_WARPS"]}),
        count=stream,
        compact={**stream, "BLOCK": min(block, m["COMPACT_BLOCK"]), "S_BLOCK": s_block},
        select=dict(RADIX_BITS=rb, NB=max(1 << rb, 32), BLOCK=m["SELECT_BLOCK"], S_BLOCK=s_block, HIST_MASK=hm,
                    **row_opts),
    )


@functools.lru_cache(maxsize=16)
def _unused_i64(device: torch.device) -> torch.Tensor:
    """A never-read int64 tensor for ``buf_ptr`` of the buffer-less select launch, so that its
    dead buffer branch is traced with the int64 type it has in the buffered launch."""
    return torch.zeros(1, dtype=torch.int64, device=device)


def launch_topk(logits: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, k: int, out: torch.Tensor, *,
                arch: str, block_table: torch.Tensor | None = None, rows_per_table: int = 1,
                page_size: int = 1, radix_bits: int | None = None, cap: int | None = None,
                meta: dict | None = None) -> None:
    """Exact top-k of ``logits`` [R, C] f32 rows inside [starts, ends) into ``out`` [R, k] int32.

    Writes ``column - starts[r]``, or with ``block_table`` [R // rows_per_table, max_pages]
    int32 the physical slot ``block_table[r // rows_per_table, p // page_size] * page_size +
    p % page_size`` of that position p. Workspace for C > CAP (one allocation): group maxima
    [R, C / G] f32, per-segment key ranges [R, S, 2], tau and the row's largest key [R, 2],
    counts [R, S], a [R, CAP] int64 buffer (CAP = max(CAP_MIN, CAP_PER_K * k)); five launches.
    ``logits`` rows may be a strided view (unit column stride). ``radix_bits``, ``cap`` and
    ``meta`` (config keys: CAPS constexprs, lowercase launch options, e.g. ``{"BLOCK": 4096,
    "num_warps": 4}``) override the config (tests, benchmarks). Launch constants are cached per
    (arch, shape, k, overrides).
    """
    r, c = logits.shape
    if r == 0:
        return
    if out.shape != (r, k) or out.stride() != (k, 1):
        raise ValueError(f"out: expected a [R={r}, k={k}] int32 tensor with contiguous rows, got shape "
                         f"{list(out.shape)} strides {list(out.stride())}")
    if c == 0:  # no columns: no candidates
        out.fill_(-1)
        return
    p = _plan(arch, r, c, k, radix_bits, cap, tuple(sorted((meta or {}).items())))
    slots = block_table is not None
    bt = block_table if slots else out
    stride_xr = logits.stride(0)
    cap = p["cap"]
    if c <= cap:
        _select_topk_kernel[(r,)](logits, starts, ends, out, out, _unused_i64(logits.device), out, bt, c, 1, cap, k,
                                  stride_xr, bt.stride(0), rows_per_table, USE_BUFFER=False, MAP_SLOTS=slots,
                                  PAGE_SIZE=page_size, **p["select"])
        return
    ng, s, seg = p["ng"], p["s"], p["seg"]
    # one allocation: int64 buffer first (8-byte aligned), then group maxima, ranges, tau, counts
    n32 = r * (ng + 2 * s + 2 + s)
    ws = torch.empty(r * cap + (n32 + 1) // 2, dtype=torch.int64, device=logits.device)
    buf = ws[:r * cap]
    w32 = ws[r * cap:].view(torch.int32)
    bmax = w32[:r * ng].view(torch.float32)
    rng = w32[r * ng:r * (ng + 2 * s)]
    tau = w32[r * (ng + 2 * s):r * (ng + 2 * s + 2)]
    cnt = w32[r * (ng + 2 * s + 2):n32]
    _groupmax_topk_kernel[(r * s,)](logits, starts, ends, bmax, rng, c, s, seg, stride_xr, ng, **p["groupmax"])
    _threshold_topk_kernel[(r,)](bmax, rng, starts, ends, tau, c, s, k, ng, **p["threshold"])
    _count_topk_kernel[(r * s,)](logits, starts, ends, tau, bmax, cnt, c, s, seg, stride_xr, ng, **p["count"])
    _compact_topk_kernel[(r * s,)](logits, starts, ends, tau, bmax, cnt, buf, c, s, seg, cap, stride_xr, ng,
                                   **p["compact"])
    _select_topk_kernel[(r,)](logits, starts, ends, tau, cnt, buf, out, bt, c, s, cap, k, stride_xr, bt.stride(0),
                              rows_per_table, USE_BUFFER=True, MAP_SLOTS=slots, PAGE_SIZE=page_size, **p["select"])


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
    p = _plan(arch, r, c, k, None, None, ())
    note = get_config("topk_indices", arch, rows=r, columns=c, k=k).source

    def split(kw):  # (constexprs, launch options)
        return ({key: v for key, v in kw.items() if key.isupper()},
                {key: kw[key] for key in ("num_warps", "num_stages", "waves_per_eu") if key in kw})

    x = {"x_ptr": "*fp32", "starts_ptr": "*i32", "ends_ptr": "*i32"}
    big = ("x_ptr",)
    seg = {"C": "i32", "S": "i32", "SEG": "i32", "stride_xr": "i32", "NG": "i32"}
    aligned = ("stride_xr", "SEG", "NG")
    specs = []
    ce, lo = split(p["groupmax"])
    specs.append(CompileSpec(name=f"topk_groupmax G={ce['G']} BLOCK={ce['BLOCK']}", fn=_groupmax_topk_kernel,
                             signature={**x, "bmax_ptr": "*fp32", "range_ptr": "*i32", **seg}, constexprs=ce,
                             aligned=aligned, large_tensors=big, note=note, **lo))
    ce, lo = split(p["threshold"])
    specs.append(CompileSpec(
        name=f"topk_threshold T_LEVELS={ce['T_LEVELS']} RADIX_BITS={ce['RADIX_BITS']} BLOCK={ce['BLOCK']}",
        fn=_threshold_topk_kernel,
        signature={"bmax_ptr": "*fp32", "range_ptr": "*i32", "starts_ptr": "*i32", "ends_ptr": "*i32",
                   "tau_ptr": "*i32", "C": "i32", "S": "i32", "k": "i32", "NG": "i32"},
        constexprs=ce, aligned=("k", "NG"), note=note, **lo))
    for name, fn, extra in (("count", _count_topk_kernel, {"cnt_ptr": "*i32"}),
                            ("compact", _compact_topk_kernel, {"cnt_ptr": "*i32", "buf_ptr": "*i64", "CAP": "i32"})):
        ce, lo = split(p[name])
        specs.append(CompileSpec(
            name=f"topk_{name} BLOCK={ce['BLOCK']} WIDTH={ce['WIDTH']}" + (" group-skip" if ce["GROUP_SKIP"] else ""),
            fn=fn, signature={**x, "tau_ptr": "*i32", "bmax_ptr": "*fp32", **extra, **seg}, constexprs=ce,
            aligned=aligned + (("CAP",) if "CAP" in extra else ()), large_tensors=big, note=note, **lo))
    ce, lo = split(p["select"])
    for use_buffer, slots in ((True, False), (True, True), (False, False)):
        specs.append(CompileSpec(
            name=f"topk_select RADIX_BITS={ce['RADIX_BITS']} BLOCK={ce['BLOCK']}"
            + (" buffer" if use_buffer else " row") + (" slots" if slots else ""),
            fn=_select_topk_kernel,
            signature={**x, "tau_ptr": "*i32", "cnt_ptr": "*i32", "buf_ptr": "*i64", "out_ptr": "*i32",
                       "bt_ptr": "*i32", "C": "i32", "S": "i32", "CAP": "i32", "k": "i32", "stride_xr": "i32",
                       "stride_btb": "i32", "rows_per_table": "i32"},
            constexprs={**ce, "USE_BUFFER": use_buffer, "MAP_SLOTS": slots, "PAGE_SIZE": 64},
            aligned=("stride_xr", "CAP", "k"), large_tensors=big, note=note, **lo))
    return specs
