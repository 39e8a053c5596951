"""AMDGCN assembly parsing, MFMA classification, occupancy math and the report checks, on
known snippets (no compiler involved)."""

from __future__ import annotations

import json

import pytest

from rocm_dsa.compile.amdgpu import (
    find_mfma, is_fp8_mfma, limits_for, mfma_operand_kind, occupancy, parse_resources,
)
from rocm_dsa.compile.report import Report, Row, check_row, row_from_resources

# Shaped like Triton 3.9's asm["amdgcn"] for gfx942 (trimmed): body, LLVM's kernel-info
# comments, the .set resource symbols, then the HSA metadata.
TRITON_ASM = """\
\t.amdgcn_target "amdgcn-amd-amdhsa--gfx942"
\t.globl\t_fwd_test_kernel
\t.type\t_fwd_test_kernel,@function
_fwd_test_kernel:
\ts_load_dwordx4 s[0:3], s[0:1], 0x0
\tv_mfma_f32_16x16x32_fp8_fp8 a[0:3], v[2:3], v[4:5], 0
\tv_mfma_f32_16x16x32_fp8_fp8 a[0:3], v[6:7], v[8:9], a[0:3]
\tv_mfma_f32_16x16x16_bf16 v[10:13], v[2:3], v[4:5], 0
\tscratch_store_dword off, v40, s33 offset:4 ; 4-byte Folded Spill
\ts_endpgm
.Lfunc_end0:
\t.size\t_fwd_test_kernel, .Lfunc_end0-_fwd_test_kernel
\t.set .L_fwd_test_kernel.num_vgpr, 126
\t.set .L_fwd_test_kernel.num_agpr, 40
\t.set .L_fwd_test_kernel.numbered_sgpr, 60
\t.section\t.AMDGPU.csdata,"",@progbits
; Kernel info:
; codeLenInByte = 1588
; TotalNumSgprs: 66
; NumVgprs: 126
; NumAgprs: 40
; TotalNumVgprs: 168
; ScratchSize: 12
; Occupancy: 3
; COMPUTE_PGM_RSRC2:SCRATCH_EN: 1
\t.text
\t.amdgpu_metadata
---
amdhsa.kernels:
  - .agpr_count:     40
    .args:
      - .address_space:  global
        .offset:         0
        .size:           8
        .value_kind:     global_buffer
      - .offset:         8
        .size:           4
        .value_kind:     by_value
    .group_segment_fixed_size: 0
    .kernarg_segment_align: 8
    .kernarg_segment_size: 16
    .max_flat_workgroup_size: 256
    .name:           _fwd_test_kernel
    .private_segment_fixed_size: 12
    .sgpr_count:     66
    .sgpr_spill_count: 0
    .symbol:         _fwd_test_kernel.kd
    .uses_dynamic_stack: false
    .vgpr_count:     168
    .vgpr_spill_count: 3
    .wavefront_size: 64
amdhsa.target:   amdgcn-amd-amdhsa--gfx942
amdhsa.version:
  - 1
  - 2
...

\t.end_amdgpu_metadata
"""

