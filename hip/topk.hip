// Exact per-row top-k (k <= 2048) by radix selection on order-preserving 32-bit float keys.
//
// Contract (rocm_dsa.ops.topk_indices, DESIGN.md §2.3): the exact set of the k largest
// candidates of the row window, ties toward the lower column, -1 only after the valid prefix.
// Order inside the valid prefix (provider-defined, deterministic): column ascending. Candidates:
// columns whose logit is neither NaN nor -inf; +inf ranks above every finite value; -0.0 ranks
// equal to +0.0.
//
// One workgroup per row. Keys: f32 bits mapped so that unsigned order = float order; key 0 is
// reserved for "not a candidate" (NaN, -inf). Candidates are handled as 64-bit composites
// (key << 32 | ~column): all distinct, larger composite = larger value or, for equal values,
// the lower column, so a radix selection on composites resolves ties toward lower columns.
// Paths (n = window length, cap = LDS candidate capacity):
//   1. n <= k: gather every candidate.
//   2. n <= cap: gather every candidate to LDS in one pass, radix-select the k largest there.
//   3. otherwise, sampled threshold: T = the m-th largest key of S strided samples (radix
//      selected in LDS); one pass gathers keys >= T to LDS. When k <= count <= cap the k largest
//      are all among them (exact), selected in LDS (radix digits taken relative to the smallest
//      gathered key). m is chosen so that the expected count is (k + cap) / 2; a count outside
//      [k, cap] is detected and falls back to:
//   4. exact path: radix-select an 11-bit digit at a time over the row in global memory
//      (histogram in LDS) until the bin holding the k-th largest key either
//        a. holds exactly the remaining count      -> take keys >= that prefix (no ties left),
//        b. fits the LDS candidate buffer (cap)    -> gather it to LDS and finish there,
//        c. is a single exact key (all 32 bits)    -> take keys above it, then the lowest-column
//                                                     ties by an ordered block scan.
//      Bin counts are exact before any gather, so the bounded LDS buffer never overflows
//      silently: a bin larger than cap takes path (c), never a truncated buffer.
//   5. write the <= k selected positions in column-ascending order (bucket ranks, no sort; see
//      write_by_column) with the optional page-table mapping to KV slots, pad with -1.
// Rows with windows longer than cap may first run the split threshold pass (several workgroups
// per row gather path 3's candidates of one chunk each; see _split_threshold_topk_kernel).
// Wave-level code uses dsa_port.h primitives only, so it is correct for wave64 and wave32.
#include "block_ops.cuh"
#include "dsa_kernels.h"
#include "dsa_port.h"

