"""rocm_dsa.testing: tolerance comparison, top-k set comparison, output poisoning."""

from __future__ import annotations

import math

import pytest
import torch

from rocm_dsa.testing import (TOLERANCES, assert_close, assert_topk_equal, compare, poison, topk_overlap,
                              topk_set_diff)

INF, NAN = math.inf, math.nan


def _t(rows):
    return torch.tensor(rows, dtype=torch.int32)


def test_topk_equal_accepts_same_sets_in_any_order():
    assert_topk_equal(_t([[3, 1, 2, -1], [0, 5, -1, -1]]), _t([[1, 2, 3, -1], [5, 0, -1, -1]]))
    assert_topk_equal(_t([[-1, -1]]), _t([[-1, -1]]))


@pytest.mark.parametrize(
    "actual,match",
    [
        ([[3, -1, 2, -1]], "not a valid prefix"),  # -1 inside the prefix
        ([[-1, 3, 2, 1]], "not a valid prefix"),  # -1 first
        ([[3, 2, 1, -7]], "not a valid prefix"),  # poison value in the tail
        ([[3, 2, -7, -1]], "not a valid prefix"),  # another negative than -1
        ([[3, 3, 1, -1]], "repeats an index"),  # duplicate
        ([[3, 2, 4, -1]], r"missing \[1\], extra \[4\]"),  # set difference
        ([[3, 2, -1, -1]], r"missing \[1\]"),  # too few
        ([[3, 2, 1, 0]], r"extra \[0\]"),  # too many
    ],
)
def test_topk_equal_rejects(actual, match):
    expected = _t([[1, 2, 3, -1]])
    with pytest.raises(AssertionError, match=match):
        assert_topk_equal(_t(actual), expected)


def test_topk_equal_reports_the_row_and_shape():
    with pytest.raises(AssertionError, match="row 1 differs"):
        assert_topk_equal(_t([[0, 1], [2, 3]]), _t([[1, 0], [2, 4]]))
    with pytest.raises(AssertionError, match="shape"):
        assert_topk_equal(_t([[0, 1, -1]]), _t([[0, 1]]))
    # 3-D index tensors (decode: [B, s_q, topk]) compare row by row
    a = _t([[[0, 1], [2, -1]]])
    assert_topk_equal(a, _t([[[1, 0], [2, -1]]]))
    with pytest.raises(AssertionError, match="row 1"):
        assert_topk_equal(a, _t([[[1, 0], [3, -1]]]))


def test_topk_overlap():
    assert topk_overlap(_t([[0, 1, 2, 3]]), _t([[3, 2, 1, 0]])) == 1.0
    assert topk_overlap(_t([[0, 1, 9, 8]]), _t([[3, 2, 1, 0]])) == 0.5
    assert topk_overlap(_t([[0, 1], [5, -1]]), _t([[0, 1], [6, -1]])) == 0.5
    assert topk_overlap(_t([[-1, -1]]), _t([[-1, -1]])) == 1.0
    assert topk_overlap(_t([[4, -1]]), _t([[-1, -1]])) == 0.0


def test_compare_nonfinite_must_match():
    e = torch.tensor([1.0, INF, -INF, NAN])
    assert compare(e.clone(), e).nonfinite_mismatch == 0
    assert compare(torch.tensor([1.0, INF, INF, NAN]), e).nonfinite_mismatch == 1  # -inf vs +inf
    assert compare(torch.tensor([1.0, INF, -INF, 0.0]), e).nonfinite_mismatch == 1  # NaN vs finite
    assert compare(torch.tensor([NAN, INF, -INF, NAN]), e).nonfinite_mismatch == 1
    with pytest.raises(ValueError, match="shape"):
        compare(torch.zeros(3), torch.zeros(4))


def test_compare_figures():
    e = torch.tensor([1.0, 2.0, 4.0])
    d = compare(e + torch.tensor([0.0, 0.1, 0.0]), e)
    assert d.max_abs == pytest.approx(0.1, rel=1e-6) and d.max_rel == pytest.approx(0.05, rel=1e-6)
    assert 0.99 < d.cosine <= 1.0
    assert compare(-e, e).cosine == pytest.approx(-1.0)
    assert compare(torch.zeros(3), torch.zeros(3)).cosine == 1.0


def test_assert_close_uses_dtype_tolerance():
    e = torch.randn(64, 64)
    assert_close(e.to(torch.bfloat16), e)  # bf16 rounding passes at bf16 tolerance
    with pytest.raises(AssertionError, match="max_abs"):
        assert_close(e.to(torch.bfloat16).float(), e)  # the same data fails at fp32 tolerance
    assert_close(e.to(torch.bfloat16).float(), e, dtype=torch.bfloat16)
    bad = e.clone()
    bad[3, 3] += 1.0
    with pytest.raises(AssertionError, match="out"):
        assert_close(bad, e, name="out")
    nan = e.clone()
    nan[0, 0] = NAN
    with pytest.raises(AssertionError, match="nonfinite_mismatch=1"):
        assert_close(nan, e)
    inf = torch.tensor([INF, 1.0])
    assert_close(inf.clone(), inf)
    assert set(TOLERANCES) >= {torch.float32, torch.bfloat16, torch.float8_e4m3fnuz}


def test_poison():
    assert torch.isnan(poison(torch.zeros(3))).all()
    assert torch.isnan(poison(torch.zeros(3, dtype=torch.bfloat16)).float()).all()
    assert (poison(torch.zeros(3, dtype=torch.int32)) == -7).all()
    assert (poison(torch.zeros(3, dtype=torch.int64)) == -7).all()
    assert (poison(torch.zeros(3, dtype=torch.uint8)) == 0xA5).all()
    t = torch.zeros(2)
    assert poison(t) is t  # in place


def test_topk_set_diff_counts_rows_whose_sets_differ():
    want = _t([[3, 1, 2, -1], [0, 5, -1, -1], [7, -1, -1, -1]])
    assert topk_set_diff(_t([[1, 2, 3, -1], [5, 0, -1, -1], [7, -1, -1, -1]]), want) == \
        {"rows": 3, "rows_differ": 0, "prefix_ok": True}
    # row 1 has another index, row 2 a -1 inside its prefix (same set, bad layout)
    d = topk_set_diff(_t([[1, 2, 3, -1], [5, 4, -1, -1], [-1, 7, -1, -1]]), want)
    assert d == {"rows": 3, "rows_differ": 1, "prefix_ok": False}
    with pytest.raises(ValueError, match="actual/expected"):
        topk_set_diff(_t([[1, 2]]), _t([[1, 2, 3]]))
