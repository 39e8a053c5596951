"""Device-only AMD compile of the HIP kernels, without a GPU or ROCm: the ``hip`` source of
``rocm-dsa compile --arch gfx942|gfx950`` (:mod:`rocm_dsa.compile.report`).

Each ``hip/*.hip`` kernel file is compiled to AMDGCN assembly with::

    clang++-19 -x hip --offload-arch=gfx942 --cuda-device-only -nogpulib -O3 -std=c++17 -S

HIP headers come from Debian's ``libamdhip64-dev`` (/usr/include/hip) or /opt/rocm. The kernels
call no ROCm device-library function (dsa_port.h uses clang builtins on AMD), hence
``-nogpulib`` loses nothing. The assembly's code-object metadata gives VGPRs, SGPRs, spills,
scratch and static LDS (:func:`rocm_dsa.compile.amdgpu.parse_resources`); the dynamic LDS each
kernel is launched with is added here, then occupancy and the CI checks (spills, LDS) come from
:func:`rocm_dsa.compile.report.row_from_resources`, as for the Triton kernels.

gfx950 needs LLVM >= 20. With an older clang (Debian 12's clang-19) the gfx950 rows are made by
clang's front end and optimizer (LLVM IR at -O3, emitted for gfx942 with ``-DDSA_TARGET_GFX950``
so that the sources take their gfx950 code paths: hip/dsa_port.h, hip/mfma_layouts.h) and the
AMDGPU code generator of the LLVM that ships inside Triton, retargeted to gfx950. Each row says
which path produced it.

Checks beyond spills / LDS (rocm_dsa.compile.report.check_row): the paged indexer
(``_paged_indexer_logits_kernel``) must use an FP8 MFMA on both archs
(``v_mfma_f32_16x16x32_fp8_fp8`` on gfx942 = e4m3fnuz operands; ``v_mfma_*_16x16x128_f8f6f4``
[fp8,fp8] on gfx950), the sparse MLA decode kernel some MFMA (bf16).

Toolchain lookup: ``$ROCM_DSA_HIP_CLANG``, /opt/rocm/llvm/bin/clang++, clang++-21 ... clang++-19,
clang++. No clang or no HIP headers -> :class:`rocm_dsa.compile.report.SourceUnavailable`.
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .build import KERNEL_SOURCES, source_dir
from .topk_model import topk_default_cap, topk_dynamic_smem_bytes

__all__ = [
    "ARCHS",
    "find_clang",
    "clang_supports",
    "compile_command",
    "device_asm",
    "report_rows",
    "hip_compile_report",
    "toolchain_version",
]

#: archs the compile report covers
ARCHS = ("gfx942", "gfx950")
_CLANG_NAMES = ("clang++-21", "clang++-20", "clang++-19", "clang++")
_HIP_HEADER_DIRS = ("/opt/rocm/include", "/usr/include")
#: workgroup size of the store kernels (cache_store.hip STORE_BLOCK)
_STORE_BLOCK = 256


def _unavailable(msg: str) -> Exception:
    try:
        from rocm_dsa.compile.report import SourceUnavailable
    except ImportError:  # the report package is optional for this module
        return RuntimeError(msg)
    return SourceUnavailable(msg)


@functools.lru_cache(maxsize=1)
def find_clang() -> str | None:
    """Path of the clang++ used for device-only compiles, or None."""
    env = os.environ.get("ROCM_DSA_HIP_CLANG")
    if env:
        return env if (os.path.exists(env) or shutil.which(env)) else None
    for cand in ("/opt/rocm/llvm/bin/clang++", *_CLANG_NAMES):
        path = cand if os.path.isabs(cand) else shutil.which(cand)
        if path and os.path.exists(path):
            return path
    return None


def _hip_include_flags() -> list[str]:
    """-I for the HIP headers (hip/hip_runtime.h), or raise SourceUnavailable naming the fix."""
    for d in _HIP_HEADER_DIRS:
        if os.path.isfile(os.path.join(d, "hip", "hip_runtime.h")):
            return [] if d == "/usr/include" else [f"-I{d}"]
    raise _unavailable("HIP headers not found (hip/hip_runtime.h): apt-get install libamdhip64-dev, "
                       "or install ROCm under /opt/rocm")


@functools.lru_cache(maxsize=8)
def clang_supports(clang: str, arch: str) -> bool:
    """Whether ``clang`` knows the AMD processor ``arch`` (e.g. clang-19 lacks gfx950)."""
    r = subprocess.run([clang, "-x", "hip", "--offload-arch=" + arch, "--cuda-device-only", "-nogpulib",
                        "-E", "-"], input="", capture_output=True, text=True)
    return r.returncode == 0


@functools.lru_cache(maxsize=1)
def toolchain_version() -> str:
    """``clang <version>`` of the compiler in use (for the report header)."""
    clang = find_clang()
    if clang is None:
        return "no clang"
    out = subprocess.run([clang, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"clang version (\S+)", out)
    return f"clang {m.group(1) if m else '?'}"


def compile_command(source: Path, arch: str, out: Path, *, clang: str | None = None,
                    emit_llvm: bool = False, defines: tuple[str, ...] = ()) -> list[str]:
    """The clang command line compiling ``source`` device-only for ``arch`` to ``out``
    (``defines``: extra ``-D`` macros, e.g. ``DSA_TARGET_GFX950`` for the retargeted path)."""
    clang = clang or find_clang() or "clang++-19"
    cmd = [clang, "-x", "hip", f"--offload-arch={arch}", "--cuda-device-only", "-nogpulib",
           "-O3", "-std=c++17", "-S", *(["-emit-llvm"] if emit_llvm else []),
           *(f"-D{d}" for d in defines),
           f"-I{source.parent}", *_hip_include_flags(), str(source), "-o", str(out)]
    return cmd


def _retarget_with_triton_llvm(ir: str, arch: str) -> str:
    """AMDGCN assembly for ``arch`` from LLVM IR made for another gfx9 target, using the LLVM
    AMDGPU code generator bundled with Triton (newer than Debian's clang)."""
    try:
        from triton._C.libtriton import llvm  # type: ignore[import-not-found]
    except Exception as e:  # noqa: BLE001
        raise _unavailable(f"{toolchain_version()} cannot target {arch} and Triton's LLVM is not importable "
                           f"({type(e).__name__}: {e}); install clang >= 20 or set ROCM_DSA_HIP_CLANG") from e
    ir = re.sub(r'"target-cpu"="gfx[0-9a-z]+"', f'"target-cpu"="{arch}"', ir)
    ir = re.sub(r'"target-features"="[^"]*"', '"target-features"="+wavefrontsize64"', ir)
    llvm.init_targets()
    return llvm.translate_to_asm(ir, "amdgcn-amd-amdhsa", arch, "", [], False, False, False)


def device_asm(source: Path, arch: str) -> tuple[str, str]:
    """(AMDGCN assembly text, how it was produced) of one kernel file for ``arch``; cached in
    this process per (file contents, headers beside it, arch).

    Raises SourceUnavailable when no clang / HIP headers are present, RuntimeError (with the
    compiler output) when the code does not compile.
    """
    h = hashlib.sha256(source.read_bytes())
    for hdr in sorted(source.parent.glob("*.h*")) + sorted(source.parent.glob("*.cuh")):
        h.update(hdr.read_bytes())
    return _device_asm_cached(str(source), arch, h.hexdigest())


@functools.lru_cache(maxsize=32)
def _device_asm_cached(source_path: str, arch: str, _digest: str) -> tuple[str, str]:
    source = Path(source_path)
    clang = find_clang()
    if clang is None:
        raise _unavailable("no clang++ found for the HIP device-only compile: apt-get install clang-19 lld-19 "
                           "libamdhip64-dev (or set ROCM_DSA_HIP_CLANG)")
    with tempfile.TemporaryDirectory(prefix="rocm_dsa_hip_") as tmp:
        if clang_supports(clang, arch):
            out = Path(tmp) / f"{source.stem}-{arch}.s"
            cmd = compile_command(source, arch, out, clang=clang)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}\n{r.stderr.strip()}")
            return out.read_text(), f"{toolchain_version()} --offload-arch={arch}"
        # older clang: front end + optimizer for gfx942, code generation for `arch` by Triton's LLVM;
        # DSA_TARGET_<ARCH> makes the sources take `arch`'s code paths (hip/dsa_port.h: the gfx950
        # MFMA instructions, called by LLVM intrinsic name since the old front end lacks them)
        out = Path(tmp) / f"{source.stem}-gfx942.ll"
        cmd = compile_command(source, "gfx942", out, clang=clang, emit_llvm=True,
                              defines=(f"DSA_TARGET_{arch.upper()}",))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{r.stderr.strip()}")
        asm = _retarget_with_triton_llvm(out.read_text(), arch)
        return asm, f"{toolchain_version()} IR (gfx942 front end, -DDSA_TARGET_{arch.upper()}) + Triton LLVM codegen for {arch}"


