#include "ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "dtype.h"
#include "gemm.h"
#include "random.h"
#include "simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tb {

// ---------------------------------------------------------------- elementwise
// Spans of 16k floats: large enough to amortise the scheduling, small enough to balance.
template <class F>
static void for_spans(size_t n, F f) {
  const int64_t span = 1 << 14;
#pragma omp parallel for schedule(static) if (worth_forking(n))
  for (int64_t c = 0; c < (int64_t(n) + span - 1) / span; c++) f(size_t(c * span), size_t(std::min(int64_t(n), (c + 1) * span)));
}

void add_inplace(float* y, const float* x, size_t n) {
  for_spans(n, [&](size_t i0, size_t i1) { row_axpy(y + i0, x + i0, int(i1 - i0), 1.0f); });
}

void scale_inplace(float* y, float a, size_t n) {
  for_spans(n, [&](size_t i0, size_t i1) { row_scale(y + i0, int(i1 - i0), a); });
}

void fill_zero(float* y, size_t n) {
  for_spans(n, [&](size_t i0, size_t i1) { memset(y + i0, 0, sizeof(float) * (i1 - i0)); });
}

void copy_floats(float* y, const float* x, size_t n) {
  for_spans(n, [&](size_t i0, size_t i1) { memcpy(y + i0, x + i0, sizeof(float) * (i1 - i0)); });
}

// ---------------------------------------------------------------- embedding
void mul_wt(int M, int N, int K, const float* x, int ldx, const Weights& W, bool accumulate, float* y, int ldy) {
  if (W.h) gemm_bf16(true, M, N, K, x, ldx, W.h, K, accumulate, y, ldy);
  else gemm(false, true, M, N, K, 1.0f, x, ldx, W.f, K, accumulate ? 1.0f : 0.0f, y, ldy);
}

void mul_w(int M, int N, int K, const float* x, int ldx, const Weights& W, bool accumulate, float* y, int ldy) {
  if (W.h) gemm_bf16(false, M, N, K, x, ldx, W.h, N, accumulate, y, ldy);
  else gemm(false, false, M, N, K, 1.0f, x, ldx, W.f, N, accumulate ? 1.0f : 0.0f, y, ldy);
}

void embedding_forward(float* out, const int32_t* ids, const Weights& table, int N, int C) {
#pragma omp parallel for schedule(static) if (worth_forking(size_t(N) * C))
  for (int n = 0; n < N; n++) {
    size_t r = size_t(ids[n]) * C;
    if (table.h) row_from_bf16(out + size_t(n) * C, table.h + r, C);
    else memcpy(out + size_t(n) * C, table.f + r, sizeof(float) * C);
  }
}

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int N, int C) {
  // Rows may repeat an id, so columns are split across threads instead of rows.
#pragma omp parallel for schedule(static)
  for (int c = 0; c < C; c++)
    for (int n = 0; n < N; n++) dtable[size_t(ids[n]) * C + c] += dout[size_t(n) * C + c];
}

// ---------------------------------------------------------------- rmsnorm
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) if (worth_forking(size_t(N) * C))
  for (int n = 0; n < N; n++) {
    const float* xr = x + size_t(n) * C;
    float r = 1.0f / std::sqrt(row_sumsq(xr, C) / C + eps);
    rstd[n] = r;
    row_rmsnorm(out + size_t(n) * C, xr, w, C, r);
  }
}

void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int N, int C) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++)
    row_rmsnorm_backward(dx + size_t(n) * C, dout + size_t(n) * C, x + size_t(n) * C, w, C, rstd[n]);
  if (dw) {
    // Per-thread partial sums over rows (the long axis), then added in thread order: dw may
    // hold earlier micro-batches' sums, and adding the parts in whatever order the threads
    // finish would round differently from run to run.
    int nt = max_threads();
    std::vector<float> parts(size_t(C) * size_t(nt), 0.0f);
#pragma omp parallel
    {
      float* part = parts.data() + size_t(C) * size_t(thread_index());
#pragma omp for schedule(static)
      for (int n = 0; n < N; n++) {
        const float* d = dout + size_t(n) * C;
        const float* xr = x + size_t(n) * C;
        float r = rstd[n];
        for (int c = 0; c < C; c++) part[c] += d[c] * xr[c] * r;
      }
    }
    for (int t = 0; t < nt; t++)
      for (int c = 0; c < C; c++) dw[c] += parts[size_t(t) * C + c];
  }
}

