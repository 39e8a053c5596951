"""``rocm-dsa bench``: sweeps with providers side by side, roofline table, saved results, plots.

Three ways in:

* measure: ``rocm-dsa bench [--sweep decode,prefill,indexer,topk,dsa] [--provider P ...]
  [--heads 16] [--quick] [--out results.msgpack] [--plot DIR]``;
* predict: ``rocm-dsa bench --model mi300x`` — the analytical estimate (bytes and FLOPs against
  the part's datasheet), labelled as a prediction, nothing runs;
* report: ``rocm-dsa bench --report results.msgpack [--plot DIR] > docs/benchmarks-generated.md``
  — markdown (and plots) from saved results, nothing runs.

Logic lives in :mod:`rocm_dsa.benchmark`; this module parses options and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ._console import make_console
from ._device import parse_device

__all__ = ["register", "bench"]


def _split(values: Optional[list[str]]) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def _print_tables(doc: dict, console: Console) -> None:
    from ..benchmark import SWEEPS, dsa_table, sweep_table

    rows = doc["results"]
    c = doc.get("ceilings", {})
    if doc.get("kind") == "model":
        head = (f"[bold yellow]ANALYTICAL ESTIMATE for {doc['machine']['model_of']} "
                f"({doc['machine']['arch']}) — predictions from bytes and FLOPs, NOT measurements[/bold yellow]")
    else:
        plat = doc["machine"]["platform"]
        head = f"[bold]measured on {plat['device_name']} ({plat['arch']})[/bold]"
    console.print(head)
    console.print(f"ceilings ({c.get('source')}): {c.get('hbm_gbps', 0):.4g} GB/s, bf16 {c.get('bf16_tflops', 0):.4g} "
                  f"TFLOP/s, fp8 {c.get('fp8_tflops', 0):.4g} TFLOP/s" +
                  (f" [dim]({'; '.join(c['notes'])})[/dim]" if c.get("notes") else ""))
    for sweep in SWEEPS:
        for op in dict.fromkeys(r["op"] for r in rows if r["sweep"] == sweep and sweep != "dsa"):
            header, body, common = sweep_table(rows, sweep, op, with_op=False, compact=True)
            t = Table(title=f"{sweep} · {op}" + (f"  [dim]({common})[/dim]" if common else ""), title_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)
            for h in header:
                t.add_column(h, justify="left" if h in ("shape", "provider", "bound") else "right",
                             no_wrap=h != "bound")
            for r in body:
                t.add_row(*r)
            console.print(t)
    header, body = dsa_table(rows)
    if body:
        t = Table(title="DSA vs dense MLA: µs per query token at context position L (dense / DSA > 1: sparse wins)",
                  title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for h in header:
            t.add_column(h, justify="left" if h in ("mode", "provider") else "right")
        for r in body:
            t.add_row(*r)
        console.print(t)


def bench(
    sweep: Annotated[Optional[list[str]], typer.Option(
        help="sweeps to run: decode, prefill, indexer, topk, dsa (comma list or repeated; default all)")] = None,
    quick: Annotated[bool, typer.Option(
        help="tiny shapes (k=256) for CPUs and CI: seconds with the reference")] = False,
    provider: Annotated[Optional[list[str]], typer.Option(
        help="provider to measure (repeatable: side by side); default: the automatic choice")] = None,
    heads: Annotated[Optional[str], typer.Option(
        help="MLA heads per TP rank, comma list (128/TP: 16 = TP8); default 16,64,128 decode / 16,128 prefill / "
             "128 dsa")] = None,
    kv: Annotated[str, typer.Option(help="latent cache format: bf16 or fp8 (656-byte records)")] = "bf16",
    topk: Annotated[Optional[int], typer.Option(help="indices per query (default 2048; 256 with --quick)")] = None,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: the GPU if any, else cpu)")] = None,
    ceilings: Annotated[str, typer.Option(
        help="roofline ceilings: measured (copy bandwidth, matmul rates) or datasheet")] = "measured",
    budget: Annotated[Optional[float], typer.Option(help="seconds of timed calls per point")] = None,
    flush: Annotated[bool, typer.Option("--flush/--no-flush", help="flush the GPU cache before each call")] = True,
    seed: Annotated[int, typer.Option(help="torch seed of the random inputs")] = 0,
    out: Annotated[Optional[Path], typer.Option(
        help="save results with machine metadata: msgpack, or JSON when the name ends in .json")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result document as JSON on stdout")] = False,
    plot: Annotated[Optional[Path], typer.Option(
        help="write PNG plots here (roofline, scaling, DSA cost per token) and the results as "
             "DIR/results.msgpack; needs matplotlib (without it: measures, saves, exits 2)")] = None,
    model: Annotated[Optional[str], typer.Option(
        help="print the analytical estimate for a part (mi300x, mi355x, h200, b200) instead of measuring")] = None,
    report: Annotated[Optional[list[Path]], typer.Option(
        help="print markdown from saved result files (repeatable) instead of measuring")] = None,
) -> None:
    """Benchmark the DSA ops: time, GB/s, TFLOP/s and % of roofline; save, report and plot."""
    from .. import benchmark as B

    console = make_console(stderr=as_json or bool(report))
    plot_error = None
    if plot is not None:
        try:
            B._plt()
        except B.PlotError as e:
            plot_error = str(e)
            if report:
                console.print(f"[red bold]error:[/red bold] {plot_error}")
                raise typer.Exit(2) from None
            console.print(f"[yellow]warning:[/yellow] {plot_error}; measuring anyway: the results go to "
                          f"{plot / 'results.msgpack'}, plots are not drawn")

    if report:
        try:
            docs = [B.load_results(p) for p in report]
        except (OSError, ValueError) as e:
            raise typer.BadParameter(str(e), param_hint="--report") from None
        if plot is not None:
            for i, doc in enumerate(docs):
                d = plot if len(docs) == 1 else plot / f"{i}"
                for p in B.write_plots(doc, d):
                    console.print(f"wrote {p}")
        print(B.markdown_report(docs, plots=str(plot) if plot is not None else None))
        return

    try:
        head_list = [int(h) for h in _split([heads])] if heads else None
    except ValueError:
        raise typer.BadParameter(f"expected a comma list of integers, got {heads!r}", param_hint="--heads") from None
    sweeps = _split(sweep) or list(B.SWEEPS)
    try:
        points = B.sweep_points(sweeps, quick=quick, heads=head_list, kv=kv, topk=topk)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None

    if model:
        try:
            doc = B.model_rows(points, model)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--model") from None
    else:
        from ..backends import provider_names

        provs = _split(provider)
        unknown = [p for p in provs if p not in provider_names() and p != "auto"]
        if unknown:
            raise typer.BadParameter(f"expected names from {provider_names()}, got {unknown}", param_hint="--provider")
        prov_list = [None if p == "auto" else p for p in provs] or [None]
        dev = parse_device(device)
        if ceilings not in ("measured", "datasheet"):
            raise typer.BadParameter(f"expected measured or datasheet, got {ceilings!r}", param_hint="--ceilings")
        if budget is not None and not budget > 0:
            raise typer.BadParameter(f"expected seconds > 0, got {budget}", param_hint="--budget")
        jobs = sum(1 if p.op in B.DENSE_OPS else len(prov_list) for p in points)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        config = {"sweeps": sweeps, "quick": quick, "heads": head_list, "kv": kv, "topk": topk,
                  "providers": [p or "auto" for p in prov_list], "ceilings": ceilings}
        with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task("measuring ceilings", total=jobs)

            def step(row: dict) -> None:
                bar.update(task, advance=1, description=f"{row['op']} {row['label']} [{row['provider']}]")
            try:
                doc = B.run_bench(points, providers=prov_list, device=dev, ceilings_mode=ceilings, budget_s=budget,
                                  flush=flush, seed=seed, on_point=step, config=config)
            except ValueError as e:
                raise typer.BadParameter(str(e)) from None

    if as_json:
        print(json.dumps(B._plain(doc), indent=1))
    else:
        _print_tables(doc, console)
    if out is not None:
        console.print(f"saved {B.save_results(doc, out)}")
    if plot is not None:
        # the data next to its plots, so they can be redrawn later with --report
        saved = B.save_results(doc, plot / "results.msgpack")
        console.print(f"saved {saved}")
        if plot_error:
            console.print(f"[red bold]error:[/red bold] plots not drawn: {plot_error}. Draw them later with: "
                          f"rocm-dsa bench --report {saved} --plot {plot}")
            raise typer.Exit(2)
        for p in B.write_plots(doc, plot):
            console.print(f"wrote {p}")
    errors = [r for r in doc["results"] if r["status"] == "error"]
    if errors:
        console.print(f"[red]{len(errors)} point(s) failed[/red]: " +
                      "; ".join(f"{r['op']} {r['label']} [{r['provider']}]: {r['reason']}" for r in errors[:5]))
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the ``rocm-dsa`` app."""
    app.command("bench")(bench)
