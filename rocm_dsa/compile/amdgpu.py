"""Read kernel resources out of AMDGCN assembly and turn them into occupancy.

Source-agnostic: the input is the ``.s`` text that LLVM's AMDGPU backend prints, whether it came
from Triton (``CompiledKernel.asm["amdgcn"]``) or from ``clang++ -x hip --cuda-device-only -S``.
Two parts of that text are read:

* the HSA code-object metadata block (``.amdgpu_metadata`` ... ``.end_amdgpu_metadata``, YAML):
  ``.vgpr_count`` (unified VGPR file use = arch VGPRs aligned to 4 + AGPRs on gfx90a+),
  ``.agpr_count``, ``.sgpr_count``, ``.vgpr_spill_count``, ``.sgpr_spill_count``,
  ``.group_segment_fixed_size`` (static LDS bytes), ``.private_segment_fixed_size`` (scratch
  bytes per lane), ``.max_flat_workgroup_size``, ``.wavefront_size`` — the fields are defined in
  LLVM's AMDGPUUsage "Code Object V3+ Metadata";
* LLVM's per-kernel comment block (``; NumVgprs:``, ``; Occupancy:``...) or the
  ``.set <kernel>.num_vgpr`` symbols, for the arch-VGPR count alone.

Occupancy follows LLVM's ``AMDGPU::IsaInfo`` rules for the gfx90a family (gfx90a, gfx942,
gfx950): 512 VGPRs per lane per SIMD shared by arch VGPRs and AGPRs, allocated in granules of 8;
at most 8 waves per SIMD; 4 SIMDs per CU; SGPR limit per gfx9 (<= 100 SGPRs keeps 8 waves);
LDS per CU 64 KiB allocated in 512-byte blocks (gfx942) and 160 KiB in 1280-byte blocks (gfx950),
at most 16 workgroups per CU (of more than one wave).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from typing import Mapping

__all__ = [
    "ArchLimits", "ARCH_LIMITS", "limits_for", "KernelResources", "parse_resources",
    "find_mfma", "mfma_operand_kind", "mfma_kinds", "is_fp8_mfma", "Occupancy", "occupancy",
]


@dataclasses.dataclass(frozen=True)
class ArchLimits:
    """Per-CU resources of an AMD arch, as the occupancy rules need them.

    Attributes:
        arch: "gfx942" / "gfx950".
        vgprs_per_lane: unified VGPR file per lane per SIMD (arch + accumulation VGPRs).
        vgpr_granule: VGPR allocation granule (registers).
        max_waves_per_simd: hardware wave slots per SIMD.
        simds_per_cu: SIMDs (execution units) per CU.
        lds_bytes: LDS per CU (= the most one workgroup may allocate), bytes.
        lds_granule: LDS allocation block, bytes.
        max_workgroups_per_cu: workgroup slots per CU.
        wave_size: lanes per wavefront.
    """

    arch: str
    vgprs_per_lane: int = 512
    vgpr_granule: int = 8
    max_waves_per_simd: int = 8
    simds_per_cu: int = 4
    lds_bytes: int = 64 * 1024
    lds_granule: int = 512
    max_workgroups_per_cu: int = 16
    wave_size: int = 64


def _limits_table() -> dict[str, ArchLimits]:
    from rocm_dsa.platform import for_arch

    out = {}
    for arch, granule in (("gfx942", 512), ("gfx950", 1280)):
        p = for_arch(arch)
        out[arch] = ArchLimits(arch, vgprs_per_lane=p.vgprs_per_simd_lane, lds_bytes=p.lds_bytes,
                               lds_granule=granule, wave_size=p.wave_size)
    return out


#: the AMD archs the compile reports cover
ARCH_LIMITS: dict[str, ArchLimits] = _limits_table()


def limits_for(arch: str) -> ArchLimits:
    """:class:`ArchLimits` of ``arch``; ValueError naming the supported archs otherwise."""
    try:
        return ARCH_LIMITS[arch]
    except KeyError:
        raise ValueError(f"arch: expected one of {sorted(ARCH_LIMITS)}, got {arch!r}") from None


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class KernelResources:
    """Resources of one kernel as the AMDGPU backend reported them.

    Attributes:
        name: kernel symbol.
        vgpr_count: unified VGPRs per lane (arch VGPRs aligned to 4, plus AGPRs).
        arch_vgpr_count: architectural VGPRs only (None when the text does not say).
        agpr_count: accumulation VGPRs (MFMA accumulators) per lane.
        sgpr_count: SGPRs per wave, including VCC / flat-scratch / XNACK extras.
        vgpr_spill_count / sgpr_spill_count: registers spilled (SGPRs spill to VGPR lanes or
            memory, VGPRs to scratch memory).
        scratch_bytes: private (scratch) segment per lane, bytes (spills + stack objects).
        lds_static_bytes: LDS fixed at compile time, bytes (Triton allocates its LDS
            dynamically at launch; the caller adds that).
        max_flat_workgroup_size: the most lanes per workgroup the kernel allows.
        wavefront_size: 64 on CDNA.
        uses_dynamic_stack: the stack size is not known at compile time.
        llvm_occupancy: LLVM's own waves-per-SIMD estimate (``; Occupancy:``), which ignores
            dynamic LDS; None when absent.
        mfma: MFMA mnemonic -> number of instructions in the kernel body.
    """

    name: str
    vgpr_count: int
    arch_vgpr_count: int | None
    agpr_count: int
    sgpr_count: int
    vgpr_spill_count: int
    sgpr_spill_count: int
    scratch_bytes: int
    lds_static_bytes: int
    max_flat_workgroup_size: int
    wavefront_size: int
    uses_dynamic_stack: bool = False
    llvm_occupancy: int | None = None
    mfma: dict[str, int] = dataclasses.field(default_factory=dict)


_META_RE = re.compile(r"^\s*\.amdgpu_metadata\s*$(.*?)^\s*\.end_amdgpu_metadata\s*$",
                      re.S | re.M)
_KEY_RE = re.compile(r"^(?P<indent>\s*)(?:-\s+)?\.(?P<key>[A-Za-z_][\w.]*):\s*(?P<val>.*?)\s*$")
_FIELDS_INT = {
    "vgpr_count", "agpr_count", "sgpr_count", "vgpr_spill_count", "sgpr_spill_count",
    "private_segment_fixed_size", "group_segment_fixed_size", "max_flat_workgroup_size",
    "wavefront_size",
}


def _kernel_metadata(asm: str) -> list[dict[str, str]]:
    """Kernel-level ``key: value`` pairs of every entry of ``amdhsa.kernels`` (no YAML lib)."""
    m = _META_RE.search(asm)
    if m is None:
        raise ValueError("asm: no .amdgpu_metadata block; expected AMDGCN assembly of an HSA "
                         "code object (Triton asm['amdgcn'] or clang -S --offload-arch=gfx9xx)")
    kernels: list[dict[str, str]] = []
    cur: dict[str, str] | None = None
    kernel_indent = None
    in_kernels = False
    for line in m.group(1).splitlines():
        if line.startswith("amdhsa.kernels:"):
            in_kernels = True
            continue
        if line and not line[0].isspace():  # another top-level key (amdhsa.target, ...)
            in_kernels = False
            continue
        if not in_kernels:
            continue
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped.startswith("- ") and (kernel_indent is None or indent == kernel_indent):
            if kernel_indent is None:
                kernel_indent = indent
            cur = {}
            kernels.append(cur)
            # the first key sits on the "- " line; its nested keys are 2 further in
        km = _KEY_RE.match(line)
        if km is None or cur is None:
            continue
        key_indent = len(km.group("indent")) + (2 if stripped.startswith("- ") else 0)
        if key_indent == (kernel_indent or 0) + 2:
            cur[km.group("key")] = km.group("val").strip("'\"")
    return kernels


def _comment_blocks(asm: str) -> dict[str, dict[str, int]]:
    """LLVM's ``; Kernel info:`` comment fields, keyed by the kernel that precedes each block."""
    out: dict[str, dict[str, int]] = {}
    last_size = None
    current: dict[str, int] | None = None
    for line in asm.splitlines():
        s = line.strip()
        sm = re.match(r"\.size\s+([^,\s]+)\s*,", s)
        if sm:
            last_size = sm.group(1)
            continue
        if s.startswith("; Kernel info:"):
            current = {}
            if last_size is not None:
                out[last_size] = current
            continue
        if current is not None:
            fm = re.match(r";\s*([A-Za-z][\w :]*?):\s*(\d+)\b", s)
            if fm:
                current.setdefault(fm.group(1).strip(), int(fm.group(2)))
            elif not s.startswith(";"):
                current = None
    return out


