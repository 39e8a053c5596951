// rocm-dsa portability layer: the ONLY place where HIP (AMD) and CUDA (NVIDIA) differ.
//
// Every kernel source under hip/ includes this header and nothing vendor-specific. It provides:
//   * platform detection (DSA_HIP / DSA_CUDA / DSA_HOST_ONLY) and the function qualifiers;
//   * the wavefront size DSA_WAVE_SIZE (64 on CDNA gfx9xx, 32 on RDNA wave32 and NVIDIA) and
//     its lane-mask type dsa_lanemask_t;
//   * thread / block indices, block barrier, wave shuffles, ballots and shared-memory atomics;
//   * exact scalar math for byte-exact kernels (round-to-even, power-of-two ceiling, the
//     DeepSeek block-scale rule), identical on every platform;
//   * FP8 e4m3 encoders (OCP e4m3fn and gfx942's e4m3fnuz), bf16/f16 codecs, written in plain
//     integer/float arithmetic so the bytes are identical on every platform and on the host;
//   * launch / attribute / error helpers for the host-side launchers.
//
// On AMD the device code uses clang builtins only (no ROCm device library calls), so the
// kernels also compile device-only with Debian's clang-19 and -nogpulib for the compile reports.
// Wave-level code must be written against DSA_WAVE_SIZE, never a literal 32 or 64, and shuffles
// / ballots must be called by every lane of the wave (converged code).
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(__HIP__) || defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#define DSA_HIP 1
#include <hip/hip_runtime.h>
#elif defined(__CUDACC__)
#define DSA_CUDA 1
#include <cuda_runtime.h>
#include <string.h>
#else
#define DSA_HOST_ONLY 1  // plain C++: host tests of the scalar codecs below
#include <math.h>
#include <string.h>
#endif

#if defined(DSA_HIP) || defined(DSA_CUDA)
#define DSA_DEVICE __device__ __forceinline__
#define DSA_HOST_DEVICE __host__ __device__ __forceinline__
#define DSA_GLOBAL __global__
#define DSA_SHARED __shared__
#else
#define DSA_DEVICE inline
#define DSA_HOST_DEVICE inline
#endif

// ------------------------------------------------------------------------------------------
// wavefront size and lane masks
// ------------------------------------------------------------------------------------------
#if defined(DSA_HIP)
#if defined(__AMDGCN_WAVEFRONT_SIZE__)
#define DSA_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE__
#elif defined(__AMDGCN_WAVEFRONT_SIZE)
#define DSA_WAVE_SIZE __AMDGCN_WAVEFRONT_SIZE
#else
#define DSA_WAVE_SIZE 64  // host pass: never used by device code
#endif
#elif defined(DSA_EMULATE_WAVE64)
#define DSA_WAVE_SIZE 64  // TEST ONLY on NVIDIA: see "wave64 emulation" below
#else
#define DSA_WAVE_SIZE 32
#endif

#if DSA_WAVE_SIZE == 64
typedef uint64_t dsa_lanemask_t;
#else
typedef uint32_t dsa_lanemask_t;
#endif

// ------------------------------------------------------------------------------------------
// bit casts (host and device)
// ------------------------------------------------------------------------------------------
DSA_HOST_DEVICE uint32_t dsa_f32_bits(float x) {
#if defined(DSA_HIP)
  return __builtin_bit_cast(uint32_t, x);
#elif defined(DSA_CUDA) && defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
#endif
}
DSA_HOST_DEVICE float dsa_bits_f32(uint32_t u) {
#if defined(DSA_HIP)
  return __builtin_bit_cast(float, u);
#elif defined(DSA_CUDA) && defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, 4);
  return x;
#endif
}
DSA_HOST_DEVICE bool dsa_isnan(float x) { return (dsa_f32_bits(x) & 0x7fffffffu) > 0x7f800000u; }

