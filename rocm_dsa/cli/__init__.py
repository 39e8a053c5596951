"""The ``rocm-dsa`` command line (typer). One module per command, each exposing
``register(app)``; this module only wires them. Commands whose module is absent are skipped."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="rocm-dsa",
    help="DeepSeek Sparse Attention on AMD Instinct GPUs: run, check, compile, bench, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

@app.callback()
def _root() -> None:
    """DeepSeek Sparse Attention on AMD Instinct GPUs: run, check, compile, bench, serve."""


#: command modules under rocm_dsa.cli, in help order
COMMANDS = ("run", "check", "compile", "bench", "serve")
_registered = False


def _register() -> None:
    global _registered
    if _registered:
        return
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{name}":
                continue
            raise
        mod.register(app)
    _registered = True


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
