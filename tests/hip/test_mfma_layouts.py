"""The MFMA fragment layouts of hip/mfma_layouts.h against AMD's documented layouts.

The expected mappings below are written from AMD's documentation, as data, independently of the
header:

* AMD Matrix Instruction Calculator (ROCm/amd_matrix_instruction_calculator, ``--register-layout``
  semantics) for one-block 16 x 16 x K MFMAs on a 64-lane wave: A[i][k] sits in lane
  ``i + 16 * (k // KL)``, element ``k % KL`` of the lane's packed operand registers (lowest bits
  first); B[k][j] in lane ``j + 16 * (k // KL)``, element ``k % KL``; C/D[i][j] in lane
  ``j + 16 * (i // 4)``, VGPR ``i % 4``; KL = K / 4 operand elements per lane, which with the
  operand register counts of the CDNA3 / CDNA4 ISA guides (A and B: 2 VGPRs = 8 FP8 for
  16x16x32 FP8, 2 VGPRs = 4 bf16 for 16x16x16 bf16, 4 VGPRs = 8 bf16 for 16x16x32 bf16, 8
  VGPRs = 32 FP8 for 16x16x128 f8f6f4) covers exactly 16 x K elements;
* the literal register tables AMD publishes for the gfx950 16x16x128 f8f6f4 operands and the
  16x16 f32 output in its Composable Kernel MX-MFMA tests (``Reg 0 [0:7]`` of lanes 0-15 /
  16-31 / 32-47 / 48-63 holds K0 / K32 / K64 / K96 ...; output ``Reg0`` holds M0 / M4 / M8 /
  M12 of the four lane groups), transcribed as spot checks.

The header's tables are exported by tests/hip/mfma_layouts_host.cpp, compiled for the host.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from rocm_dsa.hipext import source_dir

_CXX = next((c for c in ("c++", "g++", "clang++-19", "clang++") if shutil.which(c)), None)
pytestmark = pytest.mark.skipif(_CXX is None, reason="no host C++ compiler (c++/g++/clang++) on this machine")

WAVE = 64

# mnemonic -> (M, N, K, operand element bits, operand VGPRs per lane, KL), from the ISA guides
DOCUMENTED = {
    "v_mfma_f32_16x16x32_fp8_fp8": (16, 16, 32, 8, 2, 8),      # CDNA3 (gfx942)
    "v_mfma_f32_16x16x16_bf16": (16, 16, 16, 16, 2, 4),        # CDNA3 (gfx942, the "_1k" bf16 form)
    "v_mfma_f32_16x16x32_bf16": (16, 16, 32, 16, 4, 8),        # CDNA4 (gfx950)
    "v_mfma_f32_16x16x128_f8f6f4": (16, 16, 128, 8, 8, 32),    # CDNA4 (gfx950), FP8 x FP8
}

# literal spot checks: (mnemonic, lane, element) -> (row, k) of A (B is the same with row -> col)
SPOT_A = {
    ("v_mfma_f32_16x16x128_f8f6f4", 0, 0): (0, 0),     # Reg 0 [0:7], thread 0: K0
    ("v_mfma_f32_16x16x128_f8f6f4", 16, 0): (0, 32),   # Reg 0 [0:7], thread 16: K32
    ("v_mfma_f32_16x16x128_f8f6f4", 32, 0): (0, 64),   # thread 32: K64
    ("v_mfma_f32_16x16x128_f8f6f4", 48, 0): (0, 96),   # thread 48: K96
    ("v_mfma_f32_16x16x128_f8f6f4", 63, 31): (15, 127),  # Reg 7 [24:31], thread 63: K127
    ("v_mfma_f32_16x16x128_f8f6f4", 5, 17): (5, 17),   # Reg 4 [8:15], thread 5: K17
    ("v_mfma_f32_16x16x32_fp8_fp8", 0, 7): (0, 7),
    ("v_mfma_f32_16x16x32_fp8_fp8", 16, 0): (0, 8),
    ("v_mfma_f32_16x16x32_fp8_fp8", 63, 7): (15, 31),
    ("v_mfma_f32_16x16x16_bf16", 16, 0): (0, 4),
    ("v_mfma_f32_16x16x16_bf16", 47, 3): (15, 11),
    ("v_mfma_f32_16x16x32_bf16", 33, 5): (1, 21),
}
# (lane, VGPR) -> (row, col) of the 16x16 f32 C/D
SPOT_C = {(0, 0): (0, 0), (16, 0): (4, 0), (32, 0): (8, 0), (48, 0): (12, 0), (0, 3): (3, 0), (63, 3): (15, 15),
          (5, 1): (1, 5), (21, 2): (6, 5)}


def documented_a(mnemonic):
    """{(lane, element): (row, k)} of the A operand, from the calculator rule."""
    m, _, k, _, _, kl = DOCUMENTED[mnemonic]
    return {(i + 16 * (kk // kl), kk % kl): (i, kk) for i in range(m) for kk in range(k)}


def documented_b(mnemonic):
    """{(lane, element): (k, col)} of the B operand."""
    _, n, k, _, _, kl = DOCUMENTED[mnemonic]
    return {(j + 16 * (kk // kl), kk % kl): (kk, j) for kk in range(k) for j in range(n)}


def documented_c():
    return {(j + 16 * (i // 4), i % 4): (i, j) for i in range(16) for j in range(16)}


@pytest.fixture(scope="module")
def header(tmp_path_factory):
    exe = tmp_path_factory.mktemp("layouts") / "mfma_layouts_host"
    src = Path(__file__).with_name("mfma_layouts_host.cpp")
    r = subprocess.run([_CXX, "-O1", "-std=c++17", f"-I{source_dir()}", str(src), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    t = {"I": {}, "A": defaultdict(dict), "B": defaultdict(dict), "FA": defaultdict(dict), "FB": defaultdict(dict),
         "C": {}, "FC": {}, "G": defaultdict(dict)}
    names = {}
    for line in out.splitlines():
        f = line.split()
        tag, v = f[0], f[1:]
        if tag == "I":
            names[int(v[0])] = v[1]
            t["I"][v[1]] = tuple(int(x) for x in v[2:])
        elif tag in ("A", "B", "FA", "FB"):
            ins, a, b_, c, d = (int(x) for x in v)
            t[tag][names[ins]][(a, b_)] = (c, d)
        elif tag in ("C", "FC"):
            a, b_, c, d = (int(x) for x in v)
            t[tag][(a, b_)] = (c, d)
        elif tag == "G":
            w, a, b_, c, d = (int(x) for x in v)
            t["G"][w][(a, b_)] = (c, d)
    return t


def test_every_documented_instruction_is_in_the_header(header):
    assert set(header["I"]) == set(DOCUMENTED)
    for mn, (m, n, k, bits, regs, kl) in DOCUMENTED.items():
        assert header["I"][mn] == (m, n, k, bits, regs)
        # the documented registers hold exactly one 16 x K operand
        assert regs * 32 * WAVE == m * k * bits
        assert kl * bits == regs * 32


@pytest.mark.parametrize("mnemonic", sorted(DOCUMENTED))
def test_operand_layouts_match_the_documentation(header, mnemonic):
    assert dict(header["A"][mnemonic]) == documented_a(mnemonic)
    assert dict(header["B"][mnemonic]) == documented_b(mnemonic)
    # forward maps are the inverses
    assert {v: k for k, v in header["FA"][mnemonic].items()} == documented_a(mnemonic)
    assert {v: k for k, v in header["FB"][mnemonic].items()} == documented_b(mnemonic)


def test_output_layout_matches_the_documentation(header):
    assert header["C"] == documented_c()
    assert {v: k for k, v in header["FC"].items()} == documented_c()
    for key, want in SPOT_C.items():
        assert header["C"][key] == want, key


def test_spot_entries_from_amd_tables(header):
    for (mn, lane, e), want in SPOT_A.items():
        assert header["A"][mn][(lane, e)] == want, (mn, lane, e)
        row, k = want
        assert header["B"][mn][(lane, e)] == (k, row), (mn, lane, e)


def test_a_and_b_share_the_k_distribution(header):
    """What the kernels' K permutations rely on: for every (lane, element), A's k equals B's k."""
    for mn in DOCUMENTED:
        for key, (_, k) in header["A"][mn].items():
            assert header["B"][mn][key][0] == k


def test_portable_c_layout(header):
    """CLayout<64> is the MFMA C layout; CLayout<32> covers the tile once with 8 rows per lane."""
    assert header["G"][64] == documented_c()
    g32 = header["G"][32]
    assert sorted(g32.values()) == [(i, j) for i in range(16) for j in range(16)]
    for (lane, e), (row, col) in g32.items():
        assert col == lane % 16 and row == 8 * (lane // 16) + e