// ---------------------------------------------------------------- linear
void linear_forward(float* y, const float* x, const Weights& W, const float* b, int N, int in, int out, bool accumulate) {
  mul_wt(N, out, in, x, in, W, accumulate, y, out);
  if (b) {
#pragma omp parallel for schedule(static) if (worth_forking(size_t(N) * out))
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++) y[size_t(n) * out + o] += b[o];
  }
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const Weights& W,
                     int N, int in, int out, bool dx_accumulate, const PackedMatrix* Wp) {
  if (dx && Wp) Wp->multiply(N, dy, out, dx, in, dx_accumulate);
  else if (dx) mul_w(N, in, out, dy, out, W, dx_accumulate, dx, in);
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
// The branch's input: x itself, or dropout(x) written into xd when p > 0.
static const float* lora_input(const float* x, size_t n, float p, uint64_t seed, std::vector<float>& xd) {
  if (p <= 0) return x;
  xd.resize(n);
  float keep = 1.0f - p, scale = 1.0f / keep;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); i++) xd[i] = hash_uniform(seed, uint64_t(i)) < keep ? x[i] * scale : 0.0f;
  return xd.data();
}

// out[cols, rows] = A[rows, cols]^T
static void transpose(std::vector<float>& out, const float* A, int rows, int cols) {
  out.resize(size_t(rows) * cols);
  for (int i = 0; i < rows; i++)
    for (int j = 0; j < cols; j++) out[size_t(j) * rows + i] = A[size_t(i) * cols + j];
}

void lora_forward(float* y, float* ax, const float* x, const float* A, const float* B, float s, int N,
                  int in, int out, int r, float dropout, uint64_t seed, bool accumulate) {
  std::vector<float> xd;
  const float* xin = lora_input(x, size_t(N) * in, dropout, seed, xd);
  gemm(false, true, N, r, in, 1.0f, xin, in, A, in, 0.0f, ax, r);
  std::vector<float> Bt;
  transpose(Bt, B, out, r);
  rank_expand(N, out, r, s, ax, r, Bt.data(), y, out, accumulate);
}

void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* ax,
                   const float* A, const float* B, float s, int N, int in, int out, int r, float dropout,
                   uint64_t seed, bool dx_accumulate) {
  // t = s * dy B  [N, r] : gradient wrt ax
  std::vector<float> t(size_t(N) * r);
  gemm(false, false, N, r, out, s, dy, out, B, r, 0.0f, t.data(), r);
  if (dB) gemm(true, false, out, r, N, s, dy, out, ax, r, 1.0f, dB, r);
  std::vector<float> xd;
  const float* xin = lora_input(x, size_t(N) * in, dropout, seed, xd);
  if (dA) gemm(true, false, r, in, N, 1.0f, t.data(), r, xin, in, 1.0f, dA, in);
  if (!dx) return;
  if (dropout <= 0) {
    rank_expand(N, in, r, 1.0f, t.data(), r, A, dx, in, dx_accumulate);
  } else {
    std::vector<float> g(size_t(N) * in);
    rank_expand(N, in, r, 1.0f, t.data(), r, A, g.data(), in, false);
    float keep = 1.0f - dropout, scale = 1.0f / keep;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < int64_t(g.size()); i++) {
      float d = hash_uniform(seed, uint64_t(i)) < keep ? g[i] * scale : 0.0f;
      dx[i] = dx_accumulate ? dx[i] + d : d;
    }
  }
}

// ---------------------------------------------------------------- DoRA
void dora_norm(float* n, const Weights& W, const float* A, const float* B, float s, int out, int in, int r) {
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(in));
#pragma omp for schedule(static)
    for (int j = 0; j < out; j++) {
      if (W.f) {
        memcpy(row.data(), W.f + size_t(j) * in, sizeof(float) * size_t(in));
      } else {
        const uint16_t* h = W.h + size_t(j) * in;
        for (int i = 0; i < in; i++) row[size_t(i)] = bf16_to_f32(h[i]);
      }
      for (int k = 0; k < r; k++) {
        float b = s * B[size_t(j) * r + k];
        if (b == 0.0f) continue;
        const float* a = A + size_t(k) * in;
        for (int i = 0; i < in; i++) row[size_t(i)] += b * a[i];
      }
      double ss = 0;
      for (int i = 0; i < in; i++) ss += double(row[size_t(i)]) * row[size_t(i)];
      n[j] = float(std::sqrt(ss));
    }
  }
}

