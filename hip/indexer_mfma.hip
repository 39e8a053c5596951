// Paged lightning-indexer logits (decode / MTP verification) with FP8 MFMA on gfx942 / gfx950.
//
// Contract: rocm_dsa.ops.indexer_logits_paged (DeepGEMM fp8_paged_mqa_logits with -inf outside
// the visible keys; DeepSeek-V3.2 inference/model.py Indexer):
//   logits[r, s] = k_scale[s] * sum_h weights[r, h] * relu(q[r, h] . k[s])  for s <= last(r),
//   -inf elsewhere in the row; r = b * next_n + j sees keys 0 ... context_lens[b] - next_n + j.
//
// Work split. One workgroup = 4 waves = one query row x `pages_per_wg` logical pages. A wave
// takes 16 keys at a time (one MFMA N tile) and all H heads (H / 16 MFMA M tiles):
//   S[h, key] = q[h, :] . k[key, :]  (K = 128)      -> C fragments in the 16x16 C layout
//   logit[key] = k_scale[key] * sum_h w[h] relu(S)  -> lane-local sum, then across lane groups.
// K order: lane group g (lane / 16) holds bytes [32 g, 32 g + 32) of its q row and of its key
// (two 16-byte loads each); MFMA k-slot (g, e) of k-step s <-> byte 32 g + 8 s + e on gfx942
// (4 x v_mfma_f32_16x16x32_fp8_fp8), 32 g + e on gfx950 (1 x v_mfma_f32_16x16x128_f8f6f4).
// A and B use the same map, so the dot products are exact sums over all 128 bytes whatever the
// instruction's internal k order (hip/mfma_layouts.h). q fragments stay in registers (H / 16 x
// 32 bytes per lane); keys stream from global memory straight into registers: no LDS on the
// MFMA path (tiling fits 64 KiB trivially; occupancy is bounded by VGPRs only).
//
// Shared by every path (MFMA and portable): the grid decode, page-table lookup and its bounds
// check, the causal MTP bound, whole-workgroup and whole-tile -inf fills, k_scale, the weighted
// ReLU epilogue on the C layout (mfma::CLayout), the cross-lane reduction and the masked store.
// Only `tile_scores` differs: MFMA on gfx942 / gfx950, direct FP32 dot products on other
// targets (NVIDIA through nvcc), in the same C layout. DSA_WAVE_SIZE-generic.
#include "dsa_kernels.h"
#include "dsa_port.h"
#include "mfma_layouts.h"

