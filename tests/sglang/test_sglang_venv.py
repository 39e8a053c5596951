"""Run tests/sglang in SGLang's own virtual environment when this one has no SGLang.

CI (``.ci/install.d/sglang.sh``) installs SGLang either into the test environment (then the
tests here run in-process and this one skips) or, when that environment's torch cannot carry
SGLang's torchvision, into a separate venv: ``$ROCM_DSA_SGLANG_PYTHON``, else
``$ROCM_DSA_SGLANG_VENV/bin/python``, else ``/opt/rocm-dsa/sglang-venv/bin/python``. This test
runs the SGLang tests there, so they run in CI either way; under CI (``CI`` set) a missing
venv is a failure, not a skip.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

DEFAULT_PYTHON = "/opt/rocm-dsa/sglang-venv/bin/python"
HERE = pathlib.Path(__file__).resolve().parent


def _in_process() -> bool:
    try:
        import sglang.srt.server_args  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure means: not usable here
        return False
    return True


def test_sglang_suite_in_sglang_venv():
    if _in_process():
        pytest.skip("SGLang is importable here: tests/sglang ran in this process")
    venv = os.environ.get("ROCM_DSA_SGLANG_VENV")
    python = os.environ.get("ROCM_DSA_SGLANG_PYTHON") or (f"{venv}/bin/python" if venv else DEFAULT_PYTHON)
    if not pathlib.Path(python).exists():
        if os.environ.get("CI"):
            pytest.fail(f"CI: no SGLang venv at {python}; .ci/install.d/sglang.sh should have built it")
        pytest.skip(f"no SGLang here and no SGLang venv at {python} (CI: .ci/install.d/sglang.sh builds it)")
    root = HERE.parent.parent
    rel = HERE.relative_to(root).as_posix()
    r = subprocess.run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:warnings", rel,
         "--deselect", f"{rel}/{pathlib.Path(__file__).name}::test_sglang_suite_in_sglang_venv"],
        cwd=root, capture_output=True, text=True, timeout=900,
    )
    tail = (r.stdout + r.stderr)[-6000:]
    print(tail)
    assert r.returncode == 0, tail
    assert " passed" in r.stdout and "skipped" not in r.stdout.splitlines()[-1], tail
