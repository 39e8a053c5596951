"""Build and compile helpers of the HIP kernels (sources in ``hip/``, shipped as ``rocm_dsa.hip_src``).

* :func:`load` builds the torch extension on first use (hipcc on ROCm torch, nvcc on CUDA
  torch; cached per source hash) and :func:`unavailable_reason` says cheaply why it cannot;
* :func:`hip_compile_report` / :mod:`rocm_dsa.hipext.compile_report` compile every kernel
  device-only for gfx942 / gfx950 with clang (no GPU, no ROCm) and report VGPRs, SGPRs, spills,
  LDS and occupancy — the ``hip`` rows of ``rocm-dsa compile``;
* :mod:`rocm_dsa.hipext.topk_model` is a step-by-step Python model of the radix top-k kernel;
* :mod:`rocm_dsa.mi300x_model` is the static MI300X / MI355X cost model of the MFMA kernels.

Importing this package loads no compiler and touches no GPU.
"""

from __future__ import annotations

from typing import Any

from .build import HipBuildError, Toolchain, build_dir, load, source_dir, source_hash, toolchain, unavailable_reason
from .topk_model import topk_default_cap, topk_dynamic_smem_bytes

__all__ = [
    "HipBuildError",
    "Toolchain",
    "build_dir",
    "load",
    "source_dir",
    "source_hash",
    "toolchain",
    "unavailable_reason",
    "topk_default_cap",
    "topk_dynamic_smem_bytes",
    "hip_compile_report",
]


def hip_compile_report(arch: str) -> list[dict[str, Any]]:
    """Device-only AMD compile of every HIP kernel for ``arch`` ("gfx942" / "gfx950"): one dict
    per kernel instantiation with the keys of :class:`rocm_dsa.compile.report.Row` (vgprs, sgprs,
    vgpr_spills, sgpr_spills, scratch_bytes, lds_bytes, waves_per_simd, failures, status...).

    Raises ValueError for another arch and ``SourceUnavailable`` when clang / HIP headers are
    missing. See :mod:`rocm_dsa.hipext.compile_report`.
    """
    from .compile_report import hip_compile_report as _report

    return _report(arch)