void dora_scale(float* y, float* z, const float* m, const float* n, const float* b, int N, int out) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; t++) {
    float* yr = y + size_t(t) * out;
    if (z) memcpy(z + size_t(t) * out, yr, sizeof(float) * size_t(out));
    for (int j = 0; j < out; j++) yr[j] = (m[j] / n[j]) * yr[j] + (b ? b[j] : 0.0f);
  }
}

void dora_mix(float* y, float* z, const float* u, const float* v, const float* m, const float* n, int N, int out) {
#pragma omp parallel for schedule(static)
  for (int t = 0; t < N; t++) {
    size_t o = size_t(t) * out;
    for (int j = 0; j < out; j++) {
      float c = m[j] / n[j];
      y[o + j] += (c - 1.0f) * u[o + j] + c * v[o + j];
      if (z) z[o + j] = u[o + j] + v[o + j];
    }
  }
}

void dora_backward(float* dm, float* dyc, float* dyc1, const float* dy, const float* z, const float* m, const float* n,
                   int N, int out) {
  // dm is a sum over rows: threads take blocks of columns, so none shares an accumulator.
  const int W = 64;
#pragma omp parallel for schedule(static)
  for (int j0 = 0; j0 < out; j0 += W) {
    int j1 = std::min(out, j0 + W);
    double acc[W] = {0};
    for (int t = 0; t < N; t++) {
      size_t o = size_t(t) * out;
      for (int j = j0; j < j1; j++) {
        float c = m[j] / n[j];
        acc[j - j0] += double(dy[o + j]) * z[o + j];
        dyc[o + j] = c * dy[o + j];
        if (dyc1) dyc1[o + j] = (c - 1.0f) * dy[o + j];
      }
    }
    if (dm)
      for (int j = j0; j < j1; j++) dm[j] += float(acc[j - j0] / n[j]);
  }
}

void dropout_apply(float* out, const float* x, size_t n, float p, uint64_t seed) {
  float keep = 1.0f - p, scale = 1.0f / keep;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < int64_t(n); i++) out[i] = hash_uniform(seed, uint64_t(i)) < keep ? x[i] * scale : 0.0f;
}

static void stack_rows(std::vector<float>& out, int n, const float* const* A, size_t each) {
  out.resize(size_t(n) * each);
  for (int i = 0; i < n; i++) memcpy(out.data() + size_t(i) * each, A[i], sizeof(float) * each);
}

void lora_forward_shared(int n, float* const* y, const int* out, float* ax, const float* x, const float* const* A,
                         const float* const* B, float s, int N, int in, int r, bool accumulate) {
  std::vector<float> As, Bt;
  stack_rows(As, n, A, size_t(r) * in);  // [n*r, in]
  int R = n * r;
  gemm(false, true, N, R, in, 1.0f, x, in, As.data(), in, 0.0f, ax, R);
  for (int i = 0; i < n; i++) {
    transpose(Bt, B[i], out[i], r);
    rank_expand(N, out[i], r, s, ax + size_t(i) * r, R, Bt.data(), y[i], out[i], accumulate);
  }
}

void lora_backward_shared(int n, float* dx, float* const* dA, float* const* dB, const float* const* dy, const int* out,
                          const float* x, const float* ax, const float* const* A, const float* const* B, float s, int N,
                          int in, int r, bool dx_accumulate) {
  int R = n * r;
  // t = s * dy_i B_i, stacked [N, n*r]: the gradient wrt ax
  std::vector<float> t(size_t(N) * R);
  for (int i = 0; i < n; i++) {
    gemm(false, false, N, r, out[i], s, dy[i], out[i], B[i], r, 0.0f, t.data() + size_t(i) * r, R);
    if (dB[i]) gemm(true, false, out[i], r, N, s, dy[i], out[i], ax + size_t(i) * r, R, 1.0f, dB[i], r);
  }
  bool any_dA = false;
  for (int i = 0; i < n; i++) any_dA = any_dA || dA[i];
  if (any_dA) {
    std::vector<float> dAs(size_t(R) * in);
    gemm(true, false, R, in, N, 1.0f, t.data(), R, x, in, 0.0f, dAs.data(), in);
    for (int i = 0; i < n; i++)
      if (dA[i]) row_axpy(dA[i], dAs.data() + size_t(i) * r * in, r * in, 1.0f);
  }
  if (dx) {
    std::vector<float> As;
    stack_rows(As, n, A, size_t(r) * in);
    rank_expand(N, in, R, 1.0f, t.data(), R, As.data(), dx, in, dx_accumulate);
  }
}

