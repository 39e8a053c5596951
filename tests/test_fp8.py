"""FP8 formats: e4m3fn / e4m3fnuz casts, DeepSeek block quantization, OCP -> fnuz conversion."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rocm_dsa.fp8 import (
    cast_to_fp8,
    check_fp8_dtype,
    dequantize_fp8,
    fp8_max,
    ocp_to_fnuz,
    quant_max,
    quantize_fp8,
)

FN, FNUZ = torch.float8_e4m3fn, torch.float8_e4m3fnuz
ALL_BYTES = torch.arange(256, dtype=torch.int32).to(torch.uint8)


def _decode_e4m3(byte: int, bias: int, fnuz: bool) -> float:
    """Independent bit-level decoder of one e4m3 byte (1 sign, 4 exponent, 3 mantissa bits)."""
    sign = -1.0 if byte & 0x80 else 1.0
    exp, man = (byte >> 3) & 0xF, byte & 0x7
    if fnuz and byte == 0x80:
        return math.nan
    if not fnuz and (byte & 0x7F) == 0x7F:
        return math.nan
    if exp == 0:
        return sign * man / 8 * 2.0 ** (1 - bias)
    return sign * (1 + man / 8) * 2.0 ** (exp - bias)


def _is_pow2(t: torch.Tensor) -> bool:
    m, _ = torch.frexp(t.double())
    return bool((m == 0.5).all()) and bool((t > 0).all())


# ---------------------------------------------------------------------------------------------
# format constants and bit decoding
# ---------------------------------------------------------------------------------------------
def test_format_constants():
    assert fp8_max(FN) == 448.0 and fp8_max(FNUZ) == 240.0
    assert quant_max(FN) == 448.0 and quant_max(FNUZ) == 224.0
    for bad in (torch.bfloat16, torch.float8_e5m2, torch.uint8):
        with pytest.raises(TypeError, match="fp8_dtype"):
            check_fp8_dtype(bad)
        with pytest.raises(TypeError, match="fp8_dtype"):
            fp8_max(bad)


@pytest.mark.parametrize("dtype,bias,fnuz", [(FN, 7, False), (FNUZ, 8, True)])
def test_torch_decoding_matches_the_bit_layout(dtype, bias, fnuz):
    vals = ALL_BYTES.view(dtype).double().tolist()
    for b, v in enumerate(vals):
        ref = _decode_e4m3(b, bias, fnuz)
        if math.isnan(ref):
            assert math.isnan(v), b
        else:
            assert v == ref, (b, v, ref)


# ---------------------------------------------------------------------------------------------
# cast_to_fp8
# ---------------------------------------------------------------------------------------------
def test_every_finite_value_round_trips(fp8_dtype):
    q = ALL_BYTES.view(fp8_dtype)
    v = q.float()
    finite = ~torch.isnan(v)
    back = cast_to_fp8(v[finite], fp8_dtype).view(torch.uint8)
    assert torch.equal(back, ALL_BYTES[finite])  # e4m3fn keeps -0 as 0x80


def test_negative_zero():
    x = torch.tensor([-0.0, 0.0, -1e-6, -2.0**-12, -1e-30])
    fn = cast_to_fp8(x, FN).view(torch.uint8)
    assert fn.tolist() == [0x80, 0x00, 0x80, 0x80, 0x80]  # OCP has -0
    fnuz = cast_to_fp8(x, FNUZ).view(torch.uint8)
    assert fnuz.tolist() == [0, 0, 0, 0, 0]  # 0x80 is NaN in fnuz: -0 must become +0
    assert not torch.isnan(cast_to_fp8(x, FNUZ).float()).any()


@pytest.mark.parametrize(
    "dtype,vals,expect",
    [
        (FN, [448.0, 449.0, 464.0, 479.0, 500.0, 1e6, float("inf")], 448.0),
        (FNUZ, [240.0, 241.0, 247.0, 248.0, 250.0, 1e6, float("inf")], 240.0),
    ],
)
def test_saturates_at_the_clamp(dtype, vals, expect):
    x = torch.tensor(vals)
    for sign in (1.0, -1.0):
        y = cast_to_fp8(sign * x, dtype).float()
        assert not torch.isnan(y).any()
        assert torch.equal(y, torch.full_like(y, sign * expect))


@pytest.mark.parametrize("dtype,below", [(FN, 416.0), (FNUZ, 224.0)])
def test_values_near_the_clamp_round_to_nearest(dtype, below):
    m = fp8_max(dtype)  # below = the next smaller representable value
    x = torch.tensor([below, (below + m) / 2 - 1e-3, (below + m) / 2 + 1e-3, m - 1e-3])
    assert cast_to_fp8(x, dtype).float().tolist() == [below, below, m, m]


def test_nan_stays_nan(fp8_dtype):
    y = cast_to_fp8(torch.tensor([float("nan"), 1.0]), fp8_dtype)
    assert torch.isnan(y.float()[0]) and y.float()[1] == 1.0


@given(st.lists(st.floats(allow_nan=False, width=32), min_size=1, max_size=64))
def test_fnuz_cast_never_writes_0x80(vals):
    y = cast_to_fp8(torch.tensor(vals, dtype=torch.float32), FNUZ)
    assert not (y.view(torch.uint8) == 0x80).any()
    assert not torch.isnan(y.float()).any()


# ---------------------------------------------------------------------------------------------
# quantize_fp8 (DeepSeek act_quant)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scale_fmt", [None, "ue8m0"])
@pytest.mark.parametrize("src_dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_quantize_round_trip(fp8_dtype, scale_fmt, src_dtype):
    x = (torch.randn(5, 3, 256) * torch.logspace(-3, 3, 5).view(5, 1, 1)).to(src_dtype)
    q, s = quantize_fp8(x, block_size=128, fp8_dtype=fp8_dtype, scale_fmt=scale_fmt)
    assert q.dtype == fp8_dtype and q.shape == x.shape
    assert s.dtype == torch.float32 and s.shape == (5, 3, 2)
    xb = x.float().reshape(5, 3, 2, 128)
    amax = xb.abs().amax(-1)
    qm = quant_max(fp8_dtype)
    if scale_fmt == "ue8m0":
        assert _is_pow2(s)
        # the smallest power of two >= amax / quant_max
        assert torch.all(s >= amax * (1.0 / qm)) and torch.all(s / 2 < amax * (1.0 / qm))
    else:
        assert torch.equal(s, amax * (1.0 / qm))
        # the block's largest value lands on quant_max (448, or 224 for fnuz headroom)
        assert torch.equal(q.float().reshape(5, 3, 2, 128).abs().amax(-1), torch.full_like(s, qm))
    assert q.float().abs().max() <= qm
    deq = dequantize_fp8(q, s, block_size=128)
    # round-to-nearest with 3 mantissa bits: rel error <= 2^-4, plus half the subnormal step
    step = s.repeat_interleave(128, -1) * (2.0**-10 if fp8_dtype == FNUZ else 2.0**-9)
    assert torch.all((deq - x.float()).abs() <= x.float().abs() * 2.0**-4 + step)
    if fp8_dtype == FNUZ:
        assert not (q.view(torch.uint8) == 0x80).any()


def test_quantize_fnuz_negative_zero_and_tiny_negatives():
    x = torch.zeros(4, 128)
    x[:, 0] = 100.0  # large amax: everything tiny underflows to +-0
    x[:, 1:] = -1e-9
    x[1, 5] = -0.0
    x[2] = -0.0  # an all (-)zero block: amax floor applies
    q, s = quantize_fp8(x, fp8_dtype=FNUZ, scale_fmt=None)
    assert not (q.view(torch.uint8) == 0x80).any()
    assert not torch.isnan(q.float()).any()
    assert s[2, 0] == torch.tensor(1e-4) * (1.0 / 224)


def test_quantize_amax_floor():
    q, s = quantize_fp8(torch.zeros(2, 128), fp8_dtype=FN, scale_fmt=None)
    assert torch.equal(s, torch.full((2, 1), 1e-4) * (1.0 / 448)) and not q.float().any()
    _, s2 = quantize_fp8(torch.zeros(2, 128), fp8_dtype=FN, scale_fmt="ue8m0")
    assert _is_pow2(s2) and torch.all(s2 >= 1e-4 / 448) and torch.all(s2 / 2 < 1e-4 / 448)


def test_quantize_matches_an_independent_act_quant():
    x = torch.randn(7, 384) * 3
    q, s = quantize_fp8(x, fp8_dtype=FN, scale_fmt="ue8m0")
    for r in range(7):
        for b in range(3):
            blk = x[r, b * 128:(b + 1) * 128].double()
            amax = max(float(blk.abs().max()), 1e-4)
            scale = 2.0 ** math.ceil(math.log2(amax / 448.0))
            assert float(s[r, b]) == scale
            want = (blk / scale).float().to(FN)
            assert torch.equal(q[r, b * 128:(b + 1) * 128].view(torch.uint8), want.view(torch.uint8))


def test_quantize_errors():
    with pytest.raises(TypeError, match="x: expected a floating-point"):
        quantize_fp8(torch.ones(4, 128, dtype=torch.int32))
    with pytest.raises(ValueError, match="block_size=128"):
        quantize_fp8(torch.ones(4, 100))
    with pytest.raises(ValueError, match="block_size"):
        quantize_fp8(torch.ones(4, 128), block_size=0)
    with pytest.raises(ValueError, match="scale_fmt"):
        quantize_fp8(torch.ones(4, 128), scale_fmt="e8m0")
    with pytest.raises(TypeError, match="fp8_dtype"):
        quantize_fp8(torch.ones(4, 128), fp8_dtype=torch.float8_e5m2)
    with pytest.raises(ValueError, match="scale: expected shape"):
        dequantize_fp8(torch.zeros(4, 256, dtype=FN), torch.ones(4, 1))


# ---------------------------------------------------------------------------------------------
# OCP e4m3fn -> e4m3fnuz
# ---------------------------------------------------------------------------------------------
def test_ocp_to_fnuz_all_256_bytes():
    q = ALL_BYTES.view(FN)
    scale = torch.tensor([0.3, 1.0, 2.0**-7])
    fnuz, s2 = ocp_to_fnuz(q, scale)
    assert fnuz.dtype == FNUZ and torch.equal(s2, scale * 2)
    b_in, b_out = ALL_BYTES.tolist(), fnuz.view(torch.uint8).tolist()
    v_in, v_out = q.float().tolist(), fnuz.float().tolist()
    for b in range(256):
        if b in (0x7F, 0xFF):
            assert b_out[b] == 0x80 and math.isnan(v_out[b])  # OCP NaN -> fnuz NaN
        elif b == 0x80:
            assert b_out[b] == 0x00 and v_out[b] == 0.0  # OCP -0 -> +0 (0x80 is NaN in fnuz)
        else:
            assert b_out[b] == b  # bytes kept
            assert v_out[b] * 2 == v_in[b]  # same bits are half the value
            for sc, sc2 in zip(scale.tolist(), s2.tolist()):
                assert v_out[b] * sc2 == v_in[b] * sc  # value with the doubled scale is identical
    assert ocp_to_fnuz(q)[1] is None


def test_ocp_to_fnuz_of_quantized_data_dequantizes_equal():
    x = torch.randn(3, 256) * 5
    x[0, :7] = -0.0
    q, s = quantize_fp8(x, fp8_dtype=FN, scale_fmt=None)
    fq, fs = ocp_to_fnuz(q, s)
    assert not (fq.view(torch.uint8) == 0x80).any()
    assert torch.equal(dequantize_fp8(fq, fs), dequantize_fp8(q, s))


def test_ocp_to_fnuz_rejects_other_dtypes():
    with pytest.raises(TypeError, match="q: expected torch.float8_e4m3fn"):
        ocp_to_fnuz(torch.zeros(4, dtype=FNUZ))
    with pytest.raises(TypeError, match="q: expected"):
        ocp_to_fnuz(torch.zeros(4))
