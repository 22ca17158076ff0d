// Thin products y[M,N] = alpha * x[M,K] W[N,K]^T (+ y), M <= kThinMaxRows: decoding's few rows
// against a weight matrix held as the checkpoint stores it ([out, in], rows contiguous), in f32
// or bf16. Such a product reads each weight once and does M multiply-adds with it, so it runs at
// the speed the weights stream from memory, if the kernel keeps the memory busy: every weight row
// is read once for all (up to 8) rows of x, and the rows ahead are prefetched (the hardware
// prefetcher alone leaves the bus idle while the FMAs run). On the engine's decode shapes (2-core
// Zen 2, 2 threads, f32) this took a step's products from 18.8 ms (oneDNN's sgemm) to 8.2 ms at
// 8 rows, and from 8.8 to 6.4 ms at 1 row.
//
// Every output is the same sum in the same order whatever M, the thread count or the block split:
// 8-wide partial sums over k, added across lanes, then the k % 8 tail, so a sequence decodes to
// the same numbers alone or next to others (and after its partners finish). bf16 weights are
// widened exactly (a shift), and x holds bf16-rounded values there, so the products are exact and
// only the order of the sums differs from the other bf16 paths.
// AVX2 + FMA, chosen at run time; other CPUs and builds return false and take the GEMMs.
#include <algorithm>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "dtype.h"
#include "gemm.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TB_THIN_KERNELS 1
#endif

