// Sparse MLA decode (absorbed 576 / 512 form, one latent KV head) with bf16 MFMA on gfx942 /
// gfx950, over bf16 latent rows or 656-byte FP8 records, split-K over the top-k list with an
// LSE merge.
//
// Contract: rocm_dsa.ops.sparse_mla_decode (FlashMLA flash_mla_with_kvcache sparse decode):
// out[r, h] = softmax_j(sm_scale * q[r, h] . kv[idx[r, j]]) @ kv[idx[r, j], :512] over the valid
// slots (0 <= idx < num_slots; -1 and out-of-range slots are masked anywhere in the row),
// lse[b, h, t] natural log; a row without a valid slot gives out = 0, lse = +inf, never NaN.
//
// Work split. Grid = rows x head blocks (64 heads; H = 16 / 32 use one block of H) x splits,
// 256 threads per workgroup. A split walks its share of the top-k list in tiles of 16 slots:
//   1. the tile's rows are gathered to LDS as bf16 (FP8 records dequantized on the way: byte
//      * its tile's fp32 scale, rope copied), invalid slots as zero rows + a mask; the next
//      tile's global loads are issued into registers before the current tile is computed;
//   2. S^T[key, h] = K . Q^T (K = 576): MFMA A = the LDS rows, B = Q^T held in registers;
//   3. online softmax per head in base 2 (sm_scale * log2 e folded in), masked keys -inf;
//   4. O^T[dv, h] += V^T . P^T: A = V^T read from the LDS rows, B = P^T = the S^T C fragment
//      rounded to bf16 (the S^T C layout IS the P^T B layout: lane = head column, its four
//      C rows = the four k-slots), C = O^T, so rescaling by the head's alpha is lane-local.
// Waves: 16 heads each (head tile); when the workgroup has fewer head tiles than waves (H = 16
// or 32, or wave32), DS = waves / head tiles waves share a head tile: each takes every DS-th
// k-step of step 2 (partial S^T summed through LDS) and every DS-th 16-wide dv tile of step 4.
// LDS (wave64): 16 x 584 bf16 (18.3 KiB) + partial S^T (4 KiB) -> two workgroups per CU within
// gfx942's 64 KiB. Instructions: 16x16x16 bf16 (gfx942: QK 36 + PV 32 per tile and wave at
// DS = 1) / 16x16x32 bf16 for QK on gfx950 (18 per tile).
// K order in step 2: k-slot (g, e) of k-step s <-> dim KS s + KL g + e for both A and B (KS = 16
// or 32, KL = KS / 4), in step 4 <-> key 4 g + e for both: exact whatever the instruction's
// internal k order (hip/mfma_layouts.h).
//
// Shared by every path: grid decode, split ranges, gathering / -1 and bounds masking / FP8
// dequantization into LDS, the partial-S^T reduction, the online softmax on the C layout, the
// final normalization, LSE, stores and the merge kernel. The portable path (NVIDIA through
// nvcc, other targets) computes the same C fragments (mfma::CLayout) with FP32 FMAs from LDS.
#include "dsa_kernels.h"
#include "dsa_port.h"
#include "mfma_layouts.h"

