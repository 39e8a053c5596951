// Torch binding of the rocm-dsa HIP/CUDA kernels (module built by rocm_dsa.hipext.load()).
//
// Arguments arrive validated by rocm_dsa.ops; the checks here guard the raw-pointer contract of
// the launchers (device, dtype, layout, alignment) and name the argument that breaks it.
// Everything runs on the current stream of the tensors' device, allocates only the outputs and
// never synchronizes the host.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "dsa_kernels.h"

namespace {

void* current_stream() { return reinterpret_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()); }

void check_raise(const char* err, const char* op) {
  TORCH_CHECK(err == nullptr, "rocm_dsa hip ", op, ": ", err == nullptr ? "" : err);
}

void check_gpu(const torch::Tensor& t, const char* name, const torch::Device& dev) {
  TORCH_CHECK(t.is_cuda(), name, ": expected a GPU tensor, got one on ", t.device());
  TORCH_CHECK(t.device() == dev, name, ": expected a tensor on ", dev, ", got one on ", t.device());
}

void check_i32_vec(const c10::optional<torch::Tensor>& t, const char* name, const torch::Device& dev, int64_t n) {
  if (!t.has_value()) return;
  check_gpu(*t, name, dev);
  TORCH_CHECK(t->scalar_type() == torch::kInt32, name, ": expected int32, got ", t->scalar_type());
  TORCH_CHECK(t->dim() == 1 && t->is_contiguous(), name, ": expected a contiguous 1-D tensor, got shape ", t->sizes());
  TORCH_CHECK(n < 0 || t->size(0) >= n, name, ": expected at least ", n, " entries, got ", t->size(0));
}

int32_t dtype_code(const torch::Tensor& t, const char* name) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return dsa::DT_F32;
    case torch::kBFloat16: return dsa::DT_BF16;
    case torch::kFloat16: return dsa::DT_F16;
    default: TORCH_CHECK(false, name, ": expected float32, bfloat16 or float16, got ", t.scalar_type());
  }
  return 0;
}

const void* optional_ptr(const c10::optional<torch::Tensor>& t) { return t.has_value() ? t->data_ptr() : nullptr; }

}  // namespace