# Two kernels in one file, as clang -x hip --cuda-device-only -S prints them for gfx950 (no
# .set symbols: arch VGPRs come from each kernel's comment block).
HIP_ASM = """\
\t.text
\t.protected\t_Z8topk_radixPKfPii
\t.globl\t_Z8topk_radixPKfPii
_Z8topk_radixPKfPii:
\tv_mov_b32_e32 v0, 0
\ts_endpgm
.Lfunc_end0:
\t.size\t_Z8topk_radixPKfPii, .Lfunc_end0-_Z8topk_radixPKfPii
\t.section\t.AMDGPU.csdata,"",@progbits
; Kernel info:
; NumVgprs: 20
; NumAgprs: 0
; TotalNumVgprs: 20
; ScratchSize: 0
; Occupancy: 8
\t.text
\t.protected\t_Z9mla_storePKDF16bPhi
\t.globl\t_Z9mla_storePKDF16bPhi
_Z9mla_storePKDF16bPhi:
\tv_mfma_f32_32x32x64_f8f6f4 v[0:15], v[26:33], v[18:25], 0
\tv_mfma_f32_32x32x64_f8f6f4 v[0:15], v[26:33], v[18:25], v[0:15] cbsz:1 blgp:1
\ts_endpgm
.Lfunc_end1:
\t.size\t_Z9mla_storePKDF16bPhi, .Lfunc_end1-_Z9mla_storePKDF16bPhi
; Kernel info:
; NumVgprs: 37
; NumAgprs: 0
; Occupancy: 8
\t.amdgpu_metadata
---
amdhsa.kernels:
  - .agpr_count:     0
    .group_segment_fixed_size: 8192
    .max_flat_workgroup_size: 1024
    .name:           _Z8topk_radixPKfPii
    .private_segment_fixed_size: 0
    .sgpr_count:     24
    .sgpr_spill_count: 0
    .symbol:         _Z8topk_radixPKfPii.kd
    .vgpr_count:     20
    .vgpr_spill_count: 0
    .wavefront_size: 64
  - .agpr_count:     0
    .args:
      - .offset:         0
        .size:           8
        .value_kind:     global_buffer
    .group_segment_fixed_size: 0
    .max_flat_workgroup_size: 256
    .name:           _Z9mla_storePKDF16bPhi
    .private_segment_fixed_size: 0
    .sgpr_count:     18
    .sgpr_spill_count: 0
    .symbol:         _Z9mla_storePKDF16bPhi.kd
    .vgpr_count:     40
    .vgpr_spill_count: 0
    .wavefront_size: 64
amdhsa.target:   amdgcn-amd-amdhsa--gfx950
...
\t.end_amdgpu_metadata
"""


def test_parse_triton_style_asm():
    res = parse_resources(TRITON_ASM)
    assert list(res) == ["_fwd_test_kernel"]
    r = res["_fwd_test_kernel"]
    assert (r.vgpr_count, r.arch_vgpr_count, r.agpr_count) == (168, 126, 40)
    assert (r.sgpr_count, r.vgpr_spill_count, r.sgpr_spill_count) == (66, 3, 0)
    assert (r.scratch_bytes, r.lds_static_bytes) == (12, 0)
    assert (r.max_flat_workgroup_size, r.wavefront_size, r.llvm_occupancy) == (256, 64, 3)
    assert r.uses_dynamic_stack is False
    assert r.mfma == {"v_mfma_f32_16x16x16_bf16": 1, "v_mfma_f32_16x16x32_fp8_fp8": 2}


def test_parse_multi_kernel_hip_style_asm():
    res = parse_resources(HIP_ASM)
    assert set(res) == {"_Z8topk_radixPKfPii", "_Z9mla_storePKDF16bPhi"}
    a, b = res["_Z8topk_radixPKfPii"], res["_Z9mla_storePKDF16bPhi"]
    assert (a.arch_vgpr_count, a.vgpr_count, a.sgpr_count, a.lds_static_bytes) == (20, 20, 24, 8192)
    assert a.mfma == {}
    assert (b.arch_vgpr_count, b.vgpr_count, b.max_flat_workgroup_size) == (37, 40, 256)
    assert b.mfma == {"v_mfma_f32_32x32x64_f8f6f4 [fp8,fp8]": 1,
                      "v_mfma_f32_32x32x64_f8f6f4 [bf8,bf8]": 1}


def test_parse_rejects_text_without_metadata():
    with pytest.raises(ValueError, match="amdgpu_metadata"):
        parse_resources("v_mfma_f32_16x16x16_bf16 v[0:3], v[0:1], v[2:3], 0\n")


