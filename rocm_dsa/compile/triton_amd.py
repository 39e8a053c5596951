"""Compile Triton kernels for AMD gfx942 / gfx950 on a machine without a GPU.

``triton.compile(ASTSource(...), target=GPUTarget("hip", arch, 64))`` runs Triton's AMD
pipeline (TTIR -> TTGIR -> LLVM IR -> AMDGCN -> HSACO) with no device and no ROCm install:
Triton >= 3.5 links the code object with its bundled LLD. Triton 3.4 calls an external
``ld.lld``; when none is configured we point ``TRITON_HIP_LLD_PATH`` at Debian's ``ld.lld-NN``
(apt package ``lld-19``) if present.

Arguments are specialized the way Triton's JIT does at a real launch (``JITFunction.run`` ->
``_pack_args``): pointers 16-byte aligned, tensors under 2 GiB marked for 32-bit buffer
offsets (``tt.pointer_range``) unless the spec lists them in ``large_tensors``, the spec's
``aligned`` ints divisible by 16.

Kernel modules (:data:`TRITON_MODULES`, plus any other module of ``rocm_dsa.triton_kernels``
that declares specs) publish :class:`~rocm_dsa.compile.spec.CompileSpec` lists; see
:mod:`rocm_dsa.compile`. Run as a module (``python -m rocm_dsa.compile.triton_amd --arch
gfx942``) it prints the rows as JSON; :func:`report_rows` uses that in a subprocess when
``TRITON_INTERPRET=1`` is set in this process (interpreted kernels cannot be compiled).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import importlib
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import time
import warnings
from typing import Any

from .amdgpu import limits_for, parse_resources
from .report import Row, check_row, matches, row_from_resources
from .spec import CompileSpec

__all__ = ["TRITON_MODULES", "CompiledAMD", "compile_spec", "module_specs", "spec_row",
           "report_rows", "toolchain_version", "interpret_mode"]

#: kernel modules of rocm_dsa.triton_kernels expected to declare compile specs (reported as
#: skipped while absent)
TRITON_MODULES = ("cache_store", "indexer", "topk", "indexer_topk", "sparse_mla")

_PACKAGE = "rocm_dsa.triton_kernels"


def toolchain_version() -> str:
    """Installed Triton version."""
    import triton

    return triton.__version__


def interpret_mode() -> bool:
    """True when ``TRITON_INTERPRET`` is on, i.e. ``@triton.jit`` yields interpreted kernels."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


@dataclasses.dataclass
class CompiledAMD:
    """AMDGCN output of one spec.

    Attributes:
        name: kernel symbol in the code object.
        asm: AMDGCN assembly text (with the HSA metadata block).
        shared: LDS Triton requests at launch (dynamic), bytes per workgroup.
        dropped_options: options the installed Triton does not know (not applied).
        seconds: wall time of the compile.
    """

    name: str
    asm: str
    shared: int
    dropped_options: list[str]
    seconds: float


def _ensure_linker() -> str | None:
    """Triton < 3.5 links AMD code objects with an external ld.lld: find one. Returns a note."""
    try:
        from triton.backends.amd.compiler import HIPBackend
    except ImportError:  # pragma: no cover - a Triton without the AMD backend
        raise RuntimeError("the installed Triton has no AMD (hip) backend") from None
    if not hasattr(HIPBackend, "path_to_rocm_lld"):
        return None  # bundled linker
    if os.environ.get("TRITON_HIP_LLD_PATH"):
        return None
    try:
        HIPBackend.path_to_rocm_lld()
        return None
    except Exception:
        pass
    cands = sorted(glob.glob("/usr/bin/ld.lld-*") + glob.glob("/usr/lib/llvm-*/bin/ld.lld"),
                   reverse=True)
    which = shutil.which("ld.lld")
    for c in ([which] if which else []) + cands:
        if c and os.access(c, os.X_OK):
            os.environ["TRITON_HIP_LLD_PATH"] = c
            return f"TRITON_HIP_LLD_PATH={c} (Triton < 3.5 needs an external ld.lld)"
    raise RuntimeError(
        "Triton < 3.5 links AMD code objects with ld.lld: install one (Debian: apt-get install "
        "lld-19) or set TRITON_HIP_LLD_PATH")


