"""The rich consoles of the CLI commands.

rich sizes output to the terminal, and to 80 columns when stdout is a pipe or a file (CI logs,
``| tee``, the device tool), which cut the wide tables of ``rocm-dsa check / run / compile /
bench`` mid-cell. Off a terminal the consoles here are 200 columns wide unless ``COLUMNS`` says
otherwise.
"""

from __future__ import annotations

import os

from rich.console import Console

#: width used off a terminal when COLUMNS is not set
PIPE_WIDTH = 200


def make_console(stderr: bool = False) -> Console:
    """A rich Console on stdout (or stderr): the terminal's width on a terminal, ``COLUMNS``
    when set, else :data:`PIPE_WIDTH` columns."""
    console = Console(stderr=stderr)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPE_WIDTH
    return console