// ---------------------------------------------------------------- rope
// Rotates each head's half-split pairs by the position's angle; sin_sign -1 rotates back,
// which is the backward (the rotation is orthogonal, so its transpose is its inverse).
static void rope_rotate(float* x, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D,
                        float sin_sign) {
  int half = D / 2;
#pragma omp parallel for schedule(static) if (worth_forking(size_t(N) * H * D))
  for (int n = 0; n < N; n++) {
    const float* c = cos + size_t(pos[n]) * half;
    const float* s = sin + size_t(pos[n]) * half;
    for (int h = 0; h < H; h++) {
      float* v = x + (size_t(n) * H + h) * D;
      for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half], si = sin_sign * s[i];
        v[i] = a * c[i] - b * si;
        v[i + half] = b * c[i] + a * si;
      }
    }
  }
}

void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) {
  rope_rotate(x, cos, sin, pos, N, H, D, 1.0f);
}

void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) {
  rope_rotate(dx, cos, sin, pos, N, H, D, -1.0f);
}

// ---------------------------------------------------------------- attention
// Queries are processed in blocks of kQBlock rows; a block attends to keys [0, block end), so
// scores are a [kQBlock, len] GEMM and the wasted causal half is at most one block wide.
static const int kQBlock = 64;

struct AttnTask {
  int b, h, i0;
};

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* qstart, const int32_t* qlen, const int32_t* kvstart, const int32_t* kvlen,
                       int B, int Hq, int Hk, int D) {
  int group = Hq / Hk;
  float scale = 1.0f / std::sqrt(float(D));
  int qs = Hq * D, ks = Hk * D;
  int maxlen = 0, rows = 1;
  std::vector<AttnTask> tasks;
  for (int b = 0; b < B; b++) {
    if (qlen[b] > kvlen[b]) throw std::runtime_error("attention: a sequence has more queries than keys");
    maxlen = std::max(maxlen, kvlen[b]);
    rows = std::max(rows, std::min(qlen[b], kQBlock));
    for (int h = 0; h < Hq; h++)
      for (int i0 = 0; i0 < qlen[b]; i0 += kQBlock) tasks.push_back({b, h, i0});
  }
  // Scratch is allocated before the parallel region: an exception (out of memory) must never
  // leave an OpenMP region, which would terminate the process. A decode step's blocks are one
  // query row each, so its scratch is one row of scores per thread.
  size_t per = size_t(rows) * std::max(maxlen, 1);
  std::vector<float> scratch(per * size_t(max_threads()));
#pragma omp parallel
  {
    float* S = scratch.data() + per * size_t(thread_index());
#pragma omp for schedule(dynamic)
    for (int ti = 0; ti < int(tasks.size()); ti++) {
      const AttnTask& tk = tasks[ti];
      // query t of the block sits at position off + t and sees keys [0, off + t]
      int b = tk.b, off = kvlen[b] - qlen[b];
      int hk = tk.h / group, i0 = tk.i0, i1 = std::min(qlen[b], i0 + kQBlock), bq = i1 - i0, nk = off + i1;
      const float* Q = q + size_t(qstart[b] + i0) * qs + size_t(tk.h) * D;
      const float* K = k + size_t(kvstart[b]) * ks + size_t(hk) * D;
      const float* Vv = v + size_t(kvstart[b]) * ks + size_t(hk) * D;
      gemm(false, true, bq, nk, D, scale, Q, qs, K, ks, 0.0f, S, nk);
      for (int r = 0; r < bq; r++) {
        int t = off + i0 + r;
        float* row = S + size_t(r) * nk;
        float m = row_max(row, t + 1);
        float sum = row_exp_sum(row, t + 1, m);
        row_scale(row, t + 1, 1.0f / sum);
        for (int j = t + 1; j < nk; j++) row[j] = 0.0f;
        lse[size_t(qstart[b] + i0 + r) * Hq + tk.h] = m + std::log(sum);
      }
      gemm(false, false, bq, D, nk, 1.0f, S, nk, Vv, ks, 0.0f, out + size_t(qstart[b] + i0) * qs + size_t(tk.h) * D, qs);
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
  fill_zero(dk, size_t(N) * ks);
  fill_zero(dv, size_t(N) * ks);
  // One task per (sequence, kv head): the q heads of a group all write the same dk/dv rows.
  size_t per = size_t(kQBlock) * std::max(maxlen, 1);
  std::vector<float> scratch(2 * per * size_t(max_threads()));
#pragma omp parallel
  {
    float* P = scratch.data() + 2 * per * size_t(thread_index());
    float* dP = P + per;
#pragma omp for schedule(dynamic) collapse(2)
    for (int b = 0; b < B; b++)
      for (int hk = 0; hk < Hk; hk++) {
        const float* K = k + size_t(start[b]) * ks + size_t(hk) * D;
        const float* Vv = v + size_t(start[b]) * ks + size_t(hk) * D;
        float* dK = dk + size_t(start[b]) * ks + size_t(hk) * D;
        float* dV = dv + size_t(start[b]) * ks + size_t(hk) * D;
        for (int h = hk * group; h < (hk + 1) * group; h++)
          for (int i0 = 0; i0 < len[b]; i0 += kQBlock) {
            int i1 = std::min(len[b], i0 + kQBlock), bq = i1 - i0, nk = i1;
            size_t qoff = size_t(start[b] + i0) * qs + size_t(h) * D;
            gemm(false, true, bq, nk, D, scale, q + qoff, qs, K, ks, 0.0f, P, nk);
            gemm(false, true, bq, nk, D, 1.0f, dout + qoff, qs, Vv, ks, 0.0f, dP, nk);
            for (int r = 0; r < bq; r++) {
              int t = i0 + r;
              float* p = P + size_t(r) * nk;
              float* dp = dP + size_t(r) * nk;
              float l = lse[size_t(start[b] + t) * Hq + h];
              row_exp_sum(p, t + 1, l);
              for (int j = t + 1; j < nk; j++) p[j] = dp[j] = 0.0f;
              float Dt = row_dot(dout + qoff + size_t(r) * qs, out + qoff + size_t(r) * qs, D);
              row_softmax_backward(dp, p, t + 1, Dt, scale);
            }
            gemm(false, false, bq, D, nk, 1.0f, dP, nk, K, ks, 0.0f, dq + qoff, qs);
            gemm(true, false, nk, D, bq, 1.0f, dP, nk, q + qoff, qs, 1.0f, dK, ks);
            gemm(true, false, nk, D, bq, 1.0f, P, nk, dout + qoff, qs, 1.0f, dV, ks);
          }
      }
  }
}

// ---------------------------------------------------------------- swiglu
static const size_t kChunk = 4096;

void swiglu_forward(float* h, const float* g, const float* u, size_t n) {
#pragma omp parallel for schedule(static) if (worth_forking(n))
  for (int64_t c = 0; c < int64_t((n + kChunk - 1) / kChunk); c++) {
    size_t i = size_t(c) * kChunk, m = std::min(kChunk, n - i);
    chunk_swiglu(h + i, g + i, u + i, m);
  }
}

void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < int64_t((n + kChunk - 1) / kChunk); c++) {
    size_t i = size_t(c) * kChunk, m = std::min(kChunk, n - i);
    chunk_swiglu_backward(dg + i, du + i, dh + i, g + i, u + i, m);
  }
}

