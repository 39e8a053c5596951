"""``rocm-dsa bench`` and :mod:`rocm_dsa.benchmark`: quick sweep on the CPU with the reference,
result files, markdown, plots, the analytical model and the cost model."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from rocm_dsa import backends, benchmark as B
from rocm_dsa.backends.reference import ReferenceProvider
from rocm_dsa.cli import _register, app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _invoke(*args: str):
    _register()
    return runner.invoke(app, ["bench", *args], env=WIDE)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick sweep (every sweep, reference provider) saved as msgpack with plots."""
    d = tmp_path_factory.mktemp("bench")
    res = _invoke("--quick", "--provider", "reference", "--budget", "0.02", "--out", str(d / "r.msgpack"),
                  "--plot", str(d / "plots"), "--json")
    assert res.exit_code == 0, res.output
    return d, json.loads(res.stdout), res


def test_quick_sweep_measures_every_point(quick_run):
    _, doc, _ = quick_run
    assert doc["schema"] == B.SCHEMA and doc["kind"] == "measured"
    pts = B.sweep_points(quick=True)
    assert len(doc["results"]) == len(pts)
    for r in doc["results"]:
        assert r["status"] == "ok", r
        assert r["time_us"] > 0 and r["times_us"]["n"] >= 2
        assert r["gbps"] > 0 and r["bytes"] > 0
        if r["op"] in B.DENSE_OPS:
            assert r["provider"] == r["resolved"] == B.DENSE_PROVIDER
        else:
            assert r["provider"] == "reference" and r["resolved"] == "reference"
        if r["roofline_pct"] is not None:
            assert 0 < r["roofline_pct"]
    assert {r["sweep"] for r in doc["results"]} == set(B.SWEEPS)
    m = doc["machine"]
    assert m["platform"]["arch"] == "cpu" and m["versions"]["torch"] and m["hostname"]
    assert doc["ceilings"]["hbm_gbps"] > 0 and doc["ceilings"]["bf16_tflops"] > 0
    assert doc["config"]["quick"] is True and doc["config"]["providers"] == ["reference"]


def test_msgpack_round_trip(quick_run):
    d, doc, _ = quick_run
    raw = (d / "r.msgpack").read_bytes()
    assert raw[:1] not in (b"{", b"[")  # msgpack, not JSON
    assert B.load_results(d / "r.msgpack") == doc
    B.save_results(doc, d / "r.json")
    assert B.load_results(d / "r.json") == doc
    (d / "bad.msgpack").write_bytes(b"\x81\xa1a\x01")
    with pytest.raises(ValueError, match="schema"):
        B.load_results(d / "bad.msgpack")