// Exact per-row top-k. Ragged windows (starts/ends) or decode lengths (lengths, next_n); with a
// block table the positions are mapped to KV slots. cap = 0 picks the device default. splits > 1:
// that many workgroups per row gather the sampled-threshold candidates first (rows few, windows
// longer than cap; see dsa::TopkParams::splits); 0 or 1: one workgroup per row.
torch::Tensor topk(const torch::Tensor& logits, const c10::optional<torch::Tensor>& starts,
                   const c10::optional<torch::Tensor>& ends, const c10::optional<torch::Tensor>& lengths,
                   int64_t next_n, const c10::optional<torch::Tensor>& block_table, int64_t page_size, int64_t k,
                   int64_t cap, int64_t block, const c10::optional<torch::Tensor>& out, int64_t splits) {
  TORCH_CHECK(logits.is_cuda(), "logits: expected a GPU tensor, got one on ", logits.device());
  const c10::cuda::CUDAGuard guard(logits.device());
  const auto dev = logits.device();
  TORCH_CHECK(logits.scalar_type() == torch::kFloat32, "logits: expected float32, got ", logits.scalar_type());
  TORCH_CHECK(logits.dim() == 2 && logits.stride(1) == 1, "logits: expected [R, C] with unit column stride, got shape ",
              logits.sizes(), " strides ", logits.strides());
  TORCH_CHECK(logits.size(0) <= INT32_MAX && logits.size(1) <= INT32_MAX, "logits: rows and columns must fit int32, got ",
              logits.sizes());
  const int64_t rows = logits.size(0);
  TORCH_CHECK(k >= 1 && k <= dsa::TOPK_MAX_K, "k: expected 1 <= k <= ", dsa::TOPK_MAX_K, ", got ", k);
  TORCH_CHECK(lengths.has_value() != ends.has_value(), "topk: pass exactly one of ends (ragged) and lengths (decode)");
  TORCH_CHECK(next_n >= 1, "next_n: expected >= 1, got ", next_n);
  check_i32_vec(starts, "starts", dev, rows);
  check_i32_vec(ends, "ends", dev, rows);
  check_i32_vec(lengths, "lengths", dev, (rows + next_n - 1) / next_n);
  if (block_table.has_value()) {
    check_gpu(*block_table, "block_table", dev);
    TORCH_CHECK(block_table->scalar_type() == torch::kInt32 && block_table->dim() == 2 && block_table->stride(1) == 1,
                "block_table: expected int32 [B, max_pages] with unit column stride, got ", block_table->scalar_type(),
                " ", block_table->sizes());
    TORCH_CHECK(page_size >= 1, "page_size: expected >= 1, got ", page_size);
  }
  const int max_smem = dsa::device_max_smem(dev.index());
  if (cap <= 0) cap = dsa::topk_default_cap(max_smem);
  TORCH_CHECK(cap >= 16 && (cap & (cap - 1)) == 0, "cap: expected a power of two >= 16, got ", cap);
  TORCH_CHECK(dsa::topk_dynamic_smem_bytes((int)cap) + dsa::TOPK_STATIC_SMEM_BOUND <= max_smem, "cap: ", cap,
              " candidates need ", dsa::topk_dynamic_smem_bytes((int)cap), " bytes of LDS, the device allows ", max_smem);
  torch::Tensor result;
  if (out.has_value()) {
    check_gpu(*out, "out", dev);
    TORCH_CHECK(out->scalar_type() == torch::kInt32 && out->dim() == 2 && out->size(0) == rows && out->size(1) == k &&
                    out->stride(1) == 1,
                "out: expected int32 [", rows, ", ", k, "] with unit column stride, got ", out->scalar_type(), " ",
                out->sizes());
    result = *out;
  } else {
    result = torch::empty({rows, k}, logits.options().dtype(torch::kInt32));
  }
  dsa::TopkParams p{};
  p.logits = logits.data_ptr<float>();
  p.stride_row = logits.stride(0);
  p.rows = (int32_t)rows;
  p.cols = (int32_t)logits.size(1);
  p.starts = static_cast<const int32_t*>(optional_ptr(starts));
  p.ends = static_cast<const int32_t*>(optional_ptr(ends));
  p.lengths = static_cast<const int32_t*>(optional_ptr(lengths));
  p.next_n = (int32_t)next_n;
  p.block_table = static_cast<const int32_t*>(optional_ptr(block_table));
  p.stride_bt = block_table.has_value() ? block_table->stride(0) : 0;
  p.page_size = (int32_t)page_size;
  p.out = result.data_ptr<int32_t>();
  p.stride_out = result.stride(0);
  p.k = (int32_t)k;
  p.cap = (int32_t)cap;
  TORCH_CHECK(splits >= 0 && splits <= dsa::TOPK_MAX_SPLITS, "splits: expected 0 ... ", dsa::TOPK_MAX_SPLITS,
              ", got ", splits);
  torch::Tensor split_cand, split_count;
  if (splits > 1 && logits.size(1) > cap) {
    // bounded per-(row, chunk) candidate slices of the split threshold pass (stream-ordered
    // caching-allocator memory: valid under graph capture)
    split_cand = torch::empty({rows * splits * cap}, logits.options().dtype(torch::kInt64));
    split_count = torch::empty({rows * splits}, logits.options().dtype(torch::kInt32));
    p.splits = (int32_t)splits;
    p.split_cand = reinterpret_cast<uint64_t*>(split_cand.data_ptr<int64_t>());
    p.split_count = reinterpret_cast<uint32_t*>(split_count.data_ptr<int32_t>());
  } else {
    p.splits = 1;
  }
  check_raise(dsa::launch_topk(p, (int)block, current_stream()), "topk");
  return result;
}

int64_t topk_default_cap(int64_t device) {
  return dsa::topk_default_cap(dsa::device_max_smem((int)device));
}

