"""The ``rocm-dsa`` command line (typer). One module per command; this module only wires them."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="rocm-dsa",
    help="DeepSeek Sparse Attention on AMD Instinct GPUs: run, check, compile, bench, serve.",
    no_args_is_help=True,
    add_completion=False,
)


def _register() -> None:
    from . import run as _run

    app.command("run")(_run.run)


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