namespace dsa {
namespace {
namespace mla {  // file-local names (both files share one translation unit in tests/hip/emu_host.cpp)

constexpr int D = 576;   // kv_lora_rank + rope
constexpr int DV = 512;  // value width
constexpr int REC = 656; // FP8 record bytes
constexpr int BN = MLA_DECODE_BLOCK_N;
constexpr int BLOCK = MLA_DECODE_BLOCK;
constexpr int W = DSA_WAVE_SIZE;
constexpr int NW = BLOCK / W;              // waves per workgroup
constexpr int ROW = D + 8;                 // LDS row stride, bf16 elements (1168 B)
constexpr int CPR = D / 8;                 // 16-byte chunks (8 bf16) per row: 64 latent + 8 rope
constexpr int CHUNKS = BN * CPR;
constexpr int CPT = (CHUNKS + BLOCK - 1) / BLOCK;  // chunks per thread
constexpr int DV_TILES = DV / 16;
#if defined(DSA_HIP)
constexpr int XCDS = 8;  // MI300X / MI355X: 8 XCDs
#else
constexpr int XCDS = 1;
#endif

using CL = mfma::CLayout<W>;
constexpr int PER = CL::PER_LANE;

#if defined(DSA_MFMA_CDNA4)
constexpr int KS = 32;  // QK k-step: v_mfma_f32_16x16x32_bf16
#else
constexpr int KS = 16;  // v_mfma_f32_16x16x16_bf16, and the portable path
#endif
constexpr int NKS = D / KS;
constexpr int KL = KS / 4;

DSA_DEVICE float bf16f(uint32_t h) { return dsa_bf16_to_f32((uint16_t)h); }

// ---------------------------------------------------------------------------------------------
// tile staging: global -> registers -> LDS (bf16), shared by every path
// ---------------------------------------------------------------------------------------------
struct Stage {
  dsa_u32x4 raw[CPT];
  float scale[CPT];
  bool valid[CPT];
};

template <bool FP8>
DSA_DEVICE void stage_load(Stage& st, const SparseMLADecodeParams& p, const int32_t* idx_row, int key0) {
  const int tid = dsa_thread_id();
#pragma unroll
  for (int c = 0; c < CPT; ++c) {
    const int ch = tid + c * BLOCK;
    st.valid[c] = false;
    st.scale[c] = 1.0f;
    st.raw[c] = dsa_u32x4{{0u, 0u, 0u, 0u}};
    if (ch >= CHUNKS) continue;
    const int row = ch / CPR, part = ch % CPR;
    const int key = key0 + row;
    const int64_t slot = key < p.topk ? (int64_t)idx_row[key] : -1;
    if (slot < 0 || slot >= p.num_slots) continue;
    st.valid[c] = true;
    if (!FP8) {
      st.raw[c] = *reinterpret_cast<const dsa_u32x4*>(static_cast<const uint16_t*>(p.kv) + slot * D + 8 * part);
    } else {
      const uint8_t* rec = static_cast<const uint8_t*>(p.kv) + slot * REC;
      if (part < 64) {
        const dsa_u32x2 v = *reinterpret_cast<const dsa_u32x2*>(rec + 8 * part);
        st.raw[c].x[0] = v.x[0];
        st.raw[c].x[1] = v.x[1];
        st.scale[c] = *reinterpret_cast<const float*>(rec + 512 + 4 * (part / 16));
      } else {
        st.raw[c] = *reinterpret_cast<const dsa_u32x4*>(rec + 528 + 16 * (part - 64));
      }
    }
  }
}

template <bool FP8>
DSA_DEVICE void stage_store(const Stage& st, uint16_t* kv_s, int* tile_valid, bool fnuz) {
  const int tid = dsa_thread_id();
#pragma unroll
  for (int c = 0; c < CPT; ++c) {
    const int ch = tid + c * BLOCK;
    if (ch >= CHUNKS) continue;
    const int row = ch / CPR, part = ch % CPR;
    dsa_u32x4 v = st.raw[c];  // zeros for an invalid slot
    if (FP8 && part < 64 && st.valid[c]) {
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const uint32_t w = st.raw[c].x[k >> 1] >> (16 * (k & 1));
        const float lo = dsa_fp8_decode(w & 0xffu, fnuz) * st.scale[c];
        const float hi = dsa_fp8_decode((w >> 8) & 0xffu, fnuz) * st.scale[c];
        v.x[k] = (uint32_t)dsa_f32_to_bf16(lo) | ((uint32_t)dsa_f32_to_bf16(hi) << 16);
      }
    }
    *reinterpret_cast<dsa_u32x4*>(kv_s + row * ROW + 8 * part) = v;
    if (part == 0) tile_valid[row] = st.valid[c] ? 1 : 0;
  }
}

// ---------------------------------------------------------------------------------------------
// the kernel
// ---------------------------------------------------------------------------------------------
template <int HT, bool FP8>
DSA_GLOBAL void __launch_bounds__(BLOCK) _decode_sparse_mla_kernel(const SparseMLADecodeParams p) {
  static_assert(NW % HT == 0, "head tiles must divide the waves");
  constexpr int DS = NW / HT;             // waves per head tile
  constexpr int HPW = 16 * HT;            // heads per workgroup
  constexpr int NTW = DV_TILES / DS;      // dv tiles per wave
  DSA_SHARED uint16_t kv_s[BN * ROW];
  DSA_SHARED float s_part[DS > 1 ? NW * W * PER : 1];
  DSA_SHARED int tile_valid[BN];

  const int tid = dsa_thread_id();
  const int lane = dsa_lane_id();
  const int wave = tid / W;
  const int ht = wave % HT, ds = wave / HT;
  const int col = CL::col(lane);  // head within the head tile
  const int g = lane / 16;

  const int H = p.heads;
  const int hb_count = H / HPW;
  const int S = p.num_splits;
  const int nblocks = p.rows * hb_count * S;
  const int id = dsa_xcd_block_id(nblocks, XCDS);
  const int split = id % S;
  const int hb = (id / S) % hb_count;
  const int r = id / S / hb_count;
  const int h = hb * HPW + 16 * ht + col;
  const uint16_t* __restrict__ q_h = p.q + ((int64_t)r * H + h) * D;
  const int32_t* __restrict__ idx_row = p.indices + (int64_t)r * p.topk;
  const int tiles_total = (p.topk + BN - 1) / BN;
  const int tps = (tiles_total + S - 1) / S;
  const int t0 = split * tps;
  const int t1 = t0 + tps < tiles_total ? t0 + tps : tiles_total;
  const float scale_log2 = p.sm_scale * DSA_LOG2E;
  const float NEG_INF = dsa_bits_f32(0xff800000u);

#if defined(DSA_HAS_MFMA)
  constexpr int NKW = (NKS + DS - 1) / DS;  // QK k-steps per wave (upper bound)
  // B = Q^T fragments: k-step s = ds + i * DS, lane (head col, dims KS s + KL g + [0, KL))
#if defined(DSA_MFMA_CDNA4)
  mfma::bf16x8 qf[NKW];
#pragma unroll
  for (int i = 0; i < NKW; ++i) {
    const int s = ds + i * DS;
    if (s < NKS) qf[i] = __builtin_bit_cast(mfma::bf16x8, *reinterpret_cast<const dsa_u32x4*>(q_h + KS * s + KL * g));
  }
#else
  mfma::i16x4 qf[NKW];
#pragma unroll
  for (int i = 0; i < NKW; ++i) {
    const int s = ds + i * DS;
    if (s < NKS) qf[i] = *reinterpret_cast<const mfma::i16x4*>(q_h + KS * s + KL * g);
  }
#endif
#endif

  float o[NTW][PER];
#pragma unroll
  for (int t = 0; t < NTW; ++t)
#pragma unroll
    for (int e = 0; e < PER; ++e) o[t][e] = 0.0f;
  float m = NEG_INF, l = 0.0f;

  Stage st;
  if (t0 < t1) {
    stage_load<FP8>(st, p, idx_row, t0 * BN);
    stage_store<FP8>(st, kv_s, tile_valid, p.fnuz != 0);
  }
  dsa_sync();

  for (int tile = t0; tile < t1; ++tile) {
    const bool more = tile + 1 < t1;
    if (more) stage_load<FP8>(st, p, idx_row, (tile + 1) * BN);

    // ---- S^T partial over this wave's k-steps: lane (head col, keys CL::row(lane, e))
    float sc[PER];
#if defined(DSA_HAS_MFMA)
    {
      mfma::f32x4 acc = {0.0f, 0.0f, 0.0f, 0.0f};
      const uint16_t* krow = kv_s + (lane % 16) * ROW + KL * g;
#pragma unroll
      for (int i = 0; i < NKW; ++i) {
        const int s = ds + i * DS;
        if (s < NKS) {
#if defined(DSA_MFMA_CDNA4)
          const mfma::bf16x8 a = __builtin_bit_cast(mfma::bf16x8, *reinterpret_cast<const dsa_u32x4*>(krow + KS * s));
          acc = mfma::mma_16x16x32_bf16(a, qf[i], acc);
#else
          const mfma::i16x4 a = *reinterpret_cast<const mfma::i16x4*>(krow + KS * s);
          acc = mfma::mma_16x16x16_bf16(a, qf[i], acc);
#endif
        }
      }
#pragma unroll
      for (int e = 0; e < PER; ++e) sc[e] = acc[e];
    }
#else
#pragma unroll
    for (int e = 0; e < PER; ++e) sc[e] = 0.0f;
    for (int s = ds; s < NKS; s += DS) {
      float qv[16];
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const dsa_u32x4 w = *reinterpret_cast<const dsa_u32x4*>(q_h + KS * s + 8 * half);
#pragma unroll
        for (int k = 0; k < 8; ++k) qv[8 * half + k] = bf16f(w.x[k >> 1] >> (16 * (k & 1)));
      }
#pragma unroll
      for (int e = 0; e < PER; ++e) {
        const uint16_t* krow = kv_s + CL::row(lane, e) * ROW + KS * s;
        float acc = sc[e];
#pragma unroll
        for (int half = 0; half < 2; ++half) {
          const dsa_u32x4 w = *reinterpret_cast<const dsa_u32x4*>(krow + 8 * half);
#pragma unroll
          for (int k = 0; k < 8; ++k) acc += qv[8 * half + k] * bf16f(w.x[k >> 1] >> (16 * (k & 1)));
        }
        sc[e] = acc;
      }
    }
#endif
    if (DS > 1) {  // sum the partial S^T of the DS waves of this head tile
#pragma unroll
      for (int e = 0; e < PER; ++e) s_part[(wave * W + lane) * PER + e] = sc[e];
      dsa_sync();
#pragma unroll
      for (int e = 0; e < PER; ++e) {
        float v = 0.0f;
#pragma unroll
        for (int d2 = 0; d2 < DS; ++d2) v += s_part[((ht + HT * d2) * W + lane) * PER + e];
        sc[e] = v;
      }
    }

    // ---- mask, online softmax per head (column), base 2
    float pe[PER];
    float mt = NEG_INF;
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      pe[e] = tile_valid[CL::row(lane, e)] ? sc[e] * scale_log2 : NEG_INF;
      mt = pe[e] > mt ? pe[e] : mt;
    }
    mt = dsa_wave_max_xor(mt, 16, W);
    const float m_new = mt > m ? mt : m;
    const float m_use = m_new == NEG_INF ? 0.0f : m_new;
    const float alpha = dsa_exp2f(m - m_use);
    float psum = 0.0f;
#pragma unroll
    for (int e = 0; e < PER; ++e) {
      pe[e] = dsa_exp2f(pe[e] - m_use);
      psum += pe[e];
    }
    l = l * alpha + psum;
    m = m_new;
#pragma unroll
    for (int t = 0; t < NTW; ++t)
#pragma unroll
      for (int e = 0; e < PER; ++e) o[t][e] *= alpha;