namespace dsa {
namespace {

constexpr int DIGIT_BITS = 11;
constexpr uint32_t NO_BIN = 0xffffffffu;

struct alignas(16) F32x4 {
  float v[4];
};

// Order-preserving key: larger float -> larger unsigned key; 0 = not a candidate.
DSA_DEVICE uint32_t topk_key(float x) {
  uint32_t u = dsa_f32_bits(x);
  if ((u & 0x7fffffffu) == 0u) u = 0u;  // -0.0 ranks equal to +0.0
  if ((u & 0x7fffffffu) > 0x7f800000u || u == 0xff800000u) return 0u;  // NaN, -inf
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

DSA_DEVICE uint64_t composite(uint32_t key, int col) {
  return ((uint64_t)key << 32) | (uint64_t)(~(uint32_t)col);
}

template <int BLOCK>
struct TopkShared {
  BlockScanScratch<BLOCK> scan;
  BlockReduceScratch<BLOCK> red;
  uint32_t split_off[TOPK_MAX_SPLITS + 1];  // slice counts of the split pass
  // output row, page-table row, position offset: parked here during the selection (kept out of
  // registers: the selection paths need them all on AMD)
  int32_t* out;
  const int32_t* bt;
  int64_t pos_offset;
  int32_t page_size;
  uint32_t bin;        // bin holding the k_rem-th largest
  uint32_t above;      // count in the bins above it
  uint32_t bin_count;  // count in that bin
  uint32_t total;      // histogram total
  uint32_t sel_count;  // entries in sel[]
  uint32_t cand_count; // entries in cand[]
  uint32_t taken;      // ties taken so far (ordered path)
};

// Find the bin with (count in bins above) < k_rem <= (count in bins above) + count(bin).
// Leaves sh.total = sum of the histogram; sh.bin/above/bin_count are valid only if
// sh.total >= k_rem. Ends with a barrier.
template <int BLOCK>
DSA_DEVICE void find_bin(const uint32_t* hist, int nbins, uint32_t k_rem, TopkShared<BLOCK>& sh) {
  const int tid = dsa_thread_id();
  const int per = (nbins + BLOCK - 1) / BLOCK;
  const int b0 = tid * per;
  const int b1 = b0 + per < nbins ? b0 + per : nbins;
  uint32_t sum = 0;
  for (int b = b0; b < b1; ++b) sum += hist[b];
  uint32_t total;
  const uint32_t before = block_exclusive_sum<BLOCK>(sum, &total, sh.scan);
  uint32_t acc = total - before - sum;  // count in bins above this thread's range
  for (int b = b1 - 1; b >= b0; --b) {
    const uint32_t h = hist[b];
    if (acc < k_rem && acc + h >= k_rem) {
      sh.bin = (uint32_t)b;
      sh.above = acc;
      sh.bin_count = h;
    }
    acc += h;
  }
  if (tid == 0) sh.total = total;
  dsa_sync();
}

// Visit the row x[0, n): `edge(value, i)` for the unaligned head and the tail (some threads
// only: no wave operations there), `body(F32x4, i0, valid)` for aligned groups of 4 (called by
// every thread of the block the same number of times: wave operations allowed).
template <int BLOCK, int UNROLL, typename Body, typename Edge>
DSA_DEVICE void scan_row(const float* __restrict__ x, int n, Body&& body, Edge&& edge) {
  const int tid = dsa_thread_id();
  int head = (int)(((16u - ((uint32_t)(uintptr_t)x & 15u)) & 15u) >> 2);
  if (head > n) head = n;
  if (tid < head) edge(x[tid], tid);
  const int nvec = (n - head) >> 2;
  const F32x4* __restrict__ xv = reinterpret_cast<const F32x4*>(x + head);
  for (int base = 0; base < nvec; base += BLOCK * UNROLL) {
    F32x4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int j = base + u * BLOCK + tid;
      if (j < nvec) v[u] = xv[j];
    }
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int j = base + u * BLOCK + tid;
      body(v[u], head + 4 * j, j < nvec);
    }
  }
  const int t0 = head + 4 * nvec;
  if (t0 + tid < n) edge(x[t0 + tid], t0 + tid);
}

// Histogram of the next `digit` bits of the keys whose top `pbits` bits equal `prefix`.
template <int BLOCK>
DSA_DEVICE void histogram_pass(const float* __restrict__ x, int n, uint32_t prefix, int pbits, int digit,
                               uint32_t* hist) {
  const uint32_t mask = (1u << digit) - 1u;
  const int shift = 32 - pbits - digit;
  auto bin_of = [&](float v) -> uint32_t {
    const uint32_t key = topk_key(v);
    if (key == 0u) return NO_BIN;
    if (pbits > 0 && (key >> (32 - pbits)) != prefix) return NO_BIN;
    return (key >> shift) & mask;
  };
  auto edge = [&](float v, int) {
    const uint32_t b = bin_of(v);
    if (b != NO_BIN) dsa_atomic_add_shared(&hist[b], 1u);
  };
  auto body = [&](const F32x4& v, int, bool valid) {
    uint32_t b[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) b[j] = valid ? bin_of(v.v[j]) : NO_BIN;
    const bool same = b[0] == b[1] && b[1] == b[2] && b[2] == b[3];
    // whole wave on one bin (rows of equal values): one atomic per wave
    const uint32_t lead = dsa_shfl_idx(b[0], 0);
    const bool uniform = dsa_ballot(same && b[0] == lead) == ~(dsa_lanemask_t)0;
    if (uniform) {
      if (lead != NO_BIN && dsa_lane_id() == 0) dsa_atomic_add_shared(&hist[lead], 4u * DSA_WAVE_SIZE);
    } else if (same) {
      if (b[0] != NO_BIN) dsa_atomic_add_shared(&hist[b[0]], 4u);
    } else {
#pragma unroll
      for (int j = 0; j < 4; ++j)
        if (b[j] != NO_BIN) dsa_atomic_add_shared(&hist[b[j]], 1u);
    }
  };
  scan_row<BLOCK, 4>(x, n, body, edge);
}

// Gather keys whose top `pbits` bits are > prefix into sel[], == prefix into cand[] (or into
// sel[] when eq_to_sel). pbits == 0 makes every candidate "== prefix".
template <int BLOCK>
DSA_DEVICE void gather_pass(const float* __restrict__ x, int n, uint32_t prefix, int pbits, bool eq_to_sel,
                            uint64_t* sel, uint64_t* cand, uint32_t cap, TopkShared<BLOCK>& sh) {
  // 0: skip, 1: sel, 2: cand
  auto cls = [&](uint32_t key) -> int {
    if (key == 0u) return 0;
    const uint32_t top = pbits > 0 ? key >> (32 - pbits) : 0u;
    if (top > prefix) return 1;
    if (top == prefix) return eq_to_sel ? 1 : 2;
    return 0;
  };
  auto edge = [&](float v, int i) {
    const uint32_t key = topk_key(v);
    const int c = cls(key);
    if (c == 1) {
      const uint32_t pos = dsa_atomic_add_shared(&sh.sel_count, 1u);
      if (pos < (uint32_t)TOPK_MAX_K) sel[pos] = composite(key, i);
    } else if (c == 2) {
      const uint32_t pos = dsa_atomic_add_shared(&sh.cand_count, 1u);
      if (pos < cap) cand[pos] = composite(key, i);
    }
  };
  auto body = [&](const F32x4& v, int i0, bool valid) {
    uint32_t key[4];
    int c[4];
    bool any = false;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      key[j] = valid ? topk_key(v.v[j]) : 0u;
      c[j] = cls(key[j]);
      any |= c[j] != 0;
    }
    if (dsa_ballot(any) == 0) return;  // wave-uniform: nothing to keep here
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t ps = dsa_wave_append(&sh.sel_count, c[j] == 1);
      if (c[j] == 1 && ps < (uint32_t)TOPK_MAX_K) sel[ps] = composite(key[j], i0 + j);
      const uint32_t pc = dsa_wave_append(&sh.cand_count, c[j] == 2);
      if (c[j] == 2 && pc < cap) cand[pc] = composite(key[j], i0 + j);
    }
  };
  scan_row<BLOCK, 4>(x, n, body, edge);
}