void store_indexer_k(const torch::Tensor& k, const torch::Tensor& buf, const torch::Tensor& slot_mapping, bool fnuz,
                     bool ue8m0) {
  TORCH_CHECK(k.is_cuda(), "k: expected a GPU tensor, got one on ", k.device());
  const c10::cuda::CUDAGuard guard(k.device());
  const auto dev = k.device();
  check_gpu(buf, "kv_cache", dev);
  check_gpu(slot_mapping, "slot_mapping", dev);
  TORCH_CHECK(k.dim() == 2 && k.size(1) == 128 && k.stride(1) == 1, "k: expected [N, 128] with unit stride, got ",
              k.sizes());
  TORCH_CHECK(buf.scalar_type() == torch::kUInt8 && buf.dim() == 2 && buf.is_contiguous() && buf.size(1) % 132 == 0,
              "kv_cache: expected contiguous uint8 [num_pages, page_size*132], got ", buf.scalar_type(), " ", buf.sizes());
  TORCH_CHECK(reinterpret_cast<uintptr_t>(buf.data_ptr()) % 4 == 0, "kv_cache: data pointer must be 4-byte aligned");
  TORCH_CHECK((slot_mapping.scalar_type() == torch::kInt64 || slot_mapping.scalar_type() == torch::kInt32) &&
                  slot_mapping.dim() == 1 && slot_mapping.is_contiguous() && slot_mapping.size(0) == k.size(0),
              "slot_mapping: expected contiguous int64/int32 [", k.size(0), "], got ", slot_mapping.scalar_type(), " ",
              slot_mapping.sizes());
  TORCH_CHECK(k.size(0) <= INT32_MAX, "k: at most 2^31-1 tokens per call, got ", k.size(0));
  dsa::StoreIndexerKParams p{};
  p.k = k.data_ptr();
  p.k_dtype = dtype_code(k, "k");
  p.stride_k = k.stride(0);
  p.n = (int32_t)k.size(0);
  p.slots = slot_mapping.data_ptr();
  p.slots_i64 = slot_mapping.scalar_type() == torch::kInt64;
  p.buf = buf.data_ptr<uint8_t>();
  p.num_pages = buf.size(0);
  p.page_size = (int32_t)(buf.size(1) / 132);
  p.fnuz = fnuz;
  p.ue8m0 = ue8m0;
  check_raise(dsa::launch_store_indexer_k(p, current_stream()), "store_indexer_k");
}

void store_mla_kv(const torch::Tensor& c_kv_in, const torch::Tensor& k_rope_in, const torch::Tensor& buf,
                  const torch::Tensor& slot_mapping, bool fnuz) {
  TORCH_CHECK(c_kv_in.is_cuda(), "c_kv: expected a GPU tensor, got one on ", c_kv_in.device());
  const c10::cuda::CUDAGuard guard(c_kv_in.device());
  const auto dev = c_kv_in.device();
  check_gpu(k_rope_in, "k_rope", dev);
  check_gpu(buf, "kv_cache", dev);
  check_gpu(slot_mapping, "slot_mapping", dev);
  // one input dtype per launch: mixed inputs go through float32 (exact for bf16/f16)
  torch::Tensor c_kv = c_kv_in, k_rope = k_rope_in;
  if (c_kv.scalar_type() != k_rope.scalar_type()) {
    c_kv = c_kv.to(torch::kFloat32);
    k_rope = k_rope.to(torch::kFloat32);
  }
  TORCH_CHECK(c_kv.dim() == 2 && c_kv.size(1) == 512 && c_kv.stride(1) == 1, "c_kv: expected [N, 512], got ",
              c_kv.sizes());
  TORCH_CHECK(k_rope.dim() == 2 && k_rope.size(1) == 64 && k_rope.stride(1) == 1 && k_rope.size(0) == c_kv.size(0),
              "k_rope: expected [", c_kv.size(0), ", 64], got ", k_rope.sizes());
  const bool fp8 = buf.scalar_type() == torch::kUInt8;
  TORCH_CHECK((fp8 || buf.scalar_type() == torch::kBFloat16) && buf.is_contiguous() &&
                  buf.size(-1) == (fp8 ? 656 : 576),
              "kv_cache: expected contiguous bfloat16 [..., 576] or uint8 [..., 656], got ", buf.scalar_type(), " ",
              buf.sizes());
  TORCH_CHECK(reinterpret_cast<uintptr_t>(buf.data_ptr()) % 4 == 0, "kv_cache: data pointer must be 4-byte aligned");
  TORCH_CHECK((slot_mapping.scalar_type() == torch::kInt64 || slot_mapping.scalar_type() == torch::kInt32) &&
                  slot_mapping.dim() == 1 && slot_mapping.is_contiguous() && slot_mapping.size(0) == c_kv.size(0),
              "slot_mapping: expected contiguous int64/int32 [", c_kv.size(0), "], got ", slot_mapping.scalar_type(),
              " ", slot_mapping.sizes());
  TORCH_CHECK(c_kv.size(0) <= INT32_MAX / 4, "c_kv: at most 2^29 tokens per call, got ", c_kv.size(0));
  dsa::StoreMLAKVParams p{};
  p.c_kv = c_kv.data_ptr();
  p.k_rope = k_rope.data_ptr();
  p.dtype = dtype_code(c_kv, "c_kv");
  p.stride_c = c_kv.stride(0);
  p.stride_r = k_rope.stride(0);
  p.n = (int32_t)c_kv.size(0);
  p.slots = slot_mapping.data_ptr();
  p.slots_i64 = slot_mapping.scalar_type() == torch::kInt64;
  p.buf = buf.data_ptr();
  p.num_slots = buf.numel() / (fp8 ? 656 : 576);
  p.fp8 = fp8;
  p.fnuz = fnuz;
  check_raise(dsa::launch_store_mla_kv(p, current_stream()), "store_mla_kv");
}

