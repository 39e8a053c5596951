// Host-visible interface of the rocm-dsa HIP/CUDA kernels: parameter structs and launchers.
//
// Plain C++ (no vendor headers): included by the kernel sources (compiled by hipcc / nvcc) and
// by the torch binding (dsa_ext.cpp, compiled by the host compiler). Launchers return nullptr on
// success or a static error string. Streams travel as void* (hipStream_t / cudaStream_t).
#pragma once

#include <stdint.h>

namespace dsa {

// ---------------------------------------------------------------------------------------------
// exact per-row top-k (topk.hip)
// ---------------------------------------------------------------------------------------------
// Row r scores columns [lo, hi) of logits[r]; the result holds positions relative to lo.
//   ragged (prefill): lo = clamp(starts[r], 0, cols) (0 when starts == nullptr),
//                     hi = clamp(ends[r], lo, cols);
//   decode / MTP:     lengths != nullptr: b = r / next_n, j = r % next_n, lo = 0,
//                     hi = clamp(lengths[b] - next_n + j + 1, 0, cols).
// With block_table != nullptr the positions are mapped to KV slots:
//   slot = block_table[b * stride_bt + pos / page_size] * page_size + pos % page_size,
//   b = r / next_n (decode) or r (ragged).
struct TopkParams {
  const float* logits;   // f32 [rows, stride_row]
  int64_t stride_row;    // elements between rows
  int32_t rows;
  int32_t cols;
  const int32_t* starts;  // i32 [rows] or nullptr
  const int32_t* ends;    // i32 [rows] (ragged)
  const int32_t* lengths; // i32 [rows / next_n] (decode) or nullptr
  int32_t next_n;         // query rows per request (decode), >= 1
  const int32_t* block_table;  // i32 [*, stride_bt] or nullptr
  int64_t stride_bt;
  int32_t page_size;
  int32_t* out;           // i32 [rows, stride_out]
  int64_t stride_out;
  int32_t k;              // 1 <= k <= TOPK_MAX_K
  int32_t cap;            // candidate buffer entries (power of two >= 16)
  // Split threshold pass (rows with windows longer than cap): `splits` workgroups per row each
  // gather the keys >= the row's sampled threshold of one chunk of the window into
  // split_cand[(r * splits + c) * cap, +cap) and store min(count, cap + 1) (cap + 1 = overflow or
  // no usable threshold) in split_count[r * splits + c]; the row's selection workgroup then takes
  // them when k <= sum <= cap (exact: every key >= the threshold is there) and otherwise runs the
  // exact path. splits <= 1 or split_cand == nullptr: one workgroup per row, no split pass.
  int32_t splits;
  uint64_t* split_cand;   // u64 [rows * splits * cap]
  uint32_t* split_count;  // u32 [rows * splits]
};

constexpr int TOPK_MAX_K = 2048;
constexpr int TOPK_RADIX_BINS = 2048;  // 11-bit digits
constexpr int TOPK_SAMPLES = 4096;     // strided samples for the threshold estimate

// Dynamic LDS / shared-memory bytes the top-k kernel needs for a candidate capacity `cap`.
inline int topk_dynamic_smem_bytes(int cap) {
  return TOPK_RADIX_BINS * 4 + TOPK_MAX_K * 8 + cap * 8;
}

// Static LDS of the kernel is below this bound (scan scratch and a few counters).
constexpr int TOPK_STATIC_SMEM_BOUND = 1024;
constexpr int TOPK_MAX_CAP = 8192;

// Default candidate capacity for a device that allows `max_smem` bytes of LDS / shared memory
// per workgroup: the largest power of two <= TOPK_MAX_CAP that fits (0 if even 16 does not).
// gfx942 (64 KiB) -> 4096; gfx950 (160 KiB), H100/H200 (227 KiB) -> 8192.
inline int topk_default_cap(int max_smem) {
  int cap = TOPK_MAX_CAP;
  while (cap >= 16 && topk_dynamic_smem_bytes(cap) + TOPK_STATIC_SMEM_BOUND > max_smem) cap >>= 1;
  return cap >= 16 ? cap : 0;
}

// LDS / shared memory per workgroup the device allows (opt-in maximum on NVIDIA).
int device_max_smem(int device);

constexpr int TOPK_MAX_SPLITS = 64;

// block: 512 or 1024 threads. Grid = rows (plus rows * splits for the split threshold pass).
const char* launch_topk(const TopkParams& p, int block, void* stream);

// ---------------------------------------------------------------------------------------------
// cache stores (cache_store.hip)
// ---------------------------------------------------------------------------------------------
enum DType : int32_t { DT_F32 = 0, DT_BF16 = 1, DT_F16 = 2 };

// Indexer keys: quantize k[n, 128] (one scale per token) and store at slot_mapping[n]
// (< 0 = skip) into the paged buffer [pages, page_size * 132]: in each page, page_size*128 FP8
// bytes token-major, then page_size fp32 scales.
struct StoreIndexerKParams {
  const void* k;          // [n, 128] of k_dtype
  int32_t k_dtype;
  int64_t stride_k;       // elements between tokens
  int32_t n;
  const void* slots;      // [n] int32 or int64
  int32_t slots_i64;
  uint8_t* buf;
  int64_t num_pages;
  int32_t page_size;
  int32_t fnuz;           // 1: e4m3fnuz (gfx942), 0: OCP e4m3fn
  int32_t ue8m0;          // 1: power-of-two scales
};
const char* launch_store_indexer_k(const StoreIndexerKParams& p, void* stream);

// MLA latents: rows [c_kv 512 | k_rope 64] at slot_mapping[n] (< 0 = skip) into a bf16 cache
// [slots, 576] or 656-byte FP8 records [slots, 656] (512 FP8 | 4 fp32 tile scales | 64 bf16).
struct StoreMLAKVParams {
  const void* c_kv;       // [n, 512] of dtype
  const void* k_rope;     // [n, 64] of dtype
  int32_t dtype;
  int64_t stride_c;       // elements between tokens of c_kv
  int64_t stride_r;       // elements between tokens of k_rope
  int32_t n;
  const void* slots;
  int32_t slots_i64;
  void* buf;
  int64_t num_slots;
  int32_t fp8;            // 1: 656-byte FP8 records, 0: bf16 rows
  int32_t fnuz;
};
const char* launch_store_mla_kv(const StoreMLAKVParams& p, void* stream);

// ---------------------------------------------------------------------------------------------
// paged indexer logits (indexer_mfma.hip)
// ---------------------------------------------------------------------------------------------
// logits[r, s] = k_scale[s] * sum_h weights[r, h] * relu(q[r, h] . k[s]) for keys s <= last(r),
// -inf for the other columns of the row (all max_pages * page_size of them are written), with
// r = b * next_n + j, last(r) = min(context_lens[b] - next_n + j, max_pages * page_size - 1).
// Keys come through the page table: key s of request b is token s % page_size of physical page
// block_table[b, s / page_size]; a physical page outside [0, num_pages) reads as -inf.
// gfx942 / gfx950: FP8 MFMA (operands in the device's native FP8: e4m3fnuz / e4m3fn);
// elsewhere a portable path decoding FP8 with `fnuz`.
struct PagedIndexerParams {
  const uint8_t* q;             // fp8 [B, next_n, H, 128]
  const uint8_t* kv;            // u8 [num_pages, page_size * 132]: page_size*128 FP8 keys, then f32 scales
  const float* weights;         // f32 [B * next_n, H]
  const int32_t* context_lens;  // i32 [B]
  const int32_t* block_table;   // i32 [B, stride_bt]
  int64_t stride_bt;
  float* out;                   // f32 [B * next_n, stride_out], stride_out >= max_pages * page_size
  int64_t stride_out;
  int64_t num_pages;
  int32_t batch;
  int32_t next_n;
  int32_t heads;                // 16, 32 or 64
  int32_t page_size;            // multiple of 16
  int32_t max_pages;
  int32_t pages_per_wg;         // logical pages per workgroup (>= 1)
  int32_t fnuz;                 // portable path: 1 = e4m3fnuz bytes, 0 = e4m3fn
};

constexpr int INDEXER_WAVES = 4;  // waves per workgroup (4 x DSA_WAVE_SIZE threads)

// Workgroups of one launch: rows * ceil(max_pages / pages_per_wg).
inline int64_t paged_indexer_workgroups(const PagedIndexerParams& p) {
  return (int64_t)p.batch * p.next_n * ((p.max_pages + p.pages_per_wg - 1) / p.pages_per_wg);
}
const char* launch_paged_indexer_logits(const PagedIndexerParams& p, void* stream);

// ---------------------------------------------------------------------------------------------
// sparse MLA decode (sparse_mla_decode.hip)
// ---------------------------------------------------------------------------------------------
// For each query row r = b * s_q + t and head h: softmax(sm_scale * q[r, h] . kv[slot]) over the
// slots indices[r, :] (-1 or >= num_slots: masked), times kv[slot, :512]. Split-K: num_splits
// workgroups per (row, head block) each take a contiguous share of the top-k list and write a
// normalized partial output + its LSE; a combine kernel merges them (num_splits == 1 writes the
// result directly). A row with no valid slot: out = 0, lse = +inf.
struct SparseMLADecodeParams {
  const uint16_t* q;      // bf16 [R, H, 576], R = B * s_q
  const void* kv;         // bf16 [num_slots, 576] or u8 [num_slots, 656] (FP8 records)
  int64_t num_slots;
  int32_t kv_fp8;         // 1: 656-byte records
  int32_t fnuz;           // FP8 records in e4m3fnuz
  const int32_t* indices; // i32 [R, topk]
  int32_t topk;
  int32_t rows;           // R
  int32_t s_q;
  int32_t heads;          // 16, 32 or a multiple of 64
  float sm_scale;
  uint16_t* out;          // bf16 [R, H, 512]
  float* lse;             // f32 [B, H, s_q] (natural log)
  int32_t num_splits;     // 1 <= num_splits <= ceil(topk / 16)
  float* o_part;          // f32 [R, num_splits, H, 512] (num_splits > 1)
  float* lse_part;        // f32 [R, num_splits, H]
};

constexpr int MLA_DECODE_BLOCK = 512;  // threads per workgroup of the main kernel
constexpr int MLA_DECODE_BLOCK_N = 16; // slots per tile

// Heads per workgroup of the main kernel (16, 32 or 64).
inline int sparse_mla_heads_per_wg(int heads) { return heads < 64 ? heads : 64; }
// Workgroups of the main kernel.
inline int64_t sparse_mla_decode_workgroups(const SparseMLADecodeParams& p) {
  return (int64_t)p.rows * (p.heads / sparse_mla_heads_per_wg(p.heads)) * p.num_splits;
}
const char* launch_sparse_mla_decode(const SparseMLADecodeParams& p, void* stream);

}  // namespace dsa
