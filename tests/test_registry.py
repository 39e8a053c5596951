"""Provider registry: explicit > environment > automatic choice, reasons for unavailability."""

from __future__ import annotations

import logging
import os
import sys
import textwrap

import pytest
import torch

import rocm_dsa.backends as backends
import rocm_dsa.ops as ops
from rocm_dsa.backends import OPS, Case, Provider, ProviderError, get_provider, make_case, prefer, select

CPU = torch.device("cpu")


@pytest.fixture
def clean_env(monkeypatch):
    for var in [v for v in list(os.environ) if v.startswith("ROCM_DSA_BACKEND")]:
        monkeypatch.delenv(var)
    return monkeypatch


@pytest.fixture
def fake_modules(monkeypatch, tmp_path):
    """Register extra provider names backed by throw-away modules; the load cache is private."""
    monkeypatch.setattr(backends, "_loaded", {})
    monkeypatch.setattr(backends, "PROVIDER_MODULES", dict(backends.PROVIDER_MODULES))
    monkeypatch.syspath_prepend(str(tmp_path))

    def add(name: str, source: str | None) -> None:
        mod = f"_rocm_dsa_test_provider_{name}"
        if source is not None:
            (tmp_path / f"{mod}.py").write_text(textwrap.dedent(source))
        backends.PROVIDER_MODULES[name] = mod
        sys.modules.pop(mod, None)

    yield add


def _topk_args():
    logits = torch.randn(3, 40)
    return logits, torch.zeros(3, dtype=torch.int32), torch.full((3,), 40, dtype=torch.int32)


def _ref_topk(logits, starts, ends, k):
    return get_provider("reference").topk_indices(logits, starts, ends, k)


def test_cpu_automatic_choice_is_reference(clean_env):
    case = make_case("topk_indices", CPU, k=8, columns=40)
    assert case.arch == "cpu" and case.device == "cpu"
    assert select(case).name == "reference"
    assert select(case, "auto").name == "reference"
    logits, s, e = _topk_args()
    assert torch.equal(ops.topk_indices(logits, s, e, k=8), _ref_topk(logits, s, e, 8))


def test_explicit_provider(clean_env):
    case = make_case("sparse_mla_prefill", CPU, heads=16)
    assert select(case, "reference") is get_provider("reference")
    with pytest.raises(ProviderError, match=r"provider 'aiter' \(from provider argument\) cannot run"):
        select(case, "aiter")


@pytest.mark.parametrize("name", ["nope", "Reference", ""])
def test_unknown_provider_names_it(clean_env, name):
    with pytest.raises(ValueError, match=f"got {name!r}"):
        get_provider(name)
    logits, s, e = _topk_args()
    if name:
        with pytest.raises(ValueError, match=f"got {name!r}"):
            ops.topk_indices(logits, s, e, k=4, provider=name)


def test_environment_choice(clean_env):
    logits, s, e = _topk_args()
    clean_env.setenv("ROCM_DSA_BACKEND", "not-a-provider")
    with pytest.raises(ValueError, match="not-a-provider"):
        ops.topk_indices(logits, s, e, k=4)
    clean_env.setenv("ROCM_DSA_BACKEND", "aiter")  # exists, but cannot run on a CPU
    with pytest.raises(ProviderError, match=r"'aiter' \(from ROCM_DSA_BACKEND\)"):
        ops.topk_indices(logits, s, e, k=4)
    # the per-op variable wins over the global one, for that op only
    clean_env.setenv("ROCM_DSA_BACKEND_TOPK_INDICES", "reference")
    assert torch.equal(ops.topk_indices(logits, s, e, k=4), _ref_topk(logits, s, e, 4))
    q = torch.randn(2, 4, 576, dtype=torch.bfloat16)
    kv = torch.randn(8, 1, 576, dtype=torch.bfloat16)
    idx = torch.zeros(2, 1, 3, dtype=torch.int32)
    with pytest.raises(ProviderError, match="ROCM_DSA_BACKEND"):
        ops.sparse_mla_prefill(q, kv, idx, sm_scale=0.1)
    # an explicit argument wins over both
    ops.sparse_mla_prefill(q, kv, idx, sm_scale=0.1, provider="reference")
    clean_env.setenv("ROCM_DSA_BACKEND_TOPK_INDICES", "aiter")
    clean_env.setenv("ROCM_DSA_BACKEND", "reference")
    with pytest.raises(ProviderError, match="ROCM_DSA_BACKEND_TOPK_INDICES"):
        ops.topk_indices(logits, s, e, k=4)
    clean_env.setenv("ROCM_DSA_BACKEND_TOPK_INDICES", "auto")
    assert ops.topk_indices(logits, s, e, k=4).shape == (3, 4)