// Exact threshold key T known, bin too large for LDS: keys > T go to sel[] (there are
// n_gt = k - k_rem of them), then the k_rem ties with the lowest columns, found by an ordered
// block scan over tiles of the row, go to sel[n_gt ...].
template <int BLOCK>
DSA_DEVICE void gather_ties_pass(const float* __restrict__ x, int n, uint32_t T, uint32_t n_gt, uint32_t k_rem,
                                 uint64_t* sel, TopkShared<BLOCK>& sh) {
  const int tid = dsa_thread_id();
  constexpr int TILE = BLOCK * 4;
  for (int tile = 0; tile < n; tile += TILE) {
    uint32_t key[4];
    const int i0 = tile + 4 * tid;
#pragma unroll
    for (int j = 0; j < 4; ++j) key[j] = (i0 + j < n) ? topk_key(x[i0 + j]) : 0u;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const bool gt = key[j] > T;
      const uint32_t pos = dsa_wave_append(&sh.sel_count, gt);
      if (gt && pos < n_gt) sel[pos] = composite(key[j], i0 + j);
    }
    const uint32_t taken = sh.taken;  // block-uniform
    if (taken < k_rem) {
      uint32_t cnt = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) cnt += key[j] == T ? 1u : 0u;
      uint32_t tot;
      uint32_t rank = taken + block_exclusive_sum<BLOCK>(cnt, &tot, sh.scan);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        if (key[j] == T) {
          if (rank < k_rem) sel[n_gt + rank] = composite(key[j], i0 + j);
          ++rank;
        }
      }
      dsa_sync();
      if (tid == 0) sh.taken = taken + tot;
      dsa_sync();
    }
  }
}

// Float whose topk_key is `key` (key > 0): the inverse of the key mapping.
DSA_DEVICE float key_to_float(uint32_t key) {
  return dsa_bits_f32((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// Gather every column whose key is >= T (T > 0, so never NaN / -inf) into cand[] (the count may
// exceed cap: entries past cap are dropped and the caller falls back). For non-NaN floats
// v >= float(T) is exactly key(v) >= T (-0.0 == +0.0 on both sides), so the hot loop compares
// floats and computes keys only for the few kept values. One append per wave and tile of
// UNROLL vectors per thread: a wave prefix sum of the per-lane counts and one LDS atomic,
// instead of a ballot and an atomic per value slot.
template <int BLOCK, int UNROLL = 4>
DSA_DEVICE void filter_pass(const float* __restrict__ x, int n, uint32_t T, uint64_t* cand, uint32_t cap,
                            TopkShared<BLOCK>& sh, int col0 = 0) {
  const float tf = key_to_float(T);
  const int tid = dsa_thread_id();
  auto edge = [&](float v, int i) {
    if (v >= tf) {
      const uint32_t pos = dsa_atomic_add_shared(&sh.cand_count, 1u);
      if (pos < cap) cand[pos] = composite(topk_key(v), col0 + i);
    }
  };
  int head = (int)(((16u - ((uint32_t)(uintptr_t)x & 15u)) & 15u) >> 2);
  if (head > n) head = n;
  if (tid < head) edge(x[tid], tid);
  const int nvec = (n - head) >> 2;
  const F32x4* __restrict__ xv = reinterpret_cast<const F32x4*>(x + head);
  for (int base = 0; base < nvec; base += BLOCK * UNROLL) {
    F32x4 v[UNROLL];
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int j = base + u * BLOCK + tid;
      if (j < nvec) v[u] = xv[j];
    }
    uint32_t cnt = 0;
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const bool valid = base + u * BLOCK + tid < nvec;
#pragma unroll
      for (int q = 0; q < 4; ++q) cnt += (valid && v[u].v[q] >= tf) ? 1u : 0u;
    }
    if (dsa_ballot(cnt != 0u) == 0) continue;  // wave-uniform
    const uint32_t incl = wave_inclusive_sum(cnt);
    const uint32_t wtot = dsa_shfl_idx(incl, DSA_WAVE_SIZE - 1);
    uint32_t wbase = 0;
    if (dsa_lane_id() == DSA_WAVE_SIZE - 1) wbase = dsa_atomic_add_shared(&sh.cand_count, wtot);
    uint32_t pos = dsa_shfl_idx(wbase, DSA_WAVE_SIZE - 1) + incl - cnt;
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int j = base + u * BLOCK + tid;
      const bool valid = j < nvec;
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        if (valid && v[u].v[q] >= tf) {
          if (pos < cap) cand[pos] = composite(topk_key(v[u].v[q]), col0 + head + 4 * j + q);
          ++pos;
        }
      }
    }
  }
  const int t0 = head + 4 * nvec;
  if (t0 + tid < n) edge(x[t0 + tid], t0 + tid);
}