def _as_jit(fn: Any):
    """The JITFunction behind ``fn`` (re-wraps an interpreted kernel's Python function)."""
    from triton.runtime.jit import JITFunction

    if isinstance(fn, JITFunction):
        return fn
    inner = getattr(fn, "fn", None)
    if callable(inner) and not isinstance(fn, JITFunction):
        # TRITON_INTERPRET=1 made an InterpretedFunction; works for kernels without
        # @triton.jit callees (those stay interpreted: run in a subprocess instead).
        return JITFunction(inner)
    raise TypeError(f"fn: expected a @triton.jit function, got {type(fn).__name__}")


def _build_source(spec: CompileSpec, jit):
    from triton.backends.amd.compiler import HIPBackend
    from triton.compiler import ASTSource

    params = jit.params
    arg_names = [p.name for p in params]
    unknown = sorted(set(spec.signature) - set(arg_names))
    if unknown:
        raise ValueError(f"{spec.name}: signature names {unknown}, not arguments of "
                         f"{jit.__name__}{tuple(arg_names)}")
    unknown = sorted(set(spec.constexprs) - set(arg_names))
    if unknown:
        raise ValueError(f"{spec.name}: constexprs names {unknown}, not arguments of "
                         f"{jit.__name__}")
    for field in ("aligned", "large_tensors"):
        bad = sorted(set(getattr(spec, field)) - set(spec.signature))
        if bad:
            raise ValueError(f"{spec.name}: {field} names {bad}, not runtime arguments in "
                             f"the signature")
    signature: dict[str, str] = {}
    constexprs: dict[str, Any] = {}
    attrs: dict[tuple, list] = {}
    try:
        from triton import knobs
        buffer_ops = bool(getattr(knobs.amd, "use_buffer_ops", False))
    except ImportError:  # pragma: no cover
        buffer_ops = False
    for i, p in enumerate(params):
        name = p.name
        if name in spec.constexprs:
            signature[name] = "constexpr"
            constexprs[name] = spec.constexprs[name]
        elif p.is_constexpr:
            if not p.has_default:
                raise ValueError(f"{spec.name}: constexpr {name!r} of {jit.__name__} has no "
                                 f"value in constexprs and no default")
            signature[name] = "constexpr"
            constexprs[name] = p.default
        elif name in spec.signature:
            ty = spec.signature[name]
            signature[name] = ty
            desc = ""
            if ty.startswith("*"):
                desc = "D"
                if buffer_ops and name not in spec.large_tensors:
                    desc += "S"
            elif name in spec.aligned:
                desc = "D"
            if desc:
                a = HIPBackend.parse_attr(desc)
                if a:
                    attrs[(i,)] = a
        else:
            raise ValueError(f"{spec.name}: argument {name!r} of {jit.__name__} has no type in "
                             f"signature and no value in constexprs")
    return ASTSource(jit, signature=signature, constexprs=constexprs, attrs=attrs)


def _options(spec: CompileSpec) -> tuple[dict[str, Any], list[str]]:
    from triton.backends.amd.compiler import HIPOptions

    known = {f.name for f in dataclasses.fields(HIPOptions)}
    opts: dict[str, Any] = {"num_warps": spec.num_warps, "num_stages": spec.num_stages}
    # only non-default values: Triton 3.4 emits "amdgpu-waves-per-eu" for any value it gets
    if spec.waves_per_eu:
        opts["waves_per_eu"] = spec.waves_per_eu
    if spec.matrix_instr_nonkdim:
        opts["matrix_instr_nonkdim"] = spec.matrix_instr_nonkdim
    if spec.kpack != 1:
        opts["kpack"] = spec.kpack
    opts.update(spec.extra_options)
    dropped = sorted(k for k in opts if k not in known)
    return {k: v for k, v in opts.items() if k in known}, dropped


