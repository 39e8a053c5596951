"""Compiling small Triton kernels for gfx942 / gfx950 without a GPU, and the checks on them.

The kernels below are test fixtures: an FP8/bf16 dot (fp8 MFMA vs the f16 fallback), a
register-hungry loop (spills on gfx942) and a deep-pipelined dot (LDS over 64 KiB on gfx942).
"""

from __future__ import annotations

import types

import pytest
import triton
import triton.language as tl

from rocm_dsa.compile import CompileSpec
from rocm_dsa.compile.amdgpu import is_fp8_mfma, limits_for
from rocm_dsa.compile.triton_amd import compile_spec, module_specs, report_rows, spec_row


@triton.jit
def _dot_test_kernel(a_ptr, b_ptr, c_ptr, M: tl.constexpr, N: tl.constexpr, K: tl.constexpr):
    # a: [M, K], b: [K, N] (any dot dtype), c: [M, N] fp32
    rm = tl.arange(0, M)
    rn = tl.arange(0, N)
    rk = tl.arange(0, K)
    a = tl.load(a_ptr + rm[:, None] * K + rk[None, :])
    b = tl.load(b_ptr + rk[:, None] * N + rn[None, :])
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], tl.dot(a, b))


@triton.jit
def _loop_dot_test_kernel(a_ptr, b_ptr, c_ptr, K, M: tl.constexpr, N: tl.constexpr,
                          BLOCK_K: tl.constexpr):
    # a: [M, K] bf16, b: [K, N] bf16, c: [M, N] fp32; K a multiple of BLOCK_K
    rm = tl.arange(0, M)
    rn = tl.arange(0, N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((M, N), tl.float32)
    for k in range(0, K, BLOCK_K):
        a = tl.load(a_ptr + rm[:, None] * K + (k + rk)[None, :])
        b = tl.load(b_ptr + (k + rk)[:, None] * N + rn[None, :])
        acc = tl.dot(a, b, acc)
    tl.store(c_ptr + rm[:, None] * N + rn[None, :], acc)


def _dot_spec(dtype: str, *, requires_fp8_mfma: bool = True) -> CompileSpec:
    return CompileSpec(
        name=f"dot {dtype}", fn=_dot_test_kernel,
        signature={"a_ptr": f"*{dtype}", "b_ptr": f"*{dtype}", "c_ptr": "*fp32"},
        constexprs={"M": 64, "N": 64, "K": 64}, requires_fp8_mfma=requires_fp8_mfma)


def _loop_spec(name: str, m: int, n: int, bk: int, warps: int, stages: int) -> CompileSpec:
    return CompileSpec(
        name=name, fn=_loop_dot_test_kernel,
        signature={"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32", "K": "i32"},
        constexprs={"M": m, "N": n, "BLOCK_K": bk}, num_warps=warps, num_stages=stages,
        aligned=("K",), requires_mfma=True)


#: 128x256 fp32 accumulator in one wave: 512 registers per lane for the accumulator alone
SPILL_SPEC = _loop_spec("spill 128x256 1 warp", 128, 256, 32, 1, 1)
#: 64x256 + 256x64 bf16 tiles, 3 stages: 96 KiB of LDS, no spill
LDS_SPEC = _loop_spec("lds 64x64x256 3 stages", 64, 64, 256, 4, 3)


# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,dtype", [("gfx942", "fp8e4b8"), ("gfx950", "fp8e4nv")])
def test_native_fp8_dot_uses_fp8_mfma(arch, dtype):
    row = spec_row(_dot_spec(dtype), arch, "test")
    assert row.error is None, row.error
    assert row.failures == []
    assert row.mfma and all(is_fp8_mfma(m) for m in row.mfma), row.mfma
    assert row.mfma_kinds == ["fp8"]
    if arch == "gfx942":
        assert any("_fp8_fp8" in m for m in row.mfma), row.mfma
    else:
        assert any("f8f6f4" in m for m in row.mfma), row.mfma
    assert row.vgprs_total >= row.vgprs > 0
    assert row.lds_bytes > 0  # Triton stages dot operands through LDS
    assert row.lds_limit == limits_for(arch).lds_bytes
    assert 1 <= row.waves_per_simd <= 8
    assert row.sgprs > 0 and row.vgpr_spills == 0 and row.scratch_bytes == 0


def test_e4m3fn_on_gfx942_is_flagged_as_f16_fallback():
    row = spec_row(_dot_spec("fp8e4nv"), "gfx942", "test")
    assert row.error is None, row.error
    assert row.mfma_kinds == ["f16"], row.mfma
    assert [f.split(":")[0] for f in row.failures] == ["fp8-mfma"]
    assert row.status == "FAIL"
    # the same spec without the requirement is fine
    assert spec_row(_dot_spec("fp8e4nv", requires_fp8_mfma=False), "gfx942", "test").failures == []


def test_bf16_dot_is_not_an_fp8_mfma():
    row = spec_row(_dot_spec("bf16"), "gfx950", "test")
    assert row.mfma_kinds == ["bf16"]
    assert any(f.startswith("fp8-mfma") for f in row.failures)


def test_spilling_kernel_is_flagged():
    row = spec_row(SPILL_SPEC, "gfx942", "test")
    assert row.error is None, row.error
    assert row.vgpr_spills > 0
    assert any(f.startswith("spill") for f in row.failures), row.failures
    assert row.vgprs_total == 512 and row.waves_per_simd == 1
    assert "vgpr" in row.occupancy_limited_by


def test_lds_over_the_gfx942_limit_is_flagged():
    row = spec_row(LDS_SPEC, "gfx942", "test")
    assert row.error is None, row.error
    assert row.lds_bytes > 64 * 1024
    assert [f.split(":")[0] for f in row.failures] == ["lds"], row.failures
    assert row.waves_per_simd == 0  # the workgroup cannot launch


def test_compile_error_becomes_a_failing_row():
    bad = CompileSpec(name="bad", fn=_dot_test_kernel,
                      signature={"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32"},
                      constexprs={"M": 64, "N": 64, "K": 7})  # tl.arange needs a power of 2
    row = spec_row(bad, "gfx942", "test")
    assert row.error and row.failures and row.failures[0].startswith("compile")
    assert row.status == "FAIL"


def test_spec_errors_name_the_argument():
    no_type = CompileSpec(name="x", fn=_dot_test_kernel,
                          signature={"a_ptr": "*bf16", "b_ptr": "*bf16"},
                          constexprs={"M": 64, "N": 64, "K": 64})
    with pytest.raises(ValueError, match="c_ptr"):
        compile_spec(no_type, "gfx942")
    unknown = CompileSpec(name="x", fn=_dot_test_kernel,
                          signature={"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32",
                                     "d_ptr": "*fp32"},
                          constexprs={"M": 64, "N": 64, "K": 64})
    with pytest.raises(ValueError, match="d_ptr"):
        compile_spec(unknown, "gfx942")
    with pytest.raises(ValueError, match="arch"):
        compile_spec(_dot_spec("bf16"), "gfx90a")
    with pytest.raises(ValueError, match="large_tensors"):
        compile_spec(CompileSpec(name="x", fn=_dot_test_kernel, signature={
            "a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32"},
            constexprs={"M": 64, "N": 64, "K": 64}, large_tensors=("M",)), "gfx942")


def test_spec_validation():
    with pytest.raises(ValueError, match="num_warps"):
        CompileSpec(name="x", fn=_dot_test_kernel, signature={}, num_warps=3)
    with pytest.raises(TypeError, match="aligned"):
        CompileSpec(name="x", fn=_dot_test_kernel, signature={}, aligned="K")
    with pytest.raises(ValueError, match="matrix_instr_nonkdim"):
        CompileSpec(name="x", fn=_dot_test_kernel, signature={}, matrix_instr_nonkdim=8)
    with pytest.raises(ValueError, match="name"):
        CompileSpec(name="", fn=_dot_test_kernel, signature={})


def test_unknown_options_are_dropped_with_a_note():
    spec = CompileSpec(name="opt", fn=_dot_test_kernel,
                       signature={"a_ptr": "*bf16", "b_ptr": "*bf16", "c_ptr": "*fp32"},
                       constexprs={"M": 64, "N": 64, "K": 64}, waves_per_eu=2,
                       matrix_instr_nonkdim=16, extra_options={"no_such_option": 1})
    row = spec_row(spec, "gfx942", "test")
    assert row.failures == []
    assert any("no_such_option" in n for n in row.notes)
    assert row.waves_per_eu_hint == 2
    assert all("16x16" in m for m in row.mfma), row.mfma  # matrix_instr_nonkdim=16 applied


def test_module_specs_forms():
    spec = _dot_spec("bf16")
    const = types.ModuleType("m_const")
    const.COMPILE_SPECS = [spec]
    assert module_specs(const, "gfx942") == [spec]
    func = types.ModuleType("m_func")
    func.compile_specs = lambda arch: [spec] if arch == "gfx942" else []
    assert module_specs(func, "gfx942") == [spec] and module_specs(func, "gfx950") == []
    assert module_specs(types.ModuleType("m_none"), "gfx942") is None
    dup = types.ModuleType("m_dup")
    dup.COMPILE_SPECS = [spec, spec]
    with pytest.raises(ValueError, match="duplicate"):
        module_specs(dup, "gfx942")
    wrong = types.ModuleType("m_wrong")
    wrong.COMPILE_SPECS = [{"name": "x"}]
    with pytest.raises(TypeError, match="CompileSpec"):
        module_specs(wrong, "gfx942")


def test_report_rows_filters_and_skips_missing_modules(monkeypatch):
    import rocm_dsa.compile.triton_amd as ta

    monkeypatch.setattr(ta, "TRITON_MODULES", ("no_such_kernel_module",))
    monkeypatch.setattr(ta, "_module_names", lambda: ["no_such_kernel_module"])
    rows = report_rows("gfx942", isolate=False)
    assert len(rows) == 1 and rows[0].skipped and rows[0].status == "skipped"
    assert "not present" in rows[0].skipped
    assert report_rows("gfx942", "something_else", isolate=False) == []


@pytest.mark.parametrize("arch", ["gfx942", "gfx950"])
def test_real_kernels_compile(amd_rows, arch):
    """Every real kernel spec present builds to a code object for the arch (checks: see
    test_report_kernels.py)."""
    rows = [r for r in amd_rows[arch] if not r.skipped]
    if not rows:
        pytest.skip("no kernel module declares compile specs yet")
    errors = [f"{r.module} [{r.config}]: {r.failures[0]}" for r in rows if r.error]
    assert not errors, "\n".join(errors)
    assert all(r.vgprs_total and r.sgprs for r in rows)
