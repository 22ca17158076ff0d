#include "gemm.h"

#include <algorithm>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(TUNEBENCH_ONEDNN)
#include <dnnl.h>
#define TUNEBENCH_GEMM_LIBRARY 1
#elif defined(TUNEBENCH_OPENBLAS)
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#define TUNEBENCH_GEMM_LIBRARY 1
#endif

namespace tb {

const char* blas_name() {
#if defined(TUNEBENCH_ONEDNN)
  return "onednn";
#elif defined(TUNEBENCH_OPENBLAS)
  return "openblas";
#else
  return "builtin";
#endif
}

// OpenMP is the only thread pool: the GEMM library runs single-threaded inside our OpenMP
// regions (oneDNN does so by itself; OpenBLAS is told to). Two pools (OpenBLAS pthreads +
// libgomp) spinning against each other cost a third of the time on a 2-core machine.
void set_threads(int n) {
  if (n < 1) n = 1;
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
#ifdef TUNEBENCH_OPENBLAS
  static bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
#endif
}

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Taken when the library loads, before set_threads() changes any thread's setting.
static const int kDefaultThreads = max_threads();
int default_threads() { return kDefaultThreads; }

// Decoding's products x W^T of a few rows: thin.cpp's kernel where the CPU has one.
static bool thin(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                 int ldb, float beta, float* C, int ldc) {
  return !ta && tb && (beta == 0 || beta == 1) && thin_product(M, N, K, alpha, A, lda, B, ldb, beta == 1, C, ldc);
}

#ifdef TUNEBENCH_GEMM_LIBRARY
static void gemm_serial(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
                        const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) C[size_t(i) * ldc + j] = beta == 0 ? 0 : beta * C[size_t(i) * ldc + j];
    return;
  }
#if defined(TUNEBENCH_ONEDNN)
  // Row-major, as cblas with CblasRowMajor. It fails only when its packing buffers cannot be
  // allocated; this may run inside an OpenMP region, where nothing may throw, so the product is
  // then computed the plain way, which allocates nothing (unlike the portable kernel below).
  if (dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc) == dnnl_success) return;
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float acc = 0;
      for (int k = 0; k < K; k++)
        acc += (ta ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k]) * (tb ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j]);
      float& c = C[size_t(i) * ldc + j];
      c = alpha * acc + (beta == 0 ? 0 : beta * c);
    }
#else
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K,
              alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// A thin product (decoding's few rows) against a wide B runs in column blocks of at most this
// many: oneDNN's sgemm streams a wide B at about half the speed it reaches on such blocks
// (M = 8 rows, K = 512, the 32k-column head: 9 -> 17 GB/s on 2 threads).
constexpr int kThinRows = 16, kThinColumns = 2048;

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (thin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  int nt = 1;
#ifdef _OPENMP
  nt = omp_in_parallel() ? 1 : omp_get_max_threads();
#endif
  bool thin = M <= kThinRows && N > kThinColumns;
  if (!thin && (nt <= 1 || double(M) * N * K < 262144.0)) {
    gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // Split the larger output dimension into one block per thread (blocks multiple of 16); a thin
  // product's columns into equal blocks of about kThinColumns at most, as many per thread.
  bool by_rows = !thin && M >= N;
  int dim = by_rows ? M : N;
  int parts = std::min(nt, std::max(1, dim / 16));
  if (thin) parts = ((N + kThinColumns - 1) / kThinColumns + nt - 1) / nt * nt;
  int block = ((dim + parts - 1) / parts + 15) / 16 * 16;
#pragma omp parallel for schedule(static, 1) num_threads(std::min(nt, parts)) if (nt > 1)
  for (int p = 0; p < parts; p++) {
    int s = p * block, e = std::min(dim, s + block);
    if (s >= e) continue;
    if (by_rows) {
      const float* Ap = ta ? A + s : A + size_t(s) * lda;
      gemm_serial(ta, tb, e - s, N, K, alpha, Ap, lda, B, ldb, beta, C + size_t(s) * ldc, ldc);
    } else {
      const float* Bp = tb ? B + size_t(s) * ldb : B + s;
      gemm_serial(ta, tb, M, e - s, K, alpha, A, lda, Bp, ldb, beta, C + s, ldc);
    }
  }
}
#else
// Portable fallback: pack op(B) into column panels so the inner loop is a contiguous dot/axpy.
void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (thin(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)) return;
  // Bt: [N, K] contiguous so that C[i,j] = dot(A_row_i, Bt_row_j).
  std::vector<float> Bt(size_t(N) * K);
  for (int j = 0; j < N; j++)
    for (int k = 0; k < K; k++) Bt[size_t(j) * K + k] = tb ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j];
#pragma omp parallel
  {
    std::vector<float> arow(K);
#pragma omp for schedule(static)
    for (int i = 0; i < M; i++) {
      for (int k = 0; k < K; k++) arow[k] = ta ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k];
      float* c = C + size_t(i) * ldc;
      for (int j0 = 0; j0 < N; j0 += 64) {
        int j1 = std::min(N, j0 + 64);
        for (int j = j0; j < j1; j++) {
          const float* b = Bt.data() + size_t(j) * K;
          float acc = 0;
#pragma omp simd reduction(+ : acc)
          for (int k = 0; k < K; k++) acc += arow[k] * b[k];
          c[j] = alpha * acc + (beta == 0 ? 0 : beta * c[j]);
        }
      }
    }
  }
}
#endif

}  // namespace tb
