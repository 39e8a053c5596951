"""``rocm-dsa check``: platform, versions, provider x op availability and self-tests.

Exit status: 0 = fine; 1 = the provider a call would use (automatic, or ``--provider``) failed
its self-test on some op, or a ``--warmup`` step failed; 2 = the ``--provider`` asked for can run
no op on this machine. Logic lives in :mod:`rocm_dsa.selfcheck`; this module only prints.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._console import make_console
from ._device import parse_device

__all__ = ["register", "check"]


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_report(report, console: Console) -> None:
    from ..selfcheck import PROBES

    plat = report.platform
    t = Table(title="Platform", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k in ("device", "device_name", "arch", "part", "compute_units", "wave_size", "lds_bytes", "fp8_dtype",
              "runtime", "peak_hbm_gbps", "peak_bf16_tflops", "peak_fp8_tflops", "cpu_threads"):
        if k in plat:
            v = plat[k]
            if k == "lds_bytes":
                v = f"{v} ({v // 1024} KiB)" if v else "n/a"
            elif k == "fp8_dtype":
                v = f"{v} (max {plat['fp8_max']:g})"
            elif k.startswith("peak_"):
                v = f"{v:g}" if v else "n/a (no datasheet figure)"
            t.add_row(k, str(v))
    console.print(t)

    t = Table(title="Versions", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    for k, v in report.versions.items():
        t.add_row(k, v if v is not None else "[dim]not installed[/dim]")
    console.print(t)

    t = Table(title="Providers", title_justify="left")
    for c in ("provider", "status", "description / reason"):
        t.add_column(c)
    for p in report.providers:
        status = "[green]loaded[/green]" if p["available"] else "[yellow]unavailable[/yellow]"
        t.add_row(p["name"], status, escape(p["description"] if p["available"] else p["reason"]))
    console.print(t)

    usable = [p["name"] for p in report.providers if p["available"]]
    by_cell = {(r.probe, r.provider): r for r in report.results}
    labels = [p.label for p in PROBES if any(r.probe == p.label for r in report.results)]
    t = Table(title=f"Ops x providers (MLA heads = {report.heads}; * = the provider a call uses; time = first call, "
                    "compilation included)", title_justify="left")
    t.add_column("op")
    for n in usable:
        t.add_column(n)
    for label in labels:
        cells = []
        for n in usable:
            r = by_cell.get((label, n))
            if r is None:
                cells.append("")
                continue
            star = "*" if r.chosen else ""
            if not r.available:
                cells.append(f"[dim]n/a: {escape(_short('; '.join(r.reasons), 48))}[/dim]")
            elif r.selftest == "pass":
                ms = f" {r.seconds * 1e3:.1f} ms" if r.seconds is not None else ""
                cells.append(f"[green]{star}pass{ms}[/green]")
            elif r.selftest == "fail":
                cells.append(f"[red bold]{star}FAIL[/red bold]")
            else:
                cells.append(f"[cyan]{star}available[/cyan] [dim](not tested)[/dim]")
        t.add_row(escape(label), *cells)
    console.print(t)

    ran = [r for r in report.results if r.selftest in ("pass", "fail")]
    if ran:
        t = Table(title="What ran where (self-tests vs the reference, same inputs)", title_justify="left")
        for c in ("op", "provider", "executed as", "result"):
            t.add_column(c)
        for r in ran:
            res = (f"[green]pass[/green] {escape(r.detail)}" if r.selftest == "pass"
                   else f"[red]FAIL[/red] {escape(r.detail)}")
            t.add_row(escape(r.probe), r.provider + ("*" if r.chosen else ""), escape(r.where), res)
        console.print(t)
    _print_code_paths(console)
    skipped = [r for r in report.results if r.selftest == "skip"]
    for why in sorted({r.detail for r in skipped}):
        who = sorted({r.provider for r in skipped if r.detail == why})
        console.print(f"[dim]not self-tested ({', '.join(who)}): {escape(why)}[/dim]")

    if report.warmup:
        t = Table(title="Warm-up (ahead-of-time compilation)", title_justify="left")
        for c in ("step", "status", "seconds", "detail"):
            t.add_column(c)
        for w in report.warmup:
            color = {"ok": "green", "fail": "red"}.get(w["status"], "yellow")
            t.add_row(w["step"], f"[{color}]{w['status']}[/{color}]", f"{w.get('seconds', 0):.1f}",
                      escape(w.get("detail", "")))
        console.print(t)

    code = report.exit_code
    if report.chosen_failures:
        bad = ", ".join(f"{r.probe} ({r.provider})" for r in report.chosen_failures)
        console.print(f"[red bold]chosen provider failed its self-test:[/red bold] {escape(bad)}")
    if report.requested_unavailable:
        reasons = {"; ".join(r.reasons) for r in report.results if r.provider == report.requested}
        console.print(f"[red bold]provider {report.requested!r} cannot run any op here:[/red bold] "
                      f"{escape(' | '.join(sorted(reasons)))}")
    if code == 0:
        console.print("[green bold]check passed[/green bold]")


def check(
    device: Annotated[Optional[str], typer.Option(help="torch device (default: the GPU if any, else cpu)")] = None,
    provider: Annotated[Optional[str], typer.Option(
        help="check this provider: it serves every op it supports (others keep their choice); its "
             "self-test decides the exit code")] = None,
    heads: Annotated[int, typer.Option(help="MLA heads per TP rank for the sparse-MLA probes (128/TP; 16 = TP8)")] = 16,
    op: Annotated[Optional[list[str]], typer.Option(help="limit to these ops / probe labels (repeatable)")] = None,
    selftest: Annotated[bool, typer.Option("--selftest/--no-selftest", help="run the self-tests")] = True,
    warmup: Annotated[bool, typer.Option(
        help="first compile every Triton/HIP kernel ahead of time for --arch into the caches "
             "(TRITON_CACHE_DIR, TORCH_EXTENSIONS_DIR); no GPU needed (used by the Docker build)")] = False,
    arch: Annotated[Optional[str], typer.Option(
        help="target arch of --warmup: gfx942 or gfx950 (default: the detected one)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the random self-test inputs")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON document instead of tables")] = False,
) -> None:
    """Platform, versions, which provider runs each op (or why not), and self-tests against the reference."""
    from ..selfcheck import run_check, warmup as run_warmup

    console = make_console(stderr=as_json)
    dev = parse_device(device)
    _check_backend_env()
    steps = []
    if warmup:
        steps = run_warmup(arch, on_progress=None if as_json else (lambda s: console.print(f"[dim]warm-up: {s}[/dim]")))
    try:
        with console.status("self-tests...", spinner="dots") if not as_json else _null():
            report = run_check(dev, provider=provider, heads=heads, ops_filter=op, selftest=selftest, seed=seed)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    report.warmup = steps
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(report, console)
    raise typer.Exit(report.exit_code)


def _check_backend_env() -> None:
    """Every op call would raise on a ROCM_DSA_BACKEND[_<OP>] naming no provider: say so here."""
    import os

    from ..backends import provider_names

    bad = {k: v for k, v in os.environ.items()
           if k.startswith("ROCM_DSA_BACKEND") and v.strip() and v.strip() not in (*provider_names(), "auto")}
    if bad:
        raise typer.BadParameter(f"{bad}: expected provider names from {provider_names()} or 'auto'",
                                 param_hint="ROCM_DSA_BACKEND environment")


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def register(app: typer.Typer) -> None:
    """Add ``check`` to the ``rocm-dsa`` app."""
    app.command("check")(check)


def _print_code_paths(console) -> None:
    """Providers that declare ``paths`` (op -> code path and where it was executed or compiled)."""
    from ..backends import get_provider, provider_names

    rows = [(name, op, text) for name in provider_names()
            for op, text in (getattr(get_provider(name), "paths", None) or {}).items()]
    if not rows:
        return
    t = Table(title="Code paths and where they were verified", title_justify="left")
    for c in ("provider", "op", "path"):
        t.add_column(c)
    for name, op, text in rows:
        t.add_row(name, op, escape(text))
    console.print(t)