// ---------------------------------------------------------------- MoE routing
void moe_route_forward(float* probs, int32_t* idx, float* w, const float* logits, int N, int E, int k, bool norm,
                       bool given_idx) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* z = logits + size_t(n) * E;
    float* p = probs + size_t(n) * E;
    float mx = z[0];
    for (int e = 1; e < E; e++) mx = std::max(mx, z[e]);
    float sum = 0;
    for (int e = 0; e < E; e++) sum += (p[e] = std::exp(z[e] - mx));
    for (int e = 0; e < E; e++) p[e] /= sum;
    int32_t* ix = idx + size_t(n) * k;
    float* wn = w + size_t(n) * k;
    // k passes of a max search: k and E are small (8 of 128 for Qwen3-30B-A3B)
    float total = 0;
    for (int j = 0; j < k; j++) {
      if (given_idx) {
        total += (wn[j] = p[ix[j]]);
        continue;
      }
      int best = -1;
      for (int e = 0; e < E; e++) {
        bool taken = false;
        for (int i = 0; i < j; i++) taken = taken || ix[i] == e;
        if (!taken && (best < 0 || p[e] > p[best])) best = e;
      }
      ix[j] = best;
      total += (wn[j] = p[best]);
    }
    if (norm)
      for (int j = 0; j < k; j++) wn[j] /= total;
  }
}

