#include "simd.h"

#include <cmath>
#include <cstdint>
#include <cstring>

namespace tb {

// exp for x <= ~88 with relative error ~2e-7: 2^n * p(r), r in [-ln2/2, ln2/2]; written so that
// it vectorises (no table, no branches but selects).
// Below -60 the result is flushed to 0: exp(-60) ~ 1e-26 is nothing next to the largest term of a
// softmax (1), while values near 1e-38 become denormal in the GEMMs that consume them and make
// those GEMMs several times slower.
static inline float fast_exp(float x0) {
  float x = x0 < -87.0f ? -87.0f : (x0 > 88.0f ? 88.0f : x0);
  float t = x * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest
  float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int32_t e = int32_t(n) + 127;
  uint32_t bits = uint32_t(e) << 23;
  float s;
  memcpy(&s, &bits, 4);
  return x0 < -60.0f ? 0.0f : p * s;
}

// Reductions keep kLanes partial results: without -ffast-math the compiler must add in source
// order, which serialises a single accumulator into one scalar add per element.
static const int kLanes = 16;

static inline float lanes_sum(const float* acc) {
  float s = 0;
  for (int j = 0; j < kLanes; j++) s += acc[j];
  return s;
}

TB_HOT float row_dot(const float* a, const float* b, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += a[i + j] * b[i + j];
  float s = lanes_sum(acc);
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

TB_HOT float row_max(const float* x, int n) {
  float acc[kLanes];
  for (int j = 0; j < kLanes; j++) acc[j] = -INFINITY;
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
  float m = -INFINITY;
  for (int j = 0; j < kLanes; j++) m = acc[j] > m ? acc[j] : m;
  for (; i < n; i++) m = x[i] > m ? x[i] : m;
  return m;
}

TB_HOT float row_exp_sum(float* x, int n, float m) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) {
      float e = fast_exp(x[i + j] - m);
      x[i + j] = e;
      acc[j] += e;
    }
  float s = lanes_sum(acc);
  for (; i < n; i++) {
    x[i] = fast_exp(x[i] - m);
    s += x[i];
  }
  return s;
}

TB_HOT void row_scale(float* x, int n, float s) {
  for (int i = 0; i < n; i++) x[i] *= s;
}

TB_HOT void row_axpy(float* y, const float* x, int n, float a) {
  for (int i = 0; i < n; i++) y[i] += a * x[i];
}

TB_HOT float row_sumsq(const float* x, int n) {
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += x[i + j] * x[i + j];
  float s = lanes_sum(acc);
  for (; i < n; i++) s += x[i] * x[i];
  return s;
}

TB_HOT void row_rmsnorm(float* out, const float* x, const float* w, int C, float r) {
  for (int c = 0; c < C; c++) out[c] = w[c] * (x[c] * r);
}

TB_HOT void row_rmsnorm_backward(float* dx, const float* d, const float* x, const float* w, int C, float r) {
  float acc[kLanes] = {};
  int c0 = 0;
  for (; c0 + kLanes <= C; c0 += kLanes)
    for (int j = 0; j < kLanes; j++) acc[j] += w[c0 + j] * d[c0 + j] * x[c0 + j];
  float dot = lanes_sum(acc);
  for (; c0 < C; c0++) dot += w[c0] * d[c0] * x[c0];
  float k = dot * r * r * r / C;
  for (int c = 0; c < C; c++) dx[c] += r * w[c] * d[c] - k * x[c];
}

TB_HOT void chunk_swiglu(float* h, const float* g, const float* u, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float sg = 1.0f / (1.0f + fast_exp(-g[i]));
    h[i] = g[i] * sg * u[i];
  }
}

TB_HOT void chunk_swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n) {
  for (size_t i = 0; i < n; i++) {
    float sg = 1.0f / (1.0f + fast_exp(-g[i]));
    du[i] = dh[i] * g[i] * sg;
    dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
  }
}

TB_HOT void row_softmax_backward(float* dp, const float* p, int n, float Dt, float scale) {
  for (int i = 0; i < n; i++) dp[i] = p[i] * (dp[i] - Dt) * scale;
}

TB_HOT void row_neg_softmax(float* l, int n, float lse, float g) {
  for (int i = 0; i < n; i++) l[i] = -g * fast_exp(l[i] - lse);
}

TB_HOT void chunk_adamw(float* w, float* g, float* m, float* v, size_t n, float clip, float b1, float b2, float decay,
                        float step_size, float bc2_sqrt, float eps) {
  for (size_t i = 0; i < n; i++) {
    float gi = g[i] * clip;
    g[i] = gi;
    m[i] = b1 * m[i] + (1 - b1) * gi;
    v[i] = b2 * v[i] + (1 - b2) * gi * gi;
    w[i] *= decay;
    w[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
  }
}

// The conversions of dtype.h in loops the compiler vectorises (integer ops and selects only).
TB_HOT void row_to_bf16(uint16_t* out, const float* x, int n) {
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, x + i, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    out[i] = uint16_t((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
  }
}

TB_HOT void row_round_bf16(float* out, const float* x, int n) {
  for (int i = 0; i < n; i++) {
    uint32_t u;
    memcpy(&u, x + i, 4);
    uint32_t r = ((u + 0x7fffu + ((u >> 16) & 1u)) >> 16) << 16;
    r = (u & 0x7fffffffu) > 0x7f800000u ? (u & 0xffff0000u) | 0x400000u : r;
    memcpy(out + i, &r, 4);
  }
}

TB_HOT void row_from_bf16(float* out, const uint16_t* x, int n) {
  for (int i = 0; i < n; i++) {
    uint32_t u = uint32_t(x[i]) << 16;
    memcpy(out + i, &u, 4);
  }
}

TB_HOT void row_axpy_bf16(float* y, const uint16_t* x, int n, float a) {
  for (int i = 0; i < n; i++) {
    uint32_t u = uint32_t(x[i]) << 16;
    float f;
    memcpy(&f, &u, 4);
    y[i] += a * f;
  }
}

TB_HOT void row_dot4(const float* x, const float* w, int n, float* out) {
  float a0[kLanes] = {}, a1[kLanes] = {}, a2[kLanes] = {}, a3[kLanes] = {};
  const float *w0 = w, *w1 = w + n, *w2 = w + 2 * size_t(n), *w3 = w + 3 * size_t(n);
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; j++) {
      float xv = x[i + j];
      a0[j] += xv * w0[i + j];
      a1[j] += xv * w1[i + j];
      a2[j] += xv * w2[i + j];
      a3[j] += xv * w3[i + j];
    }
  float s0 = lanes_sum(a0), s1 = lanes_sum(a1), s2 = lanes_sum(a2), s3 = lanes_sum(a3);
  for (; i < n; i++) {
    s0 += x[i] * w0[i];
    s1 += x[i] * w1[i];
    s2 += x[i] * w2[i];
    s3 += x[i] * w3[i];
  }
  out[0] = s0;
  out[1] = s1;
  out[2] = s2;
  out[3] = s3;
}

}  // namespace tb
