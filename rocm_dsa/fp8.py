"""FP8 e4m3 formats and DeepSeek's block quantization.

Two encodings of "e4m3" exist and must not be confused:

* OCP ``float8_e4m3fn`` (exponent bias 7, max 448, NaN = 0x7F/0xFF, has -0 = 0x80):
  NVIDIA and gfx950 matrix units, and the DeepSeek-V3.2 checkpoint.
* ``float8_e4m3fnuz`` (bias 8, max 240, no -0, 0x80 = NaN): the only FP8 e4m3 that gfx942
  (MI300X) MFMA instructions accept (Triton ``fp8e4b8``).

The same byte read as fnuz is half its OCP value, so OCP data converts to fnuz by keeping the
bytes, doubling the scale and rewriting 0x80 (OCP -0) to 0x00 (:func:`ocp_to_fnuz`).
Runtime quantization to fnuz maps amax to 224, not 240, leaving headroom (as aiter does).

Quantization semantics: DeepSeek-V3.2 ``inference/kernel.py`` ``act_quant`` — one scale per
block of 128 contiguous values along the last dim, ``scale = amax / fp8_max`` with amax
clamped to >= 1e-4, optionally rounded up to a power of two (``scale_fmt="ue8m0"``).
"""

from __future__ import annotations

import torch

__all__ = [
    "FP8_DTYPES",
    "fp8_max",
    "quant_max",
    "quantize_fp8",
    "dequantize_fp8",
    "cast_to_fp8",
    "ocp_to_fnuz",
    "check_fp8_dtype",
]

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e4m3fnuz)
_AMAX_FLOOR = 1e-4


def check_fp8_dtype(fp8_dtype: torch.dtype, name: str = "fp8_dtype") -> torch.dtype:
    """Return ``fp8_dtype`` if it is e4m3fn or e4m3fnuz, else raise TypeError naming ``name``."""
    if fp8_dtype not in FP8_DTYPES:
        raise TypeError(f"{name}: expected torch.float8_e4m3fn or torch.float8_e4m3fnuz, got {fp8_dtype}")
    return fp8_dtype


def fp8_max(fp8_dtype: torch.dtype) -> float:
    """Largest finite value: 448.0 (e4m3fn) or 240.0 (e4m3fnuz)."""
    return float(torch.finfo(check_fp8_dtype(fp8_dtype)).max)


def quant_max(fp8_dtype: torch.dtype) -> float:
    """The value a block's amax is scaled to: 448 for e4m3fn, 224 for e4m3fnuz (headroom)."""
    return 448.0 if check_fp8_dtype(fp8_dtype) == torch.float8_e4m3fn else 224.0


def cast_to_fp8(x: torch.Tensor, fp8_dtype: torch.dtype) -> torch.Tensor:
    """Round ``x`` to ``fp8_dtype`` with saturation (|x| clamps to the format max, never NaN).

    torch's plain ``.to(float8)`` turns out-of-range values into NaN; this clamps first (+-inf
    saturate too). For e4m3fnuz a non-NaN input never gives byte 0x80 (NaN there): -0 and tiny
    negatives become +0. A NaN input stays NaN in both encodings (0x7F/0xFF e4m3fn, 0x80
    e4m3fnuz) so that bad activations are not silently zeroed.
    """
    m = fp8_max(fp8_dtype)
    xf = x.float()
    y = xf.clamp(-m, m).to(fp8_dtype)
    if fp8_dtype == torch.float8_e4m3fnuz:
        b = y.view(torch.uint8)
        y = torch.where((b == 0x80) & ~torch.isnan(xf), torch.zeros_like(b), b).view(fp8_dtype)
    return y


