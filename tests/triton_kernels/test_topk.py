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
