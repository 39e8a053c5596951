"""Session-wide AMD compile reports of the real Triton kernels, computed once.

Both archs compile concurrently in two subprocesses (``python -m rocm_dsa.compile.triton_amd``)
with ``TRITON_INTERPRET`` removed from their environment, so the report is the same whether or
not other tests switched this process to the Triton interpreter. No GPU is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rocm_dsa.compile.report import Row

ARCHS = ("gfx942", "gfx950")


@pytest.fixture(scope="session")
def amd_rows() -> dict[str, list[Row]]:
    """arch -> every Triton report row (compiled, failing or skipped) for that arch."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    procs = {
        arch: subprocess.Popen(
            [sys.executable, "-m", "rocm_dsa.compile.triton_amd", "--arch", arch],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for arch in ARCHS
    }
    out: dict[str, list[Row]] = {}
    for arch, p in procs.items():
        stdout, stderr = p.communicate(timeout=900)
        if p.returncode != 0:
            pytest.fail(f"compile report for {arch} crashed ({p.returncode}):\n{stderr[-4000:]}")
        out[arch] = [Row.from_dict(d) for d in json.loads(stdout)]
    return out