    // ---- O^T += V^T . P^T, P in bf16
#if defined(DSA_HAS_MFMA)
    {
      mfma::i16x4 pb;
#pragma unroll
      for (int e = 0; e < 4; ++e) pb[e] = (short)dsa_f32_to_bf16(pe[e]);
      const uint16_t* vcol = kv_s + (4 * g) * ROW + (lane % 16);
#pragma unroll
      for (int t = 0; t < NTW; ++t) {
        const int dvt = ds + t * DS;
        mfma::i16x4 va;
#pragma unroll
        for (int e = 0; e < 4; ++e) va[e] = (short)vcol[e * ROW + 16 * dvt];
        mfma::f32x4 acc = {o[t][0], o[t][1], o[t][2], o[t][3]};
        acc = mfma::mma_16x16x16_bf16(va, pb, acc);
#pragma unroll
        for (int e = 0; e < 4; ++e) o[t][e] = acc[e];
      }
    }
#else
    {
      float pk[16];  // P[head col][key], bf16-rounded, gathered from the lane groups
#pragma unroll
      for (int g2 = 0; g2 < CL::GROUPS; ++g2)
#pragma unroll
        for (int e = 0; e < PER; ++e) {
          const float pr = dsa_bf16_to_f32(dsa_f32_to_bf16(pe[e]));
          pk[CL::row(16 * g2, e)] = dsa_bits_f32(dsa_shfl_idx(dsa_f32_bits(pr), col + 16 * g2));
        }
#pragma unroll
      for (int t = 0; t < NTW; ++t) {
        const int dv0 = 16 * (ds + t * DS) + CL::row(lane, 0);
#pragma unroll
        for (int key = 0; key < 16; ++key) {
          const uint16_t* v = kv_s + key * ROW + dv0;
#pragma unroll
          for (int e = 0; e < PER; ++e) o[t][e] += pk[key] * bf16f(v[e]);
        }
      }
    }
#endif
    dsa_sync();  // every wave is done with kv_s / s_part of this tile
    if (more) {
      stage_store<FP8>(st, kv_s, tile_valid, p.fnuz != 0);
      dsa_sync();
    }
  }