def _demangle(symbols: list[str]) -> dict[str, str]:
    tool = shutil.which("llvm-cxxfilt-19") or shutil.which("llvm-cxxfilt") or shutil.which("c++filt")
    if tool is None:
        return {}
    r = subprocess.run([tool], input="\n".join(symbols), capture_output=True, text=True)
    lines = r.stdout.splitlines()
    return dict(zip(symbols, lines)) if r.returncode == 0 and len(lines) == len(symbols) else {}


_DT = {"0": "f32", "1": "bf16", "2": "f16"}


def _label(symbol: str, demangled: str | None) -> tuple[str, str]:
    """(kernel name, template configuration) of a kernel symbol."""
    text = demangled or symbol
    m = re.search(r"(_\w+?_kernel)<([^>]*)>", text)
    if m:
        return m.group(1), m.group(2).replace("(dsa::DType)", "").strip()
    m = re.search(r"(_\w+?_kernel)\(", text)  # not a template
    if m:
        return m.group(1), ""
    m = re.search(r"\d+(_\w+?_kernel)I(?:Li|LN3dsa5DTypeE)(\d+)E", symbol)  # mangled fallback
    if m:
        return m.group(1), m.group(2)
    m = re.search(r"\d+(_\w+?_kernel)E", symbol)
    if m:
        return m.group(1), ""
    return text, ""


