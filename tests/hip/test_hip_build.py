"""Build helpers of the HIP extension and the ``hip`` provider's behaviour on a machine that
cannot build or run it (CI: CPU torch, no GPU): cheap availability checks with a reason, a clear
error from load(), nothing compiled or probed at import time."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from rocm_dsa import hipext
from rocm_dsa.backends import ProviderError, get_provider
from rocm_dsa.hipext import build

ROOT = Path(__file__).resolve().parents[2]


def test_sources_are_found_and_shipped_as_package_data():
    d = hipext.source_dir()
    for name in (*build.KERNEL_SOURCES, build.BINDING_SOURCE, "dsa_port.h", "dsa_kernels.h", "block_ops.cuh"):
        assert (d / name).is_file(), name
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"]["rocm_dsa.hip_src"] == "hip"
    patterns = cfg["package-data"]["rocm_dsa.hip_src"]
    for p in d.iterdir():
        if p.suffix in (".hip", ".h", ".cuh", ".cpp") and p.name != "__init__.py":
            assert any(p.match(pat) for pat in patterns), f"{p.name} would be missing from the wheel"


def test_only_the_portability_header_names_vendor_apis():
    """Wave size, shuffles, ballots, atomics and FP8 conversions come only from dsa_port.h."""
    vendor = ("__shfl", "__ballot", "atomicAdd", "__hip_atomic", "__builtin_amdgcn", "warpSize",
              "__syncthreads", "__AMDGCN_WAVEFRONT_SIZE", "cuda_fp8", "hip_fp8", "__nv_", "threadIdx", "blockIdx")
    for p in hipext.source_dir().iterdir():
        if p.suffix in (".hip", ".cuh") or p.name == "dsa_kernels.h":
            text = p.read_text()
            used = [v for v in vendor if v in text]
            assert not used, f"{p.name} uses {used}: put it in dsa_port.h"
    # the MFMA layout header may name the matrix-core builtins, nothing else vendor-specific
    text = (hipext.source_dir() / "mfma_layouts.h").read_text().replace("__builtin_amdgcn_mfma", "")
    used = [v for v in vendor if v in text]
    assert not used, f"mfma_layouts.h uses {used}: put it in dsa_port.h"


def test_source_hash_tracks_contents(tmp_path, monkeypatch):
    h1 = hipext.source_hash()
    assert h1 == hipext.source_hash() and len(h1) == 16
    for p in hipext.source_dir().iterdir():
        if p.is_file():
            (tmp_path / p.name).write_bytes(p.read_bytes())
    monkeypatch.setattr(build, "source_dir", lambda: tmp_path)
    assert build.source_hash() == h1
    (tmp_path / "dsa_port.h").write_text((tmp_path / "dsa_port.h").read_text() + "\n// changed\n")
    assert build.source_hash() != h1


def test_cuda_wrappers_include_the_hip_sources(tmp_path):
    paths = build._cuda_wrappers(hipext.source_dir(), tmp_path)
    assert [Path(p).name for p in paths] == ["topk.cu", "cache_store.cu", "indexer_mfma.cu", "sparse_mla_decode.cu"]
    assert (hipext.source_dir() / "topk.hip").as_posix() in Path(paths[0]).read_text()


def test_build_dir_is_keyed_by_torch_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("ROCM_DSA_CACHE_DIR", str(tmp_path))
    d = hipext.build_dir()
    assert d.parent == tmp_path / "hip" and hipext.source_hash() in d.name


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU behaviour")
def test_unavailable_without_gpu_with_reason():
    why = hipext.unavailable_reason()
    assert why and "no GPU" in why
    p = get_provider("hip")
    assert p.unavailable_reason() == why
    with pytest.raises(ProviderError, match="no GPU"):
        from rocm_dsa import ops

        x = torch.randn(2, 10)
        ops.topk_indices(x, torch.zeros(2, dtype=torch.int32), torch.full((2,), 10, dtype=torch.int32), k=4,
                         provider="hip")


@pytest.mark.skipif(torch.version.cuda is not None or torch.version.hip is not None, reason="CPU torch only")
def test_load_on_cpu_torch_names_what_is_missing(monkeypatch):
    build.toolchain.cache_clear()
    tc = hipext.toolchain()
    assert tc.runtime == "cpu" and not tc.complete
    assert any("CPU build" in m for m in tc.missing)
    with pytest.raises(hipext.HipBuildError, match="CPU build"):
        hipext.load()


def test_missing_ninja_is_reported(monkeypatch):
    build.toolchain.cache_clear()
    monkeypatch.setattr(build, "_which_ninja", lambda: None)
    try:
        assert any("ninja" in m for m in hipext.toolchain().missing)
    finally:
        build.toolchain.cache_clear()


def test_provider_declares_ops_and_refuses_large_k():
    from rocm_dsa.backends import Case

    p = get_provider("hip")
    assert p.ops == {"topk_indices", "store_indexer_k", "store_mla_kv", "indexer_logits_paged", "sparse_mla_decode"}
    assert p.case_reasons(Case("topk_indices", "cuda", "sm90", extra=(("k", 4096), ("columns", 10)))) \
        == ["top-k supports k <= 2048, got k=4096"]
    assert p.case_reasons(Case("topk_indices", "cuda", "sm90", extra=(("k", 2048), ("columns", 10)))) == []


def test_import_compiles_nothing():
    code = ("import sys, rocm_dsa, rocm_dsa.backends.hip, rocm_dsa.hipext; "
            "assert 'torch.utils.cpp_extension' not in sys.modules, 'cpp_extension imported'; "
            "assert rocm_dsa.hipext.build._module is None")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_topk_block_size_rule():
    hip = importlib.import_module("rocm_dsa.backends.hip")
    assert hip.topk_block_size(64, 132) == 1024
    assert hip.topk_block_size(264, 132) == 512
    assert hip.topk_block_size(10, 0) == 1024


def test_mfma_ops_case_rules(monkeypatch):
    """MFMA kernels: native on gfx942 / gfx950 (with the arch's FP8 encoding for the indexer); the
    portable path elsewhere only with ROCM_DSA_HIP_PORTABLE=1; supported head counts."""
    from rocm_dsa.backends import Case

    p = get_provider("hip")
    fnuz, fn = torch.float8_e4m3fnuz, torch.float8_e4m3fn

    def idx(arch, heads=64, q=fn, page=64):
        return Case("indexer_logits_paged", "cuda", arch, (("q_fp8", q),), heads, (("page_size", page), ("next_n", 1)))

    def dec(arch, heads):
        return Case("sparse_mla_decode", "cuda", arch, (("q", torch.bfloat16),), heads, (("kv_format", "fp8"),))

    monkeypatch.delenv("ROCM_DSA_HIP_PORTABLE", raising=False)
    assert p.case_reasons(idx("gfx942", q=fnuz)) == [] and p.case_reasons(idx("gfx950", q=fn)) == []
    assert any("e4m3fnuz" in r for r in p.case_reasons(idx("gfx942", q=fn)))
    assert any("ROCM_DSA_HIP_PORTABLE" in r for r in p.case_reasons(idx("sm90")))
    assert any("heads" in r for r in p.case_reasons(idx("gfx950", heads=48)))
    assert any("page_size" in r for r in p.case_reasons(idx("gfx950", page=8)))
    for h in (16, 32, 64, 128, 256):
        assert p.case_reasons(dec("gfx942", h)) == []
    assert any("heads" in r for r in p.case_reasons(dec("gfx942", 48)))
    assert any("ROCM_DSA_HIP_PORTABLE" in r for r in p.case_reasons(dec("sm90", 128)))
    monkeypatch.setenv("ROCM_DSA_HIP_PORTABLE", "1")
    assert p.case_reasons(idx("sm90", q=fnuz)) == [] and p.case_reasons(dec("sm90", 16)) == []


def test_launch_heuristics_are_data():
    hip = importlib.import_module("rocm_dsa.backends.hip")
    cfg = hip.launch_config("sparse_mla_decode", "gfx942")
    assert cfg["workgroups_per_cu"] >= 1 and cfg["min_keys_per_split"] >= 16
    # one decode row on MI300X: split until 2 WGs / CU, but keep >= 256 keys per split
    assert hip.decode_num_splits(1, 128, 2048, 304, cfg) == 8
    assert hip.decode_num_splits(4096, 128, 2048, 304, cfg) == 1
    assert hip.decode_num_splits(1, 16, 20, 304, cfg) == 1
    icfg = hip.launch_config("indexer_logits_paged", "gfx942")
    assert hip.indexer_pages_per_wg(1, 2048, 304, icfg) == 2
    assert hip.indexer_pages_per_wg(128, 2048, 304, icfg) == icfg["max_pages_per_wg"]
    assert hip.indexer_pages_per_wg(1, 1, 304, icfg) == 1
