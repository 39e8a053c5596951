"""``rocm-dsa run``: one DeepSeek-V3.2 DSA attention layer on a batch of requests, every stage
checked against the reference provider and the layer against dense causal attention.

Exit status: 0 = every check passed; 1 = a check failed; 2 = bad options or inputs.
Logic lives in :mod:`rocm_dsa.model.job`; this module parses options and prints.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ._console import make_console
from ._device import parse_device

__all__ = ["register", "run"]


def _fmt_time(s: float | None) -> str:
    if s is None:
        return ""
    return f"{s * 1e3:.1f}ms" if s < 1 else f"{s:.2f}s"


def _fmt_rate(r: float | None) -> str:
    if r is None:
        return ""
    return f"{r / 1e3:.1f}k" if r >= 1e3 else f"{r:.1f}"


def _fmt_err(e: float | None) -> str:
    if e is None:
        return ""
    return "inf" if math.isinf(e) else ("0" if e == 0 else f"{e:.1e}")


def _print_report(report, console: Console) -> None:
    s = report.settings
    head = Table(show_header=False, title="rocm-dsa run", title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    for k in ("config", "weights", "lengths", "cached_prefix", "extend", "decode_steps", "next_n", "topk",
              "heads_local", "tp_size", "indexer_heads", "kv_cache", "fp8_dtype", "dtype", "device", "provider",
              "softmax_scale"):
        head.add_row(k, str(s[k]))
    console.print(head)
    t = Table(title="Stages (max error relative to the reference / dense result)", title_justify="left")
    for c, j in (("stage", "left"), ("provider", "left"), ("time", "right"), ("tok/s", "right"),
                 ("max err", "right"), ("top-k ovl", "right"), ("B/token", "right"), ("check", "left")):
        t.add_column(c, justify=j, no_wrap=c in ("stage", "time", "check"))
    colour = {"pass": "[green]pass[/green]", "FAIL": "[bold red]FAIL[/bold red]", "info": "[yellow]info[/yellow]"}
    for r in report.rows:
        t.add_row(r.stage, r.provider, _fmt_time(r.seconds), _fmt_rate(r.tokens_per_s), _fmt_err(r.max_error),
                  "" if r.topk_overlap is None else f"{r.topk_overlap:.4f}",
                  "" if r.bytes_per_token is None else str(r.bytes_per_token), colour.get(r.status, r.status))
    console.print(t)
    for r in report.rows:
        if r.note:
            console.print(f"[dim]{r.stage}: {r.note}[/dim]")
    for n in report.notes:
        console.print(f"[dim]note: {n}[/dim]")
    verdict = "[green]all checks passed[/green]" if report.ok else "[bold red]CHECKS FAILED[/bold red]"
    console.print(f"{verdict} in {report.wall_seconds:.1f} s")


def _parse_lengths(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.replace(" ", "").split(",")]  # an empty item is an error
    except ValueError:
        raise typer.BadParameter(f"expected a comma-separated list of integers, got {text!r}") from None
    if not out or min(out) < 1:
        raise typer.BadParameter(f"expected positive request lengths, got {text!r}")
    return out


def run(
    lengths: Annotated[str, typer.Option(help="Request lengths (tokens), comma-separated.")] = "1500,2600,40",
    decode_steps: Annotated[int, typer.Option(min=0, help="Decode steps after the prefill.")] = 4,
    next_n: Annotated[int, typer.Option(min=1, help="Tokens per request per decode step (>1 = MTP).")] = 1,
    extend: Annotated[int, typer.Option(
        min=0, help="Tokens per request prefilled with attention (the last ones); earlier tokens form a cached "
             "prefix written by the cache stores only (a prefix-cache hit). 0 = prefill every token.")] = 256,
    chunk: Annotated[int, typer.Option(min=1, help="Chunked prefill: at most this many tokens per request "
                                                    "per prefill step.")] = 2048,
    provider: Annotated[Optional[str], typer.Option(
        help="Provider to run the ops with (tried first; ops it cannot run fall back). Default: automatic.")] = None,
    tp: Annotated[int, typer.Option(min=1, help="Tensor-parallel size (local MLA heads = heads / tp).")] = 8,
    tp_rank: Annotated[int, typer.Option(min=0, help="Which TP rank's heads to run.")] = 0,
    heads: Annotated[Optional[int], typer.Option(
        help="TP-local MLA heads (overrides --tp: tp = model heads / heads).")] = None,
    kv_cache: Annotated[str, typer.Option(help="MLA latent cache: bf16 (1152 B/token) or fp8 (656 B/token).")
                        ] = "bf16",
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="DeepSeek-V3.2 safetensors file or directory (default: seeded random weights).")] = None,
    layer: Annotated[int, typer.Option(min=0, help="Layer index in the checkpoint.")] = 0,
    config: Annotated[Optional[Path], typer.Option(
        help="HF config.json (default: the checkpoint's, else the DeepSeek-V3.2 preset).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, inputs and page shuffling.")] = 0,
    topk: Annotated[Optional[int], typer.Option(min=1, help="Indexer top-k (default: the config's, 2048).")] = None,
    dtype: Annotated[str, typer.Option(help="Projection dtype: fp32 or bf16.")] = "fp32",
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, or auto.")] = "cpu",
    dense_rows: Annotated[int, typer.Option(
        min=0, help="Rows per request compared with dense attention where context > top-k (0 = all).")] = 32,
    check_rows: Annotated[int, typer.Option(
        min=0, help="Query rows per request re-checked in the prefill stage checks (0 = all).")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Run one DSA attention layer (indexer, top-k, sparse MLA, caches) and check every stage."""
    import torch

    from ..model.job import JobOptions, run_job

    lens = _parse_lengths(lengths)
    if kv_cache not in ("bf16", "fp8"):
        raise typer.BadParameter(f"expected bf16 or fp8, got {kv_cache!r}", param_hint="--kv-cache")
    if dtype not in ("fp32", "bf16"):
        raise typer.BadParameter(f"expected fp32 or bf16, got {dtype!r}", param_hint="--dtype")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    parse_device(device)
    opts = JobOptions(lengths=lens, decode_steps=decode_steps, next_n=next_n, provider=provider, tp_size=tp,
                      tp_rank=tp_rank, kv_cache=kv_cache, checkpoint=checkpoint, layer=layer, config=config,
                      seed=seed, topk=topk, heads=heads, chunk=chunk, extend=extend, dtype=dtype, device=device,
                      dense_rows=dense_rows, check_rows=check_rows)
    console = make_console()
    try:
        report = run_job(opts)
    except (ValueError, KeyError, FileNotFoundError, TypeError) as e:
        if json_out:
            typer.echo(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
        else:
            console.print(f"[bold red]error:[/bold red] {type(e).__name__}: {e}")
        raise typer.Exit(2) from None
    if json_out:
        typer.echo(json.dumps(report.to_dict(), default=str))
    else:
        _print_report(report, console)
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to the ``rocm-dsa`` app."""
    app.command("run")(run)
