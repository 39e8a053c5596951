// Host harness for the scalar codecs of hip/dsa_port.h and the LDS plan of hip/dsa_kernels.h,
// compiled by tests/hip/test_hip_codecs_host.py with the machine's C++ compiler (no GPU).
//   codec_host cast  < f32[n]        > u8 fn[n], u8 fnuz[n], u16 bf16[n]
//   codec_host f16   < u16[n]        > f32[n]
//   codec_host quant FNUZ UE8M0 < f32[n*128] > u8[n*128], f32 scale[n]   (one scale per 128)
//   codec_host cap   < i32[n]        > i32 topk_default_cap[n]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsa_kernels.h"
#include "dsa_port.h"

static unsigned char* read_all(size_t* n) {
  size_t cap = 1 << 20, len = 0, got;
  unsigned char* buf = (unsigned char*)malloc(cap);
  while ((got = fread(buf + len, 1, cap - len, stdin)) > 0) {
    len += got;
    if (len == cap) buf = (unsigned char*)realloc(buf, cap *= 2);
  }
  *n = len;
  return buf;
}

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  size_t bytes;
  unsigned char* in = read_all(&bytes);
  if (!strcmp(argv[1], "cast")) {
    const float* x = (const float*)in;
    size_t n = bytes / 4;
    for (size_t i = 0; i < n; ++i) putchar(dsa_fp8_saturate(x[i], false));
    for (size_t i = 0; i < n; ++i) putchar(dsa_fp8_saturate(x[i], true));
    for (size_t i = 0; i < n; ++i) { uint16_t b = dsa_f32_to_bf16(x[i]); fwrite(&b, 2, 1, stdout); }
  } else if (!strcmp(argv[1], "f16")) {
    const uint16_t* h = (const uint16_t*)in;
    for (size_t i = 0; i < bytes / 2; ++i) { float f = dsa_f16_to_f32(h[i]); fwrite(&f, 4, 1, stdout); }
  } else if (!strcmp(argv[1], "quant") && argc == 4) {
    const bool fnuz = atoi(argv[2]) != 0, ue8m0 = atoi(argv[3]) != 0;
    const float* x = (const float*)in;
    size_t n = bytes / (4 * 128);
    float* scales = (float*)malloc(n * 4 + 4);
    for (size_t t = 0; t < n; ++t) {
      float amax = 0.0f;
      for (int d = 0; d < 128; ++d) amax = dsa_absmax(amax, x[t * 128 + d]);
      const float s = dsa_fp8_block_scale(amax, fnuz, ue8m0);
      scales[t] = s;
      for (int d = 0; d < 128; ++d) putchar(dsa_fp8_saturate(x[t * 128 + d] / s, fnuz));
    }
    fwrite(scales, 4, n, stdout);
  } else if (!strcmp(argv[1], "cap")) {
    const int32_t* v = (const int32_t*)in;
    for (size_t i = 0; i < bytes / 4; ++i) { int32_t c = dsa::topk_default_cap(v[i]); fwrite(&c, 4, 1, stdout); }
  } else {
    return 2;
  }
  return 0;
}