void moe_route_backward(float* dlogits, const float* dw, const float* probs, const int32_t* idx, const float* w,
                        const float* aux_g, int N, int E, int k, bool norm) {
#pragma omp parallel for schedule(static)
  for (int n = 0; n < N; n++) {
    const float* p = probs + size_t(n) * E;
    const int32_t* ix = idx + size_t(n) * k;
    const float *dwn = dw + size_t(n) * k, *wn = w + size_t(n) * k;
    float* dp = dlogits + size_t(n) * E;  // d probs first, then d logits in place
    for (int e = 0; e < E; e++) dp[e] = aux_g ? aux_g[e] : 0.0f;
    if (norm) {
      // w_j = p_j / S over the chosen: d p_j = (dw_j - sum_i dw_i w_i) / S
      float S = 0, dot = 0;
      for (int j = 0; j < k; j++) {
        S += p[ix[j]];
        dot += dwn[j] * wn[j];
      }
      for (int j = 0; j < k; j++) dp[ix[j]] += (dwn[j] - dot) / S;
    } else {
      for (int j = 0; j < k; j++) dp[ix[j]] += dwn[j];
    }
    float dot = 0;
    for (int e = 0; e < E; e++) dot += p[e] * dp[e];
    for (int e = 0; e < E; e++) dp[e] = p[e] * (dp[e] - dot);
  }
}

void scale_rows(float* y, const float* s, int M, int C) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    float* r = y + size_t(m) * C;
    for (int c = 0; c < C; c++) r[c] *= s[m];
  }
}

void row_dots(float* out, const float* a, const float* b, int M, int C) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) out[m] = row_dot(a + size_t(m) * C, b + size_t(m) * C, C);
}

// ---------------------------------------------------------------- log-probs
static int g_chunk_override = 0;
void set_logprob_chunk(int vocab_rows) { g_chunk_override = vocab_rows; }

static int vocab_chunk(int M, int V) {
  if (g_chunk_override > 0) return std::min(g_chunk_override, V);
  // Keep one chunk of logits near 4M floats (16 MB) whatever the batch.
  int c = int(std::min<int64_t>(V, std::max<int64_t>(256, (int64_t(4) << 20) / std::max(M, 1))));
  return std::max(1, c);
}

// 1024 vocabulary rows per packed chunk: a chunk of logits then stays in the caches between its
// two products (as fast as 4096 or faster, measured with oneDNN).
static const int kPackedHeadRows = 1024;

std::unique_ptr<PackedHead> PackedHead::pack(const float* W, int V, int C) {
  std::unique_ptr<PackedHead> p(new PackedHead());
  p->rows = g_chunk_override > 0 ? g_chunk_override : kPackedHeadRows;
  for (int v0 = 0; v0 < V; v0 += p->rows) {
    int vc = std::min(p->rows, V - v0);
    p->chunks.push_back(PackedMatrix::pack(W + size_t(v0) * C, vc, C));
    if (!p->chunks.back()) return nullptr;
  }
  return p;
}

size_t PackedHead::bytes() const {
  size_t n = 0;
  for (auto& m : chunks) n += m->bytes();
  return n;
}

