"""Compile-report rows, the checks that fail CI, and the rich / JSON renderings.

A :class:`Row` is one kernel at one configuration compiled for one AMD arch, from any *source*
(``"triton"``: :mod:`rocm_dsa.compile.triton_amd`; ``"hip"``: a HIP device-only compile). Every
source fills rows through :func:`row_from_resources`, so occupancy and checks are computed the
same way for all of them.

Checks (a row "fails" when any applies; ``rocm-dsa compile`` then exits 1):

* ``compile``: the kernel did not compile for the arch;
* ``spill``: VGPR or SGPR spills, or scratch memory (private segment) in use;
* ``lds``: LDS per workgroup above the arch's limit (64 KiB gfx942, 160 KiB gfx950);
* ``fp8-mfma``: the spec requires an FP8 MFMA (the gfx942 indexer) and none is used — e4m3fn
  operands on gfx942 fall back to ``v_mfma_*_f16`` silently;
* ``mfma``: the spec requires some MFMA and the code has none (dots lowered to FMA).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import json
from typing import Any, Callable, Iterable, Mapping

from .amdgpu import KernelResources, is_fp8_mfma, limits_for, mfma_kinds, occupancy

__all__ = [
    "Row", "Report", "SourceUnavailable", "SOURCES", "row_from_resources", "check_row",
    "collect", "matches", "render_table", "clear_cache",
]

#: sources of rows: name -> module exposing ``report_rows(arch: str, kernel: str | None) ->
#: list[Row]``. A missing module, or one raising :class:`SourceUnavailable`, yields one
#: skipped row (never a failure).
SOURCES: dict[str, str] = {
    "triton": "rocm_dsa.compile.triton_amd",
    "hip": "rocm_dsa.hipext.compile_report",
}


class SourceUnavailable(RuntimeError):
    """Raised by a source whose toolchain is absent (e.g. no clang-19 / HIP headers)."""


@dataclasses.dataclass
class Row:
    """One kernel at one configuration, compiled for one arch.

    Register counts are per lane (VGPRs) or per wave (SGPRs); bytes are per workgroup (LDS) or
    per lane (scratch). ``None`` = not available (row skipped or failed to compile).

    Attributes:
        source: "triton" or "hip".
        module: kernel module (e.g. "indexer"; for HIP the source file stem).
        kernel: kernel symbol (e.g. "_fwd_indexer_logits_kernel").
        config: configuration label (the spec's ``name``).
        arch: "gfx942" / "gfx950".
        launch: launch options (num_warps, num_stages, waves_per_eu, ...; for HIP the
            workgroup size).
        vgprs: architectural VGPRs; agprs: accumulation VGPRs; vgprs_total: unified file use
            (arch aligned to 4 + AGPRs), which sets occupancy.
        sgprs: SGPRs per wave.
        vgpr_spills / sgpr_spills: spilled registers; scratch_bytes: scratch per lane.
        lds_bytes: LDS per workgroup (static + dynamic); lds_limit: the arch's limit.
        waves_per_workgroup: wavefronts per workgroup.
        waves_per_simd: occupancy (see :func:`rocm_dsa.compile.amdgpu.occupancy`).
        occupancy_limited_by: resources at the occupancy minimum ("vgpr", "sgpr", "lds", "max").
        waves_per_eu_hint: the kernel's ``waves_per_eu`` hint (0 = none).
        llvm_occupancy: LLVM's own estimate (ignores dynamic LDS).
        mfma: MFMA mnemonic -> instruction count.
        requires_fp8_mfma / requires_mfma: checks the spec asked for.
        skipped: why the row was not compiled (missing module / toolchain); never a failure.
        error: compile error text (a failure).
        description: what this config is (the spec's ``note``), shown next to the label.
        notes: informational remarks (dropped options, occupancy below the hint...).
        seconds: compile time.
        failures: failing checks, filled by :func:`check_row`.
    """

    source: str
    module: str
    kernel: str
    config: str
    arch: str
    launch: dict[str, Any] = dataclasses.field(default_factory=dict)
    vgprs: int | None = None
    agprs: int | None = None
    vgprs_total: int | None = None
    sgprs: int | None = None
    vgpr_spills: int | None = None
    sgpr_spills: int | None = None
    scratch_bytes: int | None = None
    lds_bytes: int | None = None
    lds_limit: int | None = None
    waves_per_workgroup: int | None = None
    waves_per_simd: int | None = None
    occupancy_limited_by: list[str] = dataclasses.field(default_factory=list)
    waves_per_eu_hint: int = 0
    llvm_occupancy: int | None = None
    mfma: dict[str, int] = dataclasses.field(default_factory=dict)
    requires_fp8_mfma: bool = False
    requires_mfma: bool = False
    skipped: str | None = None
    error: str | None = None
    description: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float | None = None
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def status(self) -> str:
        """"skipped", "FAIL" or "ok"."""
        if self.skipped:
            return "skipped"
        return "FAIL" if self.failures else "ok"

    @property
    def mfma_kinds(self) -> list[str]:
        """Operand kinds of the MFMAs used ("fp8", "bf16", "f16", ...)."""
        return mfma_kinds(self.mfma)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (all fields, plus ``status`` and ``mfma_kinds``)."""
        d = dataclasses.asdict(self)
        d["status"] = self.status
        d["mfma_kinds"] = self.mfma_kinds
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Row":
        """Inverse of :meth:`to_dict` (extra keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def check_row(row: Row) -> list[str]:
    """The failing checks of ``row`` (also stored in ``row.failures``). Skipped rows pass."""
    fails: list[str] = []
    if row.skipped:
        row.failures = fails
        return fails
    if row.error:
        last = [ln.strip() for ln in row.error.splitlines() if ln.strip()][-1:] or ["?"]
        fails.append(f"compile: {last[0][:300]}")
    else:
        if (row.vgpr_spills or 0) > 0 or (row.sgpr_spills or 0) > 0:
            fails.append(f"spill: {row.vgpr_spills or 0} VGPRs, {row.sgpr_spills or 0} SGPRs "
                         f"spilled" + (" (SGPRs to VGPR lanes)" if row.sgpr_spills and
                                       not row.vgpr_spills and not row.scratch_bytes else ""))
        if (row.scratch_bytes or 0) > 0:
            fails.append(f"spill: {row.scratch_bytes} bytes/lane of scratch memory")
        if row.lds_bytes is not None and row.lds_limit is not None \
                and row.lds_bytes > row.lds_limit:
            fails.append(f"lds: {row.lds_bytes} B per workgroup > {row.lds_limit} B on "
                         f"{row.arch}")
        if row.requires_fp8_mfma and not any(is_fp8_mfma(m) for m in row.mfma):
            used = ", ".join(row.mfma) or "no MFMA"
            fails.append(f"fp8-mfma: required on {row.arch}, code uses {used}")
        elif row.requires_mfma and not row.mfma:
            fails.append("mfma: required, dots were lowered without MFMA")
    row.failures = fails
    return fails


def row_from_resources(*, source: str, module: str, kernel: str, config: str, arch: str,
                       res: KernelResources, waves_per_workgroup: int,
                       dynamic_lds_bytes: int = 0, launch: Mapping[str, Any] | None = None,
                       waves_per_eu_hint: int = 0, requires_fp8_mfma: bool = False,
                       requires_mfma: bool = False, notes: Iterable[str] = (),
                       description: str = "", seconds: float | None = None) -> Row:
    """A checked :class:`Row` from parsed resources; the one constructor every source uses.

    Args:
        res: :func:`rocm_dsa.compile.amdgpu.parse_resources` output for the kernel.
        waves_per_workgroup: wavefronts per workgroup (Triton ``num_warps``; HIP
            ``ceil(block size / 64)``).
        dynamic_lds_bytes: LDS requested at launch on top of the static
            ``.group_segment_fixed_size`` (Triton's ``metadata.shared``; HIP ``extern
            __shared__`` bytes).
    Raises ValueError for an unknown arch.
    """
    lim = limits_for(arch)
    lds = res.lds_static_bytes + dynamic_lds_bytes
    occ = occupancy(res.vgpr_count, res.sgpr_count, lds, waves_per_workgroup, lim)
    notes = list(notes)
    if waves_per_eu_hint and occ.waves_per_simd < waves_per_eu_hint:
        notes.append(f"occupancy {occ.waves_per_simd} < waves_per_eu hint {waves_per_eu_hint} "
                     f"(limited by {'/'.join(occ.limited_by)})")
    row = Row(
        source=source, module=module, kernel=kernel, config=config, arch=arch,
        launch=dict(launch or {}),
        vgprs=res.arch_vgpr_count, agprs=res.agpr_count, vgprs_total=res.vgpr_count,
        sgprs=res.sgpr_count, vgpr_spills=res.vgpr_spill_count,
        sgpr_spills=res.sgpr_spill_count, scratch_bytes=res.scratch_bytes,
        lds_bytes=lds, lds_limit=lim.lds_bytes, waves_per_workgroup=waves_per_workgroup,
        waves_per_simd=occ.waves_per_simd, occupancy_limited_by=list(occ.limited_by),
        waves_per_eu_hint=waves_per_eu_hint, llvm_occupancy=res.llvm_occupancy,
        mfma=dict(res.mfma), requires_fp8_mfma=requires_fp8_mfma, requires_mfma=requires_mfma,
        description=description, notes=notes, seconds=seconds,
    )
    check_row(row)
    return row


def matches(pattern: str | None, *names: str) -> bool:
    """True when ``pattern`` is None or equals / glob-matches (fnmatch) any of ``names``."""
    if pattern is None:
        return True
    return any(n == pattern or fnmatch.fnmatchcase(n, pattern) for n in names if n)


@dataclasses.dataclass
class Report:
    """All rows for one arch, from every source.

    Attributes:
        arch: "gfx942" / "gfx950".
        rows: compiled, failed and skipped rows in source order.
        versions: toolchain versions (e.g. {"triton": "3.9.0"}).
    """

    arch: str
    rows: list[Row]
    versions: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def failing(self) -> list[Row]:
        return [r for r in self.rows if r.failures]

    @property
    def ok(self) -> bool:
        """True when no row fails a check (skipped rows do not count)."""
        return not self.failing

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "ok": self.ok,
            "versions": dict(self.versions),
            "summary": {
                "rows": len(self.rows),
                "compiled": sum(1 for r in self.rows if not r.skipped and not r.error),
                "failing": len(self.failing),
                "skipped": sum(1 for r in self.rows if r.skipped),
            },
            "rows": [r.to_dict() for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)


def _skipped(source: str, module: str, arch: str, reason: str) -> Row:
    return Row(source=source, module=module, kernel="-", config="-", arch=arch, skipped=reason)


_CACHE: dict[tuple, Report] = {}


def clear_cache() -> None:
    """Forget reports cached by :func:`collect`."""
    _CACHE.clear()


def collect(arch: str, kernel: str | None = None, *, sources: Iterable[str] | None = None,
            use_cache: bool = True,
            loader: Callable[[str], Any] = importlib.import_module) -> Report:
    """Compile every kernel of every source for ``arch`` and check the rows.

    Args:
        arch: "gfx942" or "gfx950".
        kernel: only rows whose module, kernel symbol or config label equals / glob-matches it.
        sources: names from :data:`SOURCES` (default: all).
        use_cache: reuse an earlier report of the same arguments in this process.
    Raises ValueError for an unknown arch or source name.
    """
    limits_for(arch)
    names = tuple(SOURCES if sources is None else sources)
    for n in names:
        if n not in SOURCES:
            raise ValueError(f"sources: expected names from {sorted(SOURCES)}, got {n!r}")
    key = (arch, kernel, names)
    if use_cache and key in _CACHE:
        return _CACHE[key]
    rows: list[Row] = []
    versions: dict[str, str] = {}
    for name in names:
        modname = SOURCES[name]
        try:
            mod = loader(modname)
        except ModuleNotFoundError as e:
            if e.name and modname.startswith(e.name):
                rows.append(_skipped(name, "-", arch, f"{modname} not present yet"))
                continue
            raise
        try:
            got = list(mod.report_rows(arch, kernel))
        except SourceUnavailable as e:
            rows.append(_skipped(name, "-", arch, str(e)))
            continue
        for r in got:
            check_row(r)
        rows.extend(got)
        v = getattr(mod, "toolchain_version", None)
        if callable(v):
            versions[name] = v()
    report = Report(arch, rows, versions)
    if use_cache:
        _CACHE[key] = report
    return report


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------
def _bytes(b: int | None) -> str:
    if b is None:
        return "-"
    return str(b) if b < 1024 else f"{b / 1024:.1f}K"


def _mfma_cell(row: Row) -> str:
    if not row.mfma:
        return "-"
    from rich.markup import escape

    return "\n".join(escape(f"{m.removeprefix('v_mfma_')} ×{n}") for m, n in row.mfma.items())


def render_table(report: Report, console=None) -> None:
    """Print ``report`` as a rich table (one line per row), then failures, notes and skips.

    Columns: VGPR = arch+acc (AGPR) VGPRs per lane; spill = VGPR/SGPR spills; scratch =
    bytes per lane; LDS = bytes per workgroup; occ = waves per SIMD (limiting resource).
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal and console.width < 160:
        console.width = 160
    t = Table(title=f"AMD compile report: {report.arch} ("
                    + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ")",
              header_style="bold", pad_edge=False)
    for col, just in (("kernel / config", "left"), ("warps·stages", "right"),
                      ("VGPR arch+acc", "right"), ("SGPR", "right"), ("spill V/S", "right"),
                      ("scratch", "right"), ("LDS", "right"), ("occ", "right"),
                      ("MFMA", "left"), ("status", "left")):
        t.add_column(col, justify=just, overflow="fold",
                     min_width=44 if col.startswith("kernel") else None)
    for r in report.rows:
        if r.skipped:
            continue
        label = f"[bold]{escape(r.module)}[/] {escape(r.config)}"
        if r.source != "triton":  # HIP labels name the input, not the kernel
            label = f"[bold]{escape(r.source)}:{escape(r.module)}[/] {escape(r.kernel)} " \
                    f"{escape(r.config)}"
        if r.error:
            t.add_row(label, "", "", "", "", "", "", "", "", "[red]FAIL compile[/]")
            continue
        ws = f"{r.launch.get('num_warps', r.waves_per_workgroup)}·{r.launch.get('num_stages', '-')}"
        occ = f"{r.waves_per_simd}"
        if r.waves_per_simd is not None and r.occupancy_limited_by != ["max"]:
            occ += f" ({'/'.join(r.occupancy_limited_by)})"
        if r.waves_per_eu_hint:
            occ += f" [dim]hint {r.waves_per_eu_hint}[/]"
        vg = f"{r.vgprs if r.vgprs is not None else '?'}+{r.agprs or 0}"
        spill = f"{r.vgpr_spills}/{r.sgpr_spills}"
        if r.vgpr_spills or r.sgpr_spills:
            spill = f"[red]{spill}[/]"
        scratch = f"[red]{r.scratch_bytes}[/]" if r.scratch_bytes else str(r.scratch_bytes)
        lds = _bytes(r.lds_bytes)
        if r.lds_bytes is not None and r.lds_limit is not None and r.lds_bytes > r.lds_limit:
            lds = f"[red]{lds}[/]"
        status = "[green]ok[/]" if not r.failures else \
            "[red]FAIL " + ", ".join(sorted({f.split(":")[0] for f in r.failures})) + "[/]"
        t.add_row(label, ws, vg, str(r.sgprs), spill, scratch, lds, occ, _mfma_cell(r), status)
    console.print(t)
    for r in report.rows:
        for f in r.failures:
            console.print(f"[red]FAIL[/] {escape(f'{r.source}:{r.module} {r.config}: {f}')}")
            if r.error and f.startswith("compile"):
                for ln in r.error.splitlines()[:-1]:
                    console.print("    " + ln, markup=False, highlight=False)
        for n in r.notes:
            console.print(f"[yellow]note[/] {escape(f'{r.source}:{r.module} {r.config}: {n}')}")
    for r in report.rows:
        if r.skipped:
            console.print(f"[dim]{escape(f'skipped {r.source}:{r.module}: {r.skipped}')}[/]")
    n_ok = sum(1 for r in report.rows if not r.skipped and not r.failures)
    verdict = "[green]checks pass[/]" if report.ok else "[red]failing checks[/]"
    console.print(f"{report.arch}: {n_ok} ok, {len(report.failing)} failing, "
                  f"{sum(1 for r in report.rows if r.skipped)} skipped: {verdict}")
