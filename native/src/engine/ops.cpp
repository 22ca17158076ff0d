#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace tb {

uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float hash_uniform(uint64_t seed, uint64_t counter) {
  return float(mix_seed(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

// ---------------------------------------------------------------- embedding
void embedding_forward(float* out, const int32_t* ids, const float* table, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) memcpy(out + size_t(n) * C, table + size_t(ids[n]) * C, sizeof(float) * C);
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int N, int C) {
  // Rows may repeat an id, so columns are split across threads instead of rows.
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++)
    for (int n = 0; n < N; n++) dtable[size_t(ids[n]) * C + c] += dout[size_t(n) * C + c];
}

// ---------------------------------------------------------------- rmsnorm
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* xr = x + size_t(n) * C;
    float* o = out + size_t(n) * C;
    float ss = 0;
    for (int c = 0; c < C; c++) ss += xr[c] * xr[c];
    float r = 1.0f / std::sqrt(ss / C + eps);
    rstd[n] = r;
    for (int c = 0; c < C; c++) o[c] = w[c] * (xr[c] * r);
  }
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* xr = x + size_t(n) * C;
    const float* d = dout + size_t(n) * C;
    float* dxr = dx + size_t(n) * C;
    float r = rstd[n];
    float dot = 0;  // sum_c (w_c dy_c) x_c
    for (int c = 0; c < C; c++) dot += w[c] * d[c] * xr[c];
    float k = dot * r * r * r / C;
    for (int c = 0; c < C; c++) dxr[c] += r * w[c] * d[c] - k * xr[c];
  }
  if (dw) {
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++) {
      float acc = 0;
      for (int n = 0; n < N; n++) acc += dout[size_t(n) * C + c] * x[size_t(n) * C + c] * rstd[n];
      dw[c] += acc;
    }
  }
}

// ---------------------------------------------------------------- linear
void linear_forward(float* y, const float* x, const float* W, const float* b, int N, int in, int out) {
  gemm(false, true, N, out, in, 1.0f, x, in, W, in, 0.0f, y, out);
  if (b) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++) y[size_t(n) * out + o] += b[o];
  }
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const float* W,
                     int N, int in, int out) {
  if (dx) gemm(false, false, N, in, out, 1.0f, dy, out, W, in, 1.0f, dx, in);
  if (dW) gemm(true, false, out, in, N, 1.0f, dy, out, x, in, 1.0f, dW, in);
  if (db) {
#pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++) {
      float acc = 0;
      for (int n = 0; n < N; n++) acc += dy[size_t(n) * out + o];
      db[o] += acc;
    }
  }
}

// ---------------------------------------------------------------- lora
static void dropout_apply(float* xd, const float* x, size_t n, float p, uint64_t seed) {
  float keep = 1.0f - p, scale = 1.0f / keep;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); i++) xd[i] = hash_uniform(seed, uint64_t(i)) < keep ? x[i] * scale : 0.0f;
}

void lora_forward(float* y, float* ax, const float* x, const float* A, const float* B, float s, int N,
                  int in, int out, int r, float dropout, uint64_t seed) {
  const float* xin = x;
  std::vector<float> xd;
  if (dropout > 0) {
    xd.resize(size_t(N) * in);
    dropout_apply(xd.data(), x, xd.size(), dropout, seed);
    xin = xd.data();
  }
  gemm(false, true, N, r, in, 1.0f, xin, in, A, in, 0.0f, ax, r);
  gemm(false, true, N, out, r, s, ax, r, B, r, 1.0f, y, out);
}

void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* ax,
                   const float* A, const float* B, float s, int N, int in, int out, int r, float dropout,
                   uint64_t seed) {
  // t = s * dy B  [N, r] : gradient wrt ax
  std::vector<float> t(size_t(N) * r);
  gemm(false, false, N, r, out, s, dy, out, B, r, 0.0f, t.data(), r);
  if (dB) gemm(true, false, out, r, N, s, dy, out, ax, r, 1.0f, dB, r);
  const float* xin = x;
  std::vector<float> xd;
  if (dropout > 0) {
    xd.resize(size_t(N) * in);
    dropout_apply(xd.data(), x, xd.size(), dropout, seed);
    xin = xd.data();
  }
  if (dA) gemm(true, false, r, in, N, 1.0f, t.data(), r, xin, in, 1.0f, dA, in);
  if (!dx) return;
  if (dropout <= 0) {
    gemm(false, false, N, in, r, 1.0f, t.data(), r, A, in, 1.0f, dx, in);
  } else {
    std::vector<float> g(size_t(N) * in);
    gemm(false, false, N, in, r, 1.0f, t.data(), r, A, in, 0.0f, g.data(), in);
    float keep = 1.0f - dropout, scale = 1.0f / keep;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < int64_t(g.size()); i++)
      if (hash_uniform(seed, uint64_t(i)) < keep) dx[i] += g[i] * scale;
  }
}

