"""Small helpers shared by every Triton launcher: FP8 element types, target facts, and the one
resolver for per-arch kernel configs.

Configs are data: ``rocm_dsa/configs/<arch>/<op>.json`` (arch = "gfx942", "gfx950", "sm90", ...)
with ``rocm_dsa/configs/default/<op>.json`` as the fallback for every arch without its own file
(the CPU interpreter included). A file looks like::

    {
      "doc": "why these numbers",
      "default": {"BLOCK_T": 64, "BLOCK_N": 128, "num_warps": 4, "num_stages": 2},
      "buckets": [
        {"when": {"heads": [1, 32]}, "set": {"BLOCK_T": 128}},
        {"when": {"next_n": 1}, "set": {"num_warps": 8}}
      ]
    }

``when`` maps a fact the launcher passes (``heads``, ``rows``, ``columns``, ``next_n`` ...) to an
int (equality) or an inclusive ``[lo, hi]`` range (``null`` = unbounded). Buckets apply in file
order over ``default``; a later match overrides an earlier one. A bucket naming a fact the
launcher did not pass never matches. Keys in CAPS are kernel constexprs; lowercase keys are
launch options. AMD-only options (``waves_per_eu``, ``matrix_instr_nonkdim``, ``kpack``) are
passed only when the target is HIP, since NVIDIA Triton rejects them (ROCm Triton tuning guide;
aiter keeps them per arch the same way).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from importlib import resources
from typing import Any

import torch
import triton.language as tl

__all__ = [
    "KernelConfig",
    "AMD_ONLY_OPTIONS",
    "get_config",
    "is_hip",
    "interpreting",
    "tl_fp8",
    "native_fp8",
]

#: launch options only ROCm Triton understands
AMD_ONLY_OPTIONS = frozenset({"waves_per_eu", "matrix_instr_nonkdim", "kpack"})
_LAUNCH_OPTIONS = frozenset({"num_warps", "num_stages", "num_ctas", "maxnreg"}) | AMD_ONLY_OPTIONS


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """One resolved kernel configuration.

    Attributes:
        meta: CAPS constexpr arguments of the kernel (block sizes ...).
        options: launch options for ``kernel[grid](..., **options)`` (AMD-only ones removed on
            non-HIP targets).
        source: the file(s) the values came from, for reports.
    """

    meta: dict[str, Any]
    options: dict[str, Any]
    source: str

    def __getitem__(self, name: str) -> Any:
        return self.meta[name] if name in self.meta else self.options[name]


def is_hip(arch: str) -> bool:
    """True when ``arch`` is an AMD target (``gfx*``)."""
    return arch.startswith("gfx")


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def tl_fp8(dtype: torch.dtype) -> tl.dtype:
    """Triton element type of a torch FP8 dtype: e4m3fnuz -> ``tl.float8e4b8`` (gfx942 MFMA),
    e4m3fn -> ``tl.float8e4nv`` (OCP; gfx950, NVIDIA). Raises TypeError for anything else."""
    if dtype == torch.float8_e4m3fnuz:
        return tl.float8e4b8
    if dtype == torch.float8_e4m3fn:
        return tl.float8e4nv
    raise TypeError(f"fp8_dtype: expected torch.float8_e4m3fn or torch.float8_e4m3fnuz, got {dtype}")


def native_fp8(arch: str) -> torch.dtype:
    """The FP8 e4m3 dtype the matrix units of ``arch`` take (e4m3fnuz on gfx942, else e4m3fn)."""
    from rocm_dsa.platform import ARCHS

    p = ARCHS.get(arch)
    return p.fp8_dtype if p is not None else torch.float8_e4m3fn


@functools.lru_cache(maxsize=None)
def _load(arch: str, op: str) -> tuple[dict[str, Any], str] | None:
    path = resources.files("rocm_dsa").joinpath("configs").joinpath(arch).joinpath(f"{op}.json")
    if not path.is_file():
        return None
    with path.open() as f:
        data = json.load(f)
    if not isinstance(data, dict) or not isinstance(data.get("default", {}), dict) \
            or not isinstance(data.get("buckets", []), list):
        raise ValueError(f"config {arch}/{op}.json: expected {{'default': {{...}}, 'buckets': [...]}}")
    return data, f"{arch}/{op}.json"


def _matches(when: dict[str, Any], facts: dict[str, Any]) -> bool:
    for name, cond in when.items():
        if name not in facts:
            return False
        v = facts[name]
        if isinstance(cond, list):
            lo, hi = cond
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                return False
        elif v != cond:
            return False
    return True


@functools.lru_cache(maxsize=4096)
def get_config(op: str, arch: str, **facts: Any) -> KernelConfig:
    """Resolve the launch configuration of kernel ``op`` on ``arch`` for the given facts.

    Reads ``configs/default/<op>.json`` then ``configs/<arch>/<op>.json`` (each: ``default``
    then matching ``buckets`` in order; the arch file wins). Facts must be hashable (ints,
    strings); results are cached per (op, arch, facts): treat the returned dicts as read-only. Raises FileNotFoundError when neither file
    exists, ValueError for a malformed file.
    """
    merged: dict[str, Any] = {}
    sources = []
    for where in ("default", arch):
        found = _load(where, op)
        if found is None:
            continue
        data, src = found
        sources.append(src)
        merged.update(data.get("default", {}))
        for bucket in data.get("buckets", []):
            if _matches(bucket.get("when", {}), facts):
                merged.update(bucket.get("set", {}))
    if not sources:
        raise FileNotFoundError(f"no config for op {op!r}: expected rocm_dsa/configs/default/{op}.json")
    hip = is_hip(arch)
    meta = {k: v for k, v in merged.items() if k not in _LAUNCH_OPTIONS}
    options = {k: v for k, v in merged.items() if k in _LAUNCH_OPTIONS and (hip or k not in AMD_ONLY_OPTIONS)}
    return KernelConfig(meta, options, " + ".join(sources))
