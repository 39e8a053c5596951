"""The ``triton`` provider: availability reasons, dispatch through ``rocm_dsa.ops``, configs."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():  # kernels are decorated at first import: set this before it
    os.environ.setdefault("TRITON_INTERPRET", "1")

import json  # noqa: E402

import pytest  # noqa: E402

from rocm_dsa import ops  # noqa: E402
from rocm_dsa.backends import OPS, ProviderError, get_provider, make_case  # noqa: E402
from rocm_dsa.backends import triton as tp  # noqa: E402
from rocm_dsa.testing import assert_topk_equal  # noqa: E402


def test_declares_every_op_and_a_launcher_for_each():
    p = get_provider("triton")
    assert p.name == "triton" and p.ops == frozenset(OPS)
    assert set(tp.LAUNCHERS) == set(OPS)


def test_cpu_needs_the_interpreter(monkeypatch):
    case = make_case("topk_indices", torch.device("cpu"), k=8, columns=16)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "no GPU (set TRITON_INTERPRET=1 to run kernels in the interpreter)" in tp.PROVIDER.supports(case)
    with pytest.raises(ProviderError, match="TRITON_INTERPRET=1"):
        ops.topk_indices(torch.randn(2, 16), torch.zeros(2, dtype=torch.int32),
                         torch.full((2,), 16, dtype=torch.int32), k=4, provider="triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert tp.PROVIDER.supports(case) == []


def test_missing_launcher_module_is_a_reason(monkeypatch):
    monkeypatch.setitem(tp.LAUNCHERS, "topk_indices", ("no_such_kernels", "topk_indices"))
    tp._module_reason.cache_clear()
    try:
        case = make_case("topk_indices", torch.device("cpu"), k=8, columns=16)
        reasons = tp.PROVIDER.supports(case)
        assert any("rocm_dsa.triton_kernels.no_such_kernels not present yet" in r for r in reasons)
    finally:
        tp._module_reason.cache_clear()


def test_odd_head_dim_is_refused(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    case = make_case("indexer_logits", torch.device("cpu"), heads=64, dtypes={"q_fp8": torch.float8_e4m3fn},
                     head_dim=96)
    assert any("power-of-two head_dim" in r for r in tp.PROVIDER.supports(case))


def test_dispatch_through_ops_and_environment(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x = torch.randn(3, 200)
    starts = torch.tensor([0, 10, 50], dtype=torch.int32)
    ends = torch.tensor([200, 150, 60], dtype=torch.int32)
    want = ops.topk_indices(x, starts, ends, k=16, provider="reference")
    monkeypatch.setenv("ROCM_DSA_BACKEND_TOPK_INDICES", "triton")
    assert_topk_equal(ops.topk_indices(x, starts, ends, k=16), want)


# --- the config resolver shared by every Triton launcher -------------------------------------
def test_config_resolver_buckets_and_amd_only_options(tmp_path, monkeypatch):
    from rocm_dsa.triton_kernels import _common

    files = {
        ("default", "demo_op"): {"default": {"BLOCK": 64, "num_warps": 4}, "buckets": []},
        ("gfx942", "demo_op"): {
            "default": {"waves_per_eu": 2, "matrix_instr_nonkdim": 16},
            "buckets": [
                {"when": {"heads": [None, 32]}, "set": {"BLOCK": 128}},
                {"when": {"heads": 16, "next_n": [2, 4]}, "set": {"BLOCK": 256, "num_warps": 8}},
            ],
        },
    }

    def fake_load(arch, op):
        data = files.get((arch, op))
        return None if data is None else (json.loads(json.dumps(data)), f"{arch}/{op}.json")

    monkeypatch.setattr(_common, "_load", fake_load)
    _common.get_config.cache_clear()
    c = _common.get_config("demo_op", "gfx942", heads=64)
    assert c.meta == {"BLOCK": 64} and c.options == {"num_warps": 4, "waves_per_eu": 2, "matrix_instr_nonkdim": 16}
    assert c.source == "default/demo_op.json + gfx942/demo_op.json"
    assert _common.get_config("demo_op", "gfx942", heads=32).meta["BLOCK"] == 128
    c = _common.get_config("demo_op", "gfx942", heads=16, next_n=3)
    assert c["BLOCK"] == 256 and c["num_warps"] == 8
    assert _common.get_config("demo_op", "gfx942", heads=16).meta["BLOCK"] == 128  # next_n not given
    # NVIDIA / CPU: default file only, and never an AMD-only option
    c = _common.get_config("demo_op", "sm90", heads=16, next_n=3)
    assert c.meta == {"BLOCK": 64} and c.options == {"num_warps": 4}
    with pytest.raises(FileNotFoundError, match="configs/default/none_such.json"):
        _common.get_config("none_such", "gfx942")
    _common.get_config.cache_clear()


def test_shipped_configs_resolve_for_every_arch():
    from rocm_dsa.triton_kernels import _common

    for arch in ("gfx942", "gfx950", "sm90", "cpu", "sm100"):
        for op in ("indexer_logits", "indexer_logits_paged", "topk_indices", "indexer_topk", "indexer_topk_paged"):
            c = _common.get_config(op, arch, heads=64, next_n=1, rows=64, columns=131072, k=2048)
            if not _common.is_hip(arch):
                assert not set(c.options) & _common.AMD_ONLY_OPTIONS


def test_fp8_element_types():
    import triton.language as tl

    from rocm_dsa.triton_kernels import _common

    assert _common.tl_fp8(torch.float8_e4m3fnuz) == tl.float8e4b8
    assert _common.tl_fp8(torch.float8_e4m3fn) == tl.float8e4nv
    assert _common.native_fp8("gfx942") == torch.float8_e4m3fnuz
    assert _common.native_fp8("gfx950") == torch.float8_e4m3fn
    with pytest.raises(TypeError, match="fp8_dtype"):
        _common.tl_fp8(torch.bfloat16)
