"""CLI consoles off a terminal: wide enough that the report tables are not cut at 80 columns."""

from __future__ import annotations

from rocm_dsa.cli._console import PIPE_WIDTH, make_console


def test_pipe_width_without_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console().width == PIPE_WIDTH  # pytest captures stdout: not a terminal
    assert make_console(stderr=True).width == PIPE_WIDTH


def test_columns_wins(monkeypatch):
    monkeypatch.setenv("COLUMNS", "97")
    assert make_console().width == 97