@pytest.mark.parametrize("mnemonic,kind", [
    ("v_mfma_f32_16x16x32_fp8_fp8", "fp8"),
    ("v_mfma_f32_32x32x16_bf8_fp8", "fp8"),
    ("v_mfma_f32_32x32x64_f8f6f4 [fp8,fp8]", "fp8"),
    ("v_mfma_f32_16x16x128_f8f6f4 [fp4,fp8]", "fp4"),
    ("v_mfma_f32_16x16x128_f8f6f4 [fp6,fp6]", "fp6"),
    ("v_mfma_f32_16x16x16_bf16", "bf16"),
    ("v_mfma_f32_32x32x8bf16_1k", "bf16"),
    ("v_mfma_f32_32x32x8_f16", "f16"),
    ("v_mfma_f32_32x32x8f16", "f16"),
    ("v_mfma_f32_16x16x4_f32", "f32"),
    ("v_mfma_f32_16x16x8_xf32", "xf32"),
    ("v_mfma_i32_16x16x32_i8", "i8"),
    ("v_mfma_f64_16x16x4_f64", "f64"),
    ("v_smfmac_f32_16x16x64_fp8_fp8", "fp8"),
    ("v_add_f32", "?"),
])
def test_mfma_operand_kind(mnemonic, kind):
    assert mfma_operand_kind(mnemonic) == kind
    assert is_fp8_mfma(mnemonic) == (kind == "fp8")


def test_find_mfma_counts_and_ignores_comments():
    text = ("\tv_mfma_f32_16x16x16_f16 v[0:3], v[4:5], v[6:7], 0\n"
            "\tv_mfma_f32_16x16x16_f16 v[0:3], v[4:5], v[6:7], v[0:3]\n"
            "; v_mfma_f32_16x16x32_fp8_fp8 mentioned in a comment\n")
    assert find_mfma(text) == {"v_mfma_f32_16x16x16_f16": 2}


# LLVM's gfx90a+ rule: 512 VGPRs per lane per SIMD, granule 8, at most 8 waves.
@pytest.mark.parametrize("vgprs,waves", [
    (1, 8), (64, 8), (65, 7), (72, 7), (73, 6), (80, 6), (96, 5), (128, 4), (168, 3),
    (170, 2), (256, 2), (257, 1), (512, 1),
])
def test_occupancy_from_vgprs(vgprs, waves):
    occ = occupancy(vgprs, 30, 0, 4, limits_for("gfx942"))
    assert occ.by_vgpr == waves and occ.waves_per_simd == waves
    assert occ.limited_by == (("vgpr",) if waves < 8 else ("max",))


def test_occupancy_from_sgprs():
    assert occupancy(32, 100, 0, 4, limits_for("gfx942")).waves_per_simd == 8
    occ = occupancy(32, 101, 0, 4, limits_for("gfx942"))
    assert occ.waves_per_simd == 7 and occ.limited_by == ("sgpr",)


@pytest.mark.parametrize("arch,lds,warps,waves", [
    ("gfx942", 64 * 1024, 4, 1),       # one workgroup per CU: one wave per SIMD
    ("gfx942", 64 * 1024, 8, 2),
    ("gfx942", 32 * 1024, 4, 2),
    ("gfx942", 16 * 1024 + 1, 4, 3),   # 512-byte blocks: 16896 B -> 3 workgroups
    ("gfx942", 64 * 1024 + 1, 4, 0),   # does not fit
    ("gfx942", 4096, 1, 4),            # 16 workgroups x 1 wave over 4 SIMDs
    ("gfx942", 0, 1, 8),               # single-wave workgroups: no workgroup-slot limit
    ("gfx942", 0, 2, 8),               # 16 workgroups x 2 waves = 8 per SIMD
    ("gfx950", 80 * 1024, 4, 2),
    ("gfx950", 96 * 1024, 4, 1),
    ("gfx950", 160 * 1024, 4, 1),
    ("gfx950", 160 * 1024 + 1, 4, 0),
])
def test_occupancy_from_lds(arch, lds, warps, waves):
    occ = occupancy(32, 30, lds, warps, limits_for(arch))
    assert occ.by_lds == waves and occ.waves_per_simd == waves


