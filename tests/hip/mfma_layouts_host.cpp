// Exports the tables of hip/mfma_layouts.h for tests/hip/test_mfma_layouts.py (host C++, no GPU).
// Output, one record per line:
//   I <instr> <mnemonic> <m> <n> <k> <elem_bits> <a_regs>
//   A <instr> <lane> <e> <row> <k>      inverse map of the A operand (lane, element) -> A[row][k]
//   B <instr> <lane> <e> <k> <col>      inverse map of the B operand -> B[k][col]
//   FA <instr> <i> <k> <lane> <e>       forward map A[i][k] -> (lane, element)
//   FB <instr> <k> <j> <lane> <e>       forward map B[k][j] -> (lane, element)
//   C <lane> <v> <row> <col>            C/D layout (lane, VGPR) -> C[row][col]
//   FC <i> <j> <lane> <v>               forward C map
//   G <W> <lane> <e> <row> <col>        CLayout<W> (the portable paths' C layout)
#include <stdio.h>

#include "mfma_layouts.h"

using namespace dsa::mfma;

int main() {
  for (int in = 0; in < NUM_INSTR; ++in) {
    const InstrInfo& ii = INSTR[in];
    printf("I %d %s %d %d %d %d %d\n", in, ii.mnemonic, ii.m, ii.n, ii.k, ii.elem_bits, ii.a_regs);
    for (int lane = 0; lane < WAVE; ++lane)
      for (int e = 0; e < k_per_lane(in); ++e) {
        printf("A %d %d %d %d %d\n", in, lane, e, a_row(lane), a_k(in, lane, e));
        printf("B %d %d %d %d %d\n", in, lane, e, b_k(in, lane, e), b_col(lane));
      }
    for (int i = 0; i < ii.m; ++i)
      for (int k = 0; k < ii.k; ++k) printf("FA %d %d %d %d %d\n", in, i, k, a_lane(in, i, k), a_elem(in, i, k));
    for (int k = 0; k < ii.k; ++k)
      for (int j = 0; j < ii.n; ++j) printf("FB %d %d %d %d %d\n", in, k, j, b_lane(in, k, j), b_elem(in, k, j));
  }
  for (int lane = 0; lane < WAVE; ++lane)
    for (int v = 0; v < C_PER_LANE; ++v) printf("C %d %d %d %d\n", lane, v, c_row(lane, v), c_col(lane));
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) printf("FC %d %d %d %d\n", i, j, c_lane(i, j), c_vgpr(i, j));
  for (int lane = 0; lane < 64; ++lane)
    for (int e = 0; e < CLayout<64>::PER_LANE; ++e) printf("G 64 %d %d %d %d\n", lane, e, CLayout<64>::row(lane, e), CLayout<64>::col(lane));
  for (int lane = 0; lane < 32; ++lane)
    for (int e = 0; e < CLayout<32>::PER_LANE; ++e) printf("G 32 %d %d %d %d\n", lane, e, CLayout<32>::row(lane, e), CLayout<32>::col(lane));
  return 0;
}