def _set_symbols(asm: str, name: str) -> dict[str, int]:
    """``.set .L<name>.num_vgpr, N`` style resource symbols (newer LLVM)."""
    out = {}
    for m in re.finditer(r"^\s*\.set\s+\.?L?" + re.escape(name) + r"\.(\w+),\s*(\d+)\s*$",
                         asm, re.M):
        out[m.group(1)] = int(m.group(2))
    return out


_MFMA_RE = re.compile(r"^\s*(v_(?:mfma|smfmac)_[a-z0-9_]+)(?P<ops>[^\n;]*)", re.M)


def _kernel_body(asm: str, name: str) -> str:
    """Text from the ``name:`` label to its ``.Lfunc_end`` (whole text if not found)."""
    m = re.search(r"^" + re.escape(name) + r":.*?$(.*?)^\.Lfunc_end\d+:", asm, re.M | re.S)
    return m.group(1) if m else asm


def find_mfma(asm: str) -> dict[str, int]:
    """MFMA instructions in ``asm``: mnemonic -> count.

    ``v_mfma_f32_32x32x64_f8f6f4`` (gfx950) is reported with its operand formats, read from the
    ``cbsz:``/``blgp:`` modifiers (0 fp8, 1 bf8, 2 fp6, 3 bf6, 4 fp4; absent = fp8), e.g.
    ``v_mfma_f32_32x32x64_f8f6f4 [fp8,fp8]``.
    """
    fmt = {0: "fp8", 1: "bf8", 2: "fp6", 3: "bf6", 4: "fp4"}
    counts: Counter[str] = Counter()
    for m in _MFMA_RE.finditer(asm):
        mnem, ops = m.group(1), m.group("ops")
        if mnem.endswith("f8f6f4"):
            a = re.search(r"cbsz:\s*(\d+)", ops)
            b = re.search(r"blgp:\s*(\d+)", ops)
            fa = fmt.get(int(a.group(1)) if a else 0, "?")
            fb = fmt.get(int(b.group(1)) if b else 0, "?")
            mnem = f"{mnem} [{fa},{fb}]"
        counts[mnem] += 1
    return dict(sorted(counts.items()))


