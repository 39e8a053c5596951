// Host-emulated runs of the portable paths of hip/indexer_mfma.hip and hip/sparse_mla_decode.hip,
// and of hip/topk.hip (TEST ONLY): compiled by tests/hip/test_hip_emulated_kernels.py as plain C++ with
// -DDSA_HOST_EMU (one std::thread per GPU thread, see hip/dsa_port.h) and -DDSA_EMU_WAVE=64|32.
// The kernels' own launchers run; inputs / outputs are raw little-endian files in a directory:
//   emu_host indexer DIR   meta.txt: B next_n H page_size max_pages num_pages fnuz pages_per_wg
//                          q.bin (u8) kv.bin (u8) w.bin (f32) lens.bin (i32) bt.bin (i32) -> out.bin (f32)
//   emu_host decode DIR    meta.txt: B s_q H topk num_slots kv_fp8 fnuz num_splits sm_scale
//                          q.bin (bf16) kv.bin (bf16 or u8) idx.bin (i32) -> out.bin (bf16), lse.bin (f32)
//   emu_host topk DIR      meta.txt: rows cols k cap block [splits]
//                          x.bin (f32 [rows, cols]) starts.bin ends.bin (i32 [rows]) -> out.bin (i32 [rows, k])
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

#include "indexer_mfma.hip"
#include "sparse_mla_decode.hip"
#include "topk.hip"

static std::vector<char> read_file(const std::string& path) {
  std::vector<char> buf;
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) {
    fprintf(stderr, "cannot open %s\n", path.c_str());
    exit(2);
  }
  char tmp[1 << 16];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf.insert(buf.end(), tmp, tmp + n);
  fclose(f);
  return buf;
}

static void write_file(const std::string& path, const void* data, size_t bytes) {
  FILE* f = fopen(path.c_str(), "wb");
  fwrite(data, 1, bytes, f);
  fclose(f);
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  const std::string mode = argv[1], dir = std::string(argv[2]) + "/";
  FILE* mf = fopen((dir + "meta.txt").c_str(), "r");
  if (!mf) return 2;
  if (mode == "indexer") {
    long b, next_n, h, ps, maxp, npages, fnuz, ppw;
    if (fscanf(mf, "%ld %ld %ld %ld %ld %ld %ld %ld", &b, &next_n, &h, &ps, &maxp, &npages, &fnuz, &ppw) != 8) return 2;
    auto q = read_file(dir + "q.bin"), kv = read_file(dir + "kv.bin"), w = read_file(dir + "w.bin");
    auto lens = read_file(dir + "lens.bin"), bt = read_file(dir + "bt.bin");
    std::vector<float> out((size_t)b * next_n * maxp * ps, 12345.0f);  // poison
    dsa::PagedIndexerParams p{};
    p.q = reinterpret_cast<const uint8_t*>(q.data());
    p.kv = reinterpret_cast<const uint8_t*>(kv.data());
    p.weights = reinterpret_cast<const float*>(w.data());
    p.context_lens = reinterpret_cast<const int32_t*>(lens.data());
    p.block_table = reinterpret_cast<const int32_t*>(bt.data());
    p.stride_bt = maxp;
    p.out = out.data();
    p.stride_out = maxp * ps;
    p.num_pages = npages;
    p.batch = (int32_t)b;
    p.next_n = (int32_t)next_n;
    p.heads = (int32_t)h;
    p.page_size = (int32_t)ps;
    p.max_pages = (int32_t)maxp;
    p.pages_per_wg = (int32_t)ppw;
    p.fnuz = (int32_t)fnuz;
    const char* err = dsa::launch_paged_indexer_logits(p, nullptr);
    if (err) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    write_file(dir + "out.bin", out.data(), out.size() * 4);
  } else if (mode == "decode") {
    long b, s_q, h, topk, nslots, kv_fp8, fnuz, splits;
    float sm_scale;
    if (fscanf(mf, "%ld %ld %ld %ld %ld %ld %ld %ld %f", &b, &s_q, &h, &topk, &nslots, &kv_fp8, &fnuz, &splits,
               &sm_scale) != 9)
      return 2;
    auto q = read_file(dir + "q.bin"), kv = read_file(dir + "kv.bin"), idx = read_file(dir + "idx.bin");
    const long rows = b * s_q;
    std::vector<uint16_t> out((size_t)rows * h * 512, 0x7fc1);  // poison (NaN)
    std::vector<float> lse((size_t)rows * h, 12345.0f);
    std::vector<float> o_part((size_t)rows * splits * h * 512, 777.0f), lse_part((size_t)rows * splits * h, 777.0f);
    dsa::SparseMLADecodeParams p{};
    p.q = reinterpret_cast<const uint16_t*>(q.data());
    p.kv = kv.data();
    p.num_slots = nslots;
    p.kv_fp8 = (int32_t)kv_fp8;
    p.fnuz = (int32_t)fnuz;
    p.indices = reinterpret_cast<const int32_t*>(idx.data());
    p.topk = (int32_t)topk;
    p.rows = (int32_t)rows;
    p.s_q = (int32_t)s_q;
    p.heads = (int32_t)h;
    p.sm_scale = sm_scale;
    p.out = out.data();
    p.lse = lse.data();
    p.num_splits = (int32_t)splits;
    p.o_part = o_part.data();
    p.lse_part = lse_part.data();
    const char* err = dsa::launch_sparse_mla_decode(p, nullptr);
    if (err) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    write_file(dir + "out.bin", out.data(), out.size() * 2);
    write_file(dir + "lse.bin", lse.data(), lse.size() * 4);
  } else if (mode == "topk") {
    long rows, cols, k, cap, block, splits = 1;
    if (fscanf(mf, "%ld %ld %ld %ld %ld", &rows, &cols, &k, &cap, &block) != 5) return 2;
    if (fscanf(mf, "%ld", &splits) != 1) splits = 1;  // optional: split threshold pass
    auto x = read_file(dir + "x.bin"), st = read_file(dir + "starts.bin"), en = read_file(dir + "ends.bin");
    std::vector<int32_t> out((size_t)rows * k, 0x7eadbeef);
    dsa::TopkParams p{};
    p.logits = reinterpret_cast<const float*>(x.data());
    p.stride_row = cols;
    p.rows = (int32_t)rows;
    p.cols = (int32_t)cols;
    p.starts = reinterpret_cast<const int32_t*>(st.data());
    p.ends = reinterpret_cast<const int32_t*>(en.data());
    p.next_n = 1;
    p.out = out.data();
    p.stride_out = k;
    p.k = (int32_t)k;
    p.cap = (int32_t)cap;
    std::vector<uint64_t> split_cand;
    std::vector<uint32_t> split_count;
    if (splits > 1) {  // poisoned: the kernels must write what they read
      split_cand.assign((size_t)rows * splits * cap, 0x5a5a5a5a5a5a5a5aull);
      split_count.assign((size_t)rows * splits, 0x7eadbeefu);
      p.splits = (int32_t)splits;
      p.split_cand = split_cand.data();
      p.split_count = split_count.data();
    }
    const char* err = dsa::launch_topk(p, (int)block, nullptr);
    if (err) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    write_file(dir + "out.bin", out.data(), out.size() * 4);
  } else {
    return 2;
  }
  fclose(mf);
  return 0;
}
