"""Platform table and detection (no GPU needed: detection on a CPU machine reports "cpu")."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from rocm_dsa.platform import ARCHS, Platform, detect, for_arch


def test_gfx942_is_mi300x():
    p = for_arch("gfx942")
    assert p.vendor == "amd" and p.is_amd and p.name == "MI300X"
    assert p.fp8_dtype == torch.float8_e4m3fnuz and p.fp8_max == 240.0
    assert p.num_cus == 304 and p.wave_size == 64 and p.lds_bytes == 64 * 1024
    assert p.vgprs_per_simd_lane == 512
    assert p.peak_hbm_gbps == 5300.0
    assert p.peak_bf16_tflops == pytest.approx(1307.4) and p.peak_fp8_tflops == pytest.approx(2614.9)


def test_gfx950_is_mi355x():
    p = for_arch("gfx950")
    assert p.vendor == "amd" and p.fp8_dtype == torch.float8_e4m3fn and p.fp8_max == 448.0
    assert p.lds_bytes == 160 * 1024 and p.wave_size == 64
    assert p.peak_fp8_tflops > p.peak_bf16_tflops > 0


@pytest.mark.parametrize("arch", ["sm90", "sm100", "cuda"])
def test_nvidia_archs(arch):
    p = for_arch(arch)
    assert p.vendor == "nvidia" and not p.is_amd
    assert p.fp8_dtype == torch.float8_e4m3fn and p.wave_size == 32


def test_every_arch_is_consistent():
    for name, p in ARCHS.items():
        assert p.arch == name
        assert p.fp8_dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz)
        assert (p.fp8_dtype == torch.float8_e4m3fnuz) == (name == "gfx942")


@pytest.mark.parametrize("arch", ["gfx1100", "GFX942", "", "mi300x"])
def test_unknown_arch_raises(arch):
    with pytest.raises(ValueError, match=r"arch: expected one of .*gfx942") as e:
        for_arch(arch)
    assert repr(arch) in str(e.value)


def test_platform_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        for_arch("gfx942").num_cus = 1  # type: ignore[misc]
    assert isinstance(for_arch("cpu"), Platform)


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_detect_cpu_like_devices(device):
    p = detect(device)
    assert p.arch == "cpu" and p.vendor == "cpu" and p.num_cus == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the GPU-less path; this machine has a GPU")
def test_detect_without_gpu_reports_cpu_and_never_raises():
    assert detect().arch == "cpu"
    assert detect(None) is detect()
    # a CUDA device name on a machine without CUDA: documented "never raises"
    assert detect("cuda").arch == "cpu"
    assert detect("cuda:0").arch == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA/ROCm device")
def test_detect_gpu():
    p = detect("cuda")
    assert p.arch != "cpu" and p.num_cus > 0
    assert p.fp8_dtype in (torch.float8_e4m3fn, torch.float8_e4m3fnuz)
