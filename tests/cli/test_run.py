"""``rocm-dsa run`` through typer's CliRunner: small model from a real random checkpoint, every
check passing, --json parsing, a broken provider failing the run, bad options exiting with 2."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import rocm_dsa.backends as backends
from rocm_dsa.backends.reference import ReferenceProvider
from rocm_dsa.cli import _register, app

REPO = Path(__file__).resolve().parents[2]
SMALL = ["--hidden", "256", "--heads", "4", "--q-lora", "128", "--index-heads", "8"]
# three requests: one with a cached prefix, a chunked prefill, contexts below and above top-k
RUN = ["run", "--lengths", "40,37,150", "--topk", "64", "--decode-steps", "2", "--next-n", "2", "--extend", "100",
       "--chunk", "48", "--tp", "2", "--tp-rank", "1"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("make_random_checkpoint",
                                                  REPO / "scripts" / "make_random_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("run_ckpt")
    assert mod.main(["--out", str(out), *SMALL]) == 0
    return out


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    _register()
    return CliRunner()


def _json(result) -> dict:
    return json.loads(result.stdout)


def test_run_reports_every_check_passing(runner, ckpt, monkeypatch):
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    result = runner.invoke(app, [*RUN, "--checkpoint", str(ckpt)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "all checks passed" in out
    for stage in ("store_indexer_k", "store_mla_kv", "indexer_topk prefill", "sparse_mla_prefill",
                  "indexer_topk_paged n=2", "sparse_mla_decode", "dense, context <= 64", "dense, context > 64"):
        assert stage in out, stage
    assert "FAIL" not in out


def test_json_output(runner, ckpt, monkeypatch):
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    result = runner.invoke(app, [*RUN, "--checkpoint", str(ckpt), "--kv-cache", "fp8", "--json"])
    assert result.exit_code == 0, result.output
    rep = _json(result)
    assert rep["ok"] is True
    s = rep["settings"]
    assert (s["heads_local"], s["tp_size"], s["indexer_heads"], s["topk"]) == (2, 2, 8, 64)
    assert s["cached_prefix"] == [0, 0, 50] and s["kv_cache"] == "fp8"
    stages = {r["stage"]: r for r in rep["stages"]}
    assert stages["store_indexer_k"]["bytes_per_token"] == 132
    assert stages["store_mla_kv"]["bytes_per_token"] == 656
    for name in ("store_indexer_k", "store_mla_kv", "indexer_topk prefill", "indexer_topk_paged n=2",
                 "dense, context <= 64"):
        assert stages[name]["status"] == "pass", name
    assert stages["indexer_topk prefill"]["topk_overlap"] == 1.0
    assert stages["dense, context > 64"]["status"] == "info"
    assert 0 < stages["dense, context <= 64"]["max_error"] < 0.1
    assert all(r["status"] in ("pass", "info", "-") for r in rep["stages"])
    assert stages["sparse_mla_prefill"]["provider"] == "reference"
    assert stages["sparse_mla_prefill"]["tokens_per_s"] > 0


def test_random_weights_from_a_config(runner, ckpt, monkeypatch):
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    result = runner.invoke(app, ["run", "--config", str(ckpt / "config.json"), "--heads", "4", "--lengths", "30,5",
                                 "--topk", "16", "--decode-steps", "1", "--json"])
    assert result.exit_code == 0, result.output
    rep = _json(result)
    assert rep["settings"]["tp_size"] == 1 and rep["settings"]["weights"].startswith("random")
    assert rep["ok"]


class _Broken(ReferenceProvider):
    """Reference with two planted bugs: sparse MLA output off by 10 %, top-k missing its best key."""

    name = "broken"

    def sparse_mla_prefill(self, q, buf, indices, sm_scale, d_v, fp8_dtype):
        out, m, lse = super().sparse_mla_prefill(q, buf, indices, sm_scale, d_v, fp8_dtype)
        return (out.float() * 1.1).to(out.dtype), m, lse

    def indexer_topk(self, q_fp8, k_fp8, k_scale, weights, ks, ke, k):
        top = super().indexer_topk(q_fp8, k_fp8, k_scale, weights, ks, ke, k)
        return torch.cat([top[:, 1:], torch.full_like(top[:, :1], -1)], dim=1)


def test_broken_provider_fails_the_run(runner, ckpt, monkeypatch):
    mod = types.ModuleType("rocm_dsa_test_broken_provider")
    mod.PROVIDER = _Broken()
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(backends.PROVIDER_MODULES, "broken", mod.__name__)
    monkeypatch.setattr(backends, "_loaded", dict(backends._loaded))
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)
    small = ["run", "--lengths", "30,80", "--topk", "64", "--decode-steps", "1", "--tp", "4"]
    result = runner.invoke(app, [*small, "--checkpoint", str(ckpt), "--provider", "broken", "--json"])
    assert result.exit_code == 1, result.output
    rep = _json(result)
    stages = {r["stage"]: r for r in rep["stages"]}
    assert rep["ok"] is False
    assert stages["sparse_mla_prefill"]["provider"] == "broken"
    assert stages["sparse_mla_prefill"]["status"] == "FAIL"
    assert stages["indexer_topk prefill"]["status"] == "FAIL"
    assert stages["indexer_topk prefill"]["topk_overlap"] < 1
    assert stages["sparse_mla_decode"]["status"] == "pass"  # not broken, checked against the reference


@pytest.mark.parametrize("args, msg", [
    (["--kv-cache", "fp4"], "bf16 or fp8"),
    (["--lengths", "12,x"], "comma-separated"),
    (["--heads", "3"], "heads"),
])
def test_bad_options_exit_2(runner, ckpt, args, msg):
    result = runner.invoke(app, ["run", "--checkpoint", str(ckpt), "--lengths", "8", *args])
    assert result.exit_code == 2, result.output
    assert msg in result.output


@pytest.mark.parametrize("lengths", ["10,,20", "abc", "0", ""])
def test_run_rejects_bad_lengths(lengths):
    from typer.testing import CliRunner

    from rocm_dsa.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["run", "--lengths", lengths])
    assert r.exit_code == 2, r.output
