"""Build the HIP/CUDA kernels under ``hip/`` as a PyTorch extension, on first use.

One source tree, two compilers: on a ROCm build of torch the sources go through ``hipcc``
(torch's ``cpp_extension`` hipifies the binding); on a CUDA build through ``nvcc``. Everything
vendor-specific in the kernels comes from ``hip/dsa_port.h``. The sources ship inside the wheel
as the package ``rocm_dsa.hip_src`` (a checkout uses ``hip/`` directly).

The build is cached per (torch version, GPU runtime, source hash) under
``$ROCM_DSA_CACHE_DIR/hip`` (default ``~/.cache/rocm_dsa/hip``), so it runs once per machine;
``ninja`` rebuilds nothing when the sources did not change. Arch flags follow torch's rules:
``TORCH_CUDA_ARCH_LIST`` / ``PYTORCH_ROCM_ARCH`` or the visible GPUs.

Nothing here runs at import time: :func:`unavailable_reason` is cheap (no compiler call),
:func:`load` compiles (a minute or two the first time).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import os
import shutil
import threading
from pathlib import Path
from types import ModuleType

import torch

__all__ = [
    "HipBuildError",
    "Toolchain",
    "source_dir",
    "kernel_sources",
    "source_hash",
    "toolchain",
    "unavailable_reason",
    "build_dir",
    "load",
]

#: kernel translation units (device code) and the torch binding, relative to the source dir
KERNEL_SOURCES: tuple[str, ...] = ("topk.hip", "cache_store.hip", "indexer_mfma.hip", "sparse_mla_decode.hip")
BINDING_SOURCE = "dsa_ext.cpp"
_HEADER_SUFFIXES = (".h", ".hpp", ".cuh")


class HipBuildError(RuntimeError):
    """The extension could not be built or loaded; the message names what is missing or the
    compiler's error."""


def source_dir() -> Path:
    """Directory holding the kernel sources (``rocm_dsa.hip_src`` when installed, else the
    checkout's ``hip/``). Raises HipBuildError when neither has them."""
    candidates = []
    try:
        candidates.append(Path(str(importlib.resources.files("rocm_dsa.hip_src"))))
    except (ModuleNotFoundError, TypeError):
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "hip")
    for c in candidates:
        if (c / KERNEL_SOURCES[0]).is_file():
            return c
    raise HipBuildError(f"HIP kernel sources not found (looked in {', '.join(map(str, candidates))}); "
                        "reinstall rocm-dsa so that the rocm_dsa.hip_src package data is present")


def kernel_sources() -> list[Path]:
    """The device-code translation units (``*.hip``), in build order."""
    d = source_dir()
    return [d / s for s in KERNEL_SOURCES]


def source_hash() -> str:
    """SHA-256 (hex, 16 chars) over every source and header: the build cache key."""
    d = source_dir()
    h = hashlib.sha256()
    for p in sorted(d.iterdir()):
        if p.suffix in (".hip", ".cpp", *_HEADER_SUFFIXES):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Toolchain:
    """What building the extension needs on this machine.

    Attributes:
        runtime: "rocm", "cuda" or "cpu" (the torch build).
        compiler: path of hipcc / nvcc, or None when not found.
        ninja: path of ninja, or None.
        cxx: host C++ compiler, or None.
        missing: one line per missing piece, each naming how to get it ([] = complete).
    """

    runtime: str
    compiler: str | None
    ninja: str | None
    cxx: str | None
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


def _which_ninja() -> str | None:
    path = shutil.which("ninja")
    if path:
        return path
    try:  # the `ninja` wheel puts its binary next to the module
        import ninja  # type: ignore[import-not-found]

        cand = Path(ninja.BIN_DIR) / "ninja"
        return str(cand) if cand.exists() else None
    except Exception:  # noqa: BLE001 - optional
        return None


@functools.lru_cache(maxsize=1)
def toolchain() -> Toolchain:
    """Inspect torch's build and the compilers on PATH (cheap; cached). Never raises."""
    missing: list[str] = []
    if torch.version.hip:
        runtime = "rocm"
        from torch.utils import cpp_extension

        home = cpp_extension.ROCM_HOME
        compiler = os.path.join(home, "bin", "hipcc") if home else shutil.which("hipcc")
        if not compiler or not os.path.exists(compiler):
            missing.append("hipcc not found: install ROCm (hip-dev / rocm-hip-sdk) or set ROCM_HOME")
            compiler = None
    elif torch.version.cuda:
        runtime = "cuda"
        from torch.utils import cpp_extension

        home = cpp_extension.CUDA_HOME
        compiler = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
        if not compiler or not os.path.exists(compiler):
            missing.append("nvcc not found: install the CUDA toolkit matching torch "
                           f"(CUDA {torch.version.cuda}) or set CUDA_HOME")
            compiler = None
    else:
        runtime, compiler = "cpu", None
        missing.append(f"torch {torch.__version__} is a CPU build: the HIP kernels need a ROCm or CUDA build of torch")
    ninja = _which_ninja()
    if ninja is None:
        missing.append("ninja not found: pip install ninja")
    cxx = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        missing.append("no host C++ compiler (c++/g++/clang++): install build-essential")
    return Toolchain(runtime, compiler, ninja, cxx, tuple(missing))


