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
    ("indexer_mfma", "_paged_indexer_logits_kernel", "H=16"), ("indexer_mfma", "_paged_indexer_logits_kernel", "H=32"),
    ("indexer_mfma", "_paged_indexer_logits_kernel", "H=64"),
    ("sparse_mla_decode", "_decode_sparse_mla_kernel", "H=16"), ("sparse_mla_decode", "_decode_sparse_mla_kernel", "H=32"),
    ("sparse_mla_decode", "_decode_sparse_mla_kernel", "H=64/128"),
    ("sparse_mla_decode", "_merge_sparse_mla_kernel", "split-K"),
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


def test_mfma_kernels_use_the_matrix_cores(rows):
    """gfx942 indexer: v_mfma_f32_16x16x32_fp8_fp8 (e4m3fnuz operands, required by the report's
    fp8-mfma check); gfx950: the f8f6f4 16x16x128 FP8 MFMA. Sparse MLA decode: bf16 MFMAs, 16x16x32
    on gfx950 for Q.K. Both kernel families within 64 KiB of LDS on both archs."""
    from rocm_dsa.compile.amdgpu import mfma_operand_kind

    arch, rs = rows
    idx = [r for r in rs if r["kernel"] == "_paged_indexer_logits_kernel"]
    dec = [r for r in rs if r["kernel"] == "_decode_sparse_mla_kernel"]
    assert len(idx) == 3 and len(dec) == 6
    for r in idx:
        assert r["requires_fp8_mfma"] and "fp8" in r["mfma_kinds"], r["mfma"]
        want = "v_mfma_f32_16x16x32_fp8_fp8" if arch == "gfx942" else "16x16x128_f8f6f4"
        assert any(want in m for m in r["mfma"]), r["mfma"]
        assert r["lds_bytes"] <= 64 * 1024
    for r in dec:
        assert r["requires_mfma"] and set(r["mfma_kinds"]) == {"bf16"}, r["mfma"]
        assert all(mfma_operand_kind(m) == "bf16" for m in r["mfma"])
        if arch == "gfx950":
            assert any("16x16x32_bf16" in m for m in r["mfma"]), r["mfma"]
        assert r["lds_bytes"] <= 64 * 1024 and r["waves_per_simd"] >= 1


def test_missing_fp8_mfma_fails_the_indexer_row():
    """The report's fp8-mfma check is live: an indexer row without FP8 MFMA fails."""
    from rocm_dsa.compile.report import Row, check_row

    r = Row(source="hip", module="indexer_mfma", kernel="_paged_indexer_logits_kernel", config="H=64", arch="gfx942",
            vgprs=80, sgprs=50, vgpr_spills=0, sgpr_spills=0, scratch_bytes=0, lds_bytes=0, lds_limit=65536,
            mfma={"v_mfma_f32_16x16x16_f16": 16}, requires_fp8_mfma=True)
    assert any(f.startswith("fp8-mfma") for f in check_row(r))
