// MFMA fragment layouts: which lane of a 64-lane wave holds which A / B / C element, for every
// matrix instruction the rocm-dsa kernels use, plus the instruction wrappers.
//
// Instructions (all "16 x 16 output, one block"):
//   I_F32_16X16X32_FP8_FP8     v_mfma_f32_16x16x32_fp8_fp8        gfx942 (CDNA3; operands read as
//                              e4m3fnuz there), also on gfx950 (OCP e4m3fn there)
//   I_F32_16X16X16_BF16        v_mfma_f32_16x16x16_bf16 (_1k)     gfx942, gfx950
//   I_F32_16X16X32_BF16        v_mfma_f32_16x16x32_bf16           gfx950 (CDNA4)
//   I_F32_16X16X128_F8F6F4     v_mfma_(scale_)f32_16x16x128_f8f6f4 with both formats fp8 (cbsz =
//                              blgp = 0, E8M0 scales 127 = 1.0)   gfx950 (CDNA4)
//
// The layouts (AMD CDNA3/CDNA4 ISA guides, "matrix fused multiply add" operand layout; AMD Matrix
// Instruction Calculator semantics for one-block 16x16 instructions; the CDNA4 16x16x128 operand
// tables of AMD's Composable Kernel MX-MFMA tests), with KL = K / 4 operand elements per lane:
//   A (16 x K, row i, column k):  lane = i + 16 * (k / KL),  element (k % KL) of the lane's
//                                 packed operand register(s), lowest bits first;
//   B (K x 16, row k, column j):  lane = j + 16 * (k / KL),  element (k % KL);
//   C / D (16 x 16 f32, i, j):    lane = j + 16 * (i / 4),   VGPR (i % 4).
// tests/hip/test_mfma_layouts.py checks the tables below against those documented mappings,
// written there as data (not derived from this file).
//
// What the kernels rely on. A and B of one instruction distribute K identically (same KL, same
// lane groups), so a kernel may permute the K order freely as long as it loads A and B with the
// same permutation: the dot products do not change. The indexer and the sparse-MLA kernels do
// that to make every lane's loads contiguous (see each kernel's header). What must be exact is
// the M / N placement (A row = lane % 16, B column = lane % 16) and the C layout, which the
// shared (MFMA and portable) epilogues read through CLayout below.
//
// CLayout<W> generalizes the C layout to a W-lane wave: lane holds column (lane % 16) and rows
// (256 / W) * (lane / 16) + e, e < 256 / W. For W = 64 it IS the MFMA layout (static_assert
// below); the portable path (NVIDIA wave32, the TEST-ONLY wave64 emulation build) computes C
// fragments directly in CLayout<DSA_WAVE_SIZE>, so the epilogue code is the same on every path.
#pragma once

#include "dsa_port.h"

