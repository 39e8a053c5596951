// Cache-store kernels: indexer-key quantize + paged store, MLA latent store (bf16 rows or
// 656-byte FP8 records). Byte layouts: rocm_dsa/cache.py; quantization: rocm_dsa/fp8.py
// (DeepSeek-V3.2 act_quant: amax floored at 1e-4, scale = amax * (1/448) (e4m3fn) or
// amax * (1/224) (e4m3fnuz) in float32, ue8m0 = rounded up to a power of two exactly; values
// divided by the scale, clamped to the format max, rounded to nearest even; fnuz bytes are 0x80
// only for NaN inputs). Every byte equals the reference provider's when rocm_dsa.fp8 uses the
// same scale rule (DeepSeek's: multiply by the reciprocal, exact power-of-two ceiling). Slots are int64 (int32 accepted); byte offsets are 64-bit; slots
// < 0 (padding) and slots past the end of the buffer are skipped.
//
// One wave handles one token (indexer key, bf16 row) or one 128-value tile of a token (FP8
// record): lanes hold 128 / DSA_WAVE_SIZE contiguous values, the tile amax is a wave reduction.
// Grids are sized for the smallest wave count per block (wave64), extra waves exit, so the host
// needs no wave size.
#include "dsa_kernels.h"
#include "dsa_port.h"

namespace dsa {
namespace {

constexpr int STORE_BLOCK = 256;
constexpr int MIN_WAVES_PER_BLOCK = STORE_BLOCK / 64;
constexpr int INDEXER_D = 128;
constexpr int MLA_LATENT = 512;
constexpr int MLA_ROPE = 64;
constexpr int MLA_TILE = 128;
constexpr int MLA_RECORD = 656;

template <int DT>
DSA_DEVICE float load_f32(const void* p, int64_t i) {
  if (DT == DT_F32) return static_cast<const float*>(p)[i];
  if (DT == DT_BF16) return dsa_bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return dsa_f16_to_f32(static_cast<const uint16_t*>(p)[i]);
}

DSA_DEVICE int64_t load_slot(const void* slots, int32_t is_i64, int64_t t) {
  return is_i64 ? static_cast<const int64_t*>(slots)[t] : (int64_t) static_cast<const int32_t*>(slots)[t];
}

// Quantize the VPL values of this lane with the tile scale and store them as FP8 bytes at dst.
template <int VPL>
DSA_DEVICE float quantize_tile_to(const float (&v)[VPL], bool fnuz, bool ue8m0, uint8_t* dst) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < VPL; ++i) amax = dsa_absmax(amax, v[i]);
  amax = dsa_wave_absmax(amax);
  const float scale = dsa_fp8_block_scale(amax, fnuz, ue8m0);
  uint32_t packed = 0;
#pragma unroll
  for (int i = 0; i < VPL; ++i) packed |= (uint32_t)dsa_fp8_saturate(v[i] / scale, fnuz) << (8 * i);
  if (VPL == 4) {
    *reinterpret_cast<uint32_t*>(dst) = packed;
  } else if (VPL == 2) {
    *reinterpret_cast<uint16_t*>(dst) = (uint16_t)packed;
  } else {
#pragma unroll
    for (int i = 0; i < VPL; ++i) dst[i] = (uint8_t)(packed >> (8 * i));
  }
  return scale;
}

template <int DT>
DSA_GLOBAL void __launch_bounds__(STORE_BLOCK) _store_indexer_k_kernel(const StoreIndexerKParams p) {
  constexpr int WPB = STORE_BLOCK / DSA_WAVE_SIZE;
  constexpr int VPL = INDEXER_D / DSA_WAVE_SIZE;
  const int lane = dsa_lane_id();
  const int64_t t = (int64_t)dsa_block_id() * WPB + dsa_thread_id() / DSA_WAVE_SIZE;
  if (t >= p.n) return;  // wave-uniform from here on
  const int64_t slot = load_slot(p.slots, p.slots_i64, t);
  if (slot < 0) return;
  const int64_t page = slot / p.page_size;
  const int64_t off = slot - page * p.page_size;
  if (page >= p.num_pages) return;
  float v[VPL];
  const int64_t src = t * p.stride_k + lane * VPL;
#pragma unroll
  for (int i = 0; i < VPL; ++i) v[i] = load_f32<DT>(p.k, src + i);
  uint8_t* page_base = p.buf + page * (int64_t)p.page_size * (INDEXER_D + 4);
  const float scale = quantize_tile_to<VPL>(v, p.fnuz != 0, p.ue8m0 != 0,
                                            page_base + off * INDEXER_D + lane * VPL);
  if (lane == 0)
    *reinterpret_cast<float*>(page_base + (int64_t)p.page_size * INDEXER_D + off * 4) = scale;
}