DSA_DEVICE bool has_prefix(uint64_t c, uint64_t cpre, int cbits) {
  return cbits == 0 || (c >> (64 - cbits)) == cpre;
}
DSA_DEVICE bool at_or_above(uint64_t c, uint64_t cpre, int cbits) {
  return cbits == 0 || (c >> (64 - cbits)) >= cpre;
}

// Radix selection in LDS over the cn distinct composites cand[0, cn), taken relative to base
// (c - base; every c >= base, see candidate_range; base = 0: the composites themselves):
// extends (cpre, cbits) digit by digit until exactly k_rem of the composites carrying the prefix
// are at or above it. Needs 1 <= k_rem <= (composites carrying the prefix); always terminates
// because composites are distinct. Every thread gets the same (cpre, cbits, k_rem); ends with a
// barrier.
template <int BLOCK>
DSA_DEVICE void lds_threshold(const uint64_t* cand, int cn, uint64_t base, uint32_t& k_rem, uint64_t& cpre, int& cbits,
                              uint32_t* hist, TopkShared<BLOCK>& sh) {
  const int tid = dsa_thread_id();
  for (;;) {
    const int digit = 64 - cbits < DIGIT_BITS ? 64 - cbits : DIGIT_BITS;
    const uint64_t mask = (1ull << digit) - 1ull;
    for (int i = tid; i < (1 << digit); i += BLOCK) hist[i] = 0u;
    dsa_sync();
    for (int i = tid; i < cn; i += BLOCK) {
      const uint64_t c = cand[i] - base;
      if (has_prefix(c, cpre, cbits))
        dsa_atomic_add_shared(&hist[(uint32_t)((c >> (64 - cbits - digit)) & mask)], 1u);
    }
    dsa_sync();
    find_bin<BLOCK>(hist, 1 << digit, k_rem, sh);
    cpre = (cpre << digit) | sh.bin;
    cbits += digit;
    k_rem -= sh.above;
    const uint32_t cnt = sh.bin_count;
    dsa_sync();
    if (cnt == k_rem) return;
  }
}

// Append the composites of cand[0, cn) at or above the prefix (relative to base) to sel[].
template <int BLOCK>
DSA_DEVICE void lds_take(const uint64_t* cand, int cn, uint64_t base, uint64_t cpre, int cbits, uint64_t* sel,
                         TopkShared<BLOCK>& sh) {
  const int tid = dsa_thread_id();
  for (int i0 = 0; i0 < cn; i0 += BLOCK) {
    const int i = i0 + tid;
    const uint64_t c = i < cn ? cand[i] : 0ull;
    const bool take = i < cn && at_or_above(c - base, cpre, cbits);
    const uint32_t pos = dsa_wave_append(&sh.sel_count, take);
    if (take && pos < (uint32_t)TOPK_MAX_K) sel[pos] = c;
  }
}

// Radix start for candidates whose keys span [lo, hi] over the block (the arguments: this
// thread's share; lo = ~0u, hi = 0 for none): base = min key << 32 and cbits = 64 - (bits of
// max composite - base). lds_threshold / lds_take with (base, cpre = 0, cbits) then skip the
// leading bits all candidates share, so the first digit spreads them over many bins (few LDS
// atomics on one address; the keys above a threshold cluster in a handful of top-11-bit bins).
// Contains one barrier.
template <int BLOCK>
DSA_DEVICE void candidate_range(uint32_t lo, uint32_t hi, uint64_t& base, int& cbits, TopkShared<BLOCK>& sh) {
  block_min_max<BLOCK>(lo, hi, sh.red);
  const uint32_t range = hi - lo;
  int bits = 0;
  while (bits < 32 && (range >> bits) != 0u) ++bits;
  base = (uint64_t)lo << 32;
  cbits = 32 - bits;
}