#if defined(DSA_HIP) || defined(DSA_CUDA)
// ------------------------------------------------------------------------------------------
// indices, barrier
// ------------------------------------------------------------------------------------------
#if defined(DSA_HIP)
DSA_DEVICE int dsa_thread_id() { return (int)__builtin_amdgcn_workitem_id_x(); }
DSA_DEVICE int dsa_block_id() { return (int)__builtin_amdgcn_workgroup_id_x(); }
DSA_DEVICE int dsa_lane_id() {
#if DSA_WAVE_SIZE == 64
  return (int)__builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u));
#else
  return (int)__builtin_amdgcn_mbcnt_lo(~0u, 0u);
#endif
}
// Workgroup barrier with LDS visibility (release before, acquire after), as __syncthreads.
DSA_DEVICE void dsa_sync() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}
#else
DSA_DEVICE int dsa_thread_id() { return (int)threadIdx.x; }
DSA_DEVICE int dsa_block_id() { return (int)blockIdx.x; }
DSA_DEVICE int dsa_lane_id() { return (int)(threadIdx.x & (DSA_WAVE_SIZE - 1)); }
DSA_DEVICE void dsa_sync() { __syncthreads(); }
#endif

// ------------------------------------------------------------------------------------------
// wave64 emulation on NVIDIA (TEST ONLY, -DDSA_EMULATE_WAVE64): a "wave" is two warps that
// exchange values through shared memory between named barriers, so the wave64 code paths
// (64-bit lane masks, 2 values per lane in the stores, 64-lane scans) run on an NVIDIA GPU.
// Every wave operation must then be reached by all 64 lanes, as on AMD hardware. Workgroups of
// at most 512 threads (8 waves: named barriers 1..8).
// ------------------------------------------------------------------------------------------
#if defined(DSA_CUDA) && defined(DSA_EMULATE_WAVE64)
#define DSA_SHFL_VIA_IDX 1
#define DSA_EMU_MAX_BLOCK 512
static __shared__ uint32_t dsa_emu_buf[DSA_EMU_MAX_BLOCK];
DSA_DEVICE void dsa_emu_wave_barrier() {
  asm volatile("bar.sync %0, 64;" ::"r"(1 + (int)(threadIdx.x >> 6)) : "memory");
}
#endif

// ------------------------------------------------------------------------------------------
// wave shuffles (all lanes of the wave must call them)
// ------------------------------------------------------------------------------------------
#if defined(DSA_HIP)
#define DSA_SHFL_VIA_IDX 1
DSA_DEVICE uint32_t dsa_shfl_idx(uint32_t v, int src_lane) {
  return (uint32_t)__builtin_amdgcn_ds_bpermute(src_lane << 2, (int)v);
}
#elif defined(DSA_EMULATE_WAVE64)
DSA_DEVICE uint32_t dsa_shfl_idx(uint32_t v, int src_lane) {
  uint32_t* b = dsa_emu_buf + (threadIdx.x & ~63u);
  dsa_emu_wave_barrier();  // earlier readers of b are done
  b[threadIdx.x & 63u] = v;
  dsa_emu_wave_barrier();
  return b[src_lane & 63];
}
#else
DSA_DEVICE uint32_t dsa_shfl_idx(uint32_t v, int src_lane) { return __shfl_sync(0xffffffffu, v, src_lane); }
#endif
// value of lane (lane - delta), own value for lane < delta
DSA_DEVICE uint32_t dsa_shfl_up(uint32_t v, int delta) {
#if defined(DSA_SHFL_VIA_IDX)
  const int lane = dsa_lane_id();
  return dsa_shfl_idx(v, lane >= delta ? lane - delta : lane);
#else
  return __shfl_up_sync(0xffffffffu, v, delta);
#endif
}
DSA_DEVICE uint32_t dsa_shfl_xor(uint32_t v, int mask) {
#if defined(DSA_SHFL_VIA_IDX)
  return dsa_shfl_idx(v, dsa_lane_id() ^ mask);
#else
  return __shfl_xor_sync(0xffffffffu, v, mask);
#endif
}
DSA_DEVICE float dsa_shfl_xor(float v, int mask) {
  return dsa_bits_f32(dsa_shfl_xor(dsa_f32_bits(v), mask));
}