// ---------------------------------------------------------------- rope
void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) {
  int half = D / 2;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* c = cos + size_t(pos[n]) * half;
    const float* s = sin + size_t(pos[n]) * half;
    for (int h = 0; h < H; h++) {
      float* v = x + (size_t(n) * H + h) * D;
      for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) {
  int half = D / 2;
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* c = cos + size_t(pos[n]) * half;
    const float* s = sin + size_t(pos[n]) * half;
    for (int h = 0; h < H; h++) {
      float* v = dx + (size_t(n) * H + h) * D;
      for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * c[i] + b * s[i];
        v[i + half] = b * c[i] - a * s[i];
      }
    }
  }
}

// ---------------------------------------------------------------- attention
static inline float dot(const float* a, const float* b, int n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int i = 0; i < n; i++) acc += a[i] * b[i];
  return acc;
}

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* start, const int32_t* len, int B, int Hq, int Hk, int D) {
  int group = Hq / Hk;
  float scale = 1.0f / std::sqrt(float(D));
  int qs = Hq * D, ks = Hk * D;
  int maxlen = 0;
  for (int b = 0; b < B; b++) maxlen = std::max(maxlen, len[b]);
#pragma omp parallel
  {
    std::vector<float> p(size_t(std::max(maxlen, 1)));
#pragma omp for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
      for (int h = 0; h < Hq; h++) {
        int hk = h / group;
        for (int t = 0; t < len[b]; t++) {
          int row = start[b] + t;
          const float* qr = q + size_t(row) * qs + size_t(h) * D;
          float m = -INFINITY;
          for (int j = 0; j <= t; j++) {
            p[j] = dot(qr, k + size_t(start[b] + j) * ks + size_t(hk) * D, D) * scale;
            m = std::max(m, p[j]);
          }
          float sum = 0;
          for (int j = 0; j <= t; j++) {
            p[j] = std::exp(p[j] - m);
            sum += p[j];
          }
          float inv = 1.0f / sum;
          float* o = out + size_t(row) * qs + size_t(h) * D;
          for (int d = 0; d < D; d++) o[d] = 0;
          for (int j = 0; j <= t; j++) {
            const float* vr = v + size_t(start[b] + j) * ks + size_t(hk) * D;
            float w = p[j] * inv;
#pragma omp simd
            for (int d = 0; d < D; d++) o[d] += w * vr[d];
          }
          lse[size_t(row) * Hq + h] = m + std::log(sum);
        }
      }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v,
                        const int32_t* start, const int32_t* len, int B, int Hq, int Hk, int D) {
  int group = Hq / Hk;
  float scale = 1.0f / std::sqrt(float(D));
  int qs = Hq * D, ks = Hk * D;
  int maxlen = 0, N = 0;
  for (int b = 0; b < B; b++) {
    maxlen = std::max(maxlen, len[b]);
    N = std::max(N, start[b] + len[b]);
  }
  memset(dk, 0, sizeof(float) * size_t(N) * ks);
  memset(dv, 0, sizeof(float) * size_t(N) * ks);
  // One task per (sequence, kv head): the q heads of a group all write the same dk/dv rows.
#pragma omp parallel
  {
    std::vector<float> ds(size_t(std::max(maxlen, 1)));
#pragma omp for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
      for (int hk = 0; hk < Hk; hk++)
        for (int h = hk * group; h < (hk + 1) * group; h++)
          for (int t = 0; t < len[b]; t++) {
            int row = start[b] + t;
            const float* qr = q + size_t(row) * qs + size_t(h) * D;
            const float* dor = dout + size_t(row) * qs + size_t(h) * D;
            const float* orow = out + size_t(row) * qs + size_t(h) * D;
            float l = lse[size_t(row) * Hq + h];
            float Dt = dot(dor, orow, D);
            float* dqr = dq + size_t(row) * qs + size_t(h) * D;
            for (int d = 0; d < D; d++) dqr[d] = 0;
            for (int j = 0; j <= t; j++) {
              size_t kv = size_t(start[b] + j) * ks + size_t(hk) * D;
              float p = std::exp(dot(qr, k + kv, D) * scale - l);
              float dp = dot(dor, v + kv, D);
              float s = p * (dp - Dt) * scale;
              const float* kr = k + kv;
              float* dkr = dk + kv;
              float* dvr = dv + kv;
#pragma omp simd
              for (int d = 0; d < D; d++) {
                dqr[d] += s * kr[d];
                dkr[d] += s * qr[d];
                dvr[d] += p * dor[d];
              }
            }
          }
  }
}

// ---------------------------------------------------------------- swiglu
void swiglu_forward(float* h, const float* g, const float* u, size_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); i++) {
    float sg = 1.0f / (1.0f + std::exp(-g[i]));
    h[i] = g[i] * sg * u[i];
  }
}