// Write the m selected composites sel[0, m) (any order; distinct columns) to out[0, k) in
// column-ascending order, out[j] = pos_of(column), and -1 from m on. The result depends only on
// the set, so it is deterministic. Bucket ranks instead of a sort: bucket b = (column - min) >> s
// with s the smallest shift giving < TOPK_RADIX_BINS buckets; a histogram, its exclusive scan
// (bucket starts), a scatter of the columns into their buckets (any order inside one), then each
// column's rank = its bucket start + the number of columns of its bucket that are smaller. A
// bucket holds at most 2^s columns (64 for windows of 131072 columns). Overwrites sel[] and hist.
template <int BLOCK, typename PosOf>
DSA_DEVICE void write_by_column(uint64_t* sel, int m, int k, uint32_t* hist, TopkShared<BLOCK>& sh, int32_t* out,
                                PosOf&& pos_of) {
  constexpr int NB = TOPK_RADIX_BINS;
  constexpr int E = TOPK_MAX_K / BLOCK;
  constexpr int PER = NB / BLOCK;
  static_assert(E * BLOCK == TOPK_MAX_K && PER * BLOCK == NB, "block must divide 2048");
  constexpr uint32_t NONE = 0xffffffffu;  // columns are < 2^31
  const int tid = dsa_thread_id();
  if (m > 0) {  // block-uniform
    uint32_t lo = 0xffffffffu, hi = 0u;
    for (int i = tid; i < m; i += BLOCK) {
      const uint32_t c = ~(uint32_t)sel[i];
      lo = c < lo ? c : lo;
      hi = c > hi ? c : hi;
    }
    for (int b = tid; b < NB; b += BLOCK) hist[b] = 0u;
    block_min_max<BLOCK>(lo, hi, sh.red);  // barrier: hist[] cleared
    const uint32_t span = hi - lo;
    int shift = 0;
    while ((span >> shift) >= (uint32_t)NB) ++shift;
    for (int i = tid; i < m; i += BLOCK) dsa_atomic_add_shared(&hist[(~(uint32_t)sel[i] - lo) >> shift], 1u);
    dsa_sync();
    uint32_t cnt[PER];
    uint32_t sum = 0;
#pragma unroll
    for (int q = 0; q < PER; ++q) {
      cnt[q] = hist[tid * PER + q];
      sum += cnt[q];
    }
    uint32_t total;
    uint32_t start = block_exclusive_sum<BLOCK>(sum, &total, sh.scan);
#pragma unroll
    for (int q = 0; q < PER; ++q) {
      hist[tid * PER + q] = start;  // bucket start
      start += cnt[q];
    }
    // the columns go to tmp[], which overlays sel[]: read them all before the barrier
    uint32_t col[E];
#pragma unroll
    for (int e = 0; e < E; ++e) col[e] = tid + e * BLOCK < m ? ~(uint32_t)sel[tid + e * BLOCK] : NONE;
    dsa_sync();
    uint32_t* tmp = reinterpret_cast<uint32_t*>(sel);
#pragma unroll
    for (int e = 0; e < E; ++e) {
      if (col[e] != NONE) tmp[dsa_atomic_add_shared(&hist[(col[e] - lo) >> shift], 1u)] = col[e];
    }
    dsa_sync();
    // hist[b] is now the end of bucket b (= the start of bucket b + 1)
    for (int j = tid; j < m; j += BLOCK) {
      const uint32_t c = tmp[j];
      const uint32_t b = (c - lo) >> shift;
      const uint32_t b0 = b > 0u ? hist[b - 1] : 0u, b1 = hist[b];
      uint32_t rank = b0;
      for (uint32_t q = b0; q < b1; ++q) rank += tmp[q] < c ? 1u : 0u;
      out[rank] = pos_of(c);
    }
  }
  for (int j = m + tid; j < k; j += BLOCK) out[j] = -1;
}

// Window [lo, hi) of row r; b = request (decode) or r; output position = column - lo + pos_offset.
struct RowWindow {
  int b, lo, hi;
  int64_t pos_offset;
};
DSA_DEVICE RowWindow row_window(const TopkParams& p, int r) {
  RowWindow w{r, 0, 0, 0};
  if (p.lengths != nullptr) {
    w.b = r / p.next_n;
    const int j = r - w.b * p.next_n;
    const int64_t last = (int64_t)p.lengths[w.b] - p.next_n + j;  // last visible key (inclusive)
    w.hi = last + 1 < 0 ? 0 : (last + 1 > p.cols ? p.cols : (int)(last + 1));
  } else {
    const int s = p.starts != nullptr ? p.starts[r] : 0;
    w.lo = s < 0 ? 0 : (s > p.cols ? p.cols : s);
    const int e = p.ends[r];
    w.hi = e < w.lo ? w.lo : (e > p.cols ? p.cols : e);
    w.pos_offset = (int64_t)w.lo - (int64_t)s;
  }
  return w;
}

// Sampled threshold of a row window of n > cap keys: T = the m-th largest of S strided samples,
// with m chosen so that count(key >= T) lands between k and cap with high probability (expected
// (k + cap) / 2; relative spread about 1 / sqrt(m) for distinct values). Uses samples[0, S)
// (S = min(TOPK_SAMPLES, cap)) and hist. Returns 0 when the samples reach NaN / -inf (no usable
// threshold). Block-uniform; ends with a barrier. (2048 samples were 0.3 us faster on the H200
// at 64 x 131072 but put T on a plateau of equal values, e.g. rows of 90 % zeros, in about 1 % of
// the rows: exact-path fallbacks.)
template <int BLOCK>
DSA_DEVICE uint32_t sample_threshold(const float* __restrict__ x, int n, int k, uint32_t cap, uint64_t* samples,
                                     uint32_t* hist, TopkShared<BLOCK>& sh) {
  const int tid = dsa_thread_id();
  const int S = TOPK_SAMPLES < (int)cap ? TOPK_SAMPLES : (int)cap;
  const int64_t mm = ((int64_t)S * (k + (int64_t)cap) + 2 * (int64_t)n - 1) / (2 * (int64_t)n);
  uint32_t m = (uint32_t)(mm < 1 ? 1 : (mm > S ? S : mm));
  for (int j = tid; j < S; j += BLOCK) {
    const int i = (int)(((int64_t)j * n) / S);
    samples[j] = composite(topk_key(x[i]), i);
  }
  dsa_sync();
  uint64_t cpre = 0;
  int cbits = 0;
  lds_threshold<BLOCK>(samples, S, 0ull, m, cpre, cbits, hist, sh);
  return (uint32_t)((cpre << (64 - cbits)) >> 32);  // lowest key of the prefix
}

