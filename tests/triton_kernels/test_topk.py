"""Triton radix-select top-k against the reference: exact sets, ties, NaN/inf, windows."""

from __future__ import annotations

import pytest
import torch

from rocm_dsa import ops
from rocm_dsa.platform import detect
from rocm_dsa.testing import assert_topk_equal, poison


def check(logits, starts, ends, k):
    got = ops.topk_indices(logits, starts, ends, k=k, provider="triton")
    want = ops.topk_indices(logits, starts, ends, k=k, provider="reference")
    assert_topk_equal(got, want)
    return got


def windows(r, c, device):
    starts = torch.tensor([0, 3, 100, 0, c - 1, c][:r], dtype=torch.int32)
    ends = torch.tensor([c, c - 40, 160, c, c, c][:r], dtype=torch.int32)
    return starts.to(device), ends.to(device)


@pytest.mark.parametrize("k", [1, 64, 2048])
def test_random_rows(k, device):
    c = 2500
    x = torch.randn(6, c, device=device)
    check(x, *windows(6, c, device), k)


def test_ties_nan_inf(device):
    c = 1500
    x = torch.randint(-4, 4, (6, c)).float()  # heavy ties: the lower column must win
    x[0, ::3] = float("nan")
    x[1, ::5] = float("-inf")
    x[3, ::7] = float("inf")
    x[4] = float("nan")  # its one-column window holds no candidate
    check(x.to(device), *windows(6, c, device), 300)


def test_all_equal_and_fewer_candidates_than_k(device):
    c = 700
    x = torch.full((3, c), 0.5)
    x[1, 10:] = float("-inf")  # 10 candidates < k
    x[2] = -0.0
    x[2, ::2] = 0.0  # +0 and -0 are equal values: ties by column
    got = check(x.to(device), torch.zeros(3, dtype=torch.int32, device=device),
                torch.full((3,), c, dtype=torch.int32, device=device), 64)
    assert got[1, 10:].eq(-1).all()
    assert got[0].tolist() == list(range(64))  # equal values: the 64 lowest columns, in order


def test_offsets_are_window_relative_and_starts_may_be_negative(device):
    x = torch.randn(2, 400, device=device)
    starts = torch.tensor([-5, 50], dtype=torch.int32, device=device)
    ends = torch.tensor([400, 60], dtype=torch.int32, device=device)
    got = check(x, starts, ends, 16)
    assert got[1, :10].sort().values.tolist() == list(range(10)) and got[1, 10:].eq(-1).all()


@pytest.mark.parametrize("radix_bits", [5, 6, 8])
def test_radix_widths_and_poisoned_output(radix_bits, device):
    """Every digit width (5/6 leave a short last level) and every output slot written."""
    from rocm_dsa.triton_kernels import topk as tk

    x = torch.randn(4, 900, device=device) * 1e3
    x[1] = x[1].round()  # ties across digit boundaries
    x[2, 100:200] = float("inf")
    starts, ends = windows(4, 900, device)
    out = poison(torch.empty(4, 120, dtype=torch.int32, device=device))
    tk.launch_topk(x, starts, ends, 120, out, arch=detect(x.device).arch, radix_bits=radix_bits)
    assert_topk_equal(out, ops.topk_indices(x, starts, ends, k=120, provider="reference"))


@pytest.mark.parametrize("cap, meta", [(4096, {}), (300, {}), (300, {"THRESHOLD_BLOCK": 128}), (40, {})])
def test_every_path(cap, meta, device):
    """cap >= C: one program per row reads the row; 300: group-max filter + buffer (the group
    maxima in one threshold block or in several); 40 (< the candidates >= tau): the buffer
    overflows and the row program falls back to the row."""
    from rocm_dsa.triton_kernels import topk as tk

    x = torch.randn(3, 2000, device=device)
    x[2, 1000:1500] = 4.0  # 500 tied candidates at the threshold
    starts = torch.tensor([0, 7, 900], dtype=torch.int32, device=device)
    ends = torch.tensor([2000, 1500, 2000], dtype=torch.int32, device=device)
    out = poison(torch.empty(3, 100, dtype=torch.int32, device=device))
    tk.launch_topk(x, starts, ends, 100, out, arch=detect(x.device).arch, cap=cap, meta=meta)
    assert_topk_equal(out, ops.topk_indices(x, starts, ends, k=100, provider="reference"))


def test_wide_rows_many_segments(device):
    """Rows of 2^14 columns split into several segments, k = 2048 (DeepSeek-V3.2)."""
    x = torch.randn(2, 1 << 14, device=device)
    x[1] = torch.rand(1 << 14, device=device) * 2
    x[1, 5000:9000] = 3.0  # 4000 tied maxima: the 2048 lowest columns are the answer
    got = check(x, torch.zeros(2, dtype=torch.int32, device=device),
                torch.full((2,), 1 << 14, dtype=torch.int32, device=device), 2048)
    assert sorted(got[1].tolist()) == list(range(5000, 5000 + 2048))


