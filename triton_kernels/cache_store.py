"""Triton cache-write kernels: indexer-key quantize + paged store, MLA latent store.

Byte layouts are defined in :mod:`rocm_dsa.cache` (indexer pages: values region then scales
region; MLA rows: bf16 ``[c_kv 512 | k_rope 64]`` or the 656-byte FP8 record). The bytes written
here equal the reference provider's (``rocm_dsa.backends.reference``) bit for bit:

* FP8 encoding is done with integer arithmetic (round to nearest even, saturated to the format
  max), not with Triton's float->fp8 casts, so the result does not depend on the backend
  (NVIDIA cvt, AMD v_cvt_pk_fp8, the interpreter's numpy emulation) or the Triton version.
  e4m3fnuz never receives byte 0x80 (NaN there): a zero result is written as +0.
* fp32 -> bf16 is also rounded to nearest even with integer arithmetic (the interpreter
  truncates); the scale is ``amax * fp32(1/max)`` and ``x / scale`` uses ``div_rn`` (IEEE round
  to nearest like torch; plain ``/`` on NVIDIA is the approximate ``div.full.f32``).
* Power-of-two (ue8m0) scales are the exact ceiling ``2**ceil(log2(s))`` computed from the
  fp32 bits, as DeepSeek-V3.2's ``fast_round_scale`` (inference/kernel.py) does.

All cache addressing is 64-bit (``slot * row_bytes`` passes 2**31 for large caches);
``slot_mapping`` entries < 0 are skipped (padding tokens).

Semantics: DeepSeek-V3.2 ``act_quant`` (inference/kernel.py) for the indexer key, SGLang
``set_index_k_scale_buffer`` / ``set_mla_kv_buffer`` for the page layouts, FlashMLA's sparse FP8
KV format (tile-128 scales, rope kept in bf16) for the 656-byte record.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..cache import KV_LORA_RANK, ROPE_DIM, mla_cache_rows
from ..fp8 import check_fp8_dtype, fp8_max, quant_max
from ._common import get_config

__all__ = ["store_indexer_k", "store_mla_kv", "compile_specs"]

_INDEXER_D = 128
# FP8 record (656 bytes = 164 fp32 words = 328 bf16 halves): values at byte 0, the 4 tile scales at
# word 128 (byte 512), k_rope at half 264 (byte 528); the kernels use these numbers literally
# (rocm_dsa.cache.MLA_FP8_RECORD_BYTES is the layout's definition).


# ---------------------------------------------------------------------------------------------
# device helpers (integer arithmetic: identical on every backend and in the interpreter)
# ---------------------------------------------------------------------------------------------
@triton.jit
def _pow2_ceil(x):
    """x: fp32 tensor > 0 -> 2**ceil(log2(x)) exactly (fp32), from the exponent/mantissa bits."""
    bits = x.to(tl.int32, bitcast=True)
    exp = (bits >> 23) & 0xFF
    exp = exp + ((bits & 0x7FFFFF) != 0).to(tl.int32)
    return (exp << 23).to(tl.float32, bitcast=True)


@triton.jit
def _encode_e4m3(y, FP8_BIAS: tl.constexpr, FNUZ: tl.constexpr):
    """fp32 tensor (already clamped to the format max) -> e4m3 bytes (uint8), nearest-even.

    FP8_BIAS = 7 (e4m3fn) or 8 (e4m3fnuz). e4m3fn keeps the sign of zero (0x80 = -0, as torch);
    e4m3fnuz writes +0 for every zero (0x80 is its NaN). NaN -> 0x7F|sign (fn) / 0x80 (fnuz).
    """
    bits = y.to(tl.int32, bitcast=True)
    sign = (bits >> 24) & 0x80
    a = bits & 0x7FFFFFFF
    # normal fp8 range: round the fp32 mantissa to 3 bits (ties to even), rebias the exponent
    rnd = a + 0x7FFFF + ((a >> 20) & 1)
    normal = (rnd >> 20) - ((127 - FP8_BIAS) << 3)
    # subnormal fp8 range: m = value / 2**(-FP8_BIAS-2), rounded to nearest even
    mant = (a & 0x7FFFFF) | 0x800000
    shift = tl.minimum((148 - FP8_BIAS) - (a >> 23), 30)  # >= 25 already rounds to 0
    shift = tl.maximum(shift, 1)
    q = mant >> shift
    rem = mant & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    q = q + ((rem > half) | ((rem == half) & ((q & 1) == 1))).to(tl.int32)
    enc = tl.where(a >= ((128 - FP8_BIAS) << 23), normal, q)
    is_nan = a > 0x7F800000
    if FNUZ:
        enc = tl.where(enc == 0, 0, enc | sign)
        enc = tl.where(is_nan, 0x80, enc)
    else:
        enc = enc | sign
        enc = tl.where(is_nan, sign | 0x7F, enc)
    return enc.to(tl.uint8)


@triton.jit
def _bf16_bits_rne(x):
    """fp32 tensor -> bf16 bit pattern (int16), round to nearest even; NaN stays a quiet NaN."""
    bits = x.to(tl.int32, bitcast=True)
    rnd = bits + 0x7FFF + ((bits >> 16) & 1)
    out = (rnd >> 16) & 0xFFFF
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    out = tl.where(is_nan, ((bits >> 16) & 0xFFFF) | 0x40, out)
    return out.to(tl.int16)


@triton.jit
def _quantize_tile(x, QMAX: tl.constexpr, FMAX: tl.constexpr, FP8_BIAS: tl.constexpr,
                   FNUZ: tl.constexpr, UE8M0: tl.constexpr):
    """x [BLOCK_T, 128] fp32 -> (bytes [BLOCK_T, 128] uint8, scale [BLOCK_T] fp32).

    scale = max(amax, 1e-4) * fp32(1 / QMAX) (as DeepSeek's act_quant kernel computes it; then
    optionally rounded up to a power of two); bytes = e4m3(clamp(x / scale, -FMAX, FMAX)), a true
    (round-to-nearest) division. Same arithmetic as ``rocm_dsa.fp8.quantize_fp8``.
    """
    amax = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-4)
    scale = amax * (1.0 / QMAX)
    if UE8M0:
        scale = _pow2_ceil(scale)
    y = tl.math.div_rn(x, tl.broadcast_to(scale[:, None], x.shape))
    y = tl.minimum(tl.maximum(y, -FMAX), FMAX)
    return _encode_e4m3(y, FP8_BIAS, FNUZ), scale


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------
@triton.jit
def _store_indexer_k_kernel(
    k_ptr,        # float [N, 128] (bf16 / fp16 / fp32)
    val_ptr,      # uint8 [num_pages, PAGE_SIZE * 132] cache buffer
    scale_ptr,    # fp32 view of the same buffer [num_pages, PAGE_SIZE * 33]
    slot_ptr,     # int32 / int64 [N]
    n_tokens,
    num_slots,    # slots in the cache: slots outside [0, num_slots) are skipped, never written
    stride_kt,
    PAGE_SIZE: tl.constexpr,
    D: tl.constexpr,
    QMAX: tl.constexpr,
    FMAX: tl.constexpr,
    FP8_BIAS: tl.constexpr,
    FNUZ: tl.constexpr,
    UE8M0: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    d = tl.arange(0, D)
    in_range = t < n_tokens
    slot = tl.load(slot_ptr + t, mask=in_range, other=-1).to(tl.int64)
    keep = in_range & (slot >= 0) & (slot < num_slots)
    x = tl.load(k_ptr + t.to(tl.int64)[:, None] * stride_kt + d[None, :], mask=keep[:, None], other=0.0)
    q, scale = _quantize_tile(x.to(tl.float32), QMAX, FMAX, FP8_BIAS, FNUZ, UE8M0)
    page = slot // PAGE_SIZE
    off = slot - page * PAGE_SIZE
    v_off = page * (PAGE_SIZE * (D + 4)) + off * D          # bytes, int64
    tl.store(val_ptr + v_off[:, None] + d[None, :], q, mask=keep[:, None])
    s_off = page * (PAGE_SIZE * (D + 4) // 4) + (PAGE_SIZE * D // 4) + off  # fp32 words, int64
    tl.store(scale_ptr + s_off, scale, mask=keep)


@triton.jit
def _store_mla_kv_kernel(
    ckv_ptr,      # float [N, 512]
    rope_ptr,     # float [N, 64]
    row_ptr,      # bf16 cache as int16 [num_slots, 576]  |  FP8 cache uint8 [num_slots, 656]
    word_ptr,     # FP8 cache as fp32 [num_slots, 164] (scales); unused for bf16
    half_ptr,     # FP8 cache as int16 [num_slots, 328] (rope); unused for bf16
    slot_ptr,     # int32 / int64 [N]
    n_tokens,
    num_slots,    # slots in the cache: slots outside [0, num_slots) are skipped, never written
    stride_ct,
    stride_rt,
    KV_FP8: tl.constexpr,
    QMAX: tl.constexpr,
    FMAX: tl.constexpr,
    FP8_BIAS: tl.constexpr,
    FNUZ: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    d = tl.arange(0, 128)
    r = tl.arange(0, 64)
    in_range = t < n_tokens
    slot = tl.load(slot_ptr + t, mask=in_range, other=-1).to(tl.int64)
    keep = in_range & (slot >= 0) & (slot < num_slots)
    t64 = t.to(tl.int64)
    rope = tl.load(rope_ptr + t64[:, None] * stride_rt + r[None, :], mask=keep[:, None], other=0.0)
    rope_bits = _bf16_bits_rne(rope.to(tl.float32))
    if KV_FP8:
        rec = slot * 656
        for j in tl.static_range(4):
            x = tl.load(ckv_ptr + t64[:, None] * stride_ct + (j * 128 + d)[None, :], mask=keep[:, None],
                        other=0.0)
            q, scale = _quantize_tile(x.to(tl.float32), QMAX, FMAX, FP8_BIAS, FNUZ, True)
            tl.store(row_ptr + rec[:, None] + (j * 128 + d)[None, :], q, mask=keep[:, None])
            tl.store(word_ptr + slot * 164 + 128 + j, scale, mask=keep)
        tl.store(half_ptr + slot[:, None] * 328 + 264 + r[None, :], rope_bits, mask=keep[:, None])
    else:
        row = slot * 576
        for j in tl.static_range(4):
            x = tl.load(ckv_ptr + t64[:, None] * stride_ct + (j * 128 + d)[None, :], mask=keep[:, None],
                        other=0.0)
            tl.store(row_ptr + row[:, None] + (j * 128 + d)[None, :], _bf16_bits_rne(x.to(tl.float32)),
                     mask=keep[:, None])
        tl.store(row_ptr + row[:, None] + 512 + r[None, :], rope_bits, mask=keep[:, None])


# ---------------------------------------------------------------------------------------------
# launchers
# ---------------------------------------------------------------------------------------------
def _fp8_constants(fp8_dtype: torch.dtype) -> dict:
    check_fp8_dtype(fp8_dtype)
    fnuz = fp8_dtype == torch.float8_e4m3fnuz
    return {"QMAX": quant_max(fp8_dtype), "FMAX": fp8_max(fp8_dtype), "FP8_BIAS": 8 if fnuz else 7,
            "FNUZ": fnuz}


def store_indexer_k(k: torch.Tensor, buf: torch.Tensor, slot_mapping: torch.Tensor, fp8_dtype: torch.dtype,
                    scale_fmt: str | None, *, arch: str) -> None:
    """Quantize indexer keys to FP8 (one scale per token) and write them into the paged cache.

    Args:
        k: [N, 128] bfloat16 / float16 / float32, contiguous rows.
        buf: [num_pages, page_size * 132] uint8 indexer key cache, written in place: FP8 values
            at ``page*page_size*132 + offset*128``, the fp32 scale in the page's scales region.
        slot_mapping: [N] int32 / int64 slots (``page * page_size + offset``); a slot < 0 or
            >= num_pages * page_size skips the token (never an out-of-bounds write).
        fp8_dtype: torch.float8_e4m3fn (amax -> 448) or torch.float8_e4m3fnuz (amax -> 224).
        scale_fmt: "ue8m0" (scale rounded up to a power of two) or None (exact amax / max).
        arch: platform arch ("gfx942", "gfx950", "sm90", "cpu", ...) selecting the launch config.
    Raises:
        ValueError: ``buf`` is not [P, page_size*132] uint8, ``k`` not [N, 128], bad scale_fmt.
        TypeError: bad ``fp8_dtype``.
    Semantics: DeepSeek-V3.2 ``act_quant(k, 128, scale_fmt)`` (amax floor 1e-4) + SGLang's
    ``set_index_k_scale_buffer`` page layout; bytes identical to ``rocm_dsa.backends.reference``.
    """
    if buf.dtype != torch.uint8 or buf.dim() != 2 or buf.shape[1] % (_INDEXER_D + 4):
        raise ValueError(f"buf: expected uint8 [num_pages, page_size*132], got {buf.dtype} {list(buf.shape)}")
    if k.dim() != 2 or k.shape[1] != _INDEXER_D or k.stride(1) != 1:
        raise ValueError(f"k: expected [N, 128] with unit last stride, got {list(k.shape)}")
    if scale_fmt not in (None, "ue8m0"):
        raise ValueError(f"scale_fmt: expected None or 'ue8m0', got {scale_fmt!r}")
    n = k.shape[0]
    if n == 0:
        return
    cfg = get_config("cache_store_indexer_k", arch)
    page_size = buf.shape[1] // (_INDEXER_D + 4)
    block_t = cfg["BLOCK_T"]
    _store_indexer_k_kernel[(triton.cdiv(n, block_t),)](
        k, buf, buf.view(torch.float32), slot_mapping, n, buf.shape[0] * page_size, k.stride(0),
        PAGE_SIZE=page_size, D=_INDEXER_D, UE8M0=scale_fmt == "ue8m0", BLOCK_T=block_t,
        **_fp8_constants(fp8_dtype), **cfg.options,
    )


def store_mla_kv(c_kv: torch.Tensor, k_rope: torch.Tensor, buf: torch.Tensor, slot_mapping: torch.Tensor,
                 fp8_dtype: torch.dtype, *, arch: str) -> None:
    """Write MLA latents into the latent cache: bf16 rows or 656-byte FP8 records.

    Args:
        c_kv: [N, 512] bfloat16 / float16 / float32 normalized latent.
        k_rope: [N, 64] bfloat16 / float16 / float32 rope key.
        buf: bf16 [..., 576] or uint8 [..., 656] cache ([num_pages, page_size, 1, W] or
            [N_slots, 1, W] / [N_slots, W]), contiguous, written in place.
        slot_mapping: [N] int32 / int64 flat slots; a slot < 0 or >= the cache's slot count skips
            the token (never an out-of-bounds write).
        fp8_dtype: encoding of FP8 records (e4m3fn or e4m3fnuz); ignored for bf16 caches.
        arch: platform arch selecting the launch config.
    Raises:
        ValueError: wrong cache width/dtype or operand shapes. TypeError: bad ``fp8_dtype``.
    Semantics: SGLang ``set_mla_kv_buffer`` (bf16 rows, round to nearest even) and FlashMLA's
    sparse FP8 record: bytes identical to ``rocm_dsa.cache.pack_mla_fp8`` (4 power-of-two fp32
    tile scales, amax -> 448 e4m3fn / 224 e4m3fnuz, rope in bf16).
    """
    rows = mla_cache_rows(buf)  # raises ValueError on a wrong width / dtype
    if not buf.is_contiguous():
        raise ValueError(f"buf: expected a contiguous cache buffer, got strides {list(buf.stride())}")
    if c_kv.dim() != 2 or c_kv.shape[1] != KV_LORA_RANK or c_kv.stride(1) != 1:
        raise ValueError(f"c_kv: expected [N, 512] with unit last stride, got {list(c_kv.shape)}")
    if k_rope.shape != (c_kv.shape[0], ROPE_DIM) or k_rope.stride(1) != 1:
        raise ValueError(f"k_rope: expected [{c_kv.shape[0]}, 64] with unit last stride, got {list(k_rope.shape)}")
    n = c_kv.shape[0]
    if n == 0:
        return
    kv_fp8 = rows.dtype == torch.uint8
    consts = _fp8_constants(fp8_dtype) if kv_fp8 else {"QMAX": 448.0, "FMAX": 448.0, "FP8_BIAS": 7,
                                                       "FNUZ": False}
    cfg = get_config("cache_store_mla_kv", arch)
    block_t = cfg["BLOCK_T"]
    if kv_fp8:
        row, word, half = rows, rows.view(torch.float32), rows.view(torch.int16)
    else:
        row = rows.view(torch.int16)
        word, half = row, row
    _store_mla_kv_kernel[(triton.cdiv(n, block_t),)](
        c_kv, k_rope, row, word, half, slot_mapping, n, rows.shape[0], c_kv.stride(0), k_rope.stride(0),
        KV_FP8=kv_fp8, BLOCK_T=block_t, **consts, **cfg.options,
    )


# ---------------------------------------------------------------------------------------------
# ahead-of-time compile specs (rocm-dsa compile)
# ---------------------------------------------------------------------------------------------
def compile_specs(arch: str) -> list:
    """:class:`rocm_dsa.compile.CompileSpec` rows for ``rocm-dsa compile --arch <arch>``:
    both store kernels with the arch's configs, FP8 in the arch's native encoding, both cache
    formats; the caches are marked as > 2 GiB tensors (64-bit addressing)."""
    from rocm_dsa.compile import CompileSpec

    fnuz = arch == "gfx942"
    consts = _fp8_constants(torch.float8_e4m3fnuz if fnuz else torch.float8_e4m3fn)
    specs = []
    cfg = get_config("cache_store_indexer_k", arch)
    specs.append(CompileSpec(
        name=f"store_indexer_k BLOCK_T={cfg['BLOCK_T']}",
        fn=_store_indexer_k_kernel,
        signature={"k_ptr": "*bf16", "val_ptr": "*u8", "scale_ptr": "*fp32", "slot_ptr": "*i64",
                   "n_tokens": "i32", "num_slots": "i64", "stride_kt": "i32"},
        constexprs={"PAGE_SIZE": 64, "D": 128, "UE8M0": True, "BLOCK_T": cfg["BLOCK_T"], **consts},
        num_warps=cfg.options.get("num_warps", 4), num_stages=cfg.options.get("num_stages", 1),
        waves_per_eu=cfg.options.get("waves_per_eu", 0),
        aligned=("stride_kt",), large_tensors=("val_ptr", "scale_ptr"),
        note="page 64, ue8m0 scales"))
    cfg = get_config("cache_store_mla_kv", arch)
    for kv_fp8 in (False, True):
        specs.append(CompileSpec(
            name=f"store_mla_kv {'fp8' if kv_fp8 else 'bf16'} BLOCK_T={cfg['BLOCK_T']}",
            fn=_store_mla_kv_kernel,
            signature={"ckv_ptr": "*bf16", "rope_ptr": "*bf16", "row_ptr": "*u8" if kv_fp8 else "*i16",
                       "word_ptr": "*fp32" if kv_fp8 else "*i16", "half_ptr": "*i16", "slot_ptr": "*i64",
                       "n_tokens": "i32", "num_slots": "i64", "stride_ct": "i32", "stride_rt": "i32"},
            constexprs={"KV_FP8": kv_fp8, "BLOCK_T": cfg["BLOCK_T"], **consts},
            num_warps=cfg.options.get("num_warps", 4), num_stages=cfg.options.get("num_stages", 1),
            waves_per_eu=cfg.options.get("waves_per_eu", 0),
            aligned=("stride_ct", "stride_rt"), large_tensors=("row_ptr", "word_ptr", "half_ptr"),
            note="656-byte FP8 record" if kv_fp8 else "bf16 rows"))
    return specs
