"""Adversarial inputs for the Triton top-k (triton_kernels/topk.py), wide-row path forced at small
sizes through ``cap`` / ``meta`` overrides: ties straddling the k-th value, +inf counts around k,
-0/+0, denormals, +-FLT_MAX, last-mantissa-bit differences, rows with fewer than k candidates,
all -inf / all NaN rows, top values inside one group, windows cut mid-block, starts > ends,
ends > C, k > C, C = CAP +- 1, strided rows. Every case is checked as a set against the reference
provider, with a poisoned output buffer; config values that would lose candidates or store out of
bounds (T_LEVELS 0, SELECT_BLOCK > 16384) are refused; zero columns give -1 like the reference.
"""

from __future__ import annotations

import pytest
import torch

from rocm_dsa import ops
from rocm_dsa.platform import detect
from rocm_dsa.testing import assert_topk_equal, poison

FMAX = torch.finfo(torch.float32).max


def nasty_rows(c: int, k: int, seed: int = 0):
    """14 adversarial rows of c columns and their windows (some cut mid-block, past C, negative)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    a = torch.randn(c, generator=g)
    a[::7] = 1.0  # ~c/7 ties at the threshold value
    big = a > 1.0
    a[big] = 5.0 * torch.rand(int(big.sum()), generator=g) + 1.01
    rows.append(a)
    rows.append(torch.full((c,), float("-inf")))
    rows.append(torch.full((c,), float("nan")))
    a = torch.randn(c, generator=g)
    a[torch.randperm(c, generator=g)[: max(0, min(c, k + k % 3 - 1))]] = float("inf")  # +inf count around k
    rows.append(a)
    a = torch.zeros(c)
    a[1::2] = -0.0
    a[::97] = 1.0
    a[5::53] = -1.0
    rows.append(a)
    rows.append((torch.randint(-50, 50, (c,), generator=g).double() * 1.4e-45).float())  # denormals
    a = torch.randn(c, generator=g) * torch.tensor([1e38, 1e-38, 3e38, 1e-30])[torch.randint(0, 4, (c,), generator=g)]
    a[::101] = FMAX
    a[1::103] = -FMAX
    rows.append(a)
    a = torch.randn(c, generator=g) - 20
    p = min(1234, c // 2)
    a[p:p + 64] = torch.randn(len(a[p:p + 64]), generator=g) + 20  # the top values inside one group
    rows.append(a)
    rows.append(-torch.rand(c, generator=g) - 1e-3)  # negative only
    ones = torch.full((c,), 1.0).view(torch.int32)
    rows.append((ones + torch.randint(0, 3, (c,), dtype=torch.int32, generator=g)).view(torch.float32))  # last bits
    a = torch.full((c,), float("-inf"))
    a[torch.randperm(c, generator=g)[:37]] = torch.randn(37, generator=g)  # fewer than k candidates
    rows.append(a)
    rows.append(torch.full((c,), -2.5))
    a = torch.zeros(c)
    a[torch.randperm(c, generator=g)[: c // 10]] = torch.randn(c // 10, generator=g)  # 90 % zeros
    rows.append(a)
    a = torch.randint(-2, 3, (c,), generator=g).float()
    a[::5] = float("nan")
    rows.append(a)
    starts = torch.tensor([0, 3, 0, 17, 511, 0, 1, 100, 0, 13, -40, 5, 2, 1]).clamp(max=c)
    ends = torch.tensor([c, c, c, c + 100, c - 511, c, c - 1, c - 100, c, c - 2, c, c - 1000, c, c - 3])
    return torch.stack(rows), starts.to(torch.int32), ends.to(torch.int32)


def run(x, starts, ends, k, device, **kw):
    from rocm_dsa.triton_kernels import topk as tk

    x, starts, ends = x.to(device), starts.to(device), ends.to(device)
    out = poison(torch.empty(x.shape[0], k, dtype=torch.int32, device=device))
    tk.launch_topk(x, starts, ends, k, out, arch=detect(x.device).arch, **kw)
    want = ops.topk_indices(x.contiguous(), starts, ends, k=k, provider="reference")
    assert_topk_equal(out, want)
    return out


@pytest.mark.parametrize("k, cap, meta", [
    (1, 64, {}),
    (7, 64, {"HIST_MASK": 0}),
    (100, 256, {"RADIX_BITS": 3, "T_RADIX_BITS": 2, "T_LEVELS": 4}),
    (257, 600, {"GROUP_SKIP": 0, "T_LEVELS": 1, "GROUPS_PER_K": 1, "WIDTH": 8}),
])
def test_nasty_rows_wide_path(k, cap, meta, device):
    """Group maxima -> tau -> count -> compaction -> select (and the overflow fallback) on every
    adversarial row; the same bytes on a second run (k = 1)."""
    x, starts, ends = nasty_rows(3000, k, seed=k)
    first = run(x, starts, ends, k, device, cap=cap, meta=meta)
    if k == 1:
        assert torch.equal(run(x, starts, ends, k, device, cap=cap, meta=meta), first)


@pytest.mark.parametrize("c", [255, 256, 257])
def test_columns_around_cap(c, device):
    """C = CAP - 1, CAP (row path) and CAP + 1 (wide path with one spare column)."""
    x, starts, ends = nasty_rows(c, 50, seed=c)
    run(x, starts, ends, 50, device, cap=256)


def test_k_above_columns_on_the_wide_path(device):
    """k > C with C > CAP: every candidate, -1 tail."""
    x, starts, ends = nasty_rows(300, 500, seed=3)
    run(x, starts, ends, 500, device, cap=64)


def test_strided_rows_and_degenerate_windows(device):
    """Row stride > C; windows with starts > ends, starts > C, ends < 0, starts < 0."""
    base = torch.randn(5, 3100)
    base[0, 200:260] = 7.0
    x = base[:, :3000]
    starts = torch.tensor([500, 3001, 10, 2999, -5], dtype=torch.int32)
    ends = torch.tensor([400, 4000, -3, 3000, 2500], dtype=torch.int32)
    run(x, starts, ends, 10, device, cap=100)
    starts[0], ends[0] = 0, 3000
    run(x, starts, ends, 40, device, cap=100)


def test_config_values_that_would_lose_candidates_or_write_out_of_bounds_are_rejected(device):
    """T_LEVELS=0 would skip the level that detects rows with fewer than k candidate groups (tau =
    the smallest group maximum would drop candidates); SELECT_BLOCK=32768 would overflow the
    int32 pack of two block counts in the select kernel (a store before the output row).
    Both are refused by the launcher with the config key named."""
    from rocm_dsa.triton_kernels import topk as tk

    x = torch.full((1, 600), float("-inf"), device=device)
    x[0, :10] = torch.arange(10.0, device=device)
    st, en = torch.zeros(1, dtype=torch.int32, device=device), torch.full((1,), 600, dtype=torch.int32, device=device)
    out = torch.empty(1, 20, dtype=torch.int32, device=device)
    arch = detect(x.device).arch
    with pytest.raises(ValueError, match="T_LEVELS"):
        tk.launch_topk(x, st, en, 20, out, arch=arch, cap=64, meta={"T_LEVELS": 0})
    for bad in (32768, 3000):
        with pytest.raises(ValueError, match="SELECT_BLOCK"):
            tk.launch_topk(x, st, en, 20, out, arch=arch, cap=64, meta={"SELECT_BLOCK": bad})


def test_zero_columns_give_minus_one_like_the_reference(device):
    x = torch.empty(2, 0, device=device)
    s = torch.zeros(2, dtype=torch.int32, device=device)
    got = ops.topk_indices(x, s, s + 5, k=3, provider="triton")
    want = ops.topk_indices(x, s, s + 5, k=3, provider="reference")
    assert torch.equal(got.cpu(), want.cpu()) and bool((got == -1).all())
