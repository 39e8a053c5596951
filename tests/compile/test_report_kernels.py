"""CI gate: every registered Triton kernel, compiled for gfx942 and gfx950 at the DeepSeek-V3.2
shapes, passes the compile-report checks — no spills, LDS within the arch's limit, and FP8
MFMA in the gfx942 indexer (e4m3fn operands silently fall back to f16 MFMA there).

Same rows as ``rocm-dsa compile --arch gfx942 --arch gfx950 --source triton``; computed once per
session (tests/compile/conftest.py). Kernel modules that do not exist yet, or declare no specs
yet, skip with the reason.
"""

from __future__ import annotations

import pytest

from rocm_dsa.compile.amdgpu import is_fp8_mfma
from rocm_dsa.compile.triton_amd import TRITON_MODULES

ARCHS = ("gfx942", "gfx950")  # the archs of the session fixture (tests/compile/conftest.py)

#: modules whose matrix products are the FP8 indexer dot (must use FP8 MFMA on every AMD arch)
FP8_INDEXER_MODULES = ("indexer", "indexer_topk")


def _module_rows(amd_rows, arch: str, module: str):
    rows = [r for r in amd_rows[arch] if r.source == "triton" and r.module == module]
    skipped = [r for r in rows if r.skipped]
    if skipped and len(skipped) == len(rows):
        pytest.skip(skipped[0].skipped)
    if not rows:
        pytest.skip(f"rocm_dsa.triton_kernels.{module}: no rows")
    return [r for r in rows if not r.skipped]


def _describe(r) -> str:
    return f"{r.module} [{r.config}] on {r.arch}: " + "; ".join(r.failures)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", TRITON_MODULES)
def test_kernels_pass_compile_checks(amd_rows, arch, module):
    rows = _module_rows(amd_rows, arch, module)
    failing = [_describe(r) for r in rows if r.failures]
    assert not failing, "failing compile checks:\n" + "\n".join(failing)
    for r in rows:  # the report really read the code object
        assert r.vgprs_total is not None and r.vgprs_total > 0
        assert r.lds_bytes is not None and r.lds_bytes <= r.lds_limit
        assert r.waves_per_simd is not None and r.waves_per_simd >= 1


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("module", FP8_INDEXER_MODULES)
def test_indexer_uses_fp8_mfma(amd_rows, arch, module):
    rows = _module_rows(amd_rows, arch, module)
    with_mfma = [r for r in rows if r.mfma]
    assert with_mfma, f"{module} on {arch}: no kernel uses MFMA at all"
    for r in with_mfma:
        non_fp8 = [m for m in r.mfma if not is_fp8_mfma(m)]
        assert not non_fp8, (f"{module} [{r.config}] on {arch}: non-FP8 MFMA {non_fp8} "
                             f"(e4m3fn operands on gfx942 fall back to f16)")
    if arch == "gfx942":
        assert any(r.requires_fp8_mfma for r in with_mfma), (
            f"{module}: its gfx942 compile specs should set requires_fp8_mfma=True")


def test_every_expected_module_is_reported(amd_rows):
    for arch in ARCHS:
        seen = {r.module for r in amd_rows[arch] if r.source == "triton"}
        assert set(TRITON_MODULES) <= seen, f"{arch}: modules missing from the report"
