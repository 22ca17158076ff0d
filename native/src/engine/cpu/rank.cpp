// out[N,W] (+)= alpha * Y[N,r] @ M[r,W] for the LoRA rank r: the branch's contribution to a
// projection's output (forward) or input gradient (backward). Written before the base GEMM, which
// then accumulates with beta = 1, so the [N,W] buffer is written once and updated once; BLAS
// would zero it and then read it back. AVX-512 keeps a 6 x 64 block of out in registers and
// writes it without reading it; other CPUs take gemm().
#include <algorithm>

#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TB_RANK_KERNELS 1
#endif

namespace tb {

#ifdef TB_RANK_KERNELS
static bool kernels_enabled = true;

template <int RB, int CV>
__attribute__((target("avx512f"))) static void expand_block(int r, float alpha, const float* Y, int ldy, const float* M,
                                                             int ldm, float* out, int ldo, __mmask16 last,
                                                             bool accumulate) {
  __m512 acc[RB][CV];
#pragma GCC unroll 8
  for (int i = 0; i < RB; i++)
#pragma GCC unroll 4
    for (int v = 0; v < CV; v++) acc[i][v] = _mm512_setzero_ps();
  for (int j = 0; j < r; j++) {
    __m512 m[CV];
#pragma GCC unroll 4
    for (int v = 0; v < CV; v++)
      m[v] = _mm512_maskz_loadu_ps(v == CV - 1 ? last : __mmask16(0xFFFF), M + size_t(j) * ldm + 16 * v);
#pragma GCC unroll 8
    for (int i = 0; i < RB; i++) {
      __m512 a = _mm512_set1_ps(Y[size_t(i) * ldy + j]);
#pragma GCC unroll 4
      for (int v = 0; v < CV; v++) acc[i][v] = _mm512_fmadd_ps(a, m[v], acc[i][v]);
    }
  }
  __m512 s = _mm512_set1_ps(alpha);
#pragma GCC unroll 8
  for (int i = 0; i < RB; i++)
#pragma GCC unroll 4
    for (int v = 0; v < CV; v++) {
      __mmask16 k = v == CV - 1 ? last : __mmask16(0xFFFF);
      float* o = out + size_t(i) * ldo + 16 * v;
      __m512 val = _mm512_mul_ps(acc[i][v], s);
      if (accumulate) val = _mm512_add_ps(val, _mm512_maskz_loadu_ps(k, o));
      _mm512_mask_storeu_ps(o, k, val);
    }
}

// RB rows across all W columns: blocks of 64, the last one narrower and masked.
template <int RB>
static void expand_rows(int r, int W, float alpha, const float* Y, int ldy, const float* M, float* out, int ldo,
                        bool accumulate) {
  for (int c = 0; c < W; c += 64) {
    int nv = std::min(4, (W - c + 15) / 16), tail = W - c - 16 * (nv - 1);
    __mmask16 last = tail >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << tail) - 1);
    switch (nv) {
      case 1: expand_block<RB, 1>(r, alpha, Y, ldy, M + c, W, out + c, ldo, last, accumulate); break;
      case 2: expand_block<RB, 2>(r, alpha, Y, ldy, M + c, W, out + c, ldo, last, accumulate); break;
      case 3: expand_block<RB, 3>(r, alpha, Y, ldy, M + c, W, out + c, ldo, last, accumulate); break;
      default: expand_block<RB, 4>(r, alpha, Y, ldy, M + c, W, out + c, ldo, last, accumulate); break;
    }
  }
}
#endif

void set_rank_kernels(bool on) {
#ifdef TB_RANK_KERNELS
  kernels_enabled = on;
#else
  (void)on;
#endif
}

void rank_expand(int N, int W, int r, float alpha, const float* Y, int ldy, const float* M, float* out, int ldo,
                 bool accumulate) {
#ifdef TB_RANK_KERNELS
  static const bool cpu = __builtin_cpu_supports("avx512f");
  if (kernels_enabled && cpu) {
    const int RB = 6;
    int blocks = N / RB;
#pragma omp parallel for schedule(static)
    for (int bi = 0; bi < blocks; bi++)
      expand_rows<RB>(r, W, alpha, Y + size_t(bi) * RB * ldy, ldy, M, out + size_t(bi) * RB * ldo, ldo, accumulate);
    for (int n = blocks * RB; n < N; n++)
      expand_rows<1>(r, W, alpha, Y + size_t(n) * ldy, ldy, M, out + size_t(n) * ldo, ldo, accumulate);
    return;
  }
#endif
  gemm(false, false, N, W, r, alpha, Y, ldy, M, W, accumulate ? 1.0f : 0.0f, out, ldo);
}

}  // namespace tb
