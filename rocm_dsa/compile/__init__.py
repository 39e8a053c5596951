"""Ahead-of-time AMD compile reports: ``rocm-dsa compile --arch gfx942|gfx950``.

Every kernel is compiled for an AMD arch on any machine (no GPU, no ROCm: Triton's AMD backend
ships its own LLVM and linker) and its register / LDS / MFMA use is read back from the
AMDGCN assembly. A report row = one kernel at one configuration; checks fail the command (and
CI) on spills, LDS over the arch's limit, or a missing FP8 MFMA where one is required.

How a Triton kernel module declares what to compile
----------------------------------------------------
Each module ``triton_kernels/<op>.py`` (imported as ``rocm_dsa.triton_kernels.<op>``) listed in
:data:`rocm_dsa.compile.triton_amd.TRITON_MODULES` (or any other module of the package that
declares specs) defines, at module level, EITHER::

    def compile_specs(arch: str) -> list[CompileSpec]:   # preferred: configs per arch
        ...

OR a constant ``COMPILE_SPECS: list[CompileSpec]`` (same for every arch). ``arch`` is
``"gfx942"`` or ``"gfx950"``; read the block sizes from the same per-arch config resolver the
launcher uses, at the DeepSeek-V3.2 shapes (indexer H=64, D=128; top-k k=2048; MLA 576/512,
H = 16/32/64/128). Example::

    def compile_specs(arch):
        from rocm_dsa.compile import CompileSpec
        fp8 = "*fp8e4b8" if arch == "gfx942" else "*fp8e4nv"   # native matrix FP8 type
        cfg = resolve_config(arch, "indexer", ...)               # the launcher's resolver
        return [CompileSpec(
            name=f"indexer_logits H=64 BLOCK_N={cfg['BLOCK_N']}",
            fn=_fwd_indexer_logits_kernel,
            signature={"q_ptr": fp8, "k_ptr": fp8, "k_scale_ptr": "*fp32", "w_ptr": "*fp32",
                       "ks_ptr": "*i32", "ke_ptr": "*i32", "out_ptr": "*fp32",
                       "N": "i32", "stride_qt": "i64", "stride_ot": "i64"},
            constexprs={"H": 64, "D": 128, "BLOCK_N": cfg["BLOCK_N"]},
            num_warps=cfg["num_warps"], num_stages=cfg["num_stages"],
            waves_per_eu=cfg.get("waves_per_eu", 0), matrix_instr_nonkdim=16,
            aligned=("stride_qt", "stride_ot"), large_tensors=("out_ptr",),
            requires_fp8_mfma=True)]

A module whose ops only compose other modules' kernels (e.g. the fused indexer + top-k
driver) declares ``COMPILE_SPECS = []``; it is then listed as having no kernels of its own.

The full list of :class:`CompileSpec` fields (types, launch options, ``aligned``,
``large_tensors``, ``requires_fp8_mfma``, ``requires_mfma``...) is documented on the class.
Pointer type strings: ``*fp8e4b8`` = e4m3fnuz (gfx942's MFMA FP8), ``*fp8e4nv`` = OCP e4m3fn,
``*bf16``, ``*fp16``, ``*fp32``, ``*i32``, ``*i64``, ``*u8``; scalars ``i32``, ``i64``, ``fp32``.
Modules that do not exist yet are reported as skipped, never as failures.

Other sources of rows (HIP)
---------------------------
The report is a list of :class:`rocm_dsa.compile.report.Row` from several *sources*
(:data:`rocm_dsa.compile.report.SOURCES`): ``"triton"`` (this package) and ``"hip"``, a module
``rocm_dsa.hipext.compile_report`` exposing ``report_rows(arch: str, kernel: str | None) ->
list[Row]``. A HIP source compiles device-only to AMDGCN text and fills each row with
:func:`rocm_dsa.compile.amdgpu.parse_resources` / :func:`~rocm_dsa.compile.amdgpu.find_mfma`
(the same metadata format), so occupancy and checks are computed identically.
"""

from __future__ import annotations

from .spec import CompileSpec

__all__ = ["CompileSpec"]
