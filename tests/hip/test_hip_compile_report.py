"""Device-only AMD compile of every HIP kernel for gfx942 and gfx950 (clang-19 + HIP headers
from libamdhip64-dev; CI installs them with .ci/install.d/hip-toolchain.sh): no compile error,
no spill, no scratch, LDS within the arch limit, the expected kernel instantiations present.
Also a wave32 (gfx1100) compile, so the DSA_WAVE_SIZE == 32 AMD path of the kernels builds."""

from __future__ import annotations

import pytest

from rocm_dsa.hipext import compile_report as cr

_REASON = None
if cr.find_clang() is None:
    _REASON = "no clang++ (apt-get install clang-19 lld-19 libamdhip64-dev)"
else:
    try:
        cr._hip_include_flags()
    except Exception as e:  # noqa: BLE001
        _REASON = str(e)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

EXPECTED = {
    ("topk", "_select_topk_kernel", "BLOCK=512"), ("topk", "_select_topk_kernel", "BLOCK=1024"),
    ("cache_store", "_store_indexer_k_kernel", "input=f32"), ("cache_store", "_store_indexer_k_kernel", "input=bf16"),
    ("cache_store", "_store_indexer_k_kernel", "input=f16"), ("cache_store", "_store_mla_kv_fp8_kernel", "input=bf16"),
    ("cache_store", "_store_mla_kv_bf16_kernel", "input=bf16"),
}


@pytest.fixture(scope="module", params=["gfx942", "gfx950"])
def rows(request):
    return request.param, cr.hip_compile_report(request.param)


def test_every_kernel_compiles_without_spills(rows):
    arch, rs = rows
    bad = [(r["kernel"], r["config"], r["failures"]) for r in rs if r["status"] != "ok"]
    assert not bad, bad
    for r in rs:
        assert r["error"] is None and r["vgpr_spills"] == 0 and r["sgpr_spills"] == 0 and r["scratch_bytes"] == 0
        assert 0 < r["vgprs_total"] <= 512 and r["waves_per_simd"] >= 1
        assert r["lds_bytes"] <= r["lds_limit"]
    have = {(r["module"], r["kernel"], r["config"].split(" ")[0]) for r in rs}
    assert EXPECTED <= have, EXPECTED - have


def test_topk_lds_plan_per_arch(rows):
    arch, rs = rows
    topk = [r for r in rs if r["kernel"] == "_select_topk_kernel"]
    cap = {"gfx942": 4096, "gfx950": 8192}[arch]
    for r in topk:
        assert r["launch"]["cap"] == cap
        assert r["lds_bytes"] >= cr.topk_dynamic_smem_bytes(cap)
        assert r["waves_per_workgroup"] == r["launch"]["block"] // 64


def test_report_rows_filter_and_row_type():
    from rocm_dsa.compile.report import Row

    got = cr.report_rows("gfx942", "_store_mla_kv*")
    assert got and all(isinstance(r, Row) and r.kernel.startswith("_store_mla_kv") for r in got)
    with pytest.raises(ValueError, match="arch"):
        cr.report_rows("gfx90a")


def test_wave32_amd_compile():
    asm, how = cr.device_asm(cr.source_dir() / "topk.hip", "gfx1100")
    assert ".wavefront_size: 32" in asm and "_select_topk_kernel" in asm


def test_compile_error_becomes_a_failing_row(monkeypatch, tmp_path):
    bad = tmp_path / "broken.hip"
    bad.write_text('#include "dsa_port.h"\n__global__ void _x_kernel() { this is not C++; }\n')
    (tmp_path / "dsa_port.h").write_text((cr.source_dir() / "dsa_port.h").read_text())
    monkeypatch.setattr(cr, "source_dir", lambda: tmp_path)
    monkeypatch.setattr(cr, "KERNEL_SOURCES", ("broken.hip",))
    rs = cr.report_rows("gfx942")
    assert len(rs) == 1 and rs[0].error and rs[0].failures and rs[0].failures[0].startswith("compile")


def test_toolchain_version_names_clang():
    assert cr.toolchain_version().startswith("clang ")
