"""Platform description: GPU architecture, its resources, native FP8 type and roofline peaks.

Kernels take ``arch=`` explicitly; :func:`detect` is only called when a caller asks for the
current device, never at import time.

Peak figures are vendor datasheet numbers (dense, no sparsity) used as roofline ceilings:
MI300X (CDNA3 whitepaper: 304 CUs, 5.3 TB/s, 1307.4 TFLOP/s bf16, 2614.9 fp8), MI325X,
MI355X (CDNA4: 256 CUs, 8 TB/s, 2.5 PFLOP/s bf16, 5 fp8, 160 KiB LDS), H100/H200 SXM
(989 bf16 / 1979 fp8 TFLOP/s; 3.35 / 4.8 TB/s). Measured ceilings belong in benchmark output,
not here.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

__all__ = ["Platform", "ARCHS", "for_arch", "detect"]


@dataclasses.dataclass(frozen=True)
class Platform:
    """One GPU architecture (or the CPU) as the kernels see it.

    Attributes:
        arch: "gfx942", "gfx950", "sm90", "sm100", "cuda" (other NVIDIA), "cpu".
        vendor: "amd", "nvidia" or "cpu".
        name: marketing name of the part the peak figures belong to.
        num_cus: compute units (AMD) / SMs (NVIDIA); 0 on CPU.
        wave_size: threads per wavefront (64 on CDNA) / warp (32).
        lds_bytes: LDS / shared memory per CU/SM usable by one workgroup, bytes.
        vgprs_per_simd_lane: architectural VGPRs per lane per SIMD (occupancy math), AMD only.
        fp8_dtype: native FP8 e4m3 type of the matrix units: float8_e4m3fnuz on gfx942,
            OCP float8_e4m3fn elsewhere.
        peak_hbm_gbps: HBM bandwidth, GB/s (1e9 bytes/s).
        peak_bf16_tflops / peak_fp8_tflops: dense matrix peaks, TFLOP/s.
    """

    arch: str
    vendor: str
    name: str
    num_cus: int
    wave_size: int
    lds_bytes: int
    vgprs_per_simd_lane: int
    fp8_dtype: torch.dtype
    peak_hbm_gbps: float
    peak_bf16_tflops: float
    peak_fp8_tflops: float

    @property
    def fp8_max(self) -> float:
        """Largest finite value of :attr:`fp8_dtype` (240 for e4m3fnuz, 448 for e4m3fn)."""
        return float(torch.finfo(self.fp8_dtype).max)

    @property
    def is_amd(self) -> bool:
        return self.vendor == "amd"


ARCHS: dict[str, Platform] = {
    "gfx942": Platform("gfx942", "amd", "MI300X", 304, 64, 64 * 1024, 512,
                       torch.float8_e4m3fnuz, 5300.0, 1307.4, 2614.9),
    "gfx950": Platform("gfx950", "amd", "MI355X", 256, 64, 160 * 1024, 512,
                       torch.float8_e4m3fn, 8000.0, 2516.6, 5033.2),
    "sm90": Platform("sm90", "nvidia", "H200 SXM", 132, 32, 227 * 1024, 0,
                     torch.float8_e4m3fn, 4800.0, 989.4, 1978.9),
    "sm100": Platform("sm100", "nvidia", "B200", 148, 32, 227 * 1024, 0,
                      torch.float8_e4m3fn, 8000.0, 2250.0, 4500.0),
    "cuda": Platform("cuda", "nvidia", "NVIDIA GPU", 0, 32, 48 * 1024, 0,
                     torch.float8_e4m3fn, 0.0, 0.0, 0.0),
    "cpu": Platform("cpu", "cpu", "CPU", 0, 1, 0, 0, torch.float8_e4m3fn, 0.0, 0.0, 0.0),
}


def for_arch(arch: str) -> Platform:
    """The :class:`Platform` of a named arch ("gfx942", "gfx950", "sm90", "sm100", "cpu").

    Raises ValueError naming the allowed archs for an unknown one.
    """
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"arch: expected one of {sorted(ARCHS)}, got {arch!r}") from None


@functools.lru_cache(maxsize=16)
def _detect_index(device_type: str, index: int) -> Platform:
    if device_type != "cuda" or not torch.cuda.is_available():
        return ARCHS["cpu"]
    props = torch.cuda.get_device_properties(index)
    gcn = getattr(props, "gcnArchName", "") or ""
    if torch.version.hip is not None or gcn.startswith("gfx"):
        base = gcn.split(":")[0]
        p = ARCHS.get(base)
        if p is None:  # another AMD part: keep its real resources, no peaks
            return Platform(base, "amd", props.name, props.multi_processor_count, 64, 64 * 1024,
                            512, torch.float8_e4m3fn, 0.0, 0.0, 0.0)
        name = p.name
        if base == "gfx942" and "MI325" in props.name:
            name = "MI325X"
            p = dataclasses.replace(p, peak_hbm_gbps=6000.0)
        return dataclasses.replace(p, name=name, num_cus=props.multi_processor_count)
    key = f"sm{props.major}{props.minor}"
    p = ARCHS.get(key if key in ("sm90", "sm100") else "cuda")
    name = props.name
    if key == "sm90" and "H100" in name:
        p = dataclasses.replace(p, peak_hbm_gbps=3350.0)
    return dataclasses.replace(p, name=name, num_cus=props.multi_processor_count)


def detect(device: torch.device | str | None = None) -> Platform:
    """The :class:`Platform` of ``device`` (default: the current CUDA/HIP device, else CPU).

    Never raises: a machine without a GPU reports the "cpu" platform.
    """
    if device is None:
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return _detect_index("cpu", 0)  # CPU, meta, or a CUDA device name on a GPU-less machine
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _detect_index(device.type, index)
