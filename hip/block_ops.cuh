// Workgroup-level building blocks written only against dsa_port.h (any DSA_WAVE_SIZE).
#pragma once

#include "dsa_port.h"

namespace dsa {

// Inclusive prefix sum over the wave (every lane must call).
DSA_DEVICE uint32_t wave_inclusive_sum(uint32_t v) {
  const int lane = dsa_lane_id();
#pragma unroll
  for (int d = 1; d < DSA_WAVE_SIZE; d <<= 1) {
    const uint32_t o = dsa_shfl_up(v, d);
    if (lane >= d) v += o;
  }
  return v;
}

// The waves of a BLOCK-thread workgroup; the block scan and min / max combine one word per wave
// within a single wave, so a block may hold at most DSA_WAVE_SIZE waves.
template <int BLOCK>
struct BlockWaves {
  static constexpr int WAVES = BLOCK / DSA_WAVE_SIZE;
  static_assert(BLOCK % DSA_WAVE_SIZE == 0, "block must be a whole number of waves");
  static_assert(WAVES <= DSA_WAVE_SIZE, "the per-wave words are combined by one wave");
  static constexpr int WORDS = WAVES > 0 ? WAVES : 1;  // scratch array size (never zero-sized)
};

// Scratch of the block scan: one word per wave (+1 for the total).
template <int BLOCK>
struct BlockScanScratch : BlockWaves<BLOCK> {
  uint32_t wave_sum[BlockWaves<BLOCK>::WORDS];
  uint32_t total;
};

// Exclusive prefix sum over the block in thread order; *total gets the block sum. Every
// thread must call it. Contains two barriers; the scratch may be reused after the next barrier.
template <int BLOCK>
DSA_DEVICE uint32_t block_exclusive_sum(uint32_t v, uint32_t* total, BlockScanScratch<BLOCK>& s) {
  constexpr int WAVES = BlockScanScratch<BLOCK>::WAVES;
  const int tid = dsa_thread_id();
  const int lane = dsa_lane_id();
  const int wave = tid / DSA_WAVE_SIZE;
  const uint32_t inc = wave_inclusive_sum(v);
  if (lane == DSA_WAVE_SIZE - 1) s.wave_sum[wave] = inc;
  dsa_sync();
  if (wave == 0) {
    const uint32_t w = lane < WAVES ? s.wave_sum[lane] : 0u;
    const uint32_t wi = wave_inclusive_sum(w);
    if (lane < WAVES) s.wave_sum[lane] = wi - w;  // exclusive
    if (lane == WAVES - 1) s.total = wi;
  }
  dsa_sync();
  *total = s.total;
  return s.wave_sum[wave] + inc - v;
}

// Scratch of the block min / max: one word per wave each.
template <int BLOCK>
struct BlockReduceScratch : BlockWaves<BLOCK> {
  uint32_t lo[BlockWaves<BLOCK>::WORDS];
  uint32_t hi[BlockWaves<BLOCK>::WORDS];
};

// Minimum of lo and maximum of hi over the wave (xor butterfly: every lane gets both).
DSA_DEVICE void wave_min_max(uint32_t& lo, uint32_t& hi) {
#pragma unroll
  for (int o = DSA_WAVE_SIZE / 2; o > 0; o >>= 1) {
    const uint32_t a = dsa_shfl_xor(lo, o);
    const uint32_t b = dsa_shfl_xor(hi, o);
    lo = a < lo ? a : lo;
    hi = b > hi ? b : hi;
  }
}

// Minimum of lo and maximum of hi over the block; every thread gets both. Every thread must
// call it. Contains one barrier; the scratch may be reused after the next barrier.
template <int BLOCK>
DSA_DEVICE void block_min_max(uint32_t& lo, uint32_t& hi, BlockReduceScratch<BLOCK>& s) {
  constexpr int WAVES = BlockReduceScratch<BLOCK>::WAVES;
  wave_min_max(lo, hi);
  const int lane = dsa_lane_id();
  if (lane == 0) {
    s.lo[dsa_thread_id() / DSA_WAVE_SIZE] = lo;
    s.hi[dsa_thread_id() / DSA_WAVE_SIZE] = hi;
  }
  dsa_sync();
  lo = lane < WAVES ? s.lo[lane] : 0xffffffffu;  // every wave reduces the wave results itself
  hi = lane < WAVES ? s.hi[lane] : 0u;
  wave_min_max(lo, hi);
}

}  // namespace dsa