def quantize_fp8(
    x: torch.Tensor,
    *,
    block_size: int = 128,
    fp8_dtype: torch.dtype = torch.float8_e4m3fn,
    scale_fmt: str | None = "ue8m0",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-quantize activations to FP8 with one fp32 scale per ``block_size`` values.

    Args:
        x: [..., D] float (bf16/fp16/fp32), D divisible by ``block_size``.
        block_size: values per scale along the last dim (DeepSeek: 128).
        fp8_dtype: torch.float8_e4m3fn (OCP) or torch.float8_e4m3fnuz (gfx942).
        scale_fmt: None = exact fp32 scale ``amax / quant_max``; "ue8m0" = rounded up to a power
            of two (DeepSeek-V3.2's setting, so dequantization is an exact exponent shift).

    Returns:
        (q [..., D] fp8_dtype, scale [..., D // block_size] float32) with
        ``x ~= q.float() * scale`` blockwise.

    Raises:
        TypeError: ``x`` not floating point, or a bad ``fp8_dtype``.
        ValueError: last dim not divisible by ``block_size``, or unknown ``scale_fmt``.

    Semantics: DeepSeek-V3.2 ``act_quant`` (amax floor 1e-4); for e4m3fnuz amax maps to 224.
    """
    check_fp8_dtype(fp8_dtype)
    if not x.is_floating_point():
        raise TypeError(f"x: expected a floating-point tensor, got {x.dtype}")
    if x.dim() == 0 or block_size <= 0 or x.shape[-1] % block_size:
        raise ValueError(
            f"x: last dim must be a positive multiple of block_size={block_size}, got shape {tuple(x.shape)}"
        )
    if scale_fmt not in (None, "ue8m0"):
        raise ValueError(f"scale_fmt: expected None or 'ue8m0', got {scale_fmt!r}")
    xb = x.float().reshape(*x.shape[:-1], x.shape[-1] // block_size, block_size)
    amax = xb.abs().amax(dim=-1).clamp_min(_AMAX_FLOOR)
    # amax * (1 / max) as DeepSeek's kernel computes it (true division differs in the last bit
    # between devices); ue8m0 = exact power-of-two ceiling from the float's exponent bits.
    scale = amax * (1.0 / quant_max(fp8_dtype))
    if scale_fmt == "ue8m0":
        m, e = torch.frexp(scale)
        pow2 = torch.ldexp(torch.ones_like(scale), e - (m == 0.5).to(e.dtype))
        scale = torch.where(torch.isfinite(scale), pow2, scale)
    q = cast_to_fp8(xb / scale.unsqueeze(-1), fp8_dtype).reshape(x.shape)
    return q, scale


def dequantize_fp8(q: torch.Tensor, scale: torch.Tensor, *, block_size: int = 128) -> torch.Tensor:
    """Inverse of :func:`quantize_fp8`: q [..., D] fp8, scale [..., D // block_size] f32 -> [..., D] f32.

    Raises ValueError when the scale shape does not match.
    """
    if scale.shape != (*q.shape[:-1], q.shape[-1] // block_size):
        raise ValueError(
            f"scale: expected shape {(*q.shape[:-1], q.shape[-1] // block_size)}, got {tuple(scale.shape)}"
        )
    qb = q.float().reshape(*q.shape[:-1], -1, block_size)
    return (qb * scale.float().unsqueeze(-1)).reshape(q.shape)


def ocp_to_fnuz(q: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Reinterpret OCP e4m3fn data as e4m3fnuz for gfx942 without changing any value.

    Args:
        q: [...] torch.float8_e4m3fn.
        scale: any shape float32 dequantization scale, or None.

    Returns:
        (q_fnuz [...] torch.float8_e4m3fnuz, scale * 2 or None). Byte 0x80 (OCP -0) becomes
        0x00; OCP NaN (0x7F/0xFF) becomes fnuz NaN (0x80). ``q_fnuz.float() * 2 == q.float()``
        for every finite value, so ``q_fnuz * (2 * scale)`` equals ``q * scale`` exactly.

    Raises TypeError when ``q`` is not float8_e4m3fn.

    Semantics: byte layout of the two formats (OCP FP8 spec; AMD CDNA3 ISA FP8 section), the
    same conversion aiter / SGLang apply before gfx942 FP8 GEMMs (``normalize_e4m3fn_to_e4m3fnuz``).
    """
    if q.dtype != torch.float8_e4m3fn:
        raise TypeError(f"q: expected torch.float8_e4m3fn, got {q.dtype}")
    b = q.view(torch.uint8)
    is_nan = (b & 0x7F) == 0x7F
    out = torch.where(b == 0x80, torch.zeros_like(b), b)
    out = torch.where(is_nan, torch.full_like(b, 0x80), out)
    return out.view(torch.float8_e4m3fnuz), (None if scale is None else scale * 2)