namespace dsa {
namespace mfma {

// ---------------------------------------------------------------------------------------------
// instruction table (host and device; plain constexpr data)
// ---------------------------------------------------------------------------------------------
enum Instr : int {
  I_F32_16X16X32_FP8_FP8 = 0,
  I_F32_16X16X16_BF16 = 1,
  I_F32_16X16X32_BF16 = 2,
  I_F32_16X16X128_F8F6F4 = 3,
  NUM_INSTR = 4,
};

struct InstrInfo {
  const char* mnemonic;  // as the AMDGPU assembler prints it
  const char* archs;     // where it exists
  int m, n, k;           // matrix shape (one block)
  int elem_bits;         // A / B element size
  int a_regs;            // VGPRs holding the A (and B) operand per lane
};

constexpr InstrInfo INSTR[NUM_INSTR] = {
    {"v_mfma_f32_16x16x32_fp8_fp8", "gfx942,gfx950", 16, 16, 32, 8, 2},
    {"v_mfma_f32_16x16x16_bf16", "gfx942,gfx950", 16, 16, 16, 16, 2},
    {"v_mfma_f32_16x16x32_bf16", "gfx950", 16, 16, 32, 16, 4},
    {"v_mfma_f32_16x16x128_f8f6f4", "gfx950", 16, 16, 128, 8, 8},
};

constexpr int WAVE = 64;  // MFMA operates on wave64
constexpr int C_PER_LANE = 4;

// operand elements per lane (K / 4 lane groups)
constexpr int k_per_lane(int instr) { return INSTR[instr].k / 4; }

// forward maps: matrix element -> (lane, element index within the lane)
constexpr int a_lane(int instr, int i, int k) { return i + 16 * (k / k_per_lane(instr)); }
constexpr int a_elem(int instr, int i, int k) { return (void)i, k % k_per_lane(instr); }
constexpr int b_lane(int instr, int k, int j) { return j + 16 * (k / k_per_lane(instr)); }
constexpr int b_elem(int instr, int k, int j) { return (void)j, k % k_per_lane(instr); }
constexpr int c_lane(int i, int j) { return j + 16 * (i / C_PER_LANE); }
constexpr int c_vgpr(int i, int j) { return (void)j, i % C_PER_LANE; }

// inverse maps: (lane, element) -> matrix element (what kernels use to load fragments)
constexpr int a_row(int lane) { return lane % 16; }
constexpr int a_k(int instr, int lane, int e) { return k_per_lane(instr) * (lane / 16) + e; }
constexpr int b_col(int lane) { return lane % 16; }
constexpr int b_k(int instr, int lane, int e) { return k_per_lane(instr) * (lane / 16) + e; }
constexpr int c_row(int lane, int v) { return C_PER_LANE * (lane / 16) + v; }
constexpr int c_col(int lane) { return lane % 16; }

// ---------------------------------------------------------------------------------------------
// C layout shared by the MFMA and the portable paths
// ---------------------------------------------------------------------------------------------
template <int W>
struct CLayout {
  static_assert(W == 32 || W == 64, "wave of 32 or 64 lanes");
  static constexpr int PER_LANE = 256 / W;      // C elements per lane of a 16 x 16 tile
  static constexpr int GROUPS = W / 16;         // lane groups sharing a column
  static constexpr DSA_HOST_DEVICE int row(int lane, int e) { return PER_LANE * (lane / 16) + e; }
  static constexpr DSA_HOST_DEVICE int col(int lane) { return lane % 16; }
};

constexpr bool clayout64_is_mfma() {
  for (int lane = 0; lane < WAVE; ++lane)
    for (int v = 0; v < C_PER_LANE; ++v)
      if (CLayout<64>::row(lane, v) != c_row(lane, v) || CLayout<64>::col(lane) != c_col(lane) ||
          c_lane(c_row(lane, v), c_col(lane)) != lane || c_vgpr(c_row(lane, v), c_col(lane)) != v)
        return false;
  return true;
}
static_assert(clayout64_is_mfma(), "CLayout<64> must equal the MFMA C/D layout");

// ---------------------------------------------------------------------------------------------
// instruction wrappers (device code of gfx942 / gfx950 only)
// ---------------------------------------------------------------------------------------------
#if defined(DSA_HAS_MFMA)
typedef float f32x4 __attribute__((ext_vector_type(4)));
typedef short i16x4 __attribute__((ext_vector_type(4)));
typedef int i32x8 __attribute__((ext_vector_type(8)));

// 16x16x32 FP8: a, b = 8 FP8 bytes per lane (element e in bits 8e..8e+7).
DSA_DEVICE f32x4 mma_16x16x32_fp8(uint64_t a, uint64_t b, f32x4 c) {
  return __builtin_amdgcn_mfma_f32_16x16x32_fp8_fp8((long)a, (long)b, c, 0, 0, 0);
}
// 16x16x16 bf16: a, b = 4 bf16 per lane.
DSA_DEVICE f32x4 mma_16x16x16_bf16(i16x4 a, i16x4 b, f32x4 c) {
  return __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, c, 0, 0, 0);
}
#endif

#if defined(DSA_MFMA_CDNA4)
typedef __bf16 bf16x8 __attribute__((ext_vector_type(8)));
#if __has_builtin(__builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4)
DSA_DEVICE f32x4 mma_16x16x128_fp8(i32x8 a, i32x8 b, f32x4 c) {
  // formats 0 = fp8 (e4m3) for A and B; E8M0 scales 127 = 2^0
  return __builtin_amdgcn_mfma_scale_f32_16x16x128_f8f6f4(a, b, c, 0, 0, 0, 127, 0, 127);
}
DSA_DEVICE f32x4 mma_16x16x32_bf16(bf16x8 a, bf16x8 b, f32x4 c) {
  return __builtin_amdgcn_mfma_f32_16x16x32_bf16(a, b, c, 0, 0, 0);
}
#else
// clang < 20 front end (compile reports: IR made for gfx942, code generated for gfx950 by a newer
// LLVM): call the LLVM intrinsics by name; the newer code generator selects them.
__device__ f32x4 dsa_llvm_mfma_scale_16x16x128_f8f6f4(i32x8, i32x8, f32x4, int, int, int, int, int, int) __asm(
    "llvm.amdgcn.mfma.scale.f32.16x16x128.f8f6f4.v8i32.v8i32");
__device__ f32x4 dsa_llvm_mfma_16x16x32_bf16(bf16x8, bf16x8, f32x4, int, int, int) __asm(
    "llvm.amdgcn.mfma.f32.16x16x32.bf16");
DSA_DEVICE f32x4 mma_16x16x128_fp8(i32x8 a, i32x8 b, f32x4 c) {
  return dsa_llvm_mfma_scale_16x16x128_f8f6f4(a, b, c, 0, 0, 0, 127, 0, 127);
}
DSA_DEVICE f32x4 mma_16x16x32_bf16(bf16x8 a, bf16x8 b, f32x4 c) { return dsa_llvm_mfma_16x16x32_bf16(a, b, c, 0, 0, 0); }
#endif
#endif

}  // namespace mfma
}  // namespace dsa