def mfma_operand_kind(mnemonic: str) -> str:
    """Operand type of an MFMA mnemonic: "fp8", "fp6", "fp4", "bf16", "f16", "f32", "xf32",
    "i8", "f64" or "?".

    Examples: ``v_mfma_f32_16x16x32_fp8_fp8`` -> fp8 (gfx942: e4m3fnuz operands),
    ``v_mfma_f32_16x16x16_bf16`` / ``v_mfma_f32_32x32x8bf16_1k`` -> bf16,
    ``v_mfma_f32_32x32x8_f16`` -> f16, ``v_mfma_f32_32x32x64_f8f6f4 [fp8,fp8]`` -> fp8.
    """
    m = re.match(r"v_(?:mfma|smfmac)_(?:scale_)?[a-z0-9]+?_\d+x\d+x\d+_?([a-z0-9_]+)"
                 r"(?:\s*\[(\w+),(\w+)\])?", mnemonic)
    if m is None:
        return "?"
    src = m.group(1)
    if src.startswith("f8f6f4"):
        kinds = {m.group(2) or "fp8", m.group(3) or "fp8"}
        if kinds <= {"fp8", "bf8"}:
            return "fp8"
        return "fp4" if "fp4" in kinds else "fp6"
    if src.startswith(("fp8", "bf8")):
        return "fp8"
    for k in ("bf16", "xf32", "f16", "f32", "i8", "f64"):
        if src.startswith(k):
            return k
    return "?"


def is_fp8_mfma(mnemonic: str) -> bool:
    """True for an MFMA whose operands are 8-bit floats (fp8/bf8, either encoding)."""
    return mfma_operand_kind(mnemonic) == "fp8"


def parse_resources(asm: str) -> dict[str, KernelResources]:
    """Every kernel's :class:`KernelResources` in AMDGCN assembly text, keyed by symbol.

    Raises ValueError when the text has no HSA metadata block or a kernel misses a register
    count.
    """
    metas = _kernel_metadata(asm)
    comments = _comment_blocks(asm)
    out: dict[str, KernelResources] = {}
    for meta in metas:
        name = meta.get("name") or meta.get("symbol", "").removesuffix(".kd")
        ints = {}
        for k in _FIELDS_INT:
            v = meta.get(k)
            ints[k] = int(v) if v is not None and re.fullmatch(r"-?\d+", v) else None
        for k in ("vgpr_count", "sgpr_count"):
            if ints[k] is None:
                raise ValueError(f"asm: kernel {name!r} metadata has no .{k}")
        info = comments.get(name, {})
        if not info and len(metas) == 1 and len(comments) == 1:
            info = next(iter(comments.values()))
        sym = _set_symbols(asm, name)
        arch_vgpr = sym.get("num_vgpr", info.get("NumVgprs"))
        agpr = ints["agpr_count"] if ints["agpr_count"] is not None else \
            sym.get("num_agpr", info.get("NumAgprs", 0))
        out[name] = KernelResources(
            name=name,
            vgpr_count=ints["vgpr_count"],
            arch_vgpr_count=arch_vgpr,
            agpr_count=agpr,
            sgpr_count=ints["sgpr_count"],
            vgpr_spill_count=ints["vgpr_spill_count"] or 0,
            sgpr_spill_count=ints["sgpr_spill_count"] or 0,
            scratch_bytes=ints["private_segment_fixed_size"] or 0,
            lds_static_bytes=ints["group_segment_fixed_size"] or 0,
            max_flat_workgroup_size=ints["max_flat_workgroup_size"] or 0,
            wavefront_size=ints["wavefront_size"] or 64,
            uses_dynamic_stack=meta.get("uses_dynamic_stack", "false") == "true",
            llvm_occupancy=info.get("Occupancy"),
            mfma=find_mfma(_kernel_body(asm, name)),
        )
    if not out:
        raise ValueError("asm: the .amdgpu_metadata block lists no kernels")
    return out


