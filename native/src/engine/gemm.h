// Row-major GEMM: C = alpha * op(A) @ op(B) + beta * C, op = transpose when ta/tb.
// A is [M,K] (or [K,M] when ta), B is [K,N] (or [N,K] when tb). OpenBLAS when found,
// otherwise a blocked OpenMP kernel so the engine always builds.
#pragma once

namespace tb {

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
// out[N,W] (+)= alpha * Y[N,r] @ M[r,W] with M contiguous (ld W) and r small (the LoRA rank);
// without accumulate, out is written without being read (rank.cpp).
void rank_expand(int N, int W, int r, float alpha, const float* Y, int ldy, const float* M, float* out, int ldo,
                 bool accumulate);
// Tests switch the rank kernel off to compare it with gemm().
void set_rank_kernels(bool on);
// Sets the threads of both OpenMP and the BLAS for the calling thread's subsequent work.
void set_threads(int n);
int max_threads();
const char* blas_name();

}  // namespace tb