  // ---- finalize: normalize, LSE (natural log), store
  const float l_tot = dsa_wave_sum_xor(l, 16, W);
  const bool any = l_tot > 0.0f;
  const float inv = any ? 1.0f / l_tot : 0.0f;
  const float lse_nat = any ? (m + dsa_log2f(l_tot)) * DSA_LN2 : NEG_INF;
  if (S == 1) {
    uint16_t* out_h = p.out + ((int64_t)r * H + h) * DV;
#pragma unroll
    for (int t = 0; t < NTW; ++t) {
      const int dv0 = 16 * (ds + t * DS) + CL::row(lane, 0);
#pragma unroll
      for (int e = 0; e < PER; e += 2)
        *reinterpret_cast<uint32_t*>(out_h + dv0 + e) =
            (uint32_t)dsa_f32_to_bf16(o[t][e] * inv) | ((uint32_t)dsa_f32_to_bf16(o[t][e + 1] * inv) << 16);
    }
    if (ds == 0 && g == 0) {
      const int b = r / p.s_q, tq = r - b * p.s_q;
      p.lse[((int64_t)b * H + h) * p.s_q + tq] = any ? lse_nat : -NEG_INF;
    }
  } else {
    float* op = p.o_part + (((int64_t)r * S + split) * H + h) * DV;
#pragma unroll
    for (int t = 0; t < NTW; ++t) {
      const int dv0 = 16 * (ds + t * DS) + CL::row(lane, 0);
#pragma unroll
      for (int e = 0; e < PER; e += 4)
        *reinterpret_cast<dsa_f32x4*>(op + dv0 + e) =
            dsa_f32x4{{o[t][e] * inv, o[t][e + 1] * inv, o[t][e + 2] * inv, o[t][e + 3] * inv}};
    }
    if (ds == 0 && g == 0) p.lse_part[((int64_t)r * S + split) * H + h] = lse_nat;
  }
}