// FP8 record: one wave per (token, tile); the wave of tile i also writes rope values
// [16 i, 16 i + 16) as bf16.
template <int DT>
DSA_GLOBAL void __launch_bounds__(STORE_BLOCK) _store_mla_kv_fp8_kernel(const StoreMLAKVParams p) {
  constexpr int WPB = STORE_BLOCK / DSA_WAVE_SIZE;
  constexpr int VPL = MLA_TILE / DSA_WAVE_SIZE;
  constexpr int TILES = MLA_LATENT / MLA_TILE;
  const int lane = dsa_lane_id();
  const int64_t g = (int64_t)dsa_block_id() * WPB + dsa_thread_id() / DSA_WAVE_SIZE;
  const int64_t t = g / TILES;
  const int tile = (int)(g - t * TILES);
  if (t >= p.n) return;
  const int64_t slot = load_slot(p.slots, p.slots_i64, t);
  if (slot < 0 || slot >= p.num_slots) return;
  uint8_t* rec = static_cast<uint8_t*>(p.buf) + slot * MLA_RECORD;
  float v[VPL];
  const int64_t src = t * p.stride_c + tile * MLA_TILE + lane * VPL;
#pragma unroll
  for (int i = 0; i < VPL; ++i) v[i] = load_f32<DT>(p.c_kv, src + i);
  const float scale = quantize_tile_to<VPL>(v, p.fnuz != 0, true, rec + tile * MLA_TILE + lane * VPL);
  if (lane == 0) *reinterpret_cast<float*>(rec + MLA_LATENT + 4 * tile) = scale;
  constexpr int ROPE_PER_TILE = MLA_ROPE / TILES;
  if (lane < ROPE_PER_TILE) {
    const int d = tile * ROPE_PER_TILE + lane;
    const float r = load_f32<DT>(p.k_rope, t * p.stride_r + d);
    *reinterpret_cast<uint16_t*>(rec + MLA_LATENT + 4 * TILES + 2 * d) = dsa_f32_to_bf16(r);
  }
}

// bf16 rows [c_kv | k_rope]: one wave per token, two values per lane step.
template <int DT>
DSA_GLOBAL void __launch_bounds__(STORE_BLOCK) _store_mla_kv_bf16_kernel(const StoreMLAKVParams p) {
  constexpr int WPB = STORE_BLOCK / DSA_WAVE_SIZE;
  constexpr int PAIRS = (MLA_LATENT + MLA_ROPE) / 2;
  const int lane = dsa_lane_id();
  const int64_t t = (int64_t)dsa_block_id() * WPB + dsa_thread_id() / DSA_WAVE_SIZE;
  if (t >= p.n) return;
  const int64_t slot = load_slot(p.slots, p.slots_i64, t);
  if (slot < 0 || slot >= p.num_slots) return;
  uint32_t* row = reinterpret_cast<uint32_t*>(static_cast<uint16_t*>(p.buf) + slot * (MLA_LATENT + MLA_ROPE));
  for (int i = lane; i < PAIRS; i += DSA_WAVE_SIZE) {
    const int d = 2 * i;
    float a, b;
    if (d < MLA_LATENT) {
      a = load_f32<DT>(p.c_kv, t * p.stride_c + d);
      b = load_f32<DT>(p.c_kv, t * p.stride_c + d + 1);
    } else {
      a = load_f32<DT>(p.k_rope, t * p.stride_r + d - MLA_LATENT);
      b = load_f32<DT>(p.k_rope, t * p.stride_r + d + 1 - MLA_LATENT);
    }
    row[i] = (uint32_t)dsa_f32_to_bf16(a) | ((uint32_t)dsa_f32_to_bf16(b) << 16);
  }
}

const char* finish_launch() {
  const dsa_error_t err = dsa_last_error();
  return err == DSA_SUCCESS ? nullptr : dsa_error_string(err);
}

int64_t blocks_for(int64_t items) { return (items + MIN_WAVES_PER_BLOCK - 1) / MIN_WAVES_PER_BLOCK; }

}  // namespace

const char* launch_store_indexer_k(const StoreIndexerKParams& p, void* stream) {
  if (p.n <= 0) return nullptr;
  if (p.page_size < 1) return "store_indexer_k: page_size must be >= 1";
  dsa_stream_t s = reinterpret_cast<dsa_stream_t>(stream);
  const dim3 grid((unsigned)blocks_for(p.n));
  switch (p.k_dtype) {
    case DT_F32: _store_indexer_k_kernel<DT_F32><<<grid, STORE_BLOCK, 0, s>>>(p); break;
    case DT_BF16: _store_indexer_k_kernel<DT_BF16><<<grid, STORE_BLOCK, 0, s>>>(p); break;
    case DT_F16: _store_indexer_k_kernel<DT_F16><<<grid, STORE_BLOCK, 0, s>>>(p); break;
    default: return "store_indexer_k: unsupported k dtype";
  }
  return finish_launch();
}

const char* launch_store_mla_kv(const StoreMLAKVParams& p, void* stream) {
  if (p.n <= 0) return nullptr;
  dsa_stream_t s = reinterpret_cast<dsa_stream_t>(stream);
  if (p.fp8) {
    const dim3 grid((unsigned)blocks_for((int64_t)p.n * (MLA_LATENT / MLA_TILE)));
    switch (p.dtype) {
      case DT_F32: _store_mla_kv_fp8_kernel<DT_F32><<<grid, STORE_BLOCK, 0, s>>>(p); break;
      case DT_BF16: _store_mla_kv_fp8_kernel<DT_BF16><<<grid, STORE_BLOCK, 0, s>>>(p); break;
      case DT_F16: _store_mla_kv_fp8_kernel<DT_F16><<<grid, STORE_BLOCK, 0, s>>>(p); break;
      default: return "store_mla_kv: unsupported dtype";
    }
  } else {
    const dim3 grid((unsigned)blocks_for(p.n));
    switch (p.dtype) {
      case DT_F32: _store_mla_kv_bf16_kernel<DT_F32><<<grid, STORE_BLOCK, 0, s>>>(p); break;
      case DT_BF16: _store_mla_kv_bf16_kernel<DT_BF16><<<grid, STORE_BLOCK, 0, s>>>(p); break;
      case DT_F16: _store_mla_kv_bf16_kernel<DT_F16><<<grid, STORE_BLOCK, 0, s>>>(p); break;
      default: return "store_mla_kv: unsupported dtype";
    }
  }
  return finish_launch();
}

}  // namespace dsa
