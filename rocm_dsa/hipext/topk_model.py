"""Python model of the HIP radix top-k (hip/topk.hip), step for step, runnable on a CPU.

It exists so that the selection logic — key mapping, 11-bit radix digits, the LDS candidate
capacity and its overflow fallback, tie resolution toward lower columns, the final order — is
tested in CI against the reference provider, without a GPU. Every function names the kernel
step it mirrors; change both together.

Kernel paths (one workgroup per row, window n = hi - lo, candidates = not NaN / -inf, handled
as 64-bit composites ``key << 32 | ~column``: distinct; larger = larger value, then lower column):

1. ``n <= k``: every candidate is selected (path ``"all"``).
2. ``n <= cap``: every candidate goes to LDS, the k largest are radix-selected there
   (``"direct"``).
3. Sampled threshold: T = the m-th largest key of S = min(4096, cap) strided samples, with
   m = ceil(S (k + cap) / 2n); one pass keeps keys >= T. If k <= kept <= cap the k largest are
   all kept and are selected in LDS, with radix digits taken relative to the smallest kept key
   (``"sample"``); otherwise the exact path runs.
4. Exact path: radix select over the row with 11-bit digits (11 + 11 + 10 = 32 bits). A first
   histogram totalling <= k candidates selects them all (``"all"``). Then stop as soon as the bin
   holds exactly k_rem keys (``"prefix"``), fits the LDS buffer of ``cap`` entries (``"lds"``:
   composites of the bin radix-selected in LDS), or is one exact key (``"ties"``: the k_rem
   lowest-index ties by an ordered block scan).
5. Order: column ascending (the set is the contract, the order provider-defined; the kernel
   ranks the selected columns by buckets instead of sorting), -1 padding.

Split threshold pass (``splits`` > 1, windows n > cap): ``splits`` workgroups per row each compute
the same T (path 3) and gather the keys >= T of one contiguous chunk of ceil(n / splits) columns
into a bounded slice of ``cap`` entries, storing min(count, cap + 1) (cap + 1 also for T = 0).
The row's workgroup selects from the slices when k <= sum <= cap (``"split"``), otherwise it runs
the exact path directly (a slice overflow or an unusable T is never silent).
"""

from __future__ import annotations

import torch

__all__ = [
    "TOPK_MAX_K",
    "TOPK_RADIX_BINS",
    "TOPK_MAX_CAP",
    "TOPK_STATIC_SMEM_BOUND",
    "TOPK_SAMPLES",
    "DIGIT_BITS",
    "topk_dynamic_smem_bytes",
    "topk_default_cap",
    "topk_keys",
    "sample_count",
    "select_row",
    "topk_rows",
]

# mirrors of hip/dsa_kernels.h
TOPK_MAX_K = 2048
TOPK_RADIX_BINS = 2048
TOPK_MAX_CAP = 8192
TOPK_STATIC_SMEM_BOUND = 1024
TOPK_SAMPLES = 4096
DIGIT_BITS = 11
_U32 = 0xFFFFFFFF


def topk_dynamic_smem_bytes(cap: int) -> int:
    """Dynamic LDS bytes of the top-k kernel for ``cap`` candidates: 2048 histogram bins (u32),
    2048 selected composites (u64), ``cap`` candidate composites (u64)."""
    return TOPK_RADIX_BINS * 4 + TOPK_MAX_K * 8 + cap * 8


def topk_default_cap(max_smem: int) -> int:
    """Candidate capacity for ``max_smem`` bytes of LDS per workgroup: the largest power of two
    <= 8192 that fits with the static LDS (0 if not even 16). gfx942 (64 KiB) -> 4096; gfx950
    (160 KiB) and H100/H200 (227 KiB) -> 8192. Same rule as ``dsa::topk_default_cap``."""
    cap = TOPK_MAX_CAP
    while cap >= 16 and topk_dynamic_smem_bytes(cap) + TOPK_STATIC_SMEM_BOUND > max_smem:
        cap >>= 1
    return cap if cap >= 16 else 0


def topk_keys(x: torch.Tensor) -> torch.Tensor:
    """``topk_key`` of the kernel: f32 [...] -> int64 [...] holding unsigned 32-bit keys.

    Larger float -> larger key; -0.0 maps like +0.0; NaN and -inf map to 0 (not a candidate);
    +inf gets the largest key of any candidate.
    """
    u = x.float().contiguous().view(torch.int32).to(torch.int64) & _U32
    mag = u & 0x7FFFFFFF
    u = torch.where(mag == 0, torch.zeros_like(u), u)
    key = torch.where(u >= 0x80000000, (~u) & _U32, u | 0x80000000)
    bad = (mag > 0x7F800000) | (u == 0xFF800000)
    return torch.where(bad, torch.zeros_like(key), key)


