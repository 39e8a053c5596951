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
//   * launch / attribute / error helpers for the host-side launchers;
//   * DSA_HOST_EMU (TEST ONLY): plain C++ with one std::thread per GPU thread, so the portable
//     kernel paths run on a CPU (tests/hip/emu_host.cpp); see "host emulation" below.
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
#if defined(DSA_HOST_EMU)
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>
#endif
#endif

// Occupancy hint: ask the AMD compiler for at least N waves per SIMD (caps VGPRs at 512 / N);
// nothing elsewhere. Put it after __launch_bounds__.
#if defined(DSA_HIP)
#define DSA_WAVES_PER_EU(n) __attribute__((amdgpu_waves_per_eu(n)))
#else
#define DSA_WAVES_PER_EU(n)
#endif

// DSA_DYNAMIC_SHARED(type, name): the workgroup's dynamic shared memory (LDS) as `type* name`
// (inside a kernel; size given at launch).
#if defined(DSA_HIP) || defined(DSA_CUDA)
#define DSA_DEVICE __device__ __forceinline__
#define DSA_HOST_DEVICE __host__ __device__ __forceinline__
#define DSA_GLOBAL __global__
#define DSA_SHARED __shared__
#define DSA_DYNAMIC_SHARED(type, name) \
  extern __shared__ type name##_dsa_dyn[];  \
  type* name = name##_dsa_dyn
#else
#define DSA_DEVICE inline
#define DSA_HOST_DEVICE inline
#if defined(DSA_HOST_EMU)
#define DSA_GLOBAL
#define DSA_SHARED static  // blocks run one at a time: a static is the block's shared memory
#define __launch_bounds__(...)
#define DSA_DYNAMIC_SHARED(type, name) type* name = reinterpret_cast<type*>(dsa_emu::g_block->dyn.data())
#endif
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
#elif defined(DSA_HOST_EMU)
#if defined(DSA_EMU_WAVE)
#define DSA_WAVE_SIZE DSA_EMU_WAVE  // 32 or 64
#else
#define DSA_WAVE_SIZE 64
#endif
#else
#define DSA_WAVE_SIZE 32
#endif

#if DSA_WAVE_SIZE == 64
typedef uint64_t dsa_lanemask_t;
#else
typedef uint32_t dsa_lanemask_t;
#endif

// ------------------------------------------------------------------------------------------
// host emulation (TEST ONLY, plain C++17 with -DDSA_HOST_EMU): a kernel launch runs its blocks
// one after another, each with one std::thread per GPU thread; DSA_SHARED variables are
// statics (shared by the threads of the running block); block and wave barriers are counting
// barriers that threads leave when they return; shuffles and ballots go through a per-wave
// exchange buffer between two wave barriers. Slow (thousands of threads switching on a few
// cores) but it executes the kernels' portable paths exactly as written, on any CPU.
// ------------------------------------------------------------------------------------------
#if defined(DSA_HOST_EMU)
namespace dsa_emu {
class Barrier {
 public:
  void reset(int n) {
    expected_ = n;
    count_ = 0;
  }
  void arrive_and_wait() {
    std::unique_lock<std::mutex> lk(mu_);
    const unsigned gen = gen_;
    if (++count_ >= expected_) {
      release();
    } else {
      cv_.wait(lk, [&] { return gen_ != gen; });
    }
  }
  void drop() {  // a thread that returned no longer takes part
    std::unique_lock<std::mutex> lk(mu_);
    --expected_;
    if (count_ > 0 && count_ >= expected_) release();
  }