// Merge the splits of one (row, head) per wave: lse = log sum_s exp(lse_s), out = sum_s
// exp(lse_s - lse) o_s (o_s normalized per split); no valid split -> out 0, lse +inf.
DSA_GLOBAL void __launch_bounds__(BLOCK) _merge_sparse_mla_kernel(const SparseMLADecodeParams p) {
  constexpr int VPL = DV / W;  // values per lane
  const int lane = dsa_lane_id();
  const int64_t item = (int64_t)dsa_block_id() * NW + dsa_thread_id() / W;
  const int H = p.heads, S = p.num_splits;
  if (item >= (int64_t)p.rows * H) return;  // wave-uniform
  const int r = (int)(item / H), h = (int)(item % H);
  const float NEG_INF = dsa_bits_f32(0xff800000u);
  const float* lp = p.lse_part + (int64_t)r * S * H + h;
  float mx = NEG_INF;
  for (int s = 0; s < S; ++s) mx = lp[(int64_t)s * H] > mx ? lp[(int64_t)s * H] : mx;
  float acc[VPL];
#pragma unroll
  for (int i = 0; i < VPL; ++i) acc[i] = 0.0f;
  float wsum = 0.0f;
  if (mx != NEG_INF) {
    for (int s = 0; s < S; ++s) {
      const float ws = dsa_exp2f((lp[(int64_t)s * H] - mx) * DSA_LOG2E);
      if (ws == 0.0f) continue;  // lane-uniform
      wsum += ws;
      const float* o = p.o_part + (((int64_t)r * S + s) * H + h) * DV + lane * VPL;
#pragma unroll
      for (int i = 0; i < VPL; i += 4) {
        const dsa_f32x4 v = *reinterpret_cast<const dsa_f32x4*>(o + i);
#pragma unroll
        for (int k = 0; k < 4; ++k) acc[i + k] += ws * v.x[k];
      }
    }
  }
  const float inv = wsum > 0.0f ? 1.0f / wsum : 0.0f;
  uint16_t* out_h = p.out + ((int64_t)r * H + h) * DV + lane * VPL;
#pragma unroll
  for (int i = 0; i < VPL; i += 2)
    *reinterpret_cast<uint32_t*>(out_h + i) =
        (uint32_t)dsa_f32_to_bf16(acc[i] * inv) | ((uint32_t)dsa_f32_to_bf16(acc[i + 1] * inv) << 16);
  if (lane == 0) {
    const int b = r / p.s_q, tq = r - b * p.s_q;
    p.lse[((int64_t)b * H + h) * p.s_q + tq] = wsum > 0.0f ? mx + dsa_log2f(wsum) * DSA_LN2 : -NEG_INF;
  }
}