def _find_bin(hist: list[int], k_rem: int) -> tuple[int, int, int]:
    """``find_bin``: (bin, count in bins above it, count in it) for the k_rem-th largest."""
    above = 0
    for b in range(len(hist) - 1, -1, -1):
        if above < k_rem <= above + hist[b]:
            return b, above, hist[b]
        above += hist[b]
    raise AssertionError("find_bin called with fewer keys than k_rem")


def _composite(key: int, col: int) -> int:
    return (key << 32) | (~col & _U32)


def _lds_threshold(comps: list[int], k_rem: int, cpre: int, cbits: int, base: int = 0) -> tuple[int, int, int]:
    """``lds_threshold``: extend (cpre, cbits) over the composites minus ``base`` until exactly
    k_rem of those carrying the prefix are at or above it. Returns (cpre, cbits, k_rem)."""
    while True:
        digit = min(DIGIT_BITS, 64 - cbits)
        hist = [0] * (1 << digit)
        for c in comps:
            c -= base
            if cbits == 0 or c >> (64 - cbits) == cpre:
                hist[(c >> (64 - cbits - digit)) & ((1 << digit) - 1)] += 1
        b, above, cnt = _find_bin(hist, k_rem)
        cpre = (cpre << digit) | b
        cbits += digit
        k_rem -= above
        if cnt == k_rem:
            return cpre, cbits, k_rem


def _take(comps: list[int], cpre: int, cbits: int, base: int = 0) -> list[int]:
    """``lds_take``: the composites at or above the prefix (relative to ``base``)."""
    return [c for c in comps if cbits == 0 or (c - base) >> (64 - cbits) >= cpre]


def _candidate_range(comps: list[int]) -> tuple[int, int]:
    """``candidate_range``: (base, cbits) = (smallest key << 32, 32 - bits of the key range), the
    radix start that skips the leading bits every candidate shares."""
    keys = [c >> 32 for c in comps]
    return min(keys) << 32, 32 - (max(keys) - min(keys)).bit_length()


def _select_kept(kept: list[int], k: int) -> list[int]:
    """The k largest of the gathered candidates (k <= len(kept)), as the kernel selects them in
    LDS after the sampled-threshold pass."""
    base, cbits = _candidate_range(kept)
    cpre, cbits, _ = _lds_threshold(kept, k, 0, cbits, base)
    return _take(kept, cpre, cbits, base)


