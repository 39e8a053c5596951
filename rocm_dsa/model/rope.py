"""Rotary position embedding of DSA models: YaRN frequencies and the two pair layouts.

DeepSeek-V3.2 uses ONE frequency table (``precompute_freqs_cis`` in DeepSeek-V3.2-Exp
``inference/model.py``) for two RoPE layouts that must not be confused:

* **interleaved** (``apply_rotary_emb(x, freqs_cis)``, the default ``interleaved=True``): the
  rotated pairs are ``(x[2i], x[2i+1])``. MLA uses it on ``q_pe`` and ``k_pe``.
* **half-split / NeoX** (``apply_rotary_emb(x, freqs_cis, False)``): the pairs are
  ``(x[i], x[i + d/2])``. The lightning indexer uses it on its query/key dims 0..63 (DeepSeek's
  Nov-2025 fix: earlier demo code used the interleaved layout there by mistake). GLM-5 uses the
  interleaved layout in its indexer too (``DSAConfig.indexer_rope_interleave``).

Pair ``i`` of a vector at position ``p`` is rotated by the angle ``p * freq[i]``:
``(a, b) -> (a cos - b sin, a sin + b cos)``.
"""

from __future__ import annotations

import math

import torch

from ..config import DSAConfig

__all__ = ["yarn_inv_freq", "rope_angles", "apply_rope", "apply_rope_interleaved", "apply_rope_half_split"]


def yarn_inv_freq(cfg: DSAConfig, dim: int | None = None) -> torch.Tensor:
    """Per-pair rotation frequencies (radians per position) with DeepSeek's YaRN correction.

    Args:
        cfg: model config (``rope_theta``, ``rope_scaling``, ``max_position_embeddings``).
        dim: rotated width (default ``cfg.qk_rope_head_dim`` = 64); must be even.
    Returns:
        [dim // 2] float32 frequencies. Without YaRN (factor <= 1, or a context that does not
        exceed ``original_max_position_embeddings``) these are ``theta ** (-2i / dim)``; with it,
        low-frequency pairs are divided by ``factor`` and a linear ramp between the correction
        dims of ``beta_fast`` / ``beta_slow`` blends the two.
    Raises:
        ValueError: ``dim`` odd or < 2.
    Semantics: DeepSeek-V3.2-Exp ``inference/model.py`` ``precompute_freqs_cis`` (its
    ``max_seq_len > original_seq_len`` test is ``max_position_embeddings >
    original_max_position_embeddings`` here, the same test ``DSAConfig.softmax_scale`` uses).
    """
    dim = cfg.qk_rope_head_dim if dim is None else dim
    if dim < 2 or dim % 2:
        raise ValueError(f"dim: expected an even rotary width >= 2, got {dim}")
    base = cfg.rope_theta
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    rs = cfg.rope_scaling
    if rs.factor > 1 and cfg.max_position_embeddings > rs.original_max_position_embeddings:
        orig = rs.original_max_position_embeddings

        def correction_dim(rotations: float) -> float:
            # the dim whose wavelength makes `rotations` full turns over the original context
            return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low = max(math.floor(correction_dim(rs.beta_fast)), 0)
        high = min(math.ceil(correction_dim(rs.beta_slow)), dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        keep = 1 - ramp  # 1 = high-frequency pair, left as is
        freqs = freqs / rs.factor * (1 - keep) + freqs * keep
    return freqs


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of ``positions[..., None] * inv_freq`` in float32.

    Args:
        positions: [...] integer token positions (any int dtype).
        inv_freq: [d/2] float32 from :func:`yarn_inv_freq`.
    Returns:
        (cos, sin), each [..., d/2] float32 on ``inv_freq``'s device.
    """
    ang = positions.to(device=inv_freq.device, dtype=torch.float32).unsqueeze(-1) * inv_freq
    return torch.cos(ang), torch.sin(ang)


def _check(x: torch.Tensor, cos: torch.Tensor) -> None:
    if x.shape[-1] != 2 * cos.shape[-1]:
        raise ValueError(f"x: expected last dim {2 * cos.shape[-1]} (2 x cos width), got {list(x.shape)}")


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs ``(x[..., 2i], x[..., 2i+1])`` (DeepSeek ``apply_rotary_emb`` default; MLA).

    Args:
        x: [..., d] float; cos, sin: [..., d/2] float32 broadcastable to x's leading dims
            (e.g. [T, 1, d/2] for x [T, H, d]).
    Returns:
        [..., d] in x's dtype (math in float32).
    Raises:
        ValueError: width mismatch.
    """
    _check(x, cos)
    xf = x.float()
    a, b = xf[..., 0::2], xf[..., 1::2]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)


def apply_rope_half_split(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs ``(x[..., i], x[..., i + d/2])`` (NeoX layout; DeepSeek-V3.2 indexer,
    ``apply_rotary_emb(x, freqs_cis, False)``).

    Arguments and result as :func:`apply_rope_interleaved`.
    """
    _check(x, cos)
    xf = x.float()
    half = xf.shape[-1] // 2
    a, b = xf[..., :half], xf[..., half:]
    return torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1).to(x.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, interleaved: bool) -> torch.Tensor:
    """:func:`apply_rope_interleaved` when ``interleaved`` else :func:`apply_rope_half_split`."""
    return (apply_rope_interleaved if interleaved else apply_rope_half_split)(x, cos, sin)