#: workgroup sizes of the indexer (hip/dsa_kernels.h INDEXER_WAVES x 64) and MLA decode kernels
_INDEXER_BLOCK = 4 * 64
_MLA_DECODE_BLOCK = 512


def _launch(kernel: str, targ: str, arch: str) -> tuple[int, int, dict[str, Any], str, dict[str, bool]]:
    """(workgroup size, dynamic LDS bytes, launch dict, config label, checks) of one
    instantiation; checks = {"requires_fp8_mfma": ..., "requires_mfma": ...}."""
    from rocm_dsa.platform import for_arch

    if kernel == "_select_topk_kernel":
        block = int(targ)
        cap = topk_default_cap(for_arch(arch).lds_bytes)
        dyn = topk_dynamic_smem_bytes(cap)
        return block, dyn, {"block": block, "cap": cap}, f"BLOCK={block} k<=2048 cap={cap}", {}
    if kernel == "_paged_indexer_logits_kernel":
        heads = 16 * int(targ)
        fp8 = "e4m3fnuz" if arch == "gfx942" else "e4m3fn"
        return (_INDEXER_BLOCK, 0, {"block": _INDEXER_BLOCK},
                f"H={heads} D=128 page-table, {fp8} q.k", {"requires_fp8_mfma": True})
    if kernel == "_decode_sparse_mla_kernel":
        ht, fp8 = (x.strip() for x in targ.split(","))
        heads = 16 * int(ht)
        kv = "fp8-656B" if fp8 in ("true", "1") else "bf16"
        return (_MLA_DECODE_BLOCK, 0, {"block": _MLA_DECODE_BLOCK},
                f"H={heads if heads < 64 else '64/128 (64 per WG)'} kv={kv}", {"requires_mfma": True})
    if kernel == "_merge_sparse_mla_kernel":
        return _MLA_DECODE_BLOCK, 0, {"block": _MLA_DECODE_BLOCK}, "split-K LSE merge", {}
    dtype = _DT.get(targ, targ)
    return _STORE_BLOCK, 0, {"block": _STORE_BLOCK}, f"input={dtype}", {}


def report_rows(arch: str, kernel: str | None = None) -> list:
    """Compile every HIP kernel for ``arch`` and return checked :class:`rocm_dsa.compile.report.Row`s.

    Args:
        arch: "gfx942" or "gfx950".
        kernel: only rows whose file stem, kernel name or config label equals / glob-matches it.
    Raises:
        ValueError: unknown arch.
        SourceUnavailable: no clang / HIP headers (the report shows a skipped row).
    A file that fails to compile gives one row with ``error`` set (a failing check).
    """
    from rocm_dsa.compile.amdgpu import parse_resources
    from rocm_dsa.compile.report import Row, SourceUnavailable, check_row, matches, row_from_resources

    if arch not in ARCHS:
        raise ValueError(f"arch: expected one of {list(ARCHS)}, got {arch!r}")
    rows = []
    src = source_dir()
    # compile the files concurrently (clang runs as subprocesses); results land in the cache
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(KERNEL_SOURCES)) as pool:
        for f in [pool.submit(device_asm, src / name, arch) for name in KERNEL_SOURCES]:
            f.exception()
    for name in KERNEL_SOURCES:
        path = src / name
        module = path.stem
        t0 = time.perf_counter()
        try:
            asm, how = device_asm(path, arch)
        except SourceUnavailable:
            raise
        except RuntimeError as e:
            if matches(kernel, module):
                row = Row(source="hip", module=module, kernel="-", config="-", arch=arch, error=str(e),
                          seconds=time.perf_counter() - t0)
                check_row(row)
                rows.append(row)
            continue
        seconds = time.perf_counter() - t0
        res = parse_resources(asm)
        names = _demangle(sorted(res))
        for sym in sorted(res):
            kname, targ = _label(sym, names.get(sym))
            block, dyn, launch, config, checks = _launch(kname, targ, arch)
            if not matches(kernel, module, kname, config):
                continue
            rows.append(row_from_resources(
                source="hip", module=module, kernel=kname, config=config, arch=arch, res=res[sym],
                waves_per_workgroup=-(-block // 64), dynamic_lds_bytes=dyn, launch=launch,
                description=f"{how}; dynamic LDS {dyn} B" if dyn else how, seconds=seconds, **checks))
    return rows


def hip_compile_report(arch: str) -> list[dict[str, Any]]:
    """Rows of :func:`report_rows` for ``arch`` as JSON-ready dicts (``Row.to_dict`` keys:
    source, module, kernel, config, arch, launch, vgprs, agprs, vgprs_total, sgprs, vgpr_spills,
    sgpr_spills, scratch_bytes, lds_bytes, lds_limit, waves_per_workgroup, waves_per_simd,
    occupancy_limited_by, llvm_occupancy, mfma, error, failures, status, ...)."""
    return [r.to_dict() for r in report_rows(arch)]