// ------------------------------------------------------------------------------------------
// ballots and lane masks
// ------------------------------------------------------------------------------------------
DSA_DEVICE dsa_lanemask_t dsa_ballot(bool pred) {
#if defined(DSA_HIP)
#if DSA_WAVE_SIZE == 64
  return __builtin_amdgcn_ballot_w64(pred);
#else
  return __builtin_amdgcn_ballot_w32(pred);
#endif
#elif defined(DSA_EMULATE_WAVE64)
  const uint32_t half = __ballot_sync(0xffffffffu, pred);
  uint32_t* b = dsa_emu_buf + (threadIdx.x & ~63u);
  dsa_emu_wave_barrier();
  if ((threadIdx.x & 31u) == 0) b[(threadIdx.x >> 5) & 1u] = half;
  dsa_emu_wave_barrier();
  return (uint64_t)b[0] | ((uint64_t)b[1] << 32);
#else
  return __ballot_sync(0xffffffffu, pred);
#endif
}
DSA_DEVICE int dsa_popc(dsa_lanemask_t m) {
#if defined(DSA_HIP) && DSA_WAVE_SIZE == 64
  return __builtin_popcountll(m);
#elif defined(DSA_HIP)
  return __builtin_popcount(m);
#elif DSA_WAVE_SIZE == 64
  return __popcll(m);
#else
  return __popc(m);
#endif
}
// lowest set lane of a non-zero mask
DSA_DEVICE int dsa_first_lane(dsa_lanemask_t m) {
#if defined(DSA_HIP) && DSA_WAVE_SIZE == 64
  return __builtin_ctzll(m);
#elif defined(DSA_HIP)
  return __builtin_ctz(m);
#elif DSA_WAVE_SIZE == 64
  return __ffsll((long long)m) - 1;
#else
  return __ffs(m) - 1;
#endif
}
// mask of the lanes below the calling lane
DSA_DEVICE dsa_lanemask_t dsa_lanemask_lt() {
  return (((dsa_lanemask_t)1) << dsa_lane_id()) - 1;
}

// ------------------------------------------------------------------------------------------
// shared-memory (LDS) atomics, relaxed, workgroup scope
// ------------------------------------------------------------------------------------------
DSA_DEVICE uint32_t dsa_atomic_add_shared(uint32_t* p, uint32_t v) {
#if defined(DSA_HIP)
  return __hip_atomic_fetch_add(p, v, __ATOMIC_RELAXED, __HIP_MEMORY_SCOPE_WORKGROUP);
#else
  return atomicAdd(p, v);
#endif
}

// Reserve `pred ? 1 : 0` slots of a shared counter for each lane with one atomic per wave.
// Returns the lane's slot index (undefined when !pred). All lanes of the wave must call it.
DSA_DEVICE uint32_t dsa_wave_append(uint32_t* counter, bool pred) {
  const dsa_lanemask_t m = dsa_ballot(pred);
  if (m == 0) return 0;
  const int leader = dsa_first_lane(m);
  uint32_t base = 0;
  if (dsa_lane_id() == leader) base = dsa_atomic_add_shared(counter, (uint32_t)dsa_popc(m));
  base = dsa_shfl_idx(base, leader);
  return base + (uint32_t)dsa_popc(m & dsa_lanemask_lt());
}
#endif  // DSA_HIP || DSA_CUDA


// Round to nearest even (the current rounding mode); no device-library call on AMD.
#if defined(DSA_HIP)
DSA_HOST_DEVICE float dsa_rintf(float x) { return __builtin_rintf(x); }
#elif defined(DSA_CUDA)
DSA_HOST_DEVICE float dsa_rintf(float x) { return rintf(x); }
#else
DSA_HOST_DEVICE float dsa_rintf(float x) { return nearbyintf(x); }
#endif

