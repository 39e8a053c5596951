"""What a kernel module declares so ``rocm-dsa compile`` can build it for AMD without a GPU.

See the package docstring (:mod:`rocm_dsa.compile`) for how kernel modules publish these.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

__all__ = ["CompileSpec"]


@dataclasses.dataclass(frozen=True)
class CompileSpec:
    """One kernel at one configuration, compiled ahead of time for an AMD arch.

    Attributes:
        name: row label, unique within its module, naming the op and what varies between
            configs, e.g. ``"indexer_logits H=64 BLOCK_N=128"``.
        fn: the ``@triton.jit`` function (``triton.runtime.JITFunction``).
        signature: every *runtime* argument of ``fn`` -> Triton type string: pointers
            ``'*fp8e4b8'`` (e4m3fnuz), ``'*fp8e4nv'`` (OCP e4m3fn), ``'*bf16'``, ``'*fp16'``,
            ``'*fp32'``, ``'*i32'``, ``'*i64'``, ``'*u8'``; scalars ``'i32'``, ``'i64'``,
            ``'fp32'``. Arguments named in ``constexprs`` may be left out (they become
            ``'constexpr'``).
        constexprs: value of every ``tl.constexpr`` parameter (block sizes, head count,
            ``TOPK``...). May also pin a runtime int argument the way Triton's JIT does when
            it is 1 at launch (e.g. ``{"stride_kd": 1}``).
        num_warps / num_stages: launch options, as at the real launch.
        waves_per_eu: AMD occupancy hint (0 = none); caps the VGPR budget at
            512 / waves_per_eu per lane.
        matrix_instr_nonkdim: MFMA tile (16 or 32; 0 = Triton's choice).
        kpack: MFMA operand packing (gfx942 only; 1 or 2).
        aligned: runtime int arguments that are multiples of 16 at the real shapes (Triton
            specializes those, e.g. ``stride_qt``); pointers are always assumed 16-byte aligned.
        large_tensors: pointer arguments whose tensor can exceed 2 GiB at real shapes (paged
            caches, [T, N] logits at long context). The others are compiled as Triton does for
            tensors under 2 GiB (32-bit buffer-load offsets on AMD).
        requires_fp8_mfma: fail the report unless the code uses an FP8 MFMA
            (``v_mfma_*_fp8_fp8`` / ``*_f8f6f4``...). Set it for the indexer on gfx942, where
            e4m3fn operands silently fall back to f16 MFMA.
        requires_mfma: fail the report unless some MFMA is used (e.g. sparse MLA's bf16 dots).
        extra_options: other Triton AMD compile options by name (e.g. ``schedule_hint``);
            ones the installed Triton does not know are dropped with a note in the report.
        note: free text shown in the report (e.g. which per-arch config bucket this is).
    """

    name: str
    fn: Any
    signature: Mapping[str, str]
    constexprs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    num_warps: int = 4
    num_stages: int = 2
    waves_per_eu: int = 0
    matrix_instr_nonkdim: int = 0
    kpack: int = 1
    aligned: tuple[str, ...] = ()
    large_tensors: tuple[str, ...] = ()
    requires_fp8_mfma: bool = False
    requires_mfma: bool = False
    extra_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name: expected a non-empty row label")
        for field in ("aligned", "large_tensors"):
            v = getattr(self, field)
            if isinstance(v, str):
                raise TypeError(
                    f"{field}: expected a tuple of argument names, got the string {v!r}")
            object.__setattr__(self, field, tuple(v))
        if self.num_warps <= 0 or self.num_warps & (self.num_warps - 1):
            raise ValueError(f"num_warps: expected a power of two, got {self.num_warps}")
        if self.matrix_instr_nonkdim not in (0, 4, 16, 32):
            raise ValueError(
                f"matrix_instr_nonkdim: expected 0, 16 or 32, got {self.matrix_instr_nonkdim}")

    @property
    def launch(self) -> dict[str, int]:
        """The launch options as a dict (for the report)."""
        return {"num_warps": self.num_warps, "num_stages": self.num_stages,
                "waves_per_eu": self.waves_per_eu,
                "matrix_instr_nonkdim": self.matrix_instr_nonkdim, "kpack": self.kpack}