_lock = threading.Lock()
_module: ModuleType | None = None
_build_error: str | None = None


def unavailable_reason(*, need_gpu: bool = True) -> str | None:
    """Why the extension cannot be used here (None = it can be built / is built). Cheap.

    Order: a failed earlier build in this process, no GPU, an incomplete toolchain.
    """
    if _module is not None:
        return None
    if _build_error is not None:
        return f"HIP extension build failed earlier in this process: {_build_error}"
    if need_gpu and not torch.cuda.is_available():
        return "no GPU: torch.cuda.is_available() is False"
    tc = toolchain()
    if not tc.complete:
        return "cannot build the HIP extension: " + "; ".join(tc.missing)
    return None


def build_dir() -> Path:
    """Cache directory of this torch build + source version (created on demand)."""
    root = Path(os.environ.get("ROCM_DSA_CACHE_DIR", Path.home() / ".cache" / "rocm_dsa")) / "hip"
    tc = toolchain()
    rt = f"rocm{torch.version.hip}" if tc.runtime == "rocm" else f"cuda{torch.version.cuda}"
    tag = f"torch{torch.__version__}-{rt}-{source_hash()}".replace("+", "_").replace("/", "_")
    return root / tag


def _module_name() -> str:
    return f"rocm_dsa_hip_{source_hash()}"


def _cuda_wrappers(src: Path, out: Path) -> list[str]:
    """nvcc only compiles .cu files: one-line wrappers that include the .hip sources."""
    paths = []
    for s in KERNEL_SOURCES:
        w = out / (Path(s).stem + ".cu")
        text = f'#include "{(src / s).as_posix()}"\n'
        if not w.exists() or w.read_text() != text:
            w.write_text(text)
        paths.append(str(w))
    return paths


#: build variants: name -> preprocessor defines. "wave64-emulated" is TEST ONLY: on NVIDIA it
#: runs the wave64 code paths with two warps per emulated wave (see hip/dsa_port.h).
VARIANTS: dict[str, tuple[str, ...]] = {"default": (), "wave64-emulated": ("DSA_EMULATE_WAVE64",)}
_variants: dict[str, ModuleType] = {}


def load(*, verbose: bool | None = None, variant: str = "default") -> ModuleType:
    """The compiled extension module, building it on first use (thread-safe, cached).

    Functions of the module: ``topk``, ``topk_default_cap``, ``store_indexer_k``,
    ``store_mla_kv``, ``indexer_logits_paged``, ``sparse_mla_decode`` (see hip/dsa_ext.cpp); use them through :mod:`rocm_dsa.backends.hip`.
    ``variant`` picks a build from :data:`VARIANTS` (tests only; the provider uses "default").

    Raises:
        HipBuildError: no GPU / toolchain (the message says what is missing), or the compiler
            failed (the message holds its output). The failure is remembered, so the ``hip``
            provider reports itself unavailable afterwards instead of rebuilding.
        ValueError: unknown variant.
    """
    global _module, _build_error
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {sorted(VARIANTS)}, got {variant!r}")
    if variant == "default" and _module is not None:
        return _module
    if variant in _variants:
        return _variants[variant]
    with _lock:
        if variant == "default" and _module is not None:
            return _module
        why = unavailable_reason(need_gpu=False)
        if why:
            raise HipBuildError(why)
        from torch.utils import cpp_extension

        src = source_dir()
        out = build_dir() if variant == "default" else build_dir().with_name(build_dir().name + "-" + variant)
        out.mkdir(parents=True, exist_ok=True)
        defines = [f"-D{d}" for d in VARIANTS[variant]]
        tc = toolchain()
        if tc.runtime == "cuda":
            sources = [str(src / BINDING_SOURCE), *_cuda_wrappers(src, out)]
            device_flags = ["-O3", "-lineinfo"]
        else:
            sources = [str(src / BINDING_SOURCE), *(str(p) for p in kernel_sources())]
            device_flags = ["-O3"]
        if verbose is None:
            verbose = os.environ.get("ROCM_DSA_VERBOSE_BUILD", "") not in ("", "0")
        try:
            mod = cpp_extension.load(
                name=_module_name() + ("" if variant == "default" else "_" + variant.replace("-", "_")),
                sources=sources,
                extra_include_paths=[str(src)],
                extra_cflags=["-O3", *defines],  # the C++ standard is torch's choice (its headers need it)
                extra_cuda_cflags=[*device_flags, *defines],
                build_directory=str(out),
                verbose=bool(verbose),
            )
        except Exception as e:  # noqa: BLE001 - report any build failure the same way
            text = str(e).strip()
            first = next((ln for ln in text.splitlines() if "error" in ln.lower()), text.splitlines()[0] if text else "")
            if variant == "default":
                _build_error = f"{type(e).__name__}: {first[:300]} (build dir {out})"
            raise HipBuildError(f"building the rocm-dsa HIP extension with {tc.compiler} failed "
                                f"(build dir {out}):\n{text[-4000:]}") from e
        if variant == "default":
            _module = mod
        else:
            _variants[variant] = mod
        return mod
