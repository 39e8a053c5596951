"""Comparison helpers shared by tests, ``rocm-dsa run``, ``check`` and device scripts.

One tolerance rule per dtype (the precision the result was produced in), plus exact set
comparison for top-k results.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

__all__ = ["TOLERANCES", "Diff", "compare", "assert_close", "topk_overlap", "topk_set_diff", "assert_topk_equal",
           "poison"]

#: (atol, rtol, min cosine similarity) by the dtype the tested result was produced in
TOLERANCES: dict[torch.dtype, tuple[float, float, float]] = {
    torch.float64: (1e-10, 1e-10, 1 - 1e-12),
    torch.float32: (1e-4, 1e-4, 1 - 1e-6),
    torch.float16: (2e-3, 2e-3, 0.9999),
    torch.bfloat16: (1.6e-2, 1.6e-2, 0.9995),
    torch.float8_e4m3fn: (0.07, 0.07, 0.995),
    torch.float8_e4m3fnuz: (0.07, 0.07, 0.995),
}


@dataclasses.dataclass
class Diff:
    """Result of :func:`compare`: max abs error, max rel error, cosine similarity, non-finite mismatch."""

    max_abs: float
    max_rel: float
    cosine: float
    nonfinite_mismatch: int

    def ok(self, atol: float, rtol: float, min_cos: float) -> bool:
        return self.nonfinite_mismatch == 0 and (self.max_abs <= atol or self.max_rel <= rtol) \
            and self.cosine >= min_cos


def compare(actual: torch.Tensor, expected: torch.Tensor) -> Diff:
    """Compare two tensors of the same shape in float64; non-finite entries must match exactly
    (same position, same value: +inf, -inf or NaN), finite ones are measured."""
    if actual.shape != expected.shape:
        raise ValueError(f"actual: expected shape {list(expected.shape)}, got {list(actual.shape)}")
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    fa, fe = torch.isfinite(a), torch.isfinite(e)
    mismatch = (fa != fe) | (~fa & ~fe & ~((a == e) | (torch.isnan(a) & torch.isnan(e))))
    both = fa & fe
    if both.any():
        d = (a[both] - e[both]).abs()
        max_abs = float(d.max())
        max_rel = float((d / e[both].abs().clamp_min(1e-6)).max())
        an, en = a[both], e[both]
        denom = float(an.norm() * en.norm())
        cos = float((an * en).sum() / denom) if denom > 0 else (1.0 if float(d.max()) == 0 else 0.0)
    else:
        max_abs = max_rel = 0.0
        cos = 1.0
    return Diff(max_abs, max_rel, cos, int(mismatch.sum()))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, *, dtype: torch.dtype | None = None,
                 atol: float | None = None, rtol: float | None = None, min_cos: float | None = None,
                 name: str = "output") -> Diff:
    """Assert ``actual`` matches ``expected`` within the tolerance of ``dtype`` (default: actual's).

    Passes when non-finite entries match and (max abs <= atol or max rel <= rtol elementwise
    bound) and cosine similarity >= min_cos. Raises AssertionError with the measured figures.
    """
    a0, r0, c0 = TOLERANCES[dtype or actual.dtype]
    atol, rtol, min_cos = atol if atol is not None else a0, rtol if rtol is not None else r0, \
        min_cos if min_cos is not None else c0
    diff = compare(actual, expected)
    a = actual.detach().to("cpu", torch.float64)
    e = expected.detach().to("cpu", torch.float64)
    both = torch.isfinite(a) & torch.isfinite(e)
    elem_ok = bool(((a[both] - e[both]).abs() <= atol + rtol * e[both].abs()).all()) if both.any() else True
    if diff.nonfinite_mismatch or not elem_ok or diff.cosine < min_cos:
        raise AssertionError(
            f"{name}: max_abs={diff.max_abs:.3g} max_rel={diff.max_rel:.3g} cos={diff.cosine:.8f} "
            f"nonfinite_mismatch={diff.nonfinite_mismatch} (atol={atol}, rtol={rtol}, min_cos={min_cos})"
        )
    return diff


def _row_sets(idx: torch.Tensor) -> list[set[int]]:
    rows = idx.detach().cpu().reshape(-1, idx.shape[-1]).tolist()
    return [{v for v in row if v >= 0} for row in rows]


def topk_overlap(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Mean over rows of |A ∩ E| / |E| for -1-padded index rows (1.0 when all rows agree)."""
    fr = [len(a & e) / len(e) if e else float(not a) for a, e in zip(_row_sets(actual), _row_sets(expected))]
    return sum(fr) / max(1, len(fr))


def topk_set_diff(actual: torch.Tensor, expected: torch.Tensor) -> dict[str, Any]:
    """Vectorized comparison of -1-padded top-k index rows on their own device (for benchmark
    scripts at full shapes, where :func:`assert_topk_equal`'s Python sets are slow).

    Args:
        actual, expected: [R, k] integer index rows of the same shape; entries < 0 are padding.
    Returns:
        ``{"rows": R, "rows_differ": rows whose sets of valid entries differ, "prefix_ok":
        whether every row of ``actual`` is its valid entries followed only by negatives}``.
    Raises:
        ValueError: the shapes differ or are not 2-D.
    Semantics: the exact-set contract of :func:`rocm_dsa.ops.topk_indices` (the order within a row
    is not compared), as :func:`assert_topk_equal` checks it in the tests.
    """
    if actual.dim() != 2 or actual.shape != expected.shape:
        raise ValueError(f"actual/expected: expected two [R, k] tensors of one shape, got "
                         f"{list(actual.shape)} and {list(expected.shape)}")
    a, e = actual.long(), expected.long().to(actual.device)
    valid = a >= 0
    n = valid.sum(1)
    prefix_ok = bool((valid == (torch.arange(a.shape[1], device=a.device)[None, :] < n[:, None])).all())
    big = 1 << 40  # sorts after every index
    sa = torch.where(valid, a, big).sort(1).values
    se = torch.where(e >= 0, e, big).sort(1).values
    return {"rows": a.shape[0], "rows_differ": int((sa != se).any(1).sum()), "prefix_ok": prefix_ok}


def assert_topk_equal(actual: torch.Tensor, expected: torch.Tensor, name: str = "indices") -> None:
    """Assert exact index-set equality per row, a -1-free valid prefix, and -1 in the tail only."""
    if actual.shape != expected.shape:
        raise AssertionError(f"{name}: shape {list(actual.shape)} != {list(expected.shape)}")
    a = actual.detach().cpu().reshape(-1, actual.shape[-1]).long()
    valid = a >= 0
    prefix = torch.arange(a.shape[1]).unsqueeze(0) < valid.sum(1, keepdim=True)
    bad = ((valid != prefix) | (~prefix & (a != -1))).any(1)
    if bad.any():
        r = int(bad.nonzero()[0, 0])
        raise AssertionError(f"{name}: row {r} is not a valid prefix followed by -1: {a[r].tolist()[:32]}...")
    srt = a.sort(dim=1).values
    dup = ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any(1)
    if dup.any():
        raise AssertionError(f"{name}: row {int(dup.nonzero()[0, 0])} repeats an index")
    for r, (sa, se) in enumerate(zip(_row_sets(actual), _row_sets(expected))):
        if sa != se:
            raise AssertionError(
                f"{name}: row {r} differs: missing {sorted(se - sa)[:16]}, extra {sorted(sa - se)[:16]}"
            )


def poison(t: torch.Tensor) -> torch.Tensor:
    """Fill an output buffer with a value no correct kernel writes by accident (NaN / 0x7F.. bytes)."""
    if t.is_floating_point():
        return t.fill_(float("nan"))
    return t.fill_(-7 if t.dtype in (torch.int32, torch.int64) else 0xA5)