// Split threshold pass: workgroup (r, c) gathers the keys >= the row's sampled threshold T of
// chunk c of the row window (columns relative to the window start, as in the selection kernel)
// into its own bounded slice of split_cand and stores min(count, cap + 1); cap + 1 also when T
// is unusable. Every (r, c) computes the same T (same samples, deterministic selection). Rows
// with n <= cap are left to the selection kernel (it does not read their slices).
template <int BLOCK>
DSA_GLOBAL void __launch_bounds__(BLOCK) _split_threshold_topk_kernel(const TopkParams p) {
  DSA_SHARED TopkShared<BLOCK> sh;
  DSA_DYNAMIC_SHARED(uint64_t, split_dyn_smem);
  uint64_t* samples = split_dyn_smem;                                        // [TOPK_SAMPLES]
  uint32_t* hist = reinterpret_cast<uint32_t*>(samples + TOPK_SAMPLES);      // [TOPK_RADIX_BINS]
  const int tid = dsa_thread_id();
  const int r = dsa_block_id() / p.splits;
  const int c = dsa_block_id() - r * p.splits;
  const uint32_t cap = (uint32_t)p.cap;
  const RowWindow w = row_window(p, r);
  const int n = w.hi - w.lo;
  if (n <= (int)cap) return;  // block-uniform
  const float* __restrict__ x = p.logits + (int64_t)r * p.stride_row + w.lo;
  if (tid == 0) sh.cand_count = 0;
  dsa_sync();
  const uint32_t T = sample_threshold<BLOCK>(x, n, p.k, cap, samples, hist, sh);
  const int64_t slot = (int64_t)r * p.splits + c;
  if (T == 0u) {
    if (tid == 0) p.split_count[slot] = cap + 1u;
    return;
  }
  const int len = (int)(((int64_t)n + p.splits - 1) / p.splits);
  const int c0 = (int)((int64_t)c * len < n ? (int64_t)c * len : n);
  const int c1 = c0 + len < n ? c0 + len : n;
  filter_pass<BLOCK>(x + c0, c1 - c0, T, p.split_cand + slot * cap, cap, sh, c0);
  dsa_sync();
  if (tid == 0) p.split_count[slot] = sh.cand_count < cap + 1u ? sh.cand_count : cap + 1u;
}