@pytest.mark.parametrize("meta", [{"PROGRAMS": 16}, {"PROGRAMS": 16, "THRESHOLD_BLOCK": 128, "SELECT_BLOCK": 256}])
def test_segments_clustered_and_empty(meta, device):
    """Four segments per row: all candidates in one segment (row 0), candidates only in the last
    segment behind empty ones (row 1), a window ending inside the first segment (row 2), and one
    segment holding more than CAP candidates (row 3 overflows and falls back to the row)."""
    from rocm_dsa.triton_kernels import topk as tk

    c, k = 6000, 200
    x = torch.randn(4, c, device=device) - 10.0
    x[0, 2100:2400] = torch.randn(300, device=device) + 5.0
    x[1, 5700:] = torch.randn(300, device=device).round() + 5.0  # ties inside the last segment
    x[3, 100:1100] = 3.0  # 1000 tied maxima > cap: exact fallback
    starts = torch.tensor([0, 0, 5, 0], dtype=torch.int32, device=device)
    ends = torch.tensor([c, c, 1500, c], dtype=torch.int32, device=device)
    out = poison(torch.empty(4, k, dtype=torch.int32, device=device))
    tk.launch_topk(x, starts, ends, k, out, arch=detect(x.device).arch, cap=600, meta=meta)
    assert_topk_equal(out, ops.topk_indices(x, starts, ends, k=k, provider="reference"))
    assert sorted(out[3].tolist()) == list(range(100, 100 + k))


# ---- the wide-row path: group maxima, tau, count + compaction, select -------------------------

#: config variants of the wide-row path: Triton's masked histogram or its fallback, group skipping
#: on/off, other digit widths and levels, re-read blocks in the threshold and the select, wide
#: tile rows, several compaction steps per segment
WIDE_VARIANTS = [
    {},
    {"HIST_MASK": 0, "GROUPS_PER_K": 2, "T_LEVELS": 1},
    {"GROUP_SKIP": 0, "RADIX_BITS": 6, "T_RADIX_BITS": 5, "T_LEVELS": 3},
    {"THRESHOLD_BLOCK": 64, "SELECT_BLOCK": 128, "COMPACT_BLOCK": 128, "WIDTH": 16},
]


