// Row-major GEMM: C = alpha * op(A) @ op(B) + beta * C, op = transpose when ta/tb.
// A is [M,K] (or [K,M] when ta), B is [K,N] (or [N,K] when tb). OpenBLAS when found,
// otherwise a blocked OpenMP kernel so the engine always builds.
#pragma once

namespace tb {

void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);
// Sets the threads of both OpenMP and the BLAS for the calling thread's subsequent work.
void set_threads(int n);
int max_threads();
const char* blas_name();

}  // namespace tb
