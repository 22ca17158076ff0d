// Row-major GEMM: C = alpha * op(A) @ op(B) + beta * C, op = transpose when ta/tb.
// A is [M,K] (or [K,M] when ta), B is [K,N] (or [N,K] when tb). oneDNN or OpenBLAS when found,
// otherwise a blocked OpenMP kernel so the engine always builds.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace tb {

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
// C[M,N] (+)= bf16(A)[M,K] op(B) with B in bf16: [N,K] when tb (x W^T), else [K,N] (x W).
// A is rounded to bf16 (nearest even) and the products are summed in f32 (gemm_bf16.cpp).
void gemm_bf16(bool tb, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb, bool accumulate,
               float* C, int ldc);
// out[N,W] (+)= alpha * Y[N,r] @ M[r,W] with M contiguous (ld W) and r small (the LoRA rank);
// without accumulate, out is written without being read (rank.cpp).
void rank_expand(int N, int W, int r, float alpha, const float* Y, int ldy, const float* M, float* out, int ldo,
                 bool accumulate);
// Tests switch the rank kernel off to compare it with gemm().
void set_rank_kernels(bool on);
// Tests pick gemm_bf16's path for products of more than a few rows: 1 the bf16 values widened to
// f32 blocks and multiplied by gemm(), 0 oneDNN's bf16 matmul, -1 as the CPU prefers (the
// default; oneDNN builds only: the others always widen).
void set_bf16_widening(int mode);
// y[M,N] = alpha * x[M,K] W[N,K]^T, added to y when accumulate, for M <= kThinMaxRows (decoding):
// false, computing nothing, where the CPU or build has no such kernel (thin.cpp). gemm() takes it
// first for such products. Tests switch it off to compare it with the library's GEMM.
constexpr int kThinMaxRows = 16;
bool thin_product(int M, int N, int K, float alpha, const float* x, int ldx, const float* W, int ldw, bool accumulate,
                  float* y, int ldy);
// The same with W in bf16 and alpha 1; x must hold bf16-rounded values (as gemm_bf16 rounds them).
bool thin_product_bf16(int M, int N, int K, const float* x, int ldx, const uint16_t* W, int ldw, bool accumulate,
                       float* y, int ldy);
void set_thin_kernels(bool on);
bool has_thin_kernels();  // whether this build and CPU have the kernel
// A constant matrix W [K,N] (row-major) stored once in the GEMM library's own blocked layout, for
// products y[M,N] (+)= x[M,K] W repeated with any M (packed.cpp). A plain GEMM packs such a W
// again on every call and runs 15-20% slower on it than on the transposed case x W^T, which
// packing does not speed up (measured on the engine's shapes); so the engine packs the frozen
// weights it multiplies untransposed: the dx products of backward and the head's expected rows.
// oneDNN builds only: elsewhere pack() returns null and callers keep using gemm().
class PackedMatrix {
 public:
  static std::unique_ptr<PackedMatrix> pack(const float* W, int K, int N);
  ~PackedMatrix();
  // x rows have stride ldx, y rows ldy; accumulate adds to y instead of overwriting it.
  void multiply(int M, const float* x, int ldx, float* y, int ldy, bool accumulate) const;
  size_t bytes() const;

 private:
  PackedMatrix() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int K_ = 0, N_ = 0;
};

// Sets the threads of both OpenMP and the BLAS for the calling thread's subsequent work.
void set_threads(int n);
int max_threads();  // of the calling thread, as set_threads() left it
int thread_index();  // inside an OpenMP region, this thread's number in its team (0 outside)
int default_threads();  // OMP_NUM_THREADS or the cores: what threads = 0 means
const char* blas_name();

}  // namespace tb