def test_missing_provider_module_is_unavailable_with_reason(fake_modules, clean_env):
    fake_modules("ghost", None)  # module does not exist
    fake_modules("needs_vendor", "import rocm_dsa_no_such_vendor_lib\nPROVIDER = None\n")
    fake_modules("broken", "raise RuntimeError('driver exploded')\n")
    case = make_case("topk_indices", CPU)

    ghost = get_provider("ghost")
    assert ghost.name == "ghost" and "not implemented" in ghost.unavailable_reason()
    assert ghost.supports(case) == [ghost.unavailable_reason()]

    vendor = get_provider("needs_vendor")
    assert "cannot import 'rocm_dsa_no_such_vendor_lib'" in vendor.unavailable_reason()

    broken = get_provider("broken")
    assert "RuntimeError: driver exploded" in broken.unavailable_reason()

    with pytest.raises(ProviderError, match="cannot import 'rocm_dsa_no_such_vendor_lib'"):
        select(case, "needs_vendor")
    assert get_provider("ghost") is ghost  # loaded once


def test_aiter_is_unavailable_on_cpu_with_a_reason(clean_env):
    case = make_case("sparse_mla_decode", CPU, heads=128)
    why = get_provider("aiter").supports(case)
    assert why and all(isinstance(w, str) and w for w in why)


def test_provider_error_lists_every_reason(fake_modules, clean_env, monkeypatch):
    fake_modules("ghost", None)
    fake_modules("needs_vendor", "import rocm_dsa_no_such_vendor_lib\n")
    monkeypatch.setitem(backends.PRIORITY, "cpu", ("ghost", "needs_vendor"))
    with pytest.raises(ProviderError) as e:
        select(make_case("indexer_topk", CPU, heads=64))
    msg = str(e.value)
    assert "no provider can run indexer_topk on cpu (heads=64)" in msg
    assert "ghost: not implemented" in msg and "needs_vendor: cannot import" in msg


def test_prefer_falls_back_with_a_logged_reason(clean_env, caplog):
    case = make_case("topk_indices", CPU)
    with caplog.at_level(logging.INFO, logger="rocm_dsa"):
        with prefer("aiter"):
            assert select(case).name == "reference"
    rec = [r for r in caplog.records if "falls back" in r.getMessage()]
    assert rec, caplog.text
    msg = rec[0].getMessage()
    assert "topk_indices" in msg and "aiter" in msg and "reference" in msg
    reason = get_provider("aiter").supports(case)[0]
    assert reason in msg
    with prefer("reference"):
        assert select(case).name == "reference"
    with prefer(None):
        assert select(case).name == "reference"
    with pytest.raises(ValueError, match="'bogus'"):
        with prefer("bogus"):
            pass


def test_prefer_is_scoped(clean_env, monkeypatch):
    monkeypatch.setitem(backends.PRIORITY, "cpu", ())
    case = make_case("topk_indices", CPU)
    with prefer("reference"):
        assert select(case).name == "reference"
    with pytest.raises(ProviderError):
        select(case)


class _Picky(Provider):
    name = "picky"
    ops = frozenset({"sparse_mla_decode"})
    devices = frozenset({"cuda"})
    archs = frozenset({"gfx942"})
    heads = frozenset({64, 128})

    def case_reasons(self, case):
        return [] if case.get("kv_format") == "fp8" else ["needs the fp8 cache"]


def test_provider_supports_lists_each_reason():
    p = _Picky()
    assert p.supports(Case("topk_indices", "cuda", "gfx942")) == ["does not implement topk_indices"]
    why = p.supports(Case("sparse_mla_decode", "cpu", "cpu", heads=16, extra=(("kv_format", "bf16"),)))
    assert len(why) == 4
    assert "not cpu" in why[0] and "gfx942" in why[1] and "heads [64, 128], not 16" in why[2]
    assert why[3] == "needs the fp8 cache"
    ok = Case("sparse_mla_decode", "cuda", "gfx942", dtypes=(("q", torch.bfloat16),), heads=64,
              extra=(("kv_format", "fp8"),))
    assert p.supports(ok) == []
    assert ok.dtype("q") == torch.bfloat16 and ok.dtype("x") is None and ok.get("missing", 3) == 3


def test_reference_implements_every_op():
    ref = get_provider("reference")
    assert ref.ops == frozenset(OPS)
    for op in OPS:
        assert callable(ref.get(op))
        assert op in ops.__all__