def test_occupancy_rejects_empty_workgroup():
    with pytest.raises(ValueError, match="waves_per_workgroup"):
        occupancy(32, 30, 0, 0, limits_for("gfx942"))


def test_limits():
    assert limits_for("gfx942").lds_bytes == 64 * 1024
    assert limits_for("gfx950").lds_bytes == 160 * 1024
    assert limits_for("gfx942").vgprs_per_lane == 512
    with pytest.raises(ValueError, match="gfx942"):
        limits_for("sm90")


# ---- rows and checks -------------------------------------------------------------------------
def _row(asm=TRITON_ASM, name="_fwd_test_kernel", arch="gfx942", **kw) -> Row:
    res = parse_resources(asm)[name]
    return row_from_resources(source="triton", module="test", kernel=name, config="cfg",
                              arch=arch, res=res, waves_per_workgroup=4, **kw)


def test_row_checks_spill_and_fp8():
    row = _row(requires_fp8_mfma=True, dynamic_lds_bytes=1024)
    kinds = [f.split(":")[0] for f in row.failures]
    assert kinds == ["spill", "spill"]  # 3 VGPRs spilled, 12 bytes of scratch
    assert row.lds_bytes == 1024 and row.vgprs == 126 and row.agprs == 40
    assert row.waves_per_simd == 3 and row.occupancy_limited_by == ["vgpr"]
    assert row.mfma_kinds == ["bf16", "fp8"]


def test_row_checks_lds_limit_per_arch():
    res = parse_resources(HIP_ASM)["_Z8topk_radixPKfPii"]
    kw = dict(source="hip", module="topk", kernel=res.name, config="1024 threads", res=res,
              waves_per_workgroup=16)
    big = 100 * 1024 - 8192
    r942 = row_from_resources(arch="gfx942", dynamic_lds_bytes=big, **kw)
    r950 = row_from_resources(arch="gfx950", dynamic_lds_bytes=big, **kw)
    assert [f.split(":")[0] for f in r942.failures] == ["lds"]
    assert r950.failures == [] and r950.lds_bytes == 100 * 1024


def test_row_check_missing_fp8_and_missing_mfma():
    res = parse_resources(HIP_ASM)["_Z8topk_radixPKfPii"]
    kw = dict(source="hip", module="topk", kernel=res.name, config="c", arch="gfx942",
              res=res, waves_per_workgroup=16)
    assert [f.split(":")[0] for f in row_from_resources(requires_fp8_mfma=True, **kw).failures] \
        == ["fp8-mfma"]
    assert [f.split(":")[0] for f in row_from_resources(requires_mfma=True, **kw).failures] \
        == ["mfma"]
    assert row_from_resources(**kw).failures == []


def test_waves_per_eu_hint_note():
    row = _row(waves_per_eu_hint=4)
    assert any("waves_per_eu hint 4" in n for n in row.notes)


def test_skipped_and_error_rows():
    skipped = Row(source="triton", module="topk", kernel="-", config="-", arch="gfx942",
                  skipped="not present yet")
    assert check_row(skipped) == [] and skipped.status == "skipped"
    err = Row(source="triton", module="topk", kernel="k", config="c", arch="gfx942",
              error="CompilationError: at 3:4:\n   x = y\nNameError('y')")
    assert check_row(err) == ["compile: NameError('y')"] and err.status == "FAIL"
    rep = Report("gfx942", [skipped, err])
    assert not rep.ok and rep.failing == [err]
    d = json.loads(rep.to_json())
    assert d["summary"] == {"rows": 2, "compiled": 0, "failing": 1, "skipped": 1}


def test_row_json_round_trip():
    row = _row(requires_fp8_mfma=True)
    d = json.loads(json.dumps(row.to_dict()))
    assert d["status"] == "FAIL" and d["mfma_kinds"] == ["bf16", "fp8"]
    back = Row.from_dict(d)
    assert back == row