def mixed_rows(c, device):
    """Random, tied at the threshold, NaN/-inf/+inf/-0 and narrow-window rows + their windows."""
    x = torch.randn(6, c)
    x[1] = torch.randint(-3, 3, (c,)).float()  # heavy ties: the threshold bin holds hundreds
    x[2, ::3] = float("nan")
    x[2, 1::5] = float("-inf")
    x[2, 7::101] = float("inf")
    x[3] = x[3].round()
    x[3][x[3] == 0] = -0.0
    x[3, ::2] = x[3, ::2].abs()  # +0 and -0 tie
    x[5, : c // 2] = float("-inf")  # fewer candidates than k in its window
    starts = torch.tensor([0, 5, 100, 0, c - 150, c // 2 - 30], dtype=torch.int32)
    ends = torch.tensor([c, c - 7, c, c - 1, c, c // 2 + 90], dtype=torch.int32)
    return x.to(device), starts.to(device), ends.to(device)


def test_wide_path_variants_exact_identical_and_deterministic(device):
    """Every config variant returns the exact top-k, and the same bytes (the prefix order is
    column order whatever the path); a second run gives the same output."""
    from rocm_dsa.triton_kernels import topk as tk

    x, starts, ends = mixed_rows(3000, device)
    k = 200
    want = ops.topk_indices(x, starts, ends, k=k, provider="reference")
    first = None
    for meta in WIDE_VARIANTS:
        out = poison(torch.empty(6, k, dtype=torch.int32, device=device))
        tk.launch_topk(x, starts, ends, k, out, arch=detect(x.device).arch, cap=600, meta=meta)
        assert_topk_equal(out, want)
        if first is None:
            first = out
            again = poison(torch.empty_like(out))
            tk.launch_topk(x, starts, ends, k, again, arch=detect(x.device).arch, cap=600, meta=meta)
            assert torch.equal(again, first)
        assert torch.equal(out, first), meta


class _KeepWorkspace:
    """Stands in for ``torch`` inside the top-k module and keeps the tensors it allocates."""

    def __init__(self):
        self.made = []

    def __getattr__(self, name):
        return getattr(torch, name)

    def empty(self, *a, **kw):
        t = torch.empty(*a, **kw)
        self.made.append(t)
        return t


def keys_of(x):
    """uint32 top-k keys (as int64) of float32 ``x``; 0 for NaN and -inf."""
    bits = torch.where(x == 0, torch.zeros_like(x), x).view(torch.int32).long() & 0xFFFFFFFF
    key = torch.where(bits >= 1 << 31, bits ^ 0xFFFFFFFF, bits | (1 << 31))
    return torch.where(torch.isnan(x) | (x == float("-inf")), torch.zeros_like(key), key)


@pytest.mark.parametrize("meta", [{}, {"GROUP_SKIP": 0, "COMPACT_BLOCK": 128}])
def test_workspace_tau_counts_and_buffer(meta, device, monkeypatch):
    """The workspace after a call: tau bounds the k-th largest group maximum from below (0 when
    fewer than k groups hold a candidate), next to it the row's largest key; the segment counts
    are the elements >= tau; the buffer holds them (column << 32 | float bits) in column order,
    so the select reads the buffer, not the row."""
    from rocm_dsa.triton_kernels import topk as tk

    x, starts, ends = mixed_rows(3000, device)
    x[1, 1000:1100] = 9.0  # 100 tied maxima inside k
    r, c, k, cap = 6, 3000, 200, 1200
    keep = _KeepWorkspace()
    monkeypatch.setattr(tk, "torch", keep)
    out = poison(torch.empty(r, k, dtype=torch.int32, device=device))
    tk.launch_topk(x, starts, ends, k, out, arch=detect(x.device).arch, cap=cap, meta=meta)
    monkeypatch.undo()
    assert_topk_equal(out, ops.topk_indices(x, starts, ends, k=k, provider="reference"))
    p = tk._plan(detect(x.device).arch, r, c, k, None, cap, tuple(sorted(meta.items())))
    ws = keep.made[-1].cpu()
    s, ng, g = p["s"], p["ng"], p["g"]
    buf = ws[:r * cap].reshape(r, cap)
    w32 = ws[r * cap:].view(torch.int32).long() & 0xFFFFFFFF
    tau = w32[r * (ng + 2 * s):r * (ng + 2 * s + 2)].reshape(r, 2)
    cnt = w32[r * (ng + 2 * s + 2):r * (ng + 3 * s + 2)].reshape(r, s)
    assert int(cnt.sum(1).le(cap).sum()) >= 5  # the buffer path, not the fallback
    xc = x.cpu()
    for row in range(r):
        lo, hi = int(starts[row].clamp(0, c)), int(ends[row].clamp(0, c))
        key = keys_of(xc[row, lo:hi])
        groups = torch.zeros((c + g - 1) // g * g, dtype=torch.long)
        groups[lo:hi] = key
        gmax = groups.view(-1, g).max(1).values  # maxima of the groups of G columns
        if int(gmax.ne(0).sum()) >= k:
            assert 0 < tau[row, 0] <= gmax.sort(descending=True).values[k - 1]
        else:
            assert tau[row, 0] == 0
        assert tau[row, 1] == int(key.max())
        sel = key.ne(0) & key.ge(tau[row, 0])
        assert int(sel.sum()) >= min(k, int(key.ne(0).sum()))
        total = int(cnt[row].sum())
        assert total == int(sel.sum())
        if total <= cap:
            cols = torch.arange(lo, hi)[sel]
            assert (buf[row, :total] >> 32).tolist() == cols.tolist()
            bits = (buf[row, :total] & 0xFFFFFFFF).to(torch.int64)
            assert bits.tolist() == (xc[row, lo:hi][sel].view(torch.int32).long() & 0xFFFFFFFF).tolist()


def test_wide_path_maps_slots_through_the_block_table(device):
    """MAP_SLOTS in the wide-row path: slots equal the positions mapped through the page table
    (two query rows per request)."""
    from rocm_dsa.cache import positions_to_slots
    from rocm_dsa.triton_kernels import topk as tk

    x, starts, ends = mixed_rows(3000, device)
    starts = torch.zeros_like(starts)
    page, k = 16, 120
    table = torch.randperm(4 * 200, dtype=torch.int32).reshape(4, 200)[:3].contiguous().to(device)
    arch = detect(x.device).arch
    pos = poison(torch.empty(6, k, dtype=torch.int32, device=device))
    tk.launch_topk(x, starts, ends, k, pos, arch=arch, cap=600)
    assert_topk_equal(pos, ops.topk_indices(x, starts, ends, k=k, provider="reference"))
    for meta in ({}, {"GROUP_SKIP": 0}):
        slots = poison(torch.empty(6, k, dtype=torch.int32, device=device))
        tk.launch_topk(x, starts, ends, k, slots, arch=arch, cap=600, meta=meta, block_table=table,
                       rows_per_table=2, page_size=page)
        assert torch.equal(slots.cpu(), positions_to_slots(pos.cpu(), table.cpu().repeat_interleave(2, 0), page))


def test_all_equal_wide_rows_overflow_to_the_exact_path(device):
    """All-equal rows: every candidate is >= tau, the buffer overflows, the row path takes the
    k lowest columns; a row of +inf among finite values and an all-NaN row."""
    c, k = 3000, 200
    x = torch.full((3, c), 0.75)
    x[1, 2000:2300] = float("inf")
    x[2] = float("nan")
    z = torch.zeros(3, dtype=torch.int32)
    got = check(x.to(device), z.to(device), torch.full((3,), c, dtype=torch.int32, device=device), k)
    assert got[0].tolist() == list(range(k))
    assert sorted(got[1].tolist()) == list(range(2000, 2000 + k))
    assert got[2].eq(-1).all()
