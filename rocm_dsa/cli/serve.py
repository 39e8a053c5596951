"""``rocm-dsa serve``: SGLang's server with ``--attention-backend nsa-rocm`` and MI300X defaults.

Every argument this command does not know is passed to SGLang unchanged (multi-node:
``--nnodes 2 --node-rank 0 --dist-init-addr host:port``; ports, parsers, ...). ``--dry-run``
prints the resolved SGLang command and checks it with SGLang's own parser when SGLang is
installed; nothing is started. Exit status: 0 = served / valid; 1 = SGLang missing, or SGLang
rejected the arguments; 2 = bad options of this command.
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ._console import make_console

__all__ = ["register", "serve"]


def serve(
    ctx: typer.Context,
    model_path: Annotated[Optional[str], typer.Option(
        "--model-path", "--model", help="Hugging Face id or local path (e.g. deepseek-ai/DeepSeek-V3.2).")] = None,
    tp: Annotated[Optional[int], typer.Option(
        "--tp", "--tp-size", help="Tensor-parallel size (GPUs per model replica).")] = None,
    provider: Annotated[Optional[str], typer.Option(
        "--provider", help="rocm-dsa provider for every op (sets ROCM_DSA_BACKEND); default automatic.")] = None,
    no_defaults: Annotated[bool, typer.Option(
        "--no-defaults", help="Do not add the MI300X defaults (page size, KV dtype, memory fraction).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the SGLang command (validated when SGLang is installed); start nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (with --dry-run).")] = False,
) -> None:
    """Serve a DSA model (DeepSeek-V3.2) with SGLang and rocm-dsa's nsa-rocm attention backend.

    Unknown options go to SGLang as they are. MI300X defaults, each overridden by passing the
    flag: --page-size 64, --kv-cache-dtype bfloat16, --mem-fraction-static 0.85.
    """
    from ..sglang import INSTALL_HINT, sglang_available
    from ..sglang.serve_args import MI300X_DEFAULTS, build_plan, launch, validate

    console = make_console()
    err = make_console(stderr=True)
    try:
        plan = build_plan(list(ctx.args), model_path=model_path, tp_size=tp, provider=provider,
                          defaults=() if no_defaults else MI300X_DEFAULTS)
    except ValueError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None

    if dry_run:
        report = plan.to_json()
        report["sglang_installed"] = sglang_available()
        report["validated"] = None
        report["error"] = None
        code = 0
        if report["sglang_installed"]:
            try:
                validate(plan)
                report["validated"] = True
            except ValueError as e:
                report["validated"] = False
                report["error"] = str(e)
                code = 1
        else:
            report["error"] = INSTALL_HINT
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            console.print("[bold]SGLang command[/bold] (nothing started: --dry-run)")
            console.print(plan.shell(), markup=False, highlight=False, soft_wrap=True)
            t = Table(title="rocm-dsa defaults", title_justify="left")
            t.add_column("flag")
            t.add_column("value")
            t.add_column("source")
            for flag, value in plan.defaults.items():
                t.add_row(escape(flag), escape(value), "MI300X default")
            for flag, value in plan.overridden.items():
                t.add_row(escape(flag), escape(value), "yours")
            console.print(t)
            if report["validated"] is True:
                console.print("[green]SGLang accepts these arguments[/green] (prepare_server_args).")
            elif report["validated"] is False:
                err.print(f"[red]{escape(report['error'])}[/red]")
            else:
                err.print(f"[yellow]not validated:[/yellow] {escape(INSTALL_HINT)}")
        raise typer.Exit(code)

    if not sglang_available():
        err.print(f"[red]error:[/red] {escape(INSTALL_HINT)}")
        raise typer.Exit(1)
    err.print(f"rocm-dsa: starting SGLang: {plan.shell()}", markup=False, highlight=False, soft_wrap=True)
    launch(plan)


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``rocm-dsa`` app (unknown options pass through to SGLang)."""
    app.command(
        "serve",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(serve)
