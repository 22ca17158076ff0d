// Row kernels compiled for several x86-64 levels and picked at load time (GCC target_clones),
// so the addon stays portable (baseline x86-64) yet uses AVX2/AVX-512 where the CPU has them.
// They are plain functions, called from inside OpenMP loops: outlined OpenMP bodies are not
// cloned themselves, the row kernels they call are.
#pragma once
#include <cstddef>
#include <cstdint>

// target_clones needs ifunc (ELF): not on Windows, whose builds run the baseline kernels.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(_WIN32)
#define TB_HOT __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4")))
#else
#define TB_HOT
#endif

namespace tb {

float row_dot(const float* a, const float* b, int n);
float row_max(const float* x, int n);
// x[i] = exp(x[i] - m); returns the sum.
float row_exp_sum(float* x, int n, float m);
void row_scale(float* x, int n, float s);
// y += a * x
void row_axpy(float* y, const float* x, int n, float a);
void row_rmsnorm(float* out, const float* x, const float* w, int C, float r);
float row_sumsq(const float* x, int n);
void row_rmsnorm_backward(float* dx, const float* d, const float* x, const float* w, int C, float r);
void chunk_swiglu(float* h, const float* g, const float* u, size_t n);
void chunk_swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n);
// softmax backward row of the attention: ds = p * (dp - Dt) * scale, in place in dp
void row_softmax_backward(float* dp, const float* p, int n, float Dt, float scale);
// dlogits row of the log-prob head: l = -g * exp(l - lse)
void row_neg_softmax(float* l, int n, float lse, float g);
// bf16 rows: out = bf16(x) (round to nearest even), out = float(x), y += a * float(x)
void row_to_bf16(uint16_t* out, const float* x, int n);
void row_from_bf16(float* out, const uint16_t* x, int n);
// out = float(bf16(x)): the same value as row_to_bf16 then row_from_bf16, in one pass
void row_round_bf16(float* out, const float* x, int n);
void row_axpy_bf16(float* y, const uint16_t* x, int n, float a);
// out[r] = sum_k x[k] w[r * n + k] for the 4 contiguous rows r of w
void row_dot4(const float* x, const float* w, int n, float* out);
void chunk_adamw(float* w, float* g, float* m, float* v, size_t n, float clip, float b1, float b2, float decay,
                 float step_size, float bc2_sqrt, float eps);

}  // namespace tb