namespace dsa {
namespace {
namespace idx {  // file-local names (both files share one translation unit in tests/hip/emu_host.cpp)

constexpr int IDX_D = 128;
constexpr int IDX_TILE = 16;  // keys per wave step
constexpr int IDX_BLOCK = INDEXER_WAVES * DSA_WAVE_SIZE;

using CL = mfma::CLayout<DSA_WAVE_SIZE>;
constexpr int PER = CL::PER_LANE;

DSA_DEVICE dsa_u32x4 load16(const uint8_t* p) { return *reinterpret_cast<const dsa_u32x4*>(p); }

#if defined(DSA_HAS_MFMA)
// 32 FP8 bytes of one lane: bytes [32 g, 32 g + 32) of a 128-byte row
union Frag32 {
  dsa_u32x4 v[2];
  uint64_t u64[4];
  uint32_t u32[8];
};

DSA_DEVICE Frag32 load_frag32(const uint8_t* row, int g) {
  Frag32 f;
  f.v[0] = load16(row + 32 * g);
  f.v[1] = load16(row + 32 * g + 16);
  return f;
}

// S^T tile: c[t][e] = q[16 t + 4 g + e] . key[lane % 16] for the lane's key row pointer.
template <int HT>
DSA_DEVICE void tile_scores(const Frag32 (&qa)[HT], const uint8_t* key_row, int g, float (&c)[HT][PER]) {
  const Frag32 kb = load_frag32(key_row, g);
#pragma unroll
  for (int t = 0; t < HT; ++t) {
    mfma::f32x4 acc = {0.0f, 0.0f, 0.0f, 0.0f};
#if defined(DSA_MFMA_CDNA4)
    mfma::i32x8 a, b;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      a[i] = (int)qa[t].u32[i];
      b[i] = (int)kb.u32[i];
    }
    acc = mfma::mma_16x16x128_fp8(a, b, acc);
#else
#pragma unroll
    for (int s = 0; s < 4; ++s) acc = mfma::mma_16x16x32_fp8(qa[t].u64[s], kb.u64[s], acc);
#endif
#pragma unroll
    for (int e = 0; e < PER; ++e) c[t][e] = acc[e];
  }
}
#else
// Portable: the WG's q row decoded to f32 in LDS; each lane computes its C elements directly.
constexpr int QS_STRIDE = IDX_D + 4;  // floats per head row in LDS (bank spread)

template <int HT>
DSA_DEVICE void tile_scores(const float* q_s, const uint8_t* key_row, int g, bool fnuz, float (&c)[HT][PER]) {
  const int lane = dsa_lane_id();
#pragma unroll
  for (int t = 0; t < HT; ++t)
#pragma unroll
    for (int e = 0; e < PER; ++e) c[t][e] = 0.0f;
  (void)g;
  for (int dc = 0; dc < IDX_D; dc += 16) {
    const dsa_u32x4 kw = load16(key_row + dc);
    float kf[16];
#pragma unroll
    for (int i = 0; i < 16; ++i) kf[i] = dsa_fp8_decode_finite((kw.x[i >> 2] >> (8 * (i & 3))) & 0xffu, fnuz);
#pragma unroll
    for (int t = 0; t < HT; ++t)
#pragma unroll
      for (int e = 0; e < PER; ++e) {
        const float* qr = q_s + (16 * t + CL::row(lane, e)) * QS_STRIDE + dc;
        float acc = c[t][e];
#pragma unroll
        for (int i = 0; i < 16; ++i) acc += qr[i] * kf[i];
        c[t][e] = acc;
      }
  }
}
#endif

template <int HT>
DSA_GLOBAL void __launch_bounds__(IDX_BLOCK) _paged_indexer_logits_kernel(const PagedIndexerParams p) {
  constexpr int H = 16 * HT;
  constexpr int W = DSA_WAVE_SIZE;
  const int tid = dsa_thread_id();
  const int lane = dsa_lane_id();
  const int wave = tid / W;
  const int n = CL::col(lane);  // key of this lane within a 16-key tile
  const int g = lane / 16;      // lane group

  // ---- grid: (query row, chunk of logical pages)
  const int chunks = (p.max_pages + p.pages_per_wg - 1) / p.pages_per_wg;
  const int64_t wg = dsa_block_id();
  const int chunk = (int)(wg % chunks);
  const int r = (int)(wg / chunks);  // b * next_n + j
  const int b = r / p.next_n;
  const int j = r - b * p.next_n;
  const int ps = p.page_size;
  const int64_t width = (int64_t)p.max_pages * ps;
  int64_t last = (int64_t)p.context_lens[b] - p.next_n + j;  // last visible key (inclusive)
  if (last > width - 1) last = width - 1;
  const int page_end = (chunk + 1) * p.pages_per_wg < p.max_pages ? (chunk + 1) * p.pages_per_wg : p.max_pages;
  const int64_t key_begin = (int64_t)chunk * p.pages_per_wg * ps;
  const int64_t key_end = (int64_t)page_end * ps;
  float* __restrict__ out = p.out + (int64_t)r * p.stride_out;
  const float NEG_INF = dsa_bits_f32(0xff800000u);

  if (key_begin > last) {  // nothing visible in this chunk: -inf fill, 16-byte stores
    const dsa_f32x4 fill = {{NEG_INF, NEG_INF, NEG_INF, NEG_INF}};
    dsa_f32x4* o4 = reinterpret_cast<dsa_f32x4*>(out + key_begin);
    for (int64_t i = tid; i < (key_end - key_begin) / 4; i += IDX_BLOCK) o4[i] = fill;
    return;
  }

  // ---- head weights of this lane's C rows
  float w[HT][PER];
#pragma unroll
  for (int t = 0; t < HT; ++t)
#pragma unroll
    for (int e = 0; e < PER; ++e) w[t][e] = p.weights[(int64_t)r * H + 16 * t + CL::row(lane, e)];

  const uint8_t* q_row = p.q + (int64_t)r * H * IDX_D;
#if defined(DSA_HAS_MFMA)
  Frag32 qa[HT];  // A fragments: head 16 t + lane % 16, bytes [32 g, 32 g + 32)
#pragma unroll
  for (int t = 0; t < HT; ++t) qa[t] = load_frag32(q_row + (16 * t + (lane % 16)) * IDX_D, g);
#else
  DSA_SHARED float q_s[H * QS_STRIDE];
  for (int i = tid; i < H * IDX_D / 4; i += IDX_BLOCK) {
    const uint32_t word = reinterpret_cast<const uint32_t*>(q_row)[i];
    const int h = (4 * i) / IDX_D, d = (4 * i) % IDX_D;
#pragma unroll
    for (int k = 0; k < 4; ++k) q_s[h * QS_STRIDE + d + k] = dsa_fp8_decode_finite((word >> (8 * k)) & 0xffu, p.fnuz != 0);
  }
  dsa_sync();
#endif

  // ---- 16-key tiles, round-robin over the waves (every branch below is wave-uniform)
  const int32_t* bt = p.block_table + (int64_t)b * p.stride_bt;
  const int tiles = (int)((key_end - key_begin) / IDX_TILE);
  for (int tile = wave; tile < tiles; tile += INDEXER_WAVES) {
    const int64_t k0 = key_begin + (int64_t)tile * IDX_TILE;
    const int64_t key = k0 + n;
    int64_t phys = -1;
    if (k0 <= last) phys = bt[k0 / ps];
    if (phys < 0 || phys >= p.num_pages) {  // invisible tile or page outside the cache
      if (g == 0) out[key] = NEG_INF;
      continue;
    }
    const int off = (int)(k0 % ps) + n;
    const uint8_t* page = p.kv + phys * (int64_t)ps * (IDX_D + 4);
    float c[HT][PER];
#if defined(DSA_HAS_MFMA)
    tile_scores<HT>(qa, page + (int64_t)off * IDX_D, g, c);
#else
    tile_scores<HT>(q_s, page + (int64_t)off * IDX_D, g, p.fnuz != 0, c);
#endif
    float acc = 0.0f;
#pragma unroll
    for (int t = 0; t < HT; ++t)
#pragma unroll
      for (int e = 0; e < PER; ++e) acc += w[t][e] * (c[t][e] > 0.0f ? c[t][e] : 0.0f);
    acc = dsa_wave_sum_xor(acc, 16, W);  // sum over the lane groups: all H heads
    const float k_scale = *reinterpret_cast<const float*>(page + (int64_t)ps * IDX_D + (int64_t)off * 4);
    if (g == 0) out[key] = key <= last ? acc * k_scale : NEG_INF;
  }
}

template <int HT>
const char* launch_ht(const PagedIndexerParams& p, int64_t grid, dsa_stream_t s) {
  DSA_LAUNCH((_paged_indexer_logits_kernel<HT>), (unsigned)grid, IDX_BLOCK, 0, s, p);
  return nullptr;
}

}  // namespace idx
}  // namespace

