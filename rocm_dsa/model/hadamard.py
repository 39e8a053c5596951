"""The Hadamard rotation of the lightning indexer (DeepSeek ``rotate_activation``).

DeepSeek-V3.2 rotates indexer queries and keys with a Walsh-Hadamard transform before FP8
quantization: ``hadamard_transform(x, scale=dim ** -0.5)`` from the ``fast_hadamard_transform``
package (DeepSeek-V3.2-Exp ``inference/model.py`` ``rotate_activation``). The matrix is the
Sylvester construction in natural order (``H_1 = [1]``, ``H_2n = [[H_n, H_n], [H_n, -H_n]]``, as
``scipy.linalg.hadamard``); with the ``n ** -0.5`` scale it is symmetric and orthogonal, so
``q . k`` is unchanged while outliers are spread over all 128 dims, which FP8 quantizes better.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["hadamard_matrix", "hadamard_transform"]


@functools.lru_cache(maxsize=8)
def _sylvester(n: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def hadamard_matrix(n: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                    scale: float | None = None) -> torch.Tensor:
    """The n x n Sylvester Hadamard matrix times ``scale`` (default ``n ** -0.5``: orthogonal).

    Args:
        n: size, a power of two (128 for the DeepSeek-V3.2 indexer).
        dtype, device: of the result.
        scale: multiplier; ``1.0`` gives the +-1 matrix.
    Returns:
        [n, n] tensor, symmetric; ``H @ H.T == I`` for the default scale.
    Raises:
        ValueError: n not a power of two >= 1.
    """
    if n < 1 or n & (n - 1):
        raise ValueError(f"n: expected a power of two, got {n}")
    s = n**-0.5 if scale is None else scale
    return (_sylvester(n) * s).to(device=device, dtype=dtype)


def hadamard_transform(x: torch.Tensor, *, scale: float | None = None) -> torch.Tensor:
    """Walsh-Hadamard transform along the last dim: ``x @ H * scale`` (H symmetric).

    Args:
        x: [..., n] floating point, n a power of two.
        scale: default ``n ** -0.5`` (DeepSeek's ``rotate_activation``).
    Returns:
        [..., n] float32 (computed in float32; callers cast where they need to).
    Raises:
        TypeError: x not floating point. ValueError: n not a power of two.
    Semantics: ``fast_hadamard_transform.hadamard_transform(x, scale)`` (Dao-AILab), used by
    DeepSeek-V3.2-Exp ``rotate_activation`` with ``scale = n ** -0.5``.
    """
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {x.dtype}")
    n = x.shape[-1]
    h = hadamard_matrix(n, dtype=torch.float32, device=x.device, scale=scale)
    return x.float() @ h