// ------------------------------------------------------------------------------------------
// 16-bit float codecs (exact; round-to-nearest-even like torch's .to(bfloat16))
// ------------------------------------------------------------------------------------------
DSA_HOST_DEVICE float dsa_bf16_to_f32(uint16_t h) { return dsa_bits_f32(((uint32_t)h) << 16); }
DSA_HOST_DEVICE uint16_t dsa_f32_to_bf16(float x) {
  const uint32_t u = dsa_f32_bits(x);
  if (dsa_isnan(x)) return (uint16_t)((u >> 16) | 0x0040u);  // quiet NaN, sign kept
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
DSA_HOST_DEVICE float dsa_f16_to_f32(uint16_t h) {
  const uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu;
  const uint32_t m = h & 0x3ffu;
  if (e == 0x1f) return dsa_bits_f32(sign | 0x7f800000u | (m << 13));  // inf / NaN
  if (e != 0) return dsa_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
  // zero or subnormal: m * 2^-24 (exact in fp32)
  const float v = (float)m * 5.9604644775390625e-08f;
  return sign ? -v : v;
}

// ------------------------------------------------------------------------------------------
// FP8 e4m3 encoders. fnuz = gfx942's e4m3fnuz (bias 8, max 240, 0x80 = NaN, no -0);
// otherwise OCP e4m3fn (bias 7, max 448, 0x7f/0xff = NaN). Round to nearest even.
// ------------------------------------------------------------------------------------------
DSA_HOST_DEVICE float dsa_fp8_max(bool fnuz) { return fnuz ? 240.0f : 448.0f; }
// the value a block's amax maps to: 448 (e4m3fn) / 224 (e4m3fnuz, headroom below 240)
DSA_HOST_DEVICE float dsa_fp8_quant_max(bool fnuz) { return fnuz ? 224.0f : 448.0f; }

// Encode x (|x| <= the format max, or NaN) as an FP8 byte, exactly as torch's
// `x.to(float8_e4m3fn / float8_e4m3fnuz)` for in-range values. NaN -> 0x7f|sign (fn) or 0x80
// (fnuz); zero and values rounding to zero -> 0x00 in fnuz (no -0 there), sign kept in fn.
DSA_HOST_DEVICE uint8_t dsa_fp8_encode(float x, bool fnuz) {
  const uint32_t u = dsa_f32_bits(x);
  const uint32_t sign = (u >> 24) & 0x80u;
  if (dsa_isnan(x)) return fnuz ? (uint8_t)0x80 : (uint8_t)(0x7fu | sign);
  const uint32_t a = u & 0x7fffffffu;
  const int bias = fnuz ? 8 : 7;
  // smallest normal: 2^(1 - bias); below it the step is 2^(-bias - 2)
  const uint32_t min_normal_bits = (uint32_t)(127 + 1 - bias) << 23;
  uint32_t mag;
  if (a < min_normal_bits) {
    // subnormal range: round |x| / 2^(-bias-2) to an integer 0..8 (8 = the smallest normal)
    const float scaled = dsa_bits_f32(a) * dsa_bits_f32((uint32_t)(127 + bias + 2) << 23);
    mag = (uint32_t)dsa_rintf(scaled);
  } else {
    // normal: keep 3 mantissa bits with round-to-nearest-even, rebias the exponent
    const uint32_t rounded = a + 0x7ffffu + ((a >> 20) & 1u);
    mag = (rounded >> 20) - ((uint32_t)(127 - bias) << 3);
  }
  if (mag == 0 && fnuz) return 0;  // fnuz has no -0
  return (uint8_t)(mag | sign);
}

// Saturating cast of one value: clamp to +-max (NaN stays NaN), encode. Matches
// rocm_dsa.fp8.cast_to_fp8: a non-NaN input never gives the fnuz NaN byte 0x80 (-0 and tiny
// negatives encode as +0); a NaN input stays NaN (0x7f/0xff e4m3fn, 0x80 e4m3fnuz).
DSA_HOST_DEVICE uint8_t dsa_fp8_saturate(float x, bool fnuz) {
  const float m = dsa_fp8_max(fnuz);
  const float c = x > m ? m : (x < -m ? -m : x);
  return dsa_fp8_encode(c, fnuz);
}

// Smallest power of two >= s for a positive normal float s, exactly (the exponent plus one
// when any mantissa bit is set: DeepSeek-V3.2 kernel.py fast_log2_ceil / fast_pow2). NaN, inf,
// zero and negative inputs are returned unchanged.
DSA_HOST_DEVICE float dsa_pow2_ceil(float s) {
  const uint32_t u = dsa_f32_bits(s);
  const uint32_t e = (u >> 23) & 0xffu;
  if ((u >> 31) != 0u || e == 0u || e == 0xffu) return s;
  const uint32_t e2 = e + ((u & 0x7fffffu) != 0u ? 1u : 0u);
  return dsa_bits_f32(e2 << 23);  // e2 == 255 -> +inf
}

// Dequantization scale of one block from its amax, as DeepSeek-V3.2 act_quant
// (inference/kernel.py): amax floored at 1e-4 (NaN propagates), times the float32 reciprocal of
// the quant max (448 e4m3fn, 224 e4m3fnuz), optionally rounded up to a power of two (ue8m0).
// Values are then divided by this scale (x / s), clamped to the format max and rounded.
DSA_HOST_DEVICE float dsa_fp8_block_scale(float amax, bool fnuz, bool ue8m0) {
  const float a = amax < 1e-4f ? 1e-4f : amax;
  const float s = a * (fnuz ? (1.0f / 224.0f) : (1.0f / 448.0f));
  return ue8m0 ? dsa_pow2_ceil(s) : s;
}

// NaN-propagating max of absolute values (torch.amax propagates NaN).
DSA_HOST_DEVICE float dsa_absmax(float m, float x) {
  const float a = x < 0.0f ? -x : x;
  if (dsa_isnan(m) || dsa_isnan(x)) return dsa_bits_f32(0x7fc00000u);
  return a > m ? a : m;
}

#if defined(DSA_HIP) || defined(DSA_CUDA)
// NaN-propagating max over the wave (every lane gets the result).
DSA_DEVICE float dsa_wave_absmax(float m) {
#pragma unroll
  for (int o = DSA_WAVE_SIZE / 2; o > 0; o >>= 1) {
    const float other = dsa_shfl_xor(m, o);
    m = (dsa_isnan(m) || dsa_isnan(other)) ? dsa_bits_f32(0x7fc00000u) : (other > m ? other : m);
  }
  return m;
}

// ------------------------------------------------------------------------------------------
// host-side launch helpers
// ------------------------------------------------------------------------------------------
#if defined(DSA_HIP)
typedef hipStream_t dsa_stream_t;
typedef hipError_t dsa_error_t;
#define DSA_SUCCESS hipSuccess
inline dsa_error_t dsa_last_error() { return hipGetLastError(); }
inline int dsa_current_device() {
  int d = 0;
  return hipGetDevice(&d) == hipSuccess ? d : 0;
}
inline const char* dsa_error_string(dsa_error_t e) { return hipGetErrorString(e); }
inline int dsa_max_dynamic_smem(int device) {
  int v = 0;
  if (hipDeviceGetAttribute(&v, hipDeviceAttributeMaxSharedMemoryPerBlock, device) != hipSuccess) return 0;
  return v;
}
template <typename K>
inline dsa_error_t dsa_set_max_dynamic_smem(K kernel, int bytes) {
  return hipFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                             hipFuncAttributeMaxDynamicSharedMemorySize, bytes);
}
#else
typedef cudaStream_t dsa_stream_t;
typedef cudaError_t dsa_error_t;
#define DSA_SUCCESS cudaSuccess
inline dsa_error_t dsa_last_error() { return cudaGetLastError(); }
inline int dsa_current_device() {
  int d = 0;
  return cudaGetDevice(&d) == cudaSuccess ? d : 0;
}
inline const char* dsa_error_string(dsa_error_t e) { return cudaGetErrorString(e); }
inline int dsa_max_dynamic_smem(int device) {
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess) return 0;
  return v;
}
template <typename K>
inline dsa_error_t dsa_set_max_dynamic_smem(K kernel, int bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
}
#endif
#endif  // DSA_HIP || DSA_CUDA