const char* launch_paged_indexer_logits(const PagedIndexerParams& p, void* stream) {
  if (p.batch <= 0 || p.next_n <= 0 || p.max_pages <= 0) return nullptr;
  if (p.page_size < 16 || p.page_size % 16) return "indexer_logits_paged: page_size must be a multiple of 16";
  if (p.pages_per_wg < 1) return "indexer_logits_paged: pages_per_wg must be >= 1";
  if (p.stride_out < (int64_t)p.max_pages * p.page_size || p.stride_out % 4)
    return "indexer_logits_paged: stride_out must be >= max_pages * page_size and a multiple of 4";
  const int64_t grid = paged_indexer_workgroups(p);
  if (grid > 0x7fffffff) return "indexer_logits_paged: too many workgroups (raise pages_per_wg)";
  dsa_stream_t s = reinterpret_cast<dsa_stream_t>(stream);
  const char* err = nullptr;
  switch (p.heads) {
    case 16: err = idx::launch_ht<1>(p, grid, s); break;
    case 32: err = idx::launch_ht<2>(p, grid, s); break;
    case 64: err = idx::launch_ht<4>(p, grid, s); break;
    default: return "indexer_logits_paged: heads must be 16, 32 or 64";
  }
  if (err) return err;
  const dsa_error_t e = dsa_last_error();
  return e == DSA_SUCCESS ? nullptr : dsa_error_string(e);
}

}  // namespace dsa
