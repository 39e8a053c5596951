"""``rocm-dsa check`` and :mod:`rocm_dsa.selfcheck`: availability, self-tests, exit codes, JSON.

Fake providers are registered through the provider registry (``PROVIDER_MODULES`` and its
cache of loaded providers), exactly as a real provider module would appear: a *mirror* of the
reference (must pass every self-test), a *wrong* one whose results are slightly off (must fail
every self-test) and an *absent* one (unavailable everywhere).
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from rocm_dsa import backends, ops, selfcheck
from rocm_dsa.backends.reference import ReferenceProvider
from rocm_dsa.cli import _register, app

runner = CliRunner()
WIDE = {"COLUMNS": "250"}


def _invoke(*args: str):
    _register()
    return runner.invoke(app, ["check", *args], env=WIDE)


class MirrorProvider(ReferenceProvider):
    """The reference under another name: every self-test must pass."""

    name = "mirror"
    description = "test double: the reference under another name"


def _perturb(x):
    if isinstance(x, tuple):
        return tuple(_perturb(t) for t in x)
    y = x.clone()
    if y.is_floating_point():
        fin = torch.isfinite(y)
        y[fin] = y[fin] * 1.05 + 0.05
    else:  # index rows: a -1 inside the valid prefix of row 0
        y.view(-1, y.shape[-1])[0, 0] = -1
    return y


class WrongProvider(ReferenceProvider):
    """Reference results with a small error in every op: every self-test must fail."""

    name = "wrong"
    description = "test double: slightly wrong results"

    def __getattribute__(self, attr):
        fn = super().__getattribute__(attr)
        if attr not in backends.OPS:
            return fn

        def wrapped(*args):
            out = fn(*args)
            if out is None:  # cache stores write in place: flip one byte of the buffer
                buf = args[1] if attr == "store_indexer_k" else args[2]
                b = buf.view(torch.uint8).view(-1)
                b[0] = b[0] ^ 0x01
                return None
            return _perturb(out)
        return wrapped


class AbsentProvider(ReferenceProvider):
    name = "absent"

    def unavailable_reason(self):
        return "needs hardware this machine does not have"


@pytest.fixture
def fakes(monkeypatch):
    for name, prov in (("mirror", MirrorProvider()), ("wrong", WrongProvider()), ("absent", AbsentProvider())):
        monkeypatch.setitem(backends.PROVIDER_MODULES, name, f"tests.fake.{name}")
        monkeypatch.setitem(backends._loaded, name, prov)
    monkeypatch.delenv("ROCM_DSA_BACKEND", raising=False)


@pytest.fixture(autouse=True)
def _no_interpreter(monkeypatch):
    # keep the check to the reference and the fakes on this CPU (Triton is tested elsewhere)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_check_lists_reference_and_why_others_are_unavailable():
    res = _invoke()
    assert res.exit_code == 0, res.output
    out = res.output
    assert "check passed" in out
    assert "reference" in out and "PyTorch eager on cpu" in out
    for k in ("arch", "fp8_dtype", "torch", "triton", "sglang", "aiter"):
        assert k in out
    rep = json.loads(_invoke("--json").stdout)
    for p in rep["providers"]:
        if not p["available"]:
            assert p["reason"], p
            assert p["reason"][:30] in out


def test_check_json_document():
    res = _invoke("--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["exit_code"] == 0
    assert rep["platform"]["arch"] == "cpu" and rep["platform"]["fp8_dtype"] == "float8_e4m3fn"
    assert rep["versions"]["torch"] == torch.__version__
    labels = {p.label for p in selfcheck.PROBES}
    ref = {r["probe"]: r for r in rep["results"] if r["provider"] == "reference"}
    assert set(ref) == labels
    assert all(r["available"] and r["selftest"] == "pass" and r["chosen"] for r in ref.values())
    assert rep["chosen"] == {label: "reference" for label in labels}
    for r in rep["results"]:
        assert r["available"] or r["reasons"], r  # never unavailable without a reason
        if r["selftest"] in ("pass", "fail"):
            assert r["where"]


def test_forced_provider_failing_its_selftest_exits_nonzero(fakes):
    res = _invoke("--provider", "wrong", "--json")
    assert res.exit_code == 1, res.output
    rep = json.loads(res.stdout)
    wrong = {r["probe"]: r for r in rep["results"] if r["provider"] == "wrong"}
    assert set(wrong) == {p.label for p in selfcheck.PROBES}
    for label, r in wrong.items():
        assert r["chosen"], label
        assert r["selftest"] == "fail", (label, r["detail"])
        assert r["detail"]
    # the plain output says which chosen provider failed
    plain = _invoke("--provider", "wrong", "--op", "topk_indices")
    assert plain.exit_code == 1
    assert "chosen provider failed its self-test" in plain.output and "topk_indices (wrong)" in plain.output


def test_a_correct_provider_passes_every_comparison(fakes):
    res = _invoke("--provider", "mirror", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    mirror = [r for r in rep["results"] if r["provider"] == "mirror"]
    assert len(mirror) == len(selfcheck.PROBES)
    for r in mirror:
        assert r["chosen"] and r["selftest"] == "pass", r
        assert not r["detail"].startswith("definition")  # compared, not just run
    details = " ".join(r["detail"] for r in mirror)
    assert "exact sets" in details and "overlap 1.00000" in details and "byte-exact" in details
    # a provider that is not requested is not tested (its availability is still listed)
    assert {r["selftest"] for r in rep["results"] if r["provider"] == "wrong"} == {"skip"}


def test_failures_of_a_provider_that_is_not_chosen_do_not_change_the_exit_code(fakes):
    res = _invoke("--json", "--op", "topk_indices")
    assert res.exit_code == 0
    rep = json.loads(res.stdout)
    wrong = [r for r in rep["results"] if r["provider"] == "wrong"]
    assert wrong and all(r["selftest"] == "fail" and not r["chosen"] for r in wrong)


def test_environment_choice_is_the_chosen_provider(fakes, monkeypatch):
    monkeypatch.setenv("ROCM_DSA_BACKEND", "wrong")
    res = _invoke("--json", "--op", "topk_indices")
    assert res.exit_code == 1  # calls would use "wrong", and it fails its self-test
    assert json.loads(res.stdout)["chosen"] == {"topk_indices": "wrong"}
    res = _invoke("--json", "--op", "topk_indices", "--provider", "mirror")  # --provider wins
    assert res.exit_code == 0 and json.loads(res.stdout)["chosen"] == {"topk_indices": "mirror"}


def test_requested_provider_unavailable_exits_2(fakes):
    res = _invoke("--provider", "absent", "--json")
    assert res.exit_code == 2
    rep = json.loads(res.stdout)
    absent = [r for r in rep["results"] if r["provider"] == "absent"]
    assert absent and all(not r["available"] and "hardware" in r["reasons"][0] for r in absent)
    assert set(rep["chosen"].values()) == {"reference"}  # calls fall back


def test_bad_arguments():
    res = _invoke("--provider", "nope")
    assert res.exit_code == 2 and "nope" in res.output
    res = _invoke("--op", "no_such_op")
    assert res.exit_code == 2 and "no_such_op" in res.output


def test_op_filter_and_no_selftest():
    rep = json.loads(_invoke("--json", "--op", "sparse_mla_decode", "--no-selftest").stdout)
    assert {r["probe"] for r in rep["results"]} == {"sparse_mla_decode[bf16]", "sparse_mla_decode[fp8]"}
    assert {r["selftest"] for r in rep["results"] if r["available"]} == {"skip"}


@pytest.mark.parametrize("probe", selfcheck.PROBES, ids=lambda p: p.label)
def test_probe_case_is_the_case_the_op_builds(probe, monkeypatch):
    """supports() must be asked about exactly the Case a real call of the probe's shape makes."""
    dev = torch.device("cpu")
    seen = []
    orig = ops.select

    def record(case, provider=None):
        seen.append(case)
        return orig(case, provider)

    monkeypatch.setattr(ops, "select", record)
    call, _ = selfcheck._build(probe, dev, 16, 0)
    seen.clear()
    call("reference")
    got = [c for c in seen if c.op == probe.op][-1]
    want = selfcheck.probe_case(probe, dev, 16)

    def norm(c):
        return (c.op, c.device, c.arch, dict(c.dtypes), c.heads, dict(c.extra))
    assert norm(got) == norm(want)