 private:
  void release() {
    count_ = 0;
    ++gen_;
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  int expected_ = 0, count_ = 0;
  unsigned gen_ = 0;
};

struct Block {
  int dim = 0, id = 0;
  Barrier bar;
  std::vector<Barrier> wave_bar;
  std::vector<uint64_t> xbuf;  // one exchange word per thread
  std::vector<uint64_t> dyn;   // dynamic shared memory
};
inline Block* g_block = nullptr;
inline thread_local int t_tid = 0;

// Run body() for every thread of every block of a 1-D grid (blocks sequentially).
template <class F>
inline void launch(long grid, int block, size_t smem, F&& body) {
  Block blk;
  blk.dim = block;
  blk.dyn.assign(smem / 8 + 1, 0);
  const int waves = (block + DSA_WAVE_SIZE - 1) / DSA_WAVE_SIZE;
  blk.wave_bar = std::vector<Barrier>(waves);
  blk.xbuf.assign((size_t)waves * DSA_WAVE_SIZE, 0);
  g_block = &blk;
  for (long b = 0; b < grid; ++b) {
    blk.id = (int)b;
    blk.bar.reset(block);
    for (int w = 0; w < waves; ++w)
      blk.wave_bar[w].reset(block - w * DSA_WAVE_SIZE < DSA_WAVE_SIZE ? block - w * DSA_WAVE_SIZE : DSA_WAVE_SIZE);
    std::vector<std::thread> threads;
    threads.reserve(block);
    for (int t = 0; t < block; ++t)
      threads.emplace_back([&, t] {
        t_tid = t;
        body();
        blk.wave_bar[t / DSA_WAVE_SIZE].drop();
        blk.bar.drop();
      });
    for (auto& th : threads) th.join();
  }
  g_block = nullptr;
}
}  // namespace dsa_emu
#endif

// 16-byte vectors for 128-bit loads / stores (pointers must be 16-byte aligned)
struct alignas(16) dsa_u32x4 {
  uint32_t x[4];
};
struct alignas(16) dsa_f32x4 {
  float x[4];
};
struct alignas(8) dsa_u32x2 {
  uint32_t x[2];
};

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

#if defined(DSA_HIP) || defined(DSA_CUDA) || defined(DSA_HOST_EMU)
// ------------------------------------------------------------------------------------------
// indices, barrier
// ------------------------------------------------------------------------------------------
#if defined(DSA_HOST_EMU)
DSA_DEVICE int dsa_thread_id() { return dsa_emu::t_tid; }
DSA_DEVICE int dsa_block_id() { return dsa_emu::g_block->id; }
DSA_DEVICE int dsa_lane_id() { return dsa_emu::t_tid % DSA_WAVE_SIZE; }
DSA_DEVICE void dsa_sync() { dsa_emu::g_block->bar.arrive_and_wait(); }
DSA_DEVICE void dsa_emu_wave_barrier() { dsa_emu::g_block->wave_bar[dsa_emu::t_tid / DSA_WAVE_SIZE].arrive_and_wait(); }
#elif defined(DSA_HIP)
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
#if defined(DSA_HOST_EMU)
#define DSA_SHFL_VIA_IDX 1
DSA_DEVICE uint32_t dsa_shfl_idx(uint32_t v, int src_lane) {
  uint64_t* b = dsa_emu::g_block->xbuf.data() + (dsa_emu::t_tid & ~(DSA_WAVE_SIZE - 1));
  dsa_emu_wave_barrier();  // earlier readers of b are done
  b[dsa_emu::t_tid % DSA_WAVE_SIZE] = v;
  dsa_emu_wave_barrier();
  return (uint32_t)b[src_lane & (DSA_WAVE_SIZE - 1)];
}
#elif defined(DSA_HIP)
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
#if defined(DSA_HOST_EMU)
  uint64_t* b = dsa_emu::g_block->xbuf.data() + (dsa_emu::t_tid & ~(DSA_WAVE_SIZE - 1));
  dsa_emu_wave_barrier();
  b[dsa_emu::t_tid % DSA_WAVE_SIZE] = pred ? 1u : 0u;
  dsa_emu_wave_barrier();
  dsa_lanemask_t m = 0;
  for (int i = 0; i < DSA_WAVE_SIZE; ++i) m |= (dsa_lanemask_t)(b[i] & 1u) << i;
  return m;
#elif defined(DSA_HIP)
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
#if defined(DSA_HOST_EMU)
  return __builtin_popcountll((unsigned long long)m);
#elif defined(DSA_HIP) && DSA_WAVE_SIZE == 64
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
#if defined(DSA_HOST_EMU)
  return __builtin_ctzll((unsigned long long)m);
#elif defined(DSA_HIP) && DSA_WAVE_SIZE == 64
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

// Wave-level barrier with LDS visibility between the lanes of one wave (all lanes must call):
// what a lane wrote to LDS before it is visible to every lane of the same wave after it. Cheaper
// than dsa_sync() when only lanes of one wave exchange data (e.g. small bitonic strides).
DSA_DEVICE void dsa_wave_sync() {
#if defined(DSA_HOST_EMU)
  dsa_emu_wave_barrier();
#elif defined(DSA_HIP)
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
  __builtin_amdgcn_wave_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
#elif defined(DSA_EMULATE_WAVE64)
  dsa_emu_wave_barrier();
#else
  __syncwarp();
#endif
}

// Workgroup (x) id in a 1-D grid of `nblocks` workgroups, remapped so that consecutive ids run
// on the same XCD of a multi-die AMD GPU (MI300X: 8 XCDs with private L2s; the hardware deals
// workgroups to XCDs round-robin). Workgroups that share data (head blocks of one query) then
// share an L2. Identity where nblocks is not a multiple of `xcds` and on NVIDIA (xcds = 1).
DSA_DEVICE int dsa_xcd_block_id(int nblocks, int xcds) {
  const int pid = dsa_block_id();
  if (xcds <= 1 || nblocks % xcds != 0) return pid;
  return (pid % xcds) * (nblocks / xcds) + pid / xcds;
}

// ------------------------------------------------------------------------------------------
// shared-memory (LDS) atomics, relaxed, workgroup scope
// ------------------------------------------------------------------------------------------
DSA_DEVICE uint32_t dsa_atomic_add_shared(uint32_t* p, uint32_t v) {
#if defined(DSA_HOST_EMU)
  return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
#elif defined(DSA_HIP)
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
// exp2 / log2 (float): the hardware transcendental on AMD (v_exp_f32 / v_log_f32, ~1 ulp, no
// device library), the CUDA math library elsewhere. exp2(-inf) = 0, log2(0) = -inf.
// ------------------------------------------------------------------------------------------
#if defined(DSA_HIP)
DSA_DEVICE float dsa_exp2f(float x) { return __builtin_amdgcn_exp2f(x); }
DSA_DEVICE float dsa_log2f(float x) { return __builtin_amdgcn_logf(x); }
#else
DSA_DEVICE float dsa_exp2f(float x) { return exp2f(x); }
DSA_DEVICE float dsa_log2f(float x) { return log2f(x); }
#endif
#define DSA_LOG2E 1.4426950408889634f
#define DSA_LN2 0.6931471805599453f

// ------------------------------------------------------------------------------------------
// FP8 e4m3 decoder (exact): fnuz = e4m3fnuz (bias 8, 0x80 = NaN), else OCP e4m3fn (bias 7,
// 0x7f / 0xff = NaN). Matches torch's `.to(float32)` of both dtypes for every byte.
// ------------------------------------------------------------------------------------------
DSA_HOST_DEVICE float dsa_fp8_decode(uint8_t b, bool fnuz) {
  const uint32_t sign = ((uint32_t)b & 0x80u) << 24;
  const uint32_t e = ((uint32_t)b >> 3) & 0xfu;
  const uint32_t m = (uint32_t)b & 0x7u;
  if (fnuz ? b == 0x80 : (b & 0x7f) == 0x7f) return dsa_bits_f32(0x7fc00000u);
  const uint32_t bias = fnuz ? 8u : 7u;
  if (e == 0u) {  // subnormal: m * 2^(1 - bias - 3)
    const float v = (float)m * dsa_bits_f32((127u + 1u - bias - 3u) << 23);
    return sign ? -v : v;
  }
  return dsa_bits_f32(sign | ((e + 127u - bias) << 23) | (m << 20));
}

// Fast decode of a FINITE FP8 byte (no NaN handling; e4m3fn 0x7f/0xff and the e4m3fnuz byte 0x80
// decode to garbage): exact for every other byte, subnormals included (the f32 intermediate is
// a denormal scaled by a power of two). Kernels use it on quantized operands, which are finite.
DSA_HOST_DEVICE float dsa_fp8_decode_finite(uint32_t b, bool fnuz) {
  const float v = dsa_bits_f32(((b & 0x80u) << 24) | ((b & 0x7fu) << 20));
  return v * dsa_bits_f32((fnuz ? 127u + 119u : 127u + 120u) << 23);  // 2^(127 - bias)
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

// ------------------------------------------------------------------------------------------
// matrix-core feature macros (device passes only): DSA_MFMA_CDNA3 (gfx940/941/942: fp8 MFMA on
// e4m3fnuz operands, 16x16x16 bf16), DSA_MFMA_CDNA4 (gfx950: OCP fp8 f8f6f4 16x16x128,
// 16x16x32 bf16), DSA_HAS_MFMA = either. DSA_TARGET_GFX950 selects the gfx950 code when the
// front end runs for gfx942 and code generation for gfx950 (compile reports with clang < 20,
// see rocm_dsa/hipext/compile_report.py). Kernels keep a portable (no matrix core) path for
// every other target (NVIDIA through nvcc, the host pass of hipcc).
// ------------------------------------------------------------------------------------------
#if defined(DSA_HIP) && (defined(__gfx950__) || (defined(DSA_TARGET_GFX950) && defined(__AMDGCN__)))
#define DSA_MFMA_CDNA4 1
#elif defined(DSA_HIP) && (defined(__gfx940__) || defined(__gfx941__) || defined(__gfx942__))
#define DSA_MFMA_CDNA3 1
#endif
#if defined(DSA_MFMA_CDNA3) || defined(DSA_MFMA_CDNA4)
#define DSA_HAS_MFMA 1
#endif

#if defined(DSA_HIP) || defined(DSA_CUDA) || defined(DSA_HOST_EMU)
// Max / sum of a NaN-free float over the lanes reached by XOR distances lane_lo, 2*lane_lo, ...
// < lane_hi (e.g. 16 and DSA_WAVE_SIZE: across the lane groups of a 16-column MFMA tile); every
// lane of the wave must call; each gets the result of its group.
DSA_DEVICE float dsa_wave_max_xor(float v, int lane_lo, int lane_hi) {
  for (int o = lane_lo; o < lane_hi; o <<= 1) {
    const float other = dsa_shfl_xor(v, o);
    v = other > v ? other : v;
  }
  return v;
}
DSA_DEVICE float dsa_wave_sum_xor(float v, int lane_lo, int lane_hi) {
  for (int o = lane_lo; o < lane_hi; o <<= 1) v += dsa_shfl_xor(v, o);
  return v;
}

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
// DSA_LAUNCH((kernel), grid, block, smem, stream, args...): kernel<<<grid, block, smem, stream>>>
// (args...) on a GPU, a host-emulated launch with DSA_HOST_EMU. The kernel goes in parentheses
// (template arguments may hold commas): DSA_LAUNCH((_k<4, true>), grid, 256, 0, s, p).
#define DSA_STRIP_PARENS_(...) __VA_ARGS__
#define DSA_STRIP_PARENS(x) DSA_STRIP_PARENS_ x
#if defined(DSA_HOST_EMU)
#define DSA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  dsa_emu::launch((long)(grid), (int)(block), (size_t)(smem), [&] { DSA_STRIP_PARENS(kernel)(__VA_ARGS__); })
#else
#define DSA_LAUNCH(kernel, grid, block, smem, stream, ...) \
  DSA_STRIP_PARENS(kernel)<<<(grid), (block), (smem), (stream)>>>(__VA_ARGS__)
#endif
#if defined(DSA_HOST_EMU)
typedef void* dsa_stream_t;
typedef const char* dsa_error_t;
#define DSA_SUCCESS nullptr
inline dsa_error_t dsa_last_error() { return nullptr; }
inline const char* dsa_error_string(dsa_error_t e) { return e; }
inline int dsa_current_device() { return 0; }
inline int dsa_max_dynamic_smem(int) { return 160 * 1024; }
template <typename K>
inline dsa_error_t dsa_set_max_dynamic_smem(K, int) {
  return nullptr;
}
#elif defined(DSA_HIP)
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