void logprob_forward(float* lp, float* lse, float* ew, float* ent, const float* h, const Weights& W,
                     const int32_t* target, int M, int C, int V, std::vector<float>* scratch, const PackedHead* packed) {
  if (M == 0) return;
  int chunk = packed ? packed->rows : vocab_chunk(M, V);
  std::vector<float> local;
  std::vector<float>& logits = scratch ? *scratch : local;
  if (logits.size() < size_t(M) * chunk) logits.resize(size_t(M) * chunk);
  std::vector<float> mx(M, -INFINITY), sum(M, 0.0f), tl(M, 0.0f);
  // Without ew the entropy needs sum_v exp(l_v - max) (l_v - max), rescaled with the sum.
  bool ent_online = ent && !ew;
  std::vector<double> pl(ent_online ? M : 0, 0.0);
  if (ew) memset(ew, 0, sizeof(float) * size_t(M) * C);
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int vc = std::min(chunk, V - v0);
    mul_wt(M, vc, C, h, C, W.from_row(size_t(v0), C), false, logits.data(), vc);
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
      float* l = logits.data() + size_t(m) * vc;
      int t = target[m] - v0;
      if (t >= 0 && t < vc) tl[m] = l[t];
      float nm = std::max(mx[m], row_max(l, vc));
      float factor = std::exp(mx[m] - nm);
      if (ent_online) {
        // pl = sum_v e_v (l_v - nm) over the chunks so far, moved from the old max to nm.
        double shift = double(mx[m]) - nm, acc = 0;
        for (int v = 0; v < vc; v++) acc += std::exp(double(l[v]) - nm) * (double(l[v]) - nm);
        pl[m] = sum[m] > 0 ? (pl[m] + shift * sum[m]) * factor + acc : acc;
      }
      // l becomes exp(l - running max): unnormalised probabilities of this chunk
      sum[m] = sum[m] * factor + row_exp_sum(l, vc, nm);
      mx[m] = nm;
      if (ew && factor != 1.0f) row_scale(ew + size_t(m) * C, C, factor);
    }
    // ew accumulates sum_v p_v W_v, the expected head row, so that backward needs no logits.
    const PackedMatrix* pw = packed ? packed->chunks[size_t(v0 / chunk)].get() : nullptr;
    if (ew && pw) pw->multiply(M, logits.data(), vc, ew, C, true);
    else if (ew) mul_w(M, C, vc, logits.data(), vc, W.from_row(size_t(v0), C), true, ew, C);
  }
  for (int m = 0; m < M; m++) {
    lse[m] = mx[m] + std::log(sum[m]);
    lp[m] = tl[m] - lse[m];
    if (ew) row_scale(ew + size_t(m) * C, C, 1.0f / sum[m]);
    if (ent && ew) {
      // sum_v p_v logit_v = h . sum_v p_v W_v
      double e = 0;
      for (int c = 0; c < C; c++) e += double(h[size_t(m) * C + c]) * ew[size_t(m) * C + c];
      ent[m] = float(lse[m] - e);
    } else if (ent) {
      ent[m] = float(std::log(double(sum[m])) - pl[m] / sum[m]);
    }
  }
}

void logprob_backward_expected(float* dh, const float* dlp, const float* ew, const Weights& W, const int32_t* target,
                               int M, int C) {
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) {
    float* d = dh + size_t(m) * C;
    size_t r = size_t(target[m]) * C;
    if (W.h) row_axpy_bf16(d, W.h + r, C, dlp[m]);
    else row_axpy(d, W.f + r, C, dlp[m]);
    row_axpy(d, ew + size_t(m) * C, C, -dlp[m]);
  }
}

void logprob_backward(float* dh, float* dW, const float* dlp, const float* h, const Weights& W,
                      const int32_t* target, const float* lse, int M, int C, int V, std::vector<float>* scratch) {
  if (M == 0) return;
  int chunk = vocab_chunk(M, V);
  std::vector<float> local;
  std::vector<float>& logits = scratch ? *scratch : local;
  if (logits.size() < size_t(M) * chunk) logits.resize(size_t(M) * chunk);
  for (int v0 = 0; v0 < V; v0 += chunk) {
    int vc = std::min(chunk, V - v0);
    mul_wt(M, vc, C, h, C, W.from_row(size_t(v0), C), false, logits.data(), vc);
    // dlogits = dlp * (onehot(target) - softmax)
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
      float* l = logits.data() + size_t(m) * vc;
      row_neg_softmax(l, vc, lse[m], dlp[m]);
      int t = target[m] - v0;
      if (t >= 0 && t < vc) l[t] += dlp[m];
    }
    mul_w(M, C, vc, logits.data(), vc, W.from_row(size_t(v0), C), true, dh, C);
    if (dW) gemm(true, false, vc, C, M, 1.0f, logits.data(), vc, h, C, 1.0f, dW + size_t(v0) * C, C);
  }
}

}  // namespace tb
