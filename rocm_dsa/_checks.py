"""Argument validation shared by the public ops: errors name the argument, the expected and the
received shape/dtype/device. Checks read only metadata: no host-device synchronization."""

from __future__ import annotations

from collections.abc import Sequence

import torch

INDEX_DTYPES = (torch.int32, torch.int64)


def _fmt_shape(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"


def check_tensor(
    name: str,
    t: object,
    *,
    dtype: torch.dtype | Sequence[torch.dtype] | None = None,
    shape: Sequence[int | str | None] | None = None,
    device: torch.device | None = None,
    contiguous: bool = False,
    dims: dict[str, int] | None = None,
) -> torch.Tensor:
    """Validate one tensor argument and return it.

    ``shape`` entries: an int (exact), a str (a named dim: bound on first use through ``dims``,
    then checked for equality) or None (any). Raises TypeError (not a tensor / wrong dtype) or
    ValueError (shape, device, layout) with the argument's name in the message.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if dtype is not None:
        allowed = (dtype,) if isinstance(dtype, torch.dtype) else tuple(dtype)
        if t.dtype not in allowed:
            want = " or ".join(str(d) for d in allowed)
            raise TypeError(f"{name}: expected dtype {want}, got {t.dtype} (shape {list(t.shape)})")
    if shape is not None:
        ok = t.dim() == len(shape)
        if ok:
            for i, s in enumerate(shape):
                if s is None:
                    continue
                if isinstance(s, str):
                    assert dims is not None
                    if s in dims and dims[s] != t.shape[i]:
                        ok = False
                        break
                    dims.setdefault(s, t.shape[i])
                elif t.shape[i] != s:
                    ok = False
                    break
        if not ok:
            expect = [dims.get(s, s) if isinstance(s, str) and dims else s for s in shape]
            raise ValueError(f"{name}: expected shape {_fmt_shape(expect)}, got {list(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device}, got one on {t.device}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor (shape {list(t.shape)}, "
                         f"strides {list(t.stride())}); call .contiguous() first")
    return t


def check_positive(name: str, value: object) -> int:
    """An int >= 1, else ValueError/TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name}: expected >= 1, got {value}")
    return value


def check_scale(name: str, value: object) -> float:
    """A finite float > 0, else ValueError/TypeError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    v = float(value)
    if not (v > 0 and v != float("inf")):
        raise ValueError(f"{name}: expected a finite value > 0, got {value}")
    return v