def sample_count(n: int, k: int, cap: int) -> tuple[int, int]:
    """(S, m) of ``sample_threshold`` for a window of n > cap columns: S = min(4096, cap) strided
    samples (columns j * n // S) and the rank m = ceil(S (k + cap) / 2n) of the threshold among
    them (expected count of keys >= T: (k + cap) / 2)."""
    s = min(TOPK_SAMPLES, cap)
    return s, max(1, min(s, -(-(s * (k + cap)) // (2 * n))))


def _sample_threshold(keys: torch.Tensor, k: int, cap: int) -> int:
    """Path 3's threshold key T: the m-th largest of S strided sample composites, as the lowest
    key carrying the prefix ``lds_threshold`` stops at."""
    n = keys.numel()
    s, m = sample_count(n, k, cap)
    idx = [(j * n) // s for j in range(s)]
    comps = [_composite(int(keys[i]), i) for i in idx]
    cpre, cbits, _ = _lds_threshold(comps, m, 0, 0)
    return ((cpre << (64 - cbits)) >> 32) & _U32


def _exact_path(keys: torch.Tensor, k: int, cap: int) -> tuple[list[int], str]:
    """Path 4: radix selection over the whole row (global histograms)."""
    n = keys.numel()
    cols = torch.arange(n)
    cand = keys != 0
    prefix, pbits, k_rem = 0, 0, k
    while True:
        digit = min(DIGIT_BITS, 32 - pbits)
        m = cand if pbits == 0 else cand & ((keys >> (32 - pbits)) == prefix)
        d = (keys[m] >> (32 - pbits - digit)) & ((1 << digit) - 1)
        hist = torch.bincount(d, minlength=1 << digit).tolist()
        if pbits == 0 and sum(hist) <= k:
            return [_composite(int(kk), int(c)) for kk, c in zip(keys[cand].tolist(), cols[cand].tolist())], "all"
        b, above, cnt = _find_bin(hist, k_rem)
        prefix = (prefix << digit) | b
        pbits += digit
        k_rem -= above
        if cnt == k_rem:
            path = "prefix"
            break
        if cnt <= cap:
            path = "lds"
            break
        if pbits == 32:
            path = "ties"
            break
    top = keys >> (32 - pbits)
    gt = cand & (top > prefix)
    eq = cand & (top == prefix)
    comps = [_composite(int(kk), int(c)) for kk, c in zip(keys[gt].tolist(), cols[gt].tolist())]
    eq_pairs = list(zip(keys[eq].tolist(), cols[eq].tolist()))
    if path == "prefix":
        comps += [_composite(kk, c) for kk, c in eq_pairs]
    elif path == "ties":  # ordered scan: the k_rem lowest columns among the ties
        comps += [_composite(kk, c) for kk, c in eq_pairs[:k_rem]]
    else:  # "lds": radix select on the composites of the bin
        assert len(eq_pairs) <= cap, "the LDS buffer can never overflow"
        cl = [_composite(kk, c) for kk, c in eq_pairs]
        cpre, cbits, _ = _lds_threshold(cl, k_rem, prefix, pbits)
        comps += _take(cl, cpre, cbits)
    return comps, path


def _split_pass(keys: torch.Tensor, k: int, cap: int, splits: int) -> list[int] | None:
    """``_split_threshold_topk_kernel`` + the selection kernel's split branch: the candidate
    composites gathered by the ``splits`` chunk workgroups, or None (exact path) when their
    clamped counts do not sum to k ... cap."""
    n = keys.numel()
    t = _sample_threshold(keys, k, cap)
    length = -(-n // splits)
    slices, counts = [], []
    for c in range(splits):
        c0 = min(c * length, n)
        c1 = min(c0 + length, n)
        if t == 0:
            slices.append([])
            counts.append(cap + 1)
            continue
        seg = keys[c0:c1]
        kept = [_composite(int(kk), c0 + int(i)) for i, kk in enumerate(seg.tolist()) if kk >= t]
        slices.append(kept[:cap])
        counts.append(min(len(kept), cap + 1))
    total = sum(counts)
    if not k <= total <= cap:
        return None
    return [cm for sl in slices for cm in sl]


def select_row(x: torch.Tensor, k: int, cap: int, splits: int = 1) -> tuple[list[int], str]:
    """Top-k of one row window x [n] f32 as the kernel computes it.

    Returns (positions in output order, i.e. ascending; path): "all" (n <= k, or <= k
    candidates), "direct" (n <= cap), "sample" (sampled threshold), "split" (split threshold
    pass, splits > 1), or the exact path's "prefix" / "lds" / "ties".
    """
    keys = topk_keys(x)
    n = keys.numel()
    cols = torch.arange(n)
    cand = keys != 0
    every = [_composite(int(kk), int(c)) for kk, c in zip(keys[cand].tolist(), cols[cand].tolist())]
    comps: list[int] | None = None
    if n <= k:
        comps, path = every, "all"
    elif n <= cap:
        comps, path = every, "direct"
        if len(every) > k:
            cpre, cbits, _ = _lds_threshold(every, k, 0, 0)
            comps = _take(every, cpre, cbits)
    elif splits > 1:
        kept = _split_pass(keys, k, cap, splits)
        if kept is not None:
            comps, path = _select_kept(kept, k), "split"
        else:
            comps, path = _exact_path(keys, k, cap)
    else:
        t = _sample_threshold(keys, k, cap)
        if t != 0:
            kept = [_composite(int(kk), int(c)) for kk, c in zip(keys[keys >= t].tolist(), cols[keys >= t].tolist())]
            if k <= len(kept) <= cap:
                comps, path = _select_kept(kept, k), "sample"
        if comps is None:
            comps, path = _exact_path(keys, k, cap)
    assert len(comps) <= k
    return sorted((~c) & _U32 for c in comps), path


def topk_rows(logits: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, k: int, cap: int, splits: int = 1
              ) -> tuple[torch.Tensor, list[str]]:
    """The kernel's result for every row: logits [R, C] f32, starts/ends [R] int32 -> ([R, k]
    int32 positions relative to starts (-1 padded), path of each row); ``splits`` > 1 models the
    split threshold pass."""
    r, c = logits.shape
    out = torch.full((r, k), -1, dtype=torch.int32)
    paths = []
    for i in range(r):
        s, e = int(starts[i]), int(ends[i])
        lo = min(max(s, 0), c)
        hi = min(max(e, lo), c)
        pos, path = select_row(logits[i, lo:hi], k, cap, splits)
        paths.append(path)
        if pos:
            out[i, : len(pos)] = torch.tensor(pos, dtype=torch.int64) + (lo - s)
    return out, paths