template <int HT>
void launch_main(const SparseMLADecodeParams& p, unsigned grid, dsa_stream_t s) {
  if (p.kv_fp8)
    DSA_LAUNCH((_decode_sparse_mla_kernel<HT, true>), grid, BLOCK, 0, s, p);
  else
    DSA_LAUNCH((_decode_sparse_mla_kernel<HT, false>), grid, BLOCK, 0, s, p);
}

}  // namespace mla
}  // namespace

const char* launch_sparse_mla_decode(const SparseMLADecodeParams& p, void* stream) {
  if (p.rows <= 0 || p.heads <= 0) return nullptr;
  if (!(p.heads == 16 || p.heads == 32 || p.heads % 64 == 0)) return "sparse_mla_decode: heads must be 16, 32 or a multiple of 64";
  if (p.topk < 1) return "sparse_mla_decode: topk must be >= 1";
  using namespace mla;
  const int tiles = (p.topk + BN - 1) / BN;
  if (p.num_splits < 1 || p.num_splits > tiles) return "sparse_mla_decode: num_splits must be in [1, ceil(topk / 16)]";
  if (p.num_splits > 1 && (p.o_part == nullptr || p.lse_part == nullptr))
    return "sparse_mla_decode: o_part / lse_part are required when num_splits > 1";
  if (p.s_q < 1 || p.rows % p.s_q) return "sparse_mla_decode: rows must be a multiple of s_q";
  const int64_t grid = sparse_mla_decode_workgroups(p);
  if (grid > 0x7fffffff) return "sparse_mla_decode: too many workgroups";
  dsa_stream_t s = reinterpret_cast<dsa_stream_t>(stream);
  switch (sparse_mla_heads_per_wg(p.heads)) {
    case 16: launch_main<1>(p, (unsigned)grid, s); break;
    case 32: launch_main<2>(p, (unsigned)grid, s); break;
    default: launch_main<4>(p, (unsigned)grid, s); break;
  }
  dsa_error_t e = dsa_last_error();
  if (e != DSA_SUCCESS) return dsa_error_string(e);
  if (p.num_splits > 1) {
    // one wave per (row, head); sized for the fewest waves per block (wave64), extra waves exit
    const int64_t items = (int64_t)p.rows * p.heads;
    const int64_t grid2 = (items + BLOCK / 64 - 1) / (BLOCK / 64);
    DSA_LAUNCH((mla::_merge_sparse_mla_kernel), (unsigned)grid2, BLOCK, 0, s, p);
    e = dsa_last_error();
    if (e != DSA_SUCCESS) return dsa_error_string(e);
  }
  return nullptr;
}

}  // namespace dsa