namespace tb {

#ifdef TB_THIN_KERNELS
static bool kernels_enabled = true;

// Bytes ahead of the current position that each weight row is prefetched (the next rows of a
// 512-wide matrix; 2 and 4 KiB measured alike in f32, 4 KiB best in bf16, 8 KiB worse).
constexpr int kAheadBytes = 4096;

__attribute__((target("avx2,fma"))) static inline float lanes_sum(__m256 v) {
  __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  a = _mm_add_ps(a, _mm_movehl_ps(a, a));
  a = _mm_add_ss(a, _mm_movehdup_ps(a));
  return _mm_cvtss_f32(a);
}

// 8 weights as f32: loaded, or bf16 widened (the 16 bits are the top half of the f32).
__attribute__((target("avx2,fma"))) static inline __m256 load8(const float* w) { return _mm256_loadu_ps(w); }
__attribute__((target("avx2,fma"))) static inline __m256 load8(const uint16_t* w) {
  __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}
static inline float widen(float w) { return w; }
static inline float widen(uint16_t w) { return bf16_to_f32(w); }

// NR weight rows (w, ld ldw) against MR rows of x: y[i * ldy + j] = alpha * dot(x_i, w_j) (+ y).
// MR x NR independent sums: with one or two rows of x, several weight rows keep the FMAs from
// waiting on each other. The rows ahead are prefetched whatever MR: on the 2-core Zen 2 the
// hardware prefetcher alone kept up with 1-3 rows of x on f32 weights (not on bf16 ones, which it
// fetched at 60% of the f32 bytes per second), but on a 2-core Xeon (family 6 model 207) a
// decode step's f32 products of 1, 2 and 3 rows ran 5-10%, 10-25% and 15-40% faster with it.
template <typename T, int MR, int NR>
__attribute__((target("avx2,fma"))) static void rows_dot(int K, float alpha, const float* x, int ldx, const T* w,
                                                         int ldw, bool accumulate, float* y, int ldy) {
  constexpr int kLine = 64 / int(sizeof(T)), kAhead = kAheadBytes / int(sizeof(T));
  __m256 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int j = 0; j < NR; j++) acc[i][j] = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= K; k += 8) {
    if (k % kLine == 0)
#pragma GCC unroll 4
      for (int j = 0; j < NR; j++) _mm_prefetch(reinterpret_cast<const char*>(w + size_t(j) * ldw + k + kAhead), _MM_HINT_T0);
    __m256 v[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; j++) v[j] = load8(w + size_t(j) * ldw + k);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
      __m256 xv = _mm256_loadu_ps(x + size_t(i) * ldx + k);
#pragma GCC unroll 4
      for (int j = 0; j < NR; j++) acc[i][j] = _mm256_fmadd_ps(xv, v[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NR; j++) {
      float s = lanes_sum(acc[i][j]);
      const float* xi = x + size_t(i) * ldx;
      const T* wj = w + size_t(j) * ldw;
      for (int t = k; t < K; t++) s += xi[t] * widen(wj[t]);
      float& out = y[size_t(i) * ldy + j];
      out = accumulate ? out + alpha * s : alpha * s;
    }
}

// By rows of x (1..8): the kernel over 4 weight rows at a time (nullptr: none), and over 1.
template <typename T>
struct Kernels {
  using Fn = void (*)(int, float, const float*, int, const T*, int, bool, float*, int);
  Fn four, one;
};
template <typename T>
static const Kernels<T> kKernels[9] = {
    {nullptr, nullptr},
    {rows_dot<T, 1, 4>, rows_dot<T, 1, 1>},
    {rows_dot<T, 2, 4>, rows_dot<T, 2, 1>},
    {rows_dot<T, 3, 4>, rows_dot<T, 3, 1>},
    {nullptr, rows_dot<T, 4, 1>},
    {nullptr, rows_dot<T, 5, 1>},
    {nullptr, rows_dot<T, 6, 1>},
    {nullptr, rows_dot<T, 7, 1>},
    {nullptr, rows_dot<T, 8, 1>},
};

// Weight rows [n0, n1) against the rows of x that kr is for.
template <typename T>
static void row_range(const Kernels<T>& kr, int n0, int n1, int K, float alpha, const float* x, int ldx, const T* W,
                      int ldw, bool accumulate, float* y, int ldy) {
  int n = n0;
  if (kr.four)
    for (; n + 4 <= n1; n += 4) kr.four(K, alpha, x, ldx, W + size_t(n) * ldw, ldw, accumulate, y + n, ldy);
  for (; n < n1; n++) kr.one(K, alpha, x, ldx, W + size_t(n) * ldw, ldw, accumulate, y + n, ldy);
}

template <typename T>
static void product(int M, int N, int K, float alpha, const float* x, int ldx, const T* W, int ldw, bool accumulate,
                    float* y, int ldy) {
  // Rows of x in two halves past 8, each block of weight rows passed to both while it is in cache.
  const int first = M <= 8 ? M : (M + 1) / 2, second = M - first;
  auto rows = [&](int n0, int n1) {
    for (int b = n0; b < n1; b += 16) {
      int e = std::min(n1, b + 16);
      row_range(kKernels<T>[first], b, e, K, alpha, x, ldx, W, ldw, accumulate, y, ldy);
      if (second)
        row_range(kKernels<T>[second], b, e, K, alpha, x + size_t(first) * ldx, ldx, W, ldw, accumulate,
                  y + size_t(first) * ldy, ldy);
    }
  };
  // Small products (attention over a short context, LoRA's rank) stay on the calling thread.
  if (double(N) * K < 65536.0) {
    rows(0, N);
    return;
  }
  // One contiguous range of weight rows per thread: each streams its own part of W.
#pragma omp parallel
  {
    int nt = 1, t = 0;
#ifdef _OPENMP
    nt = omp_get_num_threads();
    t = omp_get_thread_num();
#endif
    int per = (N + nt - 1) / nt;
    rows(std::min(N, t * per), std::min(N, (t + 1) * per));
  }
}
#endif

bool has_thin_kernels() {
#ifdef TB_THIN_KERNELS
  static const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return cpu;
#else
  return false;
#endif
}

void set_thin_kernels(bool on) {
#ifdef TB_THIN_KERNELS
  kernels_enabled = on;
#else
  (void)on;
#endif
}

static bool usable(int M, int N, int K) {
#ifdef TB_THIN_KERNELS
  return kernels_enabled && has_thin_kernels() && M >= 1 && M <= kThinMaxRows && N >= 1 && K >= 1;
#else
  (void)M, (void)N, (void)K;
  return false;
#endif
}

bool thin_product(int M, int N, int K, float alpha, const float* x, int ldx, const float* W, int ldw, bool accumulate,
                  float* y, int ldy) {
  if (!usable(M, N, K)) return false;
#ifdef TB_THIN_KERNELS
  product(M, N, K, alpha, x, ldx, W, ldw, accumulate, y, ldy);
#endif
  return true;
}

bool thin_product_bf16(int M, int N, int K, const float* x, int ldx, const uint16_t* W, int ldw, bool accumulate,
                       float* y, int ldy) {
  if (!usable(M, N, K)) return false;
#ifdef TB_THIN_KERNELS
  product(M, N, K, 1.0f, x, ldx, W, ldw, accumulate, y, ldy);
#endif
  return true;
}

}  // namespace tb