# ---------------------------------------------------------------------------------------------
# occupancy
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Occupancy:
    """Waves per SIMD a kernel can keep resident, and what limits it.

    Attributes:
        waves_per_simd: min of the per-resource limits below.
        by_vgpr / by_sgpr / by_lds: the limit each resource alone imposes.
        limited_by: names of the resources at the minimum ("vgpr", "sgpr", "lds", "max"
            when the hardware slot limit is reached first).
        workgroups_per_cu: resident workgroups per CU at that occupancy.
    """

    waves_per_simd: int
    by_vgpr: int
    by_sgpr: int
    by_lds: int
    limited_by: tuple[str, ...]
    workgroups_per_cu: int


def _sgpr_waves(sgprs: int, max_waves: int) -> int:
    # gfx9 (VOLCANIC_ISLANDS..GFX9) rule from LLVM AMDGPU::IsaInfo::getOccupancyWithNumSGPRs
    if sgprs <= 80:
        w = 10
    elif sgprs <= 88:
        w = 9
    elif sgprs <= 100:
        w = 8
    else:
        w = 7
    return min(w, max_waves)


def occupancy(vgpr_count: int, sgpr_count: int, lds_bytes: int, waves_per_workgroup: int,
              limits: ArchLimits) -> Occupancy:
    """Occupancy (waves per SIMD) of a kernel on ``limits``' arch.

    Args:
        vgpr_count: unified VGPRs per lane (``.vgpr_count``: arch VGPRs + AGPRs).
        sgpr_count: SGPRs per wave (``.sgpr_count``).
        lds_bytes: LDS per workgroup, static + dynamic, bytes.
        waves_per_workgroup: wavefronts per workgroup (Triton's ``num_warps``).
        limits: the arch's :class:`ArchLimits`.

    A workgroup that does not fit the LDS at all gives ``by_lds = 0`` (it cannot launch).
    Raises ValueError for a non-positive ``waves_per_workgroup``.
    """
    if waves_per_workgroup <= 0:
        raise ValueError(f"waves_per_workgroup: expected >= 1, got {waves_per_workgroup}")
    maxw = limits.max_waves_per_simd
    g = limits.vgpr_granule
    rounded = max(g, math.ceil(max(vgpr_count, 1) / g) * g)
    by_vgpr = min(maxw, limits.vgprs_per_lane // rounded)
    by_sgpr = _sgpr_waves(sgpr_count, maxw)

    # LLVM getMaxWorkGroupsPerCU: single-wave workgroups hold no barrier slot
    wg_slots = limits.max_workgroups_per_cu if waves_per_workgroup > 1 else \
        maxw * limits.simds_per_cu
    if lds_bytes > 0:
        lds_alloc = math.ceil(lds_bytes / limits.lds_granule) * limits.lds_granule
        wg_slots = min(wg_slots, limits.lds_bytes // lds_alloc)
    # waves of the resident workgroups spread over the CU's SIMDs
    by_lds = min(maxw, math.ceil(wg_slots * waves_per_workgroup / limits.simds_per_cu))
    waves = min(by_vgpr, by_sgpr, by_lds, maxw)
    limited = tuple(k for k, v in (("vgpr", by_vgpr), ("sgpr", by_sgpr), ("lds", by_lds))
                    if v == waves and v < maxw) or ("max",)
    wgs = (waves * limits.simds_per_cu) // waves_per_workgroup if waves else 0
    return Occupancy(waves, by_vgpr, by_sgpr, by_lds, limited, max(wgs, 1 if waves else 0))


def mfma_kinds(mfma: Mapping[str, int]) -> list[str]:
    """Sorted operand kinds (:func:`mfma_operand_kind`) of the MFMAs in a mnemonic count."""
    return sorted({mfma_operand_kind(m) for m in mfma})