// Paged indexer logits [B * next_n, max_pages * page_size] f32 (see dsa::PagedIndexerParams).
torch::Tensor indexer_logits_paged(const torch::Tensor& q, const torch::Tensor& buf, const torch::Tensor& weights,
                                   const torch::Tensor& context_lens, const torch::Tensor& block_table,
                                   int64_t pages_per_wg, const c10::optional<torch::Tensor>& out) {
  TORCH_CHECK(q.is_cuda(), "q_fp8: expected a GPU tensor, got one on ", q.device());
  const c10::cuda::CUDAGuard guard(q.device());
  const auto dev = q.device();
  TORCH_CHECK(q.scalar_type() == at::kFloat8_e4m3fn || q.scalar_type() == at::kFloat8_e4m3fnuz,
              "q_fp8: expected float8_e4m3fn or float8_e4m3fnuz, got ", q.scalar_type());
  TORCH_CHECK(q.dim() == 4 && q.size(3) == 128 && q.is_contiguous(), "q_fp8: expected contiguous [B, next_n, H, 128], got ",
              q.sizes());
  const int64_t b = q.size(0), next_n = q.size(1), h = q.size(2);
  TORCH_CHECK(h == 16 || h == 32 || h == 64, "q_fp8: heads must be 16, 32 or 64, got ", h);
  check_gpu(buf, "kv_cache", dev);
  TORCH_CHECK(buf.scalar_type() == torch::kUInt8 && buf.dim() == 2 && buf.is_contiguous() && buf.size(1) % 132 == 0,
              "kv_cache: expected contiguous uint8 [num_pages, page_size*132], got ", buf.scalar_type(), " ", buf.sizes());
  const int64_t page_size = buf.size(1) / 132;
  TORCH_CHECK(page_size % 16 == 0, "kv_cache: page_size must be a multiple of 16, got ", page_size);
  TORCH_CHECK(reinterpret_cast<uintptr_t>(buf.data_ptr()) % 16 == 0 && reinterpret_cast<uintptr_t>(q.data_ptr()) % 16 == 0,
              "kv_cache / q_fp8: data pointers must be 16-byte aligned");
  check_gpu(weights, "weights", dev);
  TORCH_CHECK(weights.scalar_type() == torch::kFloat32 && weights.is_contiguous() && weights.numel() == b * next_n * h,
              "weights: expected contiguous float32 [", b * next_n, ", ", h, "], got ", weights.scalar_type(), " ",
              weights.sizes());
  check_i32_vec(context_lens, "context_lens", dev, b);
  check_gpu(block_table, "block_table", dev);
  TORCH_CHECK(block_table.scalar_type() == torch::kInt32 && block_table.dim() == 2 && block_table.size(0) == b &&
                  block_table.stride(1) == 1,
              "block_table: expected int32 [", b, ", max_pages] with unit column stride, got ", block_table.scalar_type(),
              " ", block_table.sizes());
  const int64_t max_pages = block_table.size(1);
  const int64_t width = max_pages * page_size;
  TORCH_CHECK(pages_per_wg >= 1, "pages_per_wg: expected >= 1, got ", pages_per_wg);
  torch::Tensor result;
  if (out.has_value()) {
    check_gpu(*out, "out", dev);
    TORCH_CHECK(out->scalar_type() == torch::kFloat32 && out->dim() == 2 && out->size(0) == b * next_n &&
                    out->size(1) == width && out->stride(1) == 1 && out->stride(0) % 4 == 0,
                "out: expected float32 [", b * next_n, ", ", width, "], got ", out->scalar_type(), " ", out->sizes());
    result = *out;
  } else {
    result = torch::empty({b * next_n, width}, q.options().dtype(torch::kFloat32));
  }
  if (result.numel() == 0) return result;
  TORCH_CHECK(b * next_n <= INT32_MAX && max_pages <= INT32_MAX, "q_fp8 / block_table: too large");
  dsa::PagedIndexerParams p{};
  p.q = static_cast<const uint8_t*>(q.data_ptr());
  p.kv = buf.data_ptr<uint8_t>();
  p.weights = weights.data_ptr<float>();
  p.context_lens = context_lens.data_ptr<int32_t>();
  p.block_table = block_table.data_ptr<int32_t>();
  p.stride_bt = block_table.stride(0);
  p.out = result.data_ptr<float>();
  p.stride_out = result.stride(0);
  p.num_pages = buf.size(0);
  p.batch = (int32_t)b;
  p.next_n = (int32_t)next_n;
  p.heads = (int32_t)h;
  p.page_size = (int32_t)page_size;
  p.max_pages = (int32_t)max_pages;
  p.pages_per_wg = (int32_t)pages_per_wg;
  p.fnuz = q.scalar_type() == at::kFloat8_e4m3fnuz;
  check_raise(dsa::launch_paged_indexer_logits(p, current_stream()), "indexer_logits_paged");
  return result;
}