template <int BLOCK>
DSA_GLOBAL void __launch_bounds__(BLOCK) _select_topk_kernel(const TopkParams p) {
  DSA_SHARED TopkShared<BLOCK> sh;
  DSA_DYNAMIC_SHARED(uint64_t, topk_dyn_smem);
  uint64_t* sel = topk_dyn_smem;                                    // [TOPK_MAX_K]
  uint64_t* cand = sel + TOPK_MAX_K;                               // [cap]
  uint32_t* hist = reinterpret_cast<uint32_t*>(cand + p.cap);      // [TOPK_RADIX_BINS]

  const int tid = dsa_thread_id();
  const int r = dsa_block_id();
  const int k = p.k;
  const uint32_t cap = (uint32_t)p.cap;

  // ---- row window
  const RowWindow w = row_window(p, r);
  const int lo = w.lo;
  const int n = w.hi - lo;
  const float* __restrict__ x = p.logits + (int64_t)r * p.stride_row + lo;

  if (tid == 0) {
    sh.sel_count = 0;
    sh.cand_count = 0;
    sh.taken = 0;
    sh.out = p.out + (int64_t)r * p.stride_out;
    sh.bt = p.block_table != nullptr ? p.block_table + (int64_t)w.b * p.stride_bt : nullptr;
    sh.pos_offset = w.pos_offset;  // output position = column - lo + pos_offset
    sh.page_size = p.page_size;
  }
  dsa_sync();

  // ---- selection
  bool done = false;
  if (n <= k) {
    gather_pass<BLOCK>(x, n, 0u, 0, true, sel, cand, cap, sh);  // every candidate
    done = true;
  } else if (n <= (int)cap) {
    // the whole window fits the LDS buffer: one pass, then select there
    gather_pass<BLOCK>(x, n, 0u, 0, false, sel, cand, cap, sh);
    dsa_sync();
    const int cn = (int)sh.cand_count;
    uint64_t cpre = 0;
    int cbits = 0;
    uint32_t k_rem = (uint32_t)k;
    if (cn > k) lds_threshold<BLOCK>(cand, cn, 0ull, k_rem, cpre, cbits, hist, sh);
    lds_take<BLOCK>(cand, cn, 0ull, cpre, cbits, sel, sh);
    done = true;
  } else if (p.splits > 1 && p.split_cand != nullptr) {
    // the split pass gathered every key >= the sampled threshold T into bounded slices; exact
    // whenever k <= total <= cap (the k largest are all >= T), else (a slice overflowed, T was
    // unusable, or fewer than k keys >= T): exact path
    const uint32_t* cnt = p.split_count + (int64_t)r * p.splits;
    if (tid < p.splits) sh.split_off[tid] = cnt[tid];  // each <= cap + 1
    dsa_sync();
    uint32_t total = 0;
    for (int c = 0; c < p.splits; ++c) total += sh.split_off[c];  // no wrap
    if (total >= (uint32_t)k && total <= cap) {
      // copy the slices to LDS in slice order, 8 loads in flight per thread; key range on the way
      int c = 0;
      uint32_t acc = 0, klo = 0xffffffffu, khi = 0u;
      for (uint32_t g0 = 0; g0 < total; g0 += 8u * BLOCK) {
        uint64_t v[8];
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const uint32_t g = g0 + (uint32_t)(u * BLOCK + tid);
          if (g < total) {
            while (g >= acc + sh.split_off[c]) acc += sh.split_off[c++];
            v[u] = p.split_cand[((int64_t)r * p.splits + c) * cap + (g - acc)];
          }
        }
#pragma unroll
        for (int u = 0; u < 8; ++u) {
          const uint32_t g = g0 + (uint32_t)(u * BLOCK + tid);
          if (g < total) {
            cand[g] = v[u];
            const uint32_t key = (uint32_t)(v[u] >> 32);
            klo = key < klo ? key : klo;
            khi = key > khi ? key : khi;
          }
        }
      }
      uint32_t k_rem = (uint32_t)k;
      uint64_t base = 0, cpre = 0;
      int cbits = 0;
      candidate_range<BLOCK>(klo, khi, base, cbits, sh);  // its barrier also publishes cand[]
      lds_threshold<BLOCK>(cand, (int)total, base, k_rem, cpre, cbits, hist, sh);
      lds_take<BLOCK>(cand, (int)total, base, cpre, cbits, sel, sh);
      done = true;
    }
  } else {
    // sampled threshold (see sample_threshold). Exact whenever k <= count <= cap: the k largest
    // are all >= T. Otherwise: exact path.
    uint64_t cpre = 0;
    int cbits = 0;
    const uint32_t T = sample_threshold<BLOCK>(x, n, k, cap, cand, hist, sh);
    if (T != 0u) {  // else the samples reach NaN / -inf: few candidates, exact path
      filter_pass<BLOCK>(x, n, T, cand, cap, sh);
      dsa_sync();
      const uint32_t total = sh.cand_count;
      if (total >= (uint32_t)k && total <= cap) {
        uint32_t k_rem = (uint32_t)k;
        uint64_t base = 0;
        uint32_t klo = 0xffffffffu, khi = 0u;
        for (int i = tid; i < (int)total; i += BLOCK) {
          const uint32_t key = (uint32_t)(cand[i] >> 32);
          klo = key < klo ? key : klo;
          khi = key > khi ? key : khi;
        }
        cpre = 0;
        candidate_range<BLOCK>(klo, khi, base, cbits, sh);
        lds_threshold<BLOCK>(cand, (int)total, base, k_rem, cpre, cbits, hist, sh);
        lds_take<BLOCK>(cand, (int)total, base, cpre, cbits, sel, sh);
        done = true;
      }
    }
    if (!done) {
      dsa_sync();
      if (tid == 0) {
        sh.sel_count = 0;
        sh.cand_count = 0;
      }
      dsa_sync();
    }
  }
  if (!done) {
    // exact path: radix select over the row in global memory
    uint32_t prefix = 0, k_rem = (uint32_t)k;
    int pbits = 0;
    // 0: gather keys >= prefix (exact count), 1: LDS candidates, 2: ordered ties, 3: all
    int mode = 0;
    for (;;) {
      const int digit = 32 - pbits < DIGIT_BITS ? 32 - pbits : DIGIT_BITS;
      for (int i = tid; i < (1 << digit); i += BLOCK) hist[i] = 0u;
      dsa_sync();
      histogram_pass<BLOCK>(x, n, prefix, pbits, digit, hist);
      dsa_sync();
      find_bin<BLOCK>(hist, 1 << digit, k_rem, sh);
      if (pbits == 0 && sh.total <= (uint32_t)k) {
        mode = 3;  // no more than k candidates in the row
        break;
      }
      prefix = (prefix << digit) | sh.bin;
      pbits += digit;
      k_rem -= sh.above;
      const uint32_t cnt = sh.bin_count;
      dsa_sync();  // everyone read sh before the next find_bin rewrites it
      if (cnt == k_rem) { mode = 0; break; }
      if (cnt <= cap) { mode = 1; break; }
      if (pbits == 32) { mode = 2; break; }
    }
    if (mode == 3) {
      gather_pass<BLOCK>(x, n, 0u, 0, true, sel, cand, cap, sh);
    } else if (mode == 0) {
      gather_pass<BLOCK>(x, n, prefix, pbits, true, sel, cand, cap, sh);
    } else if (mode == 2) {
      gather_ties_pass<BLOCK>(x, n, prefix, (uint32_t)k - k_rem, k_rem, sel, sh);
      dsa_sync();
      // sel[] holds the k - k_rem larger keys, then the k_rem lowest-column ties
      if (tid == 0) sh.sel_count = (uint32_t)k - k_rem + (sh.taken < k_rem ? sh.taken : k_rem);
    } else {
      gather_pass<BLOCK>(x, n, prefix, pbits, false, sel, cand, cap, sh);
      dsa_sync();
      // resolve the bin's candidates in LDS on (key << 32 | ~column), all distinct
      const int cn = (int)(sh.cand_count < cap ? sh.cand_count : cap);
      uint64_t cpre = prefix;
      int cbits = pbits;
      lds_threshold<BLOCK>(cand, cn, 0ull, k_rem, cpre, cbits, hist, sh);
      lds_take<BLOCK>(cand, cn, 0ull, cpre, cbits, sel, sh);
    }
  }
  dsa_sync();

  // ---- write positions (or KV slots) in column order, -1 after the valid prefix
  const uint32_t sc = sh.sel_count;
  const int m = (int)(sc < (uint32_t)k ? sc : (uint32_t)k);
  const int32_t* bt = sh.bt;
  const int64_t pos_offset = sh.pos_offset;
  const int page_size = sh.page_size;
  write_by_column<BLOCK>(sel, m, k, hist, sh, sh.out, [&](uint32_t col) -> int32_t {
    const int64_t pos = (int64_t)col + pos_offset;
    if (bt == nullptr) return (int32_t)pos;
    return (int32_t)((int64_t)bt[pos / page_size] * page_size + pos % page_size);
  });
}

}  // namespace