def test_warmup_reports_compile_errors_and_fails_the_check(monkeypatch):
    from rocm_dsa.compile import triton_amd
    from rocm_dsa.compile.report import Row

    rows = [Row(source="triton", module="indexer", kernel="k", config="ok-config", arch="gfx942"),
            Row(source="triton", module="topk", kernel="k", config="broken", arch="gfx942",
                error="CompilationError: boom")]
    monkeypatch.setattr(triton_amd, "report_rows", lambda arch, kernel=None: rows)
    steps = selfcheck.warmup("gfx942")
    tri = next(s for s in steps if s["step"] == "triton")
    assert tri["status"] == "fail" and "topk/broken" in tri["detail"] and "1 kernel configs compiled" in tri["detail"]
    hip = next(s for s in steps if s["step"] == "hip")
    assert hip["status"] == "skip" and hip["detail"]  # CPU torch: nothing to build, and says why

    res = _invoke("--warmup", "--arch", "gfx942", "--no-selftest", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["warmup"][0]["status"] == "fail"

    monkeypatch.setattr(triton_amd, "report_rows", lambda arch, kernel=None: rows[:1])
    res = _invoke("--warmup", "--arch", "gfx950", "--no-selftest")
    assert res.exit_code == 0, res.output
    assert "Warm-up" in res.output


def test_warmup_rejects_unknown_arch():
    with pytest.raises(ValueError, match="arch"):
        selfcheck.warmup("gfx1100")


def test_check_rejects_a_backend_env_naming_no_provider(monkeypatch):
    from typer.testing import CliRunner

    from rocm_dsa.cli import _register, app

    _register()
    monkeypatch.setenv("ROCM_DSA_BACKEND", "nonsense")
    r = CliRunner().invoke(app, ["check", "--no-selftest"])
    assert r.exit_code == 2 and "ROCM_DSA_BACKEND" in r.output