// Sparse MLA decode: (out [B, s_q, H, 512] bf16, lse [B, H, s_q] f32); see dsa::SparseMLADecodeParams.
std::vector<torch::Tensor> sparse_mla_decode(const torch::Tensor& q, const torch::Tensor& buf, const torch::Tensor& indices,
                                             double sm_scale, bool fnuz, int64_t num_splits) {
  TORCH_CHECK(q.is_cuda(), "q: expected a GPU tensor, got one on ", q.device());
  const c10::cuda::CUDAGuard guard(q.device());
  const auto dev = q.device();
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 && q.dim() == 4 && q.size(3) == 576 && q.is_contiguous(),
              "q: expected contiguous bfloat16 [B, s_q, H, 576], got ", q.scalar_type(), " ", q.sizes());
  const int64_t b = q.size(0), s_q = q.size(1), h = q.size(2);
  TORCH_CHECK(h == 16 || h == 32 || h % 64 == 0, "q: heads must be 16, 32 or a multiple of 64, got ", h);
  check_gpu(buf, "kv_cache", dev);
  const bool fp8 = buf.scalar_type() == torch::kUInt8;
  TORCH_CHECK((fp8 || buf.scalar_type() == torch::kBFloat16) && buf.is_contiguous() && buf.size(-1) == (fp8 ? 656 : 576),
              "kv_cache: expected contiguous bfloat16 [..., 576] or uint8 [..., 656], got ", buf.scalar_type(), " ",
              buf.sizes());
  TORCH_CHECK(reinterpret_cast<uintptr_t>(buf.data_ptr()) % 16 == 0 && reinterpret_cast<uintptr_t>(q.data_ptr()) % 16 == 0,
              "kv_cache / q: data pointers must be 16-byte aligned");
  check_gpu(indices, "indices", dev);
  TORCH_CHECK(indices.scalar_type() == torch::kInt32 && indices.dim() == 3 && indices.size(0) == b &&
                  indices.size(1) == s_q && indices.is_contiguous() && indices.size(2) >= 1,
              "indices: expected contiguous int32 [", b, ", ", s_q, ", topk], got ", indices.scalar_type(), " ",
              indices.sizes());
  const int64_t topk = indices.size(2);
  const int64_t rows = b * s_q;
  TORCH_CHECK(rows * h <= INT32_MAX && topk <= INT32_MAX, "q / indices: too large");
  const int64_t tiles = (topk + dsa::MLA_DECODE_BLOCK_N - 1) / dsa::MLA_DECODE_BLOCK_N;
  TORCH_CHECK(num_splits >= 1 && num_splits <= tiles, "num_splits: expected 1 ... ", tiles, ", got ", num_splits);
  auto out = torch::empty({b, s_q, h, 512}, q.options());
  auto lse = torch::empty({b, h, s_q}, q.options().dtype(torch::kFloat32));
  if (rows == 0 || h == 0) return {out, lse};
  torch::Tensor o_part, lse_part;
  if (num_splits > 1) {
    o_part = torch::empty({rows, num_splits, h, 512}, q.options().dtype(torch::kFloat32));
    lse_part = torch::empty({rows, num_splits, h}, q.options().dtype(torch::kFloat32));
  }
  dsa::SparseMLADecodeParams p{};
  p.q = reinterpret_cast<const uint16_t*>(q.data_ptr());
  p.kv = buf.data_ptr();
  p.num_slots = buf.numel() / (fp8 ? 656 : 576);
  p.kv_fp8 = fp8;
  p.fnuz = fnuz;
  p.indices = indices.data_ptr<int32_t>();
  p.topk = (int32_t)topk;
  p.rows = (int32_t)rows;
  p.s_q = (int32_t)s_q;
  p.heads = (int32_t)h;
  p.sm_scale = (float)sm_scale;
  p.out = reinterpret_cast<uint16_t*>(out.data_ptr());
  p.lse = lse.data_ptr<float>();
  p.num_splits = (int32_t)num_splits;
  p.o_part = num_splits > 1 ? o_part.data_ptr<float>() : nullptr;
  p.lse_part = num_splits > 1 ? lse_part.data_ptr<float>() : nullptr;
  check_raise(dsa::launch_sparse_mla_decode(p, current_stream()), "sparse_mla_decode");
  return {out, lse};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "rocm-dsa HIP/CUDA kernels: exact radix top-k, cache stores, paged indexer logits, sparse MLA decode";
  m.def("topk", &topk, "exact per-row top-k (see rocm_dsa.backends.hip)", py::arg("logits"), py::arg("starts"),
        py::arg("ends"), py::arg("lengths"), py::arg("next_n"), py::arg("block_table"), py::arg("page_size"),
        py::arg("k"), py::arg("cap"), py::arg("block"), py::arg("out"), py::arg("splits") = 1);
  m.def("topk_default_cap", &topk_default_cap, "default LDS candidate capacity of a device", py::arg("device"));
  m.def("store_indexer_k", &store_indexer_k, "quantize + store indexer keys", py::arg("k"), py::arg("buf"),
        py::arg("slot_mapping"), py::arg("fnuz"), py::arg("ue8m0"));
  m.def("store_mla_kv", &store_mla_kv, "store MLA latents (bf16 rows or FP8 records)", py::arg("c_kv"),
        py::arg("k_rope"), py::arg("buf"), py::arg("slot_mapping"), py::arg("fnuz"));
  m.def("indexer_logits_paged", &indexer_logits_paged, "paged FP8 indexer logits (MFMA on gfx942/gfx950)",
        py::arg("q"), py::arg("buf"), py::arg("weights"), py::arg("context_lens"), py::arg("block_table"),
        py::arg("pages_per_wg"), py::arg("out"));
  m.def("sparse_mla_decode", &sparse_mla_decode, "sparse MLA decode, split-K + LSE merge (MFMA on gfx942/gfx950)",
        py::arg("q"), py::arg("buf"), py::arg("indices"), py::arg("sm_scale"), py::arg("fnuz"), py::arg("num_splits"));
}