int device_max_smem(int device) { return dsa_max_dynamic_smem(device); }

const char* launch_topk(const TopkParams& p, int block, void* stream) {
  if (p.rows <= 0) return nullptr;
  if (p.k < 1 || p.k > TOPK_MAX_K) return "top-k: k must be in [1, 2048]";
  if (p.cap < 16 || (p.cap & (p.cap - 1))) return "top-k: cap must be a power of two >= 16";
  if (p.lengths == nullptr && p.ends == nullptr) return "top-k: ends or lengths is required";
  if (p.lengths != nullptr && p.next_n < 1) return "top-k: next_n must be >= 1";
  if (p.block_table != nullptr && p.page_size < 1) return "top-k: page_size must be >= 1";
#if defined(DSA_EMULATE_WAVE64)
  if (block > DSA_EMU_MAX_BLOCK) return "top-k: the wave64 emulation build runs blocks of <= 512 threads";
#endif
  const bool split = p.splits > 1 && p.split_cand != nullptr;
  if (split && (p.splits > TOPK_MAX_SPLITS || p.split_count == nullptr))
    return "top-k: splits must be <= 64 and split_count is required";
  if (split && (int64_t)p.rows * p.splits > 0x7fffffff) return "top-k: rows * splits must fit int32";
  const int smem = topk_dynamic_smem_bytes(p.cap);
  dsa_stream_t s = reinterpret_cast<dsa_stream_t>(stream);
  if (split) {
    // 1024-thread split workgroups (samples + histogram: 40 KiB of LDS, no opt-in needed)
    constexpr int split_smem = TOPK_SAMPLES * 8 + TOPK_RADIX_BINS * 4;
#if defined(DSA_EMULATE_WAVE64) || defined(DSA_HOST_EMU)
    DSA_LAUNCH((_split_threshold_topk_kernel<512>), p.rows * p.splits, 512, split_smem, s, p);
#else
    DSA_LAUNCH((_split_threshold_topk_kernel<1024>), p.rows * p.splits, 1024, split_smem, s, p);
#endif
    dsa_error_t e0 = dsa_last_error();
    if (e0 != DSA_SUCCESS) return dsa_error_string(e0);
  }
  // raise the dynamic LDS limit once per (kernel, device, size): the attribute call is host work
  // that must stay out of the per-launch path (and out of graph capture)
  static int configured[2][64] = {};
  const int dev = dsa_current_device() & 63;
  dsa_error_t err = DSA_SUCCESS;
  if (block == 1024) {
    if (configured[1][dev] < smem) {
      err = dsa_set_max_dynamic_smem(_select_topk_kernel<1024>, smem);
      if (err == DSA_SUCCESS) configured[1][dev] = smem;
    }
    if (err == DSA_SUCCESS) DSA_LAUNCH((_select_topk_kernel<1024>), p.rows, 1024, smem, s, p);
  } else if (block == 512) {
    if (configured[0][dev] < smem) {
      err = dsa_set_max_dynamic_smem(_select_topk_kernel<512>, smem);
      if (err == DSA_SUCCESS) configured[0][dev] = smem;
    }
    if (err == DSA_SUCCESS) DSA_LAUNCH((_select_topk_kernel<512>), p.rows, 512, smem, s, p);
  } else {
    return "top-k: block must be 512 or 1024";
  }
  if (err != DSA_SUCCESS) return dsa_error_string(err);
  err = dsa_last_error();
  return err == DSA_SUCCESS ? nullptr : dsa_error_string(err);
}

}  // namespace dsa