def compile_spec(spec: CompileSpec, arch: str) -> CompiledAMD:
    """Compile ``spec`` for ``arch`` ("gfx942" / "gfx950") with Triton's AMD backend.

    No GPU is touched. Raises ValueError for a spec that does not match its kernel's
    arguments, RuntimeError when no linker is available (Triton < 3.5), and whatever Triton
    raises for a kernel that does not compile.
    """
    import triton
    from triton.backends.compiler import GPUTarget

    lim = limits_for(arch)
    _ensure_linker()
    jit = _as_jit(spec.fn)
    src = _build_source(spec, jit)
    opts, dropped = _options(spec)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TRITON_DEFAULT_FP_FUSION.*")
        ck = triton.compile(src, target=GPUTarget("hip", arch, lim.wave_size), options=opts)
    dt = time.perf_counter() - t0
    md = ck.metadata
    name = md.name if hasattr(md, "name") else md["name"]
    shared = md.shared if hasattr(md, "shared") else md["shared"]
    return CompiledAMD(name=name, asm=ck.asm["amdgcn"], shared=int(shared or 0),
                       dropped_options=dropped, seconds=dt)


def _compile_error_text(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".strip()
    lines = [ln for ln in msg.splitlines() if ln.strip()]
    if len(lines) > 12:  # Triton's CompilationError: source excerpt first, the cause last
        lines = lines[:2] + ["..."] + lines[-8:]
    return "\n".join(lines)


def spec_row(spec: CompileSpec, arch: str, module: str) -> Row:
    """Compile ``spec`` and return its checked :class:`~rocm_dsa.compile.report.Row`.

    A compile failure becomes a row with ``error`` set (a failing check), never an exception.
    """
    kernel = getattr(spec.fn, "__name__", None) or getattr(getattr(spec.fn, "fn", None),
                                                           "__name__", "?")
    launch = spec.launch
    try:
        out = _compile_cached(spec, arch)
        res_all = parse_resources(out.asm)
        res = res_all.get(out.name) or next(iter(res_all.values()))
    except Exception as e:  # noqa: BLE001 - reported as a failing row
        row = Row(source="triton", module=module, kernel=kernel, config=spec.name, arch=arch,
                  launch=launch, requires_fp8_mfma=spec.requires_fp8_mfma,
                  requires_mfma=spec.requires_mfma, error=_compile_error_text(e),
                  lds_limit=limits_for(arch).lds_bytes, waves_per_eu_hint=spec.waves_per_eu,
                  description=spec.note)
        check_row(row)
        return row
    notes = [f"option {k!r} unknown to Triton {toolchain_version()}, not applied"
             for k in out.dropped_options]
    return row_from_resources(
        source="triton", module=module, kernel=out.name, config=spec.name, arch=arch, res=res,
        waves_per_workgroup=spec.num_warps, dynamic_lds_bytes=out.shared, launch=launch,
        waves_per_eu_hint=spec.waves_per_eu, requires_fp8_mfma=spec.requires_fp8_mfma,
        requires_mfma=spec.requires_mfma, notes=notes, description=spec.note,
        seconds=round(out.seconds, 3))


_COMPILED: dict[tuple[int, str], CompiledAMD] = {}


def _compile_cached(spec: CompileSpec, arch: str) -> CompiledAMD:
    # keyed by object identity: specs are rebuilt per call, so key on their content instead
    key = (id(spec.fn), arch, spec.name, tuple(sorted(spec.signature.items())),
           tuple(sorted((k, repr(v)) for k, v in spec.constexprs.items())),
           tuple(sorted(spec.launch.items())), spec.aligned, spec.large_tensors,
           tuple(sorted((k, repr(v)) for k, v in spec.extra_options.items())))
    hit = _COMPILED.get(key)
    if hit is None:
        hit = _COMPILED[key] = compile_spec(spec, arch)
    return hit


def module_specs(module, arch: str) -> list[CompileSpec] | None:
    """Specs a kernel module declares for ``arch``: ``compile_specs(arch)`` or
    ``COMPILE_SPECS``; None when it declares neither. Raises TypeError for non-spec items."""
    fn = getattr(module, "compile_specs", None)
    if callable(fn):
        specs = list(fn(arch))
    elif hasattr(module, "COMPILE_SPECS"):
        specs = list(module.COMPILE_SPECS)
    else:
        return None
    for s in specs:
        if not isinstance(s, CompileSpec):
            raise TypeError(f"{module.__name__}: compile specs must be CompileSpec, got "
                            f"{type(s).__name__}")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{module.__name__}: duplicate compile spec names {dup}")
    return specs


def _module_names() -> list[str]:
    names = list(TRITON_MODULES)
    try:
        pkg = importlib.import_module(_PACKAGE)
        for info in pkgutil.iter_modules(pkg.__path__):
            if not info.name.startswith("_") and info.name not in names and not info.ispkg:
                names.append(info.name)
    except ImportError:  # pragma: no cover
        pass
    return names


def _skip(module: str, arch: str, reason: str) -> Row:
    return Row(source="triton", module=module, kernel="-", config="-", arch=arch,
               skipped=reason)


def report_rows(arch: str, kernel: str | None = None, *, isolate: bool | None = None) -> list[Row]:
    """Rows for every spec of every Triton kernel module, compiled for ``arch``.

    Args:
        arch: "gfx942" or "gfx950".
        kernel: filter (module name, kernel symbol, config label, or an fnmatch glob of one).
        isolate: compile in a subprocess without ``TRITON_INTERPRET``; default: only when
            :func:`interpret_mode` is on.
    Absent expected modules give skipped rows; a module that fails to import or to build its
    specs gives a failing row (so CI notices).
    """
    limits_for(arch)
    if isolate is None:
        isolate = interpret_mode()
    if isolate:
        return _rows_in_subprocess(arch, kernel)
    rows: list[Row] = []
    for mod_name in _module_names():
        full = f"{_PACKAGE}.{mod_name}"
        try:
            mod = importlib.import_module(full)
        except ModuleNotFoundError as e:
            if e.name and (full == e.name or full.startswith(e.name + ".")):
                if mod_name in TRITON_MODULES and matches(kernel, mod_name):
                    rows.append(_skip(mod_name, arch, f"{full} not present yet"))
                continue
            rows.append(Row(source="triton", module=mod_name, kernel="-", config="import",
                            arch=arch, error=_compile_error_text(e)))
            continue
        except Exception as e:  # noqa: BLE001
            rows.append(Row(source="triton", module=mod_name, kernel="-", config="import",
                            arch=arch, error=_compile_error_text(e)))
            continue
        try:
            specs = module_specs(mod, arch)
        except Exception as e:  # noqa: BLE001
            rows.append(Row(source="triton", module=mod_name, kernel="-", config="specs",
                            arch=arch, error=_compile_error_text(e)))
            continue
        if specs is None:
            if mod_name in TRITON_MODULES and matches(kernel, mod_name):
                rows.append(_skip(mod_name, arch, f"{full} declares no compile_specs(arch) / "
                                                  "COMPILE_SPECS yet"))
            continue
        if not specs and matches(kernel, mod_name):
            rows.append(_skip(mod_name, arch, f"{full} has no kernels of its own (empty specs)"))
        for spec in specs:
            kname = getattr(spec.fn, "__name__", "") or ""
            if matches(kernel, mod_name, kname, spec.name):
                rows.append(spec_row(spec, arch, mod_name))
    for r in rows:
        check_row(r)
    return rows


def _rows_in_subprocess(arch: str, kernel: str | None) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-m", "rocm_dsa.compile.triton_amd", "--arch", arch]
    if kernel:
        cmd += ["--kernel", kernel]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"compile subprocess failed ({proc.returncode}):\n"
                           f"{proc.stderr[-4000:]}")
    return [Row.from_dict(d) for d in json.loads(proc.stdout)]


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Triton AMD compile rows as JSON (internal).")
    ap.add_argument("--arch", required=True)
    ap.add_argument("--kernel", default=None)
    a = ap.parse_args(argv)
    rows = report_rows(a.arch, a.kernel, isolate=False)
    json.dump([r.to_dict() for r in rows], sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
