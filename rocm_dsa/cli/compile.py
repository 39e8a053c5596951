"""``rocm-dsa compile``: AMD compile reports without a GPU.

Compiles every kernel (Triton, and HIP when its source is present) at the DeepSeek-V3.2 shapes
for gfx942 / gfx950 and prints per kernel and config: VGPRs (arch + accumulation), SGPRs,
spills, scratch, LDS, occupancy and the MFMA instructions used. How to read it:
docs/compile-reports.md. Logic lives in :mod:`rocm_dsa.compile`; this module only prints.

Exit status: 0 = every check passes; 1 = some row fails (spill, LDS over the limit, missing FP8
MFMA where required, compile error); 2 = bad arguments (unknown arch, nothing matches
``--kernel``).
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ._console import make_console

__all__ = ["register", "compile_cmd"]

_ARCHS = ("gfx942", "gfx950")


def compile_cmd(
    arch: Annotated[list[str], typer.Option(
        "--arch", help="gfx942 (MI300X) and/or gfx950 (MI355X); repeat for both. "
                       "Default: both.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    kernel: Annotated[Optional[str], typer.Option(
        "--kernel", help="Only this kernel: a module (indexer), kernel symbol, config label, "
                         "or a glob of one (e.g. 'sparse_mla*').")] = None,
    source: Annotated[Optional[list[str]], typer.Option(
        "--source", help="Only these row sources: triton, hip (default: all).")] = None,
) -> None:
    """Compile every kernel for AMD gfx942/gfx950 (no GPU needed) and report registers,
    spills, LDS, occupancy and MFMA use; exit 1 on failing checks."""
    from rocm_dsa.compile.report import SOURCES, collect, render_table

    archs = list(arch) if arch else list(_ARCHS)
    console = make_console(stderr=as_json)
    for a in archs:
        if a not in _ARCHS:
            console.print(f"[red]--arch: expected one of {', '.join(_ARCHS)}, got {a!r}[/]")
            raise typer.Exit(2)
    for s in source or ():
        if s not in SOURCES:
            console.print(f"[red]--source: expected one of {', '.join(SOURCES)}, got {s!r}[/]")
            raise typer.Exit(2)
    reports = [collect(a, kernel, sources=source or None) for a in archs]
    if kernel is not None and not any(r.rows and any(not x.skipped for x in r.rows)
                                      for r in reports):
        console.print(f"[red]--kernel: nothing matches {kernel!r}[/] (modules, kernel symbols "
                      "and config labels are listed by `rocm-dsa compile`)")
        raise typer.Exit(2)
    ok = all(r.ok for r in reports)
    if as_json:
        typer.echo(json.dumps({"ok": ok, "reports": [r.to_dict() for r in reports]}, indent=2))
    else:
        for r in reports:
            render_table(r, console)
    if not ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``compile`` to the ``rocm-dsa`` app."""
    app.command("compile")(compile_cmd)
