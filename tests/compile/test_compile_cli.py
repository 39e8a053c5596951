"""``rocm-dsa compile``: exit status and output, over a stand-in row source.

The stand-in source compiles the small fixture kernels of test_triton_amd_compile.py (a clean
FP8 dot and a spilling loop) so the CLI's exit codes are tested without depending on which real
kernels exist yet.
"""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from rocm_dsa.cli import _register, app
from rocm_dsa.compile import report as report_mod
from rocm_dsa.compile.triton_amd import spec_row

from test_triton_amd_compile import SPILL_SPEC, _dot_spec  # noqa: E402 (same directory)

runner = CliRunner()


@pytest.fixture
def fake_source(monkeypatch):
    """Install a row source named "triton" whose rows we choose; returns the setter."""
    mod = types.ModuleType("rocm_dsa_test_fake_source")
    mod.specs = []

    def report_rows(arch, kernel=None):
        native = "fp8e4b8" if arch == "gfx942" else "fp8e4nv"
        rows = []
        for spec in mod.specs:
            if spec == "dot":
                spec = _dot_spec(native)
            if report_mod.matches(kernel, "fake", spec.name):
                rows.append(spec_row(spec, arch, "fake"))
        return rows

    mod.report_rows = report_rows
    mod.toolchain_version = lambda: "test"
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setattr(report_mod, "SOURCES", {"triton": mod.__name__,
                                                "hip": "rocm_dsa_no_such_source_module"})
    report_mod.clear_cache()
    _register()
    yield mod
    report_mod.clear_cache()


def test_passing_report_exits_zero(fake_source):
    fake_source.specs = ["dot"]
    res = runner.invoke(app, ["compile", "--arch", "gfx942", "--arch", "gfx950"])
    assert res.exit_code == 0, res.output
    assert "checks pass" in res.output and "gfx950" in res.output
    assert "skipped hip" in res.output


def test_failing_checks_exit_nonzero(fake_source):
    fake_source.specs = ["dot", SPILL_SPEC]
    res = runner.invoke(app, ["compile", "--arch", "gfx942"])
    assert res.exit_code == 1, res.output
    assert "failing checks" in res.output and "spill" in res.output


def test_json_output(fake_source):
    fake_source.specs = ["dot", SPILL_SPEC]
    res = runner.invoke(app, ["compile", "--arch", "gfx942", "--json"])
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and len(doc["reports"]) == 1
    rep = doc["reports"][0]
    assert rep["arch"] == "gfx942" and rep["versions"] == {"triton": "test"}
    by_config = {r["config"]: r for r in rep["rows"] if not r["skipped"]}
    assert by_config["dot fp8e4b8"]["status"] == "ok"
    assert by_config["dot fp8e4b8"]["mfma_kinds"] == ["fp8"]
    spill = by_config[SPILL_SPEC.name]
    assert spill["status"] == "FAIL" and spill["vgpr_spills"] > 0
    for key in ("vgprs", "agprs", "sgprs", "vgpr_spills", "sgpr_spills", "scratch_bytes",
                "lds_bytes", "waves_per_simd", "mfma", "failures"):
        assert key in spill


def test_kernel_filter(fake_source):
    fake_source.specs = ["dot", SPILL_SPEC]
    res = runner.invoke(app, ["compile", "--arch", "gfx942", "--kernel", "dot*", "--json"])
    assert res.exit_code == 0, res.output
    rows = [r for r in json.loads(res.stdout)["reports"][0]["rows"] if not r["skipped"]]
    assert [r["config"] for r in rows] == ["dot fp8e4b8"]
    res = runner.invoke(app, ["compile", "--arch", "gfx942", "--kernel", "nothing_named_so"])
    assert res.exit_code == 2


def test_bad_arguments(fake_source):
    assert runner.invoke(app, ["compile", "--arch", "gfx90a"]).exit_code == 2
    assert runner.invoke(app, ["compile", "--arch", "gfx942", "--source", "cuda"]).exit_code == 2