def test_plots_are_pngs(quick_run):
    d, _, res = quick_run
    names = {p.name for p in (d / "plots").glob("*.png")}
    assert B.load_results(d / "plots" / "results.msgpack") == quick_run[1]
    assert {"dsa_cost_per_token.png", "roofline.png", "scaling_decode.png", "scaling_prefill.png",
            "scaling_indexer.png", "scaling_topk.png"} <= names
    for name in names:
        data = (d / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_report_markdown_from_saved_results(quick_run):
    d, doc, _ = quick_run
    res = _invoke("--report", str(d / "r.msgpack"))
    assert res.exit_code == 0, res.output
    md = res.stdout
    assert md.startswith("# rocm-dsa benchmark results")
    assert "## Measured on" in md and "### decode" in md and "### topk" in md
    assert "DSA vs dense MLA" in md and "| prefill |" in md and "| decode |" in md
    assert "| sparse_mla_decode |" in md
    assert doc["machine"]["versions"]["torch"] in md


def test_tables_printed_for_people(quick_run):
    d, _, _ = quick_run
    res = _invoke("--quick", "--sweep", "topk", "--provider", "reference", "--budget", "0.01")
    assert res.exit_code == 0, res.output
    assert "measured on" in res.output and "topk · topk_indices" in res.output and "% roofline" in res.output


def test_model_mi300x_is_labelled_a_prediction():
    res = _invoke("--model", "mi300x", "--sweep", "decode,dsa")
    assert res.exit_code == 0, res.output
    assert "ANALYTICAL ESTIMATE" in res.output and "NOT measurements" in res.output
    doc = json.loads(_invoke("--model", "mi300x", "--sweep", "decode", "--heads", "16", "--json").stdout)
    assert doc["kind"] == "model" and doc["machine"]["arch"] == "gfx942"
    assert all(r["status"] == "predicted" and r["provider"] == "model" for r in doc["results"])
    r = next(r for r in doc["results"] if r["params"]["B"] == 1 and r["params"]["ctx"] == 4096)
    # 2048 bf16 latent rows (1152 B) + q, out, lse, indices at 5.3 TB/s; compute is below that
    nbytes = 2048 * 1152 + 16 * 576 * 2 + 16 * 512 * 2 + 16 * 4 + 2048 * 4
    assert r["bytes"] == nbytes
    assert r["time_us"] == pytest.approx(nbytes / 5.3e12 * 1e6)
    assert r["bound"] == "memory"
    md = B.markdown_report([doc])
    assert "ANALYTICAL ESTIMATE" in md and "not measurements" in md
    res = _invoke("--model", "nope")
    assert res.exit_code == 2 and "mi300x" in res.output


def test_plot_without_matplotlib_fails_clearly_but_keeps_the_measurements(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = _invoke("--quick", "--sweep", "topk", "--provider", "reference", "--budget", "0.01",
                  "--plot", str(tmp_path / "p"))
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "needs matplotlib" in out and "pip install matplotlib" in out and "plots not drawn" in out
    doc = B.load_results(tmp_path / "p" / "results.msgpack")  # measured and saved anyway
    assert doc["results"][0]["status"] == "ok"
    assert not list((tmp_path / "p").glob("*.png"))
    with pytest.raises(B.PlotError, match="matplotlib"):
        B.write_plots({"results": []}, tmp_path / "q")
    res = _invoke("--report", str(tmp_path / "p" / "results.msgpack"), "--plot", str(tmp_path / "q"))
    assert res.exit_code == 2 and "needs matplotlib" in res.output
    # everything else still works without matplotlib
    assert _invoke("--model", "mi300x", "--sweep", "topk").exit_code == 0
    assert _invoke("--report", str(tmp_path / "p" / "results.msgpack")).exit_code == 0


def test_unavailable_provider_points_are_skipped_with_the_reason(monkeypatch):
    class Absent(ReferenceProvider):
        name = "absent"

        def unavailable_reason(self):
            return "needs hardware this machine does not have"

    monkeypatch.setitem(backends.PROVIDER_MODULES, "absent", "tests.fake.absent")
    monkeypatch.setitem(backends._loaded, "absent", Absent())
    res = _invoke("--quick", "--sweep", "topk", "--provider", "absent", "--provider", "reference", "--json",
                  "--budget", "0.01")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["results"]
    assert [r["provider"] for r in rows] == ["absent", "reference"]
    assert rows[0]["status"] == "skip" and "hardware" in rows[0]["reason"]
    assert rows[1]["status"] == "ok"


def test_bad_arguments():
    assert _invoke("--sweep", "nope").exit_code == 2
    assert _invoke("--provider", "nope", "--quick").exit_code == 2
    assert _invoke("--heads", "x", "--quick").exit_code == 2
    assert _invoke("--kv", "fp4", "--quick").exit_code == 2


# ---------------------------------------------------------------------------------------------
# sweeps and the cost model
# ---------------------------------------------------------------------------------------------
def test_default_sweeps_match_the_triton_issue_shapes():
    pts = B.sweep_points(["decode", "prefill", "topk"])
    dec = {(p.p["B"], p.p["H"], p.p["ctx"]) for p in pts if p.sweep == "decode"}
    assert dec == {(b, h, c) for b in (1, 8, 64, 128) for h in (16, 64, 128) for c in (4096, 32768, 131072)}
    assert {p.p["T"] for p in pts if p.sweep == "prefill"} == {1024, 4096, 16384}
    assert all(p.p["k"] == 2048 for p in pts)
    tp8 = B.sweep_points(["decode", "prefill", "dsa"], heads=[16])
    assert {p.p["H"] for p in tp8 if "H" in p.p and not p.op.startswith("indexer")} == {16}
    dsa = B.sweep_points(["dsa"])
    assert sorted({p.p.get("ctx", p.p.get("N")) for p in dsa}) == [1024 << i for i in range(8)]
    with pytest.raises(ValueError, match="sweep"):
        B.sweep_points(["nope"])


def test_cost_model_dsa_claim():
    """Dense MLA per-token bytes grow with L; the sparse attention's stay at k rows."""
    k = 2048
    dense = [B.cost("dense_mla_decode", {"B": 1, "H": 128, "ctx": L}) for L in (8192, 16384)]
    assert dense[1].bytes - dense[0].bytes == 8192 * 576 * 2  # every latent row once more
    assert dense[1].flops == 2 * dense[0].flops
    sparse = [B.cost("sparse_mla_decode", {"B": 1, "s_q": 1, "H": 128, "ctx": L, "k": k, "kv": "bf16"})
              for L in (8192, 16384)]
    assert sparse[0] == sparse[1]
    assert sparse[0].flops == 2 * 128 * k * (576 + 512)
    fp8 = B.cost("sparse_mla_decode", {"B": 1, "s_q": 1, "H": 16, "ctx": 8192, "k": k, "kv": "fp8"})
    bf16 = B.cost("sparse_mla_decode", {"B": 1, "s_q": 1, "H": 16, "ctx": 8192, "k": k, "kv": "bf16"})
    assert bf16.bytes - fp8.bytes == k * (1152 - 656)
    # ragged causal windows: queries at positions 2, 3 of a 4-key context see 3 and 4 keys
    c = B.cost("indexer_logits", {"T": 2, "N": 4, "H": 64, "k": 8})
    assert c.flops == 2 * 64 * 128 * (3 + 4) and c.math == "fp8" and c.tokens == 2
    t = B.cost("topk_indices", {"R": 3, "C": 100, "k": 8})
    assert t.flops == 0 and t.math is None and t.bytes == 3 * 100 * 4 + 3 * 8 + 3 * 8 * 4
    with pytest.raises(ValueError, match="cost model"):
        B.cost("nope", {})


def test_roofline_percentage():
    c = B.Cost(bytes=1e9, flops=1e12, math="bf16", tokens=1)
    ceil = {"hbm_gbps": 1000.0, "bf16_tflops": 100.0, "fp8_tflops": 200.0}
    r = B._roofline(c, ceil, 0.02)  # roof: max(1 ms memory, 10 ms compute) = 10 ms
    assert r["bound"] == "compute" and r["roofline_pct"] == pytest.approx(50.0)
    assert r["gbps"] == pytest.approx(50.0) and r["tflops"] == pytest.approx(50.0)


@pytest.mark.parametrize("args", [["--ceilings", "nonsense"], ["--budget", "-1"], ["--device", "nonsense"]])
def test_bench_rejects_bad_options(args):
    from typer.testing import CliRunner

    from rocm_dsa.cli import _register, app

    _register()
    r = CliRunner().invoke(app, ["bench", "--quick", *args])
    assert r.exit_code == 2, r.output