void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); i++) {
    float sg = 1.0f / (1.0f + std::exp(-g[i]));
    float silu = g[i] * sg;
    du[i] = dh[i] * silu;
    dg[i] = dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
  }
}

// ---------------------------------------------------------------- log-probs
static int vocab_chunk(int M, int V) {
  // Keep one chunk of logits near 4M floats (16 MB) whatever the batch.
  int c = int(std::min<int64_t>(V, std::max<int64_t>(256, (int64_t(4) << 20) / std::max(M, 1))));
  return std::max(1, c);
}

void logprob_forward(float* lp, float* lse, const float* h, const float* W, const int32_t* target,
                     int M, int C, int V) {
  if (M == 0) return;
  int chunk = vocab_chunk(M, V);
  std::vector<float> logits(size_t(M) * chunk);
  std::vector<float> mx(M, -INFINITY), sum(M, 0.0f), tl(M, 0.0f);
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int vc = std::min(chunk, V - v0);
    gemm(false, true, M, vc, C, 1.0f, h, C, W + size_t(v0) * C, C, 0.0f, logits.data(), vc);
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
      const float* l = logits.data() + size_t(m) * vc;
      float cm = -INFINITY;
      for (int j = 0; j < vc; j++) cm = std::max(cm, l[j]);
      float nm = std::max(mx[m], cm);
      float s = sum[m] * std::exp(mx[m] - nm);
      for (int j = 0; j < vc; j++) s += std::exp(l[j] - nm);
      mx[m] = nm;
      sum[m] = s;
      int t = target[m] - v0;
      if (t >= 0 && t < vc) tl[m] = l[t];
    }
  }
  for (int m = 0; m < M; m++) {
    lse[m] = mx[m] + std::log(sum[m]);
    lp[m] = tl[m] - lse[m];
  }
}

void logprob_backward(float* dh, float* dW, const float* dlp, const float* h, const float* W,
                      const int32_t* target, const float* lse, int M, int C, int V) {
  if (M == 0) return;
  int chunk = vocab_chunk(M, V);
  std::vector<float> logits(size_t(M) * chunk);
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int vc = std::min(chunk, V - v0);
    gemm(false, true, M, vc, C, 1.0f, h, C, W + size_t(v0) * C, C, 0.0f, logits.data(), vc);
    // dlogits = dlp * (onehot(target) - softmax)
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
      float* l = logits.data() + size_t(m) * vc;
      float g = dlp[m], ls = lse[m];
      for (int j = 0; j < vc; j++) l[j] = -g * std::exp(l[j] - ls);
      int t = target[m] - v0;
      if (t >= 0 && t < vc) l[t] += g;
    }
    gemm(false, false, M, C, vc, 1.0f, logits.data(), vc, W + size_t(v0) * C, C, 1.0f, dh, C);
    if (dW) gemm(true, false, vc, C, M, 1.0f, logits.data(), vc, h, C, 1.0f, dW + size_t(v0) * C, C);
  }
}

}  // namespace tb
