"""The scalar codecs of hip/dsa_port.h (FP8 e4m3fn / e4m3fnuz encoders, block scales, bf16 /
f16 conversions) and the LDS plan of hip/dsa_kernels.h, compiled for the host with the
machine's C++ compiler and compared byte for byte with rocm_dsa.fp8 / torch. The GPU kernels
call exactly these functions, so this pins the store kernels' bytes without a GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from rocm_dsa.fp8 import cast_to_fp8, quantize_fp8
from rocm_dsa.hipext import source_dir, topk_default_cap

_CXX = next((c for c in ("c++", "g++", "clang++-19", "clang++") if shutil.which(c)), None)
pytestmark = pytest.mark.skipif(_CXX is None, reason="no host C++ compiler (c++/g++/clang++) on this machine")


@pytest.fixture(scope="module")
def codec(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("codec") / "codec_host"
    src = Path(__file__).with_name("codec_host.cpp")
    r = subprocess.run([_CXX, "-O2", "-std=c++17", f"-I{source_dir()}", str(src), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def _run(exe: Path, *args: str, data: bytes) -> bytes:
    r = subprocess.run([str(exe), *args], input=data, capture_output=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


def _sweep() -> torch.Tensor:
    """Float bit patterns over |x| <= 500 (stride 397), every round-to-even tie between FP8
    neighbours (and one ulp either side), their negatives, random values and specials."""
    u = torch.arange(0, 0x43FA0000, 397, dtype=torch.int64).to(torch.int32).view(torch.float32)
    specials = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 448.0, 449.0, 240.0, 241.0,
                             2.0**-9, 2.0**-10, 1.5 * 2.0**-10, 0.5 * 2.0**-9, -(2.0**-12)])
    # exact rounding ties between neighbouring FP8 values of both encodings, and one ulp around
    ties = []
    for dt in (torch.float8_e4m3fn, torch.float8_e4m3fnuz):
        v = torch.arange(0, 0x7F, dtype=torch.int32).to(torch.uint8).view(dt).float()
        mid = (v[1:] + v[:-1]) / 2
        ties += [mid, torch.nextafter(mid, torch.full_like(mid, 1e9)), torch.nextafter(mid, torch.zeros_like(mid))]
    t = torch.cat(ties)
    return torch.cat([u, -u, t, -t, torch.randn(50_000) * 300, specials])


def test_fp8_encoders_and_bf16_match_torch(codec):
    x = _sweep()
    out = _run(codec, "cast", data=x.numpy().tobytes())
    n = x.numel()
    got_fn = torch.frombuffer(bytearray(out[:n]), dtype=torch.uint8)
    got_fnuz = torch.frombuffer(bytearray(out[n:2 * n]), dtype=torch.uint8)
    got_bf16 = torch.frombuffer(bytearray(out[2 * n:]), dtype=torch.int16)
    assert torch.equal(got_fn, cast_to_fp8(x, torch.float8_e4m3fn).view(torch.uint8))
    assert torch.equal(got_fnuz, cast_to_fp8(x, torch.float8_e4m3fnuz).view(torch.uint8))
    finite = ~torch.isnan(x)  # NaN payloads of bf16 are not part of any contract
    assert torch.equal(got_bf16[finite], x[finite].to(torch.bfloat16).view(torch.int16))
    # the fnuz NaN byte only ever comes from NaN inputs
    assert not bool(((got_fnuz == 0x80) & finite).any())


def test_f16_decoder_is_exact_for_all_patterns(codec):
    h = torch.arange(0, 1 << 16, dtype=torch.int32).to(torch.int16)
    out = _run(codec, "f16", data=h.numpy().tobytes())
    got = torch.frombuffer(bytearray(out), dtype=torch.float32)
    want = h.view(torch.float16).float()
    same = (got.view(torch.int32) == want.view(torch.int32)) | (torch.isnan(got) & torch.isnan(want))
    assert bool(same.all())


@pytest.mark.parametrize("scale_fmt", ["ue8m0", None])
def test_block_quantization_matches_quantize_fp8(codec, fp8_dtype, scale_fmt):
    # bf16-like and f32 values over many magnitudes, plus an all-zero token (amax floor)
    x = torch.cat([torch.randn(64, 128) * torch.logspace(-6, 4, 64).unsqueeze(1),
                   torch.randn(16, 128).bfloat16().float() * 3.0,
                   torch.zeros(1, 128)])
    fnuz = int(fp8_dtype == torch.float8_e4m3fnuz)
    out = _run(codec, "quant", str(fnuz), str(int(scale_fmt == "ue8m0")), data=x.numpy().tobytes())
    n = x.shape[0]
    got_q = torch.frombuffer(bytearray(out[: n * 128]), dtype=torch.uint8).view(n, 128)
    got_s = torch.frombuffer(bytearray(out[n * 128:]), dtype=torch.float32)
    q, s = quantize_fp8(x, block_size=128, fp8_dtype=fp8_dtype, scale_fmt=scale_fmt)
    if scale_fmt is None and not _reference_multiplies_by_reciprocal(fp8_dtype):
        pytest.skip("rocm_dsa.fp8.quantize_fp8 computes amax / quant_max (torch rounds that differently on "
                    "CPU and CUDA); DeepSeek's act_quant and the HIP kernels use amax * (1 / quant_max)")
    assert torch.equal(got_s, s[:, 0])
    assert torch.equal(got_q, q.view(torch.uint8))


def _reference_multiplies_by_reciprocal(fp8_dtype) -> bool:
    """Whether quantize_fp8's fp32 scale is amax * fl32(1 / quant_max) (DeepSeek's rule): probe
    amax values where that differs from amax / quant_max."""
    qmax = 224.0 if fp8_dtype == torch.float8_e4m3fnuz else 448.0
    amax = torch.linspace(1.0, 2.0, 4097)
    x = torch.zeros(amax.numel(), 128)
    x[:, 0] = amax
    _, s = quantize_fp8(x, block_size=128, fp8_dtype=fp8_dtype, scale_fmt=None)
    return torch.equal(s[:, 0], amax * torch.tensor(1.0 / qmax, dtype=torch.float32))


def test_power_of_two_scales_are_exact_ceilings(codec):
    """ue8m0 scales are the smallest power of two >= amax / quant_max, exactly, also where a
    float log2 rounds down (scale = 2^-10 * (1 + 2^-23))."""
    amax = torch.tensor([448.0 * 2.0**-10 * (1 + 2.0**-23), 448.0 * 2.0**-10, 448.0 * 3.0, 1e-9])
    x = torch.zeros(4, 128)
    x[:, 5] = amax
    out = _run(codec, "quant", "0", "1", data=x.numpy().tobytes())
    got = torch.frombuffer(bytearray(out[4 * 128:]), dtype=torch.float32).tolist()
    assert got == [2.0**-9, 2.0**-10, 2.0**1 * 2, 2.0**-22]


def test_default_cap_rule_matches_python(codec):
    sizes = torch.tensor([48 * 1024, 64 * 1024, 96 * 1024, 160 * 1024, 227 * 1024, 20 * 1024, 1000], dtype=torch.int32)
    out = _run(codec, "cap", data=sizes.numpy().tobytes())
    got = torch.frombuffer(bytearray(out), dtype=torch.int32).tolist()
    assert got == [topk_default_cap(int(s)) for s in sizes]
    assert topk_default_cap(64 * 1024) == 4096 and topk_default_cap(160 * 1024) == 8192
