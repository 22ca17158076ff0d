// The backend op table, after ggml's test-backend-ops: ONE table of op cases (make_cases) run on
// every backend this build can make (tb::backend_names()).
//  - forward: on "cpu" every output (saved ones too: rstd, ax, lse, ew) against a naive
//    double-precision reference written here with plain loops; on any other backend against the
//    cpu backend's outputs (kCrossTol).
//  - backward: every input with a gradient against central finite differences of
//    L = sum_i w_i out_i (fixed random w, so dL/dout = w), out being the case's first output.
// Conventions checked on the way (backend.h): gradients that backward ACCUMULATES start from a
// random base that is subtracted afterwards; outputs that an op WRITES (accumulate = false,
// attention's dq/dk/dv, swiglu's dg/du, gemm with beta 0) start as NaN, so that reading them
// shows; KV-cache rows past kvlen are NaN too, so that reading them shows.
#include "backend_ops.h"
#include "finite_diff.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "gemm.h"  // cpu/: set_rank_kernels, set_thin_kernels, blas_name
#include "ops.h"   // cpu/: set_logprob_chunk
#include "random.h"

namespace {

using tb::Backend;
using tb::Buffer;
using tb::DType;
using Vec = std::vector<float>;
using IVec = std::vector<int32_t>;
using DVec = std::vector<double>;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
// Forward of a non-cpu backend against the cpu backend: f32 arithmetic in another order (no
// TF32 or reduced-precision GEMM), relative to the output's largest magnitude.
const double kCrossTol = 1e-4;
// Finite differences: step, and tolerance on each entry's |fd - analytic| / (max(|fd|, |analytic|)
// + floor), floor = max(kFdAbsFloor, kFdFloorFrac * max |analytic|); every entry up to
// kFdAllEntries (finite_diff.h), a sample beyond. The worst correct op (all three GEMM
// libraries) stays near 4e-3; a gradient that is zero in fact (one key) comes back ~1e-8.
const float kFdEps = 1e-2f;
const double kFdTol = 1e-2;
const double kFdAbsFloor = 1e-4, kFdFloorFrac = 1e-2;

std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string join(const IVec& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); i++) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

Vec randv(size_t n, uint64_t seed, float scale = 1.0f) {
  Vec v(n);
  for (size_t i = 0; i < n; i++) v[i] = (tb::hash_uniform(seed, i) * 2 - 1) * scale;
  return v;
}

DVec dbl(const Vec& v) { return DVec(v.begin(), v.end()); }

// ---------------------------------------------------------------- device memory
Buffer dev(Backend& be, const Vec& h) {
  Buffer b(be, DType::F32, h.size());
  if (!h.empty()) be.upload(b.raw(), h.data(), b.bytes());
  return b;
}

Buffer devi(Backend& be, const IVec& h) {
  Buffer b(be, DType::I32, h.size());
  if (!h.empty()) be.upload(b.raw(), h.data(), b.bytes());
  return b;
}

Vec host(Backend& be, const Buffer& b) {
  Vec h(b.size());
  if (!h.empty()) be.download(h.data(), b.raw(), b.bytes());
  return h;
}

// An output buffer: one the op accumulates into starts from a random base, subtracted on the
// way back (so an op that overwrites it fails); one the op writes starts as NaN.
struct OutBuf {
  Buffer buf;
  Vec base;
  bool acc;
  OutBuf(Backend& be, size_t n, bool accumulate, uint64_t seed) : acc(accumulate) {
    base = accumulate ? randv(n, seed) : Vec(n, kNaN);
    buf = dev(be, base);
  }
  float* p() { return buf.f32(); }
  Vec result(Backend& be) const {
    Vec h = host(be, buf);
    if (acc)
      for (size_t i = 0; i < h.size(); i++) h[i] -= base[i];
    return h;
  }
};

// ---------------------------------------------------------------- reporting
struct Checker {
  int& checks;
  int& failures;
  void report(bool ok, const std::string& name, const std::string& detail) {
    checks++;
    if (!ok) failures++;
    printf("%s %-72s %s\n", ok ? "ok  " : "FAIL", name.c_str(), detail.c_str());
    fflush(stdout);
  }
  // max |got - ref| / max(max |ref|, 1e-6); any non-finite value where ref is finite fails.
  void compare(const std::string& name, const DVec& got, const DVec& ref, double tol) {
    if (got.size() != ref.size()) {
      report(false, name, fmt("size %zu, expected %zu", got.size(), ref.size()));
      return;
    }
    double scale = 1e-6, worst = 0;
    for (double r : ref) scale = std::max(scale, std::fabs(r));
    for (size_t i = 0; i < got.size(); i++) {
      double d = std::fabs(got[i] - ref[i]);
      if (!std::isfinite(d)) d = INFINITY;
      worst = std::max(worst, d);
    }
    double rel = worst / scale;
    report(rel <= tol, name, fmt("max err %.2e (tol %.0e, scale %.3g)", rel, tol, scale));
  }
  // Central differences of loss() wrt x against the analytic gradient, entry by entry (above). A backward that writes nothing fails too: written
  // gradients then stay NaN, accumulated ones come back zero against non-zero differences.
  void fd(const std::string& name, Vec& x, const Vec& grad, const std::function<double()>& loss, float eps,
          double tol) {
    if (grad.size() != x.size()) {
      report(false, name, fmt("gradient size %zu, input %zu", grad.size(), x.size()));
      return;
    }
    FdResult r = fd_compare(x.data(), x.size(), grad.data(), loss, eps, kFdAbsFloor, kFdFloorFrac);
    bool ok = r.finite && std::isfinite(r.rel) && r.rel <= tol;
    report(ok, name, fmt("fd rel err %.2e (tol %.0e, worst [%zu] %.4g vs %.4g, max |grad| %.3g, %zu of %zu)", r.rel, tol,
                         r.worst, r.worst_fd, r.worst_grad, r.maxg, r.checked, x.size()));
  }
};

// ---------------------------------------------------------------- the case interface
struct Out {
  std::string name;
  DVec v;
};
using Outs = std::vector<Out>;
struct GradIn {
  std::string name;
  Vec* x;
};

uint64_t g_seed = 1000;

struct OpCase {
  std::string op, params;
  double fwd_tol = 1e-5;
  double fd_tol = kFdTol;
  float fd_eps = kFdEps;
  // cpu/ switches for the duration of the case
  int logprob_chunk = 0;    // set_logprob_chunk
  bool rank_kernels = true;  // set_rank_kernels
  bool thin_kernels = true;  // set_thin_kernels
  uint64_t seed;
  OpCase() : seed(g_seed += 100) {}
  virtual ~OpCase() = default;
  // All outputs from the host inputs; the first is the loss output of the backward check.
  virtual Outs forward(Backend& be) = 0;
  virtual Outs reference() = 0;
  // Inputs with a gradient, in the order backward() returns them (empty: forward only).
  virtual std::vector<GradIn> grad_inputs() { return {}; }
  virtual std::vector<Vec> backward(Backend& be, const Vec& dout) { return {}; }
  // Further comparisons of one backend with itself (prepared = unprepared, shared = separate).
  virtual void extra(Checker& ck, Backend& be, const std::string& name) {}
};

double dot(const DVec& out, const Vec& w) {
  double s = 0;
  for (size_t i = 0; i < out.size(); i++) s += out[i] * w[i];
  return s;
}

// ---------------------------------------------------------------- elementwise and rows
struct Elementwise : OpCase {
  enum Kind { Zero, Copy, Add, Scale } kind;
  size_t n;
  Vec x, y;
  static constexpr float a = -0.375f;
  Elementwise(Kind k, size_t n_) : kind(k), n(n_) {
    op = k == Zero ? "fill_zero" : k == Copy ? "copy" : k == Add ? "add" : "scale";
    params = fmt("n=%zu", n);
    x = randv(n, seed);
    y = randv(n, seed + 1);
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x), by = dev(be, y);
    if (kind == Zero) be.fill_zero(by.f32(), n);
    if (kind == Copy) be.copy(by.f32(), bx.f32(), n);
    if (kind == Add) be.add(by.f32(), bx.f32(), n);
    if (kind == Scale) be.scale(by.f32(), a, n);
    return {{"y", dbl(host(be, by))}};
  }
  Outs reference() override {
    DVec r(n);
    for (size_t i = 0; i < n; i++)
      r[i] = kind == Zero ? 0.0 : kind == Copy ? double(x[i]) : kind == Add ? double(y[i]) + x[i] : double(y[i]) * a;
    return {{"y", r}};
  }
};

struct SumSquares : OpCase {
  size_t n;
  Vec x;
  explicit SumSquares(size_t n_) : n(n_) {
    op = "sum_squares";
    params = fmt("n=%zu", n);
    x = randv(n, seed, 3.0f);
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x);
    return {{"sum", {be.sum_squares(bx.f32(), n)}}};
  }
  Outs reference() override {
    double s = 0;
    for (float v : x) s += double(v) * v;
    return {{"sum", {s}}};
  }
};

// gather_rows (rows may repeat), scatter_add_rows and scatter_rows (rows distinct).
struct Rows : OpCase {
  enum Kind { Gather, ScatterAdd, Scatter } kind;
  int R, M, C;
  IVec rows;
  Vec x, in;
  Rows(Kind k, int R_, int C_, IVec rows_) : kind(k), R(R_), M(int(rows_.size())), C(C_), rows(rows_) {
    op = k == Gather ? "gather_rows" : k == ScatterAdd ? "scatter_add_rows" : "scatter_rows";
    params = fmt("R=%d M=%d C=%d rows=%s", R, M, C, join(rows).c_str());
    x = randv(size_t(R) * C, seed);
    in = randv(size_t(M) * C, seed + 1);
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x), bin = dev(be, in), br = devi(be, rows);
    if (kind == Gather) {
      OutBuf out(be, size_t(M) * C, false, 0);
      be.gather_rows(out.p(), bx.f32(), br.i32(), M, C);
      return {{"out", dbl(out.result(be))}};
    }
    if (kind == ScatterAdd) be.scatter_add_rows(bx.f32(), bin.f32(), br.i32(), M, C);
    else be.scatter_rows(bx.f32(), bin.f32(), br.i32(), M, C);
    return {{"x", dbl(host(be, bx))}};
  }
  Outs reference() override {
    if (kind == Gather) {
      DVec r(size_t(M) * C);
      for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) r[size_t(m) * C + c] = x[size_t(rows[m]) * C + c];
      return {{"out", r}};
    }
    DVec r = dbl(x);
    for (int m = 0; m < M; m++)
      for (int c = 0; c < C; c++) {
        double& d = r[size_t(rows[m]) * C + c];
        d = (kind == ScatterAdd ? d : 0.0) + in[size_t(m) * C + c];
      }
    return {{"x", r}};
  }
};

// scatter_add_rows_scaled (rows distinct), scale_rows, row_dots: the MoE block's weighting.
struct ScaledRows : OpCase {
  enum Kind { ScatterAddScaled, Scale, Dots } kind;
  int R, M, C;
  IVec rows;
  Vec x, in, s;
  ScaledRows(Kind k, int R_, int C_, IVec rows_) : kind(k), R(R_), M(int(rows_.size())), C(C_), rows(rows_) {
    op = k == ScatterAddScaled ? "scatter_add_rows_scaled" : k == Scale ? "scale_rows" : "row_dots";
    params = fmt("R=%d M=%d C=%d", R, M, C);
    x = randv(size_t(R) * C, seed);
    in = randv(size_t(M) * C, seed + 1);
    s = randv(size_t(M), seed + 2);
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x), bin = dev(be, in), br = devi(be, rows), bs = dev(be, s);
    if (kind == ScatterAddScaled) {
      be.scatter_add_rows_scaled(bx.f32(), bin.f32(), br.i32(), bs.f32(), M, C);
      return {{"x", dbl(host(be, bx))}};
    }
    if (kind == Scale) {
      be.scale_rows(bin.f32(), bs.f32(), M, C);
      return {{"y", dbl(host(be, bin))}};
    }
    Buffer a = dev(be, Vec(x.begin(), x.begin() + size_t(M) * C));
    OutBuf out(be, size_t(M), false, 0);
    be.row_dots(out.p(), a.f32(), bin.f32(), M, C);
    return {{"out", dbl(out.result(be))}};
  }
  Outs reference() override {
    if (kind == ScatterAddScaled) {
      DVec r = dbl(x);
      for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) r[size_t(rows[m]) * C + c] += double(s[size_t(m)]) * in[size_t(m) * C + c];
      return {{"x", r}};
    }
    if (kind == Scale) {
      DVec r(size_t(M) * C);
      for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) r[size_t(m) * C + c] = double(s[size_t(m)]) * in[size_t(m) * C + c];
      return {{"y", r}};
    }
    DVec r(static_cast<size_t>(M));
    for (int m = 0; m < M; m++)
      for (int c = 0; c < C; c++) r[size_t(m)] += double(x[size_t(m) * C + c]) * in[size_t(m) * C + c];
    return {{"out", r}};
  }
};

// Qwen3-MoE routing: probs = softmax(logits), the top k, their weights (renormalised when norm).
// The loss output is [w; column sums of probs]: its gradient on the sums is the per-expert
// aux_g that backward adds on every probs[n,e] (the load-balancing loss), and the logits are
// spread so that no probe of the differences crosses a top-k boundary.
struct MoeRoute : OpCase {
  int N, E, k;
  bool norm, aux;
  Vec logits;
  MoeRoute(int N_, int E_, int k_, bool norm_, bool aux_) : N(N_), E(E_), k(k_), norm(norm_), aux(aux_) {
    op = "moe_route";
    params = fmt("N=%d E=%d k=%d%s%s", N, E, k, norm ? " norm" : "", aux ? " aux" : "");
    logits.resize(size_t(N) * E);
    for (int n = 0; n < N; n++)
      for (int e = 0; e < E; e++)  // a row-dependent permutation of 0.3 steps, plus a little noise
        logits[size_t(n) * E + e] = 0.3f * float((e * 7 + n * 3) % E) - 1.0f + 0.02f * (tb::hash_uniform(seed, size_t(n) * E + e) - 0.5f);
  }
  Outs forward(Backend& be) override {
    Buffer bl = dev(be, logits);
    OutBuf probs(be, size_t(N) * E, false, 0), w(be, size_t(N) * k, false, 0);
    Buffer idx = devi(be, IVec(size_t(N) * k, -1));
    be.moe_route_forward(probs.p(), idx.i32(), w.p(), bl.f32(), N, E, k, norm, false);
    IVec ix(size_t(N) * k);
    be.download(ix.data(), idx.raw(), idx.bytes());
    DVec p = dbl(probs.result(be)), out = dbl(w.result(be));
    if (aux)
      for (int e = 0; e < E; e++) {
        double sum = 0;
        for (int n = 0; n < N; n++) sum += p[size_t(n) * E + e];
        out.push_back(sum);
      }
    return {{aux ? "w; column sums" : "w", out}, {"probs", p}, {"idx", DVec(ix.begin(), ix.end())}};
  }
  Outs reference() override {
    DVec out, p(size_t(N) * E), ix;
    for (int n = 0; n < N; n++) {
      double mx = -INFINITY, sum = 0;
      for (int e = 0; e < E; e++) mx = std::max(mx, double(logits[size_t(n) * E + e]));
      for (int e = 0; e < E; e++) sum += std::exp(logits[size_t(n) * E + e] - mx);
      for (int e = 0; e < E; e++) p[size_t(n) * E + e] = std::exp(logits[size_t(n) * E + e] - mx) / sum;
      std::vector<int> order(static_cast<size_t>(E));
      for (int e = 0; e < E; e++) order[size_t(e)] = e;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return p[size_t(n) * E + a] > p[size_t(n) * E + b]; });
      double top = 0;
      for (int j = 0; j < k; j++) top += p[size_t(n) * E + order[size_t(j)]];
      for (int j = 0; j < k; j++) {
        ix.push_back(order[size_t(j)]);
        out.push_back(p[size_t(n) * E + order[size_t(j)]] / (norm ? top : 1.0));
      }
    }
    if (aux)
      for (int e = 0; e < E; e++) {
        double sum = 0;
        for (int n = 0; n < N; n++) sum += p[size_t(n) * E + e];
        out.push_back(sum);
      }
    return {{aux ? "w; column sums" : "w", out}, {"probs", p}, {"idx", ix}};
  }
  std::vector<GradIn> grad_inputs() override { return {{"logits", &logits}}; }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Buffer bl = dev(be, logits), probs(be, DType::F32, size_t(N) * E), w(be, DType::F32, size_t(N) * k);
    Buffer idx(be, DType::I32, size_t(N) * k);
    be.moe_route_forward(probs.f32(), idx.i32(), w.f32(), bl.f32(), N, E, k, norm, false);
    Buffer dw = dev(be, Vec(dout.begin(), dout.begin() + size_t(N) * k));
    Buffer ag = dev(be, aux ? Vec(dout.begin() + size_t(N) * k, dout.end()) : Vec(size_t(E), 0.0f));
    OutBuf dl(be, size_t(N) * E, false, 0);
    be.moe_route_backward(dl.p(), dw.f32(), probs.f32(), idx.i32(), w.f32(), aux ? ag.f32() : nullptr, N, E, k, norm);
    return {dl.result(be)};
  }
};

// ---------------------------------------------------------------- gemm
struct Gemm : OpCase {
  bool ta, tb;
  int M, N, K, lda, ldb, ldc;
  float alpha, beta;
  Vec A, B, C0;
  Gemm(bool ta_, bool tb_, int M_, int N_, int K_, float alpha_, float beta_, int pad, bool thin = true)
      : ta(ta_), tb(tb_), M(M_), N(N_), K(K_), alpha(alpha_), beta(beta_) {
    op = "gemm";
    thin_kernels = thin;
    params = fmt("%c%c M=%d N=%d K=%d alpha=%g beta=%g ld+%d%s", ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, pad,
                 thin ? "" : " thin_kernels=off");
    int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    lda = acols + pad;
    ldb = bcols + pad;
    ldc = N + pad;
    A = randv(size_t(arows) * lda, seed);
    B = randv(size_t(brows) * ldb, seed + 1);
    C0 = randv(size_t(M) * ldc, seed + 2);
    // beta 0: C is not read (BLAS), so its valid part may hold anything; the padding must stay.
    if (beta == 0)
      for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C0[size_t(i) * ldc + j] = kNaN;
  }
  Outs forward(Backend& be) override {
    Buffer bA = dev(be, A), bB = dev(be, B), bC = dev(be, C0);
    be.gemm(ta, tb, M, N, K, alpha, bA.f32(), lda, bB.f32(), ldb, beta, bC.f32(), ldc);
    return {{"C", dbl(host(be, bC))}};
  }
  Outs reference() override {
    DVec r = dbl(C0);
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++) {
        double s = 0;
        for (int k = 0; k < K; k++)
          s += double(ta ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k]) *
               (tb ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j]);
        double& c = r[size_t(i) * ldc + j];
        c = alpha * s + (beta == 0 ? 0.0 : beta * c);
      }
    return {{"C", r}};
  }
  // The CPU's products of a few rows against W^T (decoding) give each row the same numbers,
  // bit for bit, whether it is multiplied alone or among the others (a sequence decodes alike
  // next to any partners, and after they finish).
  void extra(Checker& ck, Backend& be, const std::string& name) override {
    if (be.name() != "cpu" || !thin_kernels || !tb::has_thin_kernels() || ta || !tb || M < 2 || M > tb::kThinMaxRows) return;
    Buffer bA = dev(be, A), bB = dev(be, B), bC = dev(be, C0);
    be.gemm(ta, tb, M, N, K, alpha, bA.f32(), lda, bB.f32(), ldb, beta, bC.f32(), ldc);
    Vec all = host(be, bC);
    bool same = true;
    for (int i = 0; i < M && same; i++) {
      Vec row(A.begin() + size_t(i) * lda, A.begin() + size_t(i) * lda + K);
      Vec c(C0.begin() + size_t(i) * ldc, C0.begin() + size_t(i) * ldc + N);
      Buffer bR = dev(be, row), bc = dev(be, c);
      be.gemm(ta, tb, 1, N, K, alpha, bR.f32(), K, bB.f32(), ldb, beta, bc.f32(), N);
      Vec alone = host(be, bc);
      same = std::memcmp(alone.data(), all.data() + size_t(i) * ldc, sizeof(float) * N) == 0;
    }
    ck.report(same, name + ": each row alone = among the others", same ? "" : "a row differs");
  }
};

// ---------------------------------------------------------------- embedding
struct Embedding : OpCase {
  int N, C, V;
  IVec ids;
  Vec table;
  Embedding(int C_, int V_, IVec ids_) : N(int(ids_.size())), C(C_), V(V_), ids(ids_) {
    op = "embedding";
    params = fmt("N=%d C=%d V=%d ids=%s", N, C, V, join(ids).c_str());
    table = randv(size_t(V) * C, seed);
  }
  Outs forward(Backend& be) override {
    Buffer bt = dev(be, table), bi = devi(be, ids);
    OutBuf out(be, size_t(N) * C, false, 0);
    be.embedding_forward(out.p(), bi.i32(), bt, N, C);
    return {{"out", dbl(out.result(be))}};
  }
  Outs reference() override {
    DVec r(size_t(N) * C);
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++) r[size_t(n) * C + c] = table[size_t(ids[n]) * C + c];
    return {{"out", r}};
  }
  std::vector<GradIn> grad_inputs() override { return {{"table", &table}}; }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Buffer bd = dev(be, dout), bi = devi(be, ids);
    OutBuf dt(be, table.size(), true, seed + 7);
    be.embedding_backward(dt.p(), bd.f32(), bi.i32(), N, C);
    return {dt.result(be)};
  }
};

// ---------------------------------------------------------------- rmsnorm
struct RmsNorm : OpCase {
  int N, C;
  float eps = 1e-6f;
  bool with_dw;
  Vec x, w;
  RmsNorm(int N_, int C_, bool with_dw_ = true) : N(N_), C(C_), with_dw(with_dw_) {
    op = "rmsnorm";
    params = fmt("N=%d C=%d%s", N, C, with_dw ? "" : " dw=null");
    x = randv(size_t(N) * C, seed);
    w = randv(C, seed + 1);
    for (auto& v : w) v += 1.5f;
  }
  struct Dev {
    Buffer x, w;
    OutBuf out, rstd;
  };
  Dev run(Backend& be) {
    Dev d{dev(be, x), dev(be, w), OutBuf(be, size_t(N) * C, false, 0), OutBuf(be, N, false, 0)};
    be.rmsnorm_forward(d.out.p(), d.rstd.p(), d.x.f32(), d.w.f32(), N, C, eps);
    return d;
  }
  Outs forward(Backend& be) override {
    Dev d = run(be);
    return {{"out", dbl(d.out.result(be))}, {"rstd", dbl(d.rstd.result(be))}};
  }
  Outs reference() override {
    DVec out(size_t(N) * C), rstd(N);
    for (int n = 0; n < N; n++) {
      double ss = 0;
      for (int c = 0; c < C; c++) ss += double(x[size_t(n) * C + c]) * x[size_t(n) * C + c];
      double r = 1 / std::sqrt(ss / C + eps);
      rstd[n] = r;
      for (int c = 0; c < C; c++) out[size_t(n) * C + c] = x[size_t(n) * C + c] * r * w[c];
    }
    return {{"out", out}, {"rstd", rstd}};
  }
  std::vector<GradIn> grad_inputs() override {
    if (with_dw) return {{"x", &x}, {"w", &w}};
    return {{"x", &x}};
  }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Dev d = run(be);
    Buffer bd = dev(be, dout);
    OutBuf dx(be, x.size(), true, seed + 7), dw(be, w.size(), true, seed + 8);
    be.rmsnorm_backward(dx.p(), with_dw ? dw.p() : nullptr, bd.f32(), d.x.f32(), d.w.f32(), d.rstd.p(), N, C);
    if (with_dw) return {dx.result(be), dw.result(be)};
    return {dx.result(be)};
  }
};

// ---------------------------------------------------------------- linear
struct Linear : OpCase {
  int N, in, out;
  bool bias, fwd_acc, dx_acc, frozen, prepared, no_dx;
  Vec x, W, b;
  Linear(int N_, int in_, int out_, bool bias_, bool fwd_acc_, bool dx_acc_, bool frozen_ = false,
         bool prepared_ = false, bool no_dx_ = false)
      : N(N_), in(in_), out(out_), bias(bias_), fwd_acc(fwd_acc_), dx_acc(dx_acc_), frozen(frozen_), prepared(prepared_),
        no_dx(no_dx_) {
    op = "linear";
    params = fmt("N=%d in=%d out=%d%s%s%s%s%s", N, in, out, bias ? " bias" : "", fwd_acc ? " y+=" : "",
                 no_dx ? " dx=null" : dx_acc ? " dx+=" : " dx=", frozen ? " frozen" : "", prepared ? " prepared" : "");
    x = randv(size_t(N) * in, seed);
    W = randv(size_t(out) * in, seed + 1);
    b = randv(out, seed + 2);
  }
  Buffer weight(Backend& be, bool prep) {
    Buffer bW = dev(be, W);
    if (prep) bW.prepared = be.prepare(bW, out, in, false);  // dx = dy W: W [out, in] untransposed
    return bW;
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x), bW = weight(be, prepared), bb = dev(be, b);
    OutBuf y(be, size_t(N) * out, fwd_acc, seed + 5);
    be.linear_forward(y.p(), bx.f32(), bW, bias ? bb.f32() : nullptr, N, in, out, fwd_acc);
    return {{"y", dbl(y.result(be))}};
  }
  Outs reference() override {
    DVec y(size_t(N) * out);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < out; o++) {
        double s = bias ? b[o] : 0.0;
        for (int i = 0; i < in; i++) s += double(x[size_t(n) * in + i]) * W[size_t(o) * in + i];
        y[size_t(n) * out + o] = s;
      }
    return {{"y", y}};
  }
  std::vector<GradIn> grad_inputs() override {
    std::vector<GradIn> g;
    if (!no_dx) g.push_back({"x", &x});
    if (!frozen) g.push_back({"W", &W});
    if (!frozen && bias) g.push_back({"b", &b});
    return g;
  }
  std::vector<Vec> grads(Backend& be, const Vec& dout, bool prep) {
    Buffer bx = dev(be, x), bW = weight(be, prep), bd = dev(be, dout);
    OutBuf dx(be, x.size(), dx_acc, seed + 7), dW(be, W.size(), true, seed + 8), db(be, b.size(), true, seed + 9);
    be.linear_backward(no_dx ? nullptr : dx.p(), frozen ? nullptr : dW.p(), frozen || !bias ? nullptr : db.p(), bd.f32(),
                       bx.f32(), bW, N, in, out, dx_acc);
    std::vector<Vec> g;
    if (!no_dx) g.push_back(dx.result(be));
    if (!frozen) g.push_back(dW.result(be));
    if (!frozen && bias) g.push_back(db.result(be));
    return g;
  }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override { return grads(be, dout, prepared); }
  void extra(Checker& ck, Backend& be, const std::string& name) override {
    if (!prepared || no_dx) return;
    Buffer bW = dev(be, W);
    auto p = be.prepare(bW, out, in, false);
    bool cpu = be.name() == "cpu", onednn = std::string(tb::blas_name()) == "onednn";
    if (!p) {
      // cpu: only oneDNN packs; elsewhere prepare() declines and the case ran unpacked.
      bool ok = !(cpu && onednn);
      ck.report(ok, name + " prepared dx = unprepared",
                ok ? "prepare() returned null on this build: unpacked path only (case still ran)"
                   : "oneDNN build, yet prepare() declined to pack");
      return;
    }
    if (cpu && !onednn) ck.report(false, name + " prepared", "prepare() packed without oneDNN");
    Vec dout = randv(size_t(N) * out, seed + 11);
    auto a = grads(be, dout, true), u = grads(be, dout, false);
    ck.compare(name + " prepared dx = unprepared" + fmt(" (%zu bytes packed)", p->bytes()), dbl(a[0]), dbl(u[0]), 1e-5);
  }
};

// ---------------------------------------------------------------- lora
// Naive LoRA: ax = dropout(x) A^T, y = s ax B^T.
void lora_ref(const Vec& x, const Vec& A, const Vec& B, float s, int N, int in, int out, int r, float p, uint64_t seed,
              DVec& y, DVec& ax, int ax_ld, int ax_col) {
  float keep = 1.0f - p;
  for (int n = 0; n < N; n++) {
    for (int j = 0; j < r; j++) {
      double acc = 0;
      for (int c = 0; c < in; c++) {
        size_t i = size_t(n) * in + c;
        double xd = p > 0 ? (tb::hash_uniform(seed, i) < keep ? x[i] / double(keep) : 0.0) : x[i];
        acc += xd * A[size_t(j) * in + c];
      }
      ax[size_t(n) * ax_ld + ax_col + j] = acc;
    }
    for (int o = 0; o < out; o++) {
      double acc = 0;
      for (int j = 0; j < r; j++) acc += ax[size_t(n) * ax_ld + ax_col + j] * B[size_t(o) * r + j];
      y[size_t(n) * out + o] = s * acc;
    }
  }
}

struct Lora : OpCase {
  int N, in, out, r;
  float s, dropout;
  bool fwd_acc, dx_acc, no_dx;
  uint64_t drop_seed = 99;
  Vec x, A, B;
  Lora(int N_, int in_, int out_, int r_, float dropout_, bool fwd_acc_, bool dx_acc_, bool kernels = true,
       bool no_dx_ = false)
      : N(N_), in(in_), out(out_), r(r_), s(1.7f), dropout(dropout_), fwd_acc(fwd_acc_), dx_acc(dx_acc_), no_dx(no_dx_) {
    op = "lora";
    rank_kernels = kernels;
    params = fmt("N=%d in=%d out=%d r=%d dropout=%g%s%s rank_kernels=%s", N, in, out, r, dropout, fwd_acc ? " y+=" : " y=",
                 no_dx ? " dx=null" : dx_acc ? " dx+=" : " dx=", kernels ? "on" : "off");
    x = randv(size_t(N) * in, seed);
    A = randv(size_t(r) * in, seed + 1);
    B = randv(size_t(out) * r, seed + 2);
  }
  struct Dev {
    Buffer x, A, B;
    OutBuf y, ax;
  };
  Dev run(Backend& be) {
    Dev d{dev(be, x), dev(be, A), dev(be, B), OutBuf(be, size_t(N) * out, fwd_acc, seed + 5), OutBuf(be, size_t(N) * r, false, 0)};
    be.lora_forward(d.y.p(), d.ax.p(), d.x.f32(), d.A.f32(), d.B.f32(), s, N, in, out, r, dropout, drop_seed, fwd_acc);
    return d;
  }
  Outs forward(Backend& be) override {
    Dev d = run(be);
    return {{"y", dbl(d.y.result(be))}, {"ax", dbl(d.ax.result(be))}};
  }
  Outs reference() override {
    DVec y(size_t(N) * out), ax(size_t(N) * r);
    lora_ref(x, A, B, s, N, in, out, r, dropout, drop_seed, y, ax, r, 0);
    return {{"y", y}, {"ax", ax}};
  }
  std::vector<GradIn> grad_inputs() override {
    if (no_dx) return {{"A", &A}, {"B", &B}};
    return {{"x", &x}, {"A", &A}, {"B", &B}};
  }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Dev d = run(be);
    Buffer bd = dev(be, dout);
    OutBuf dx(be, x.size(), dx_acc, seed + 7), dA(be, A.size(), true, seed + 8), dB(be, B.size(), true, seed + 9);
    be.lora_backward(no_dx ? nullptr : dx.p(), dA.p(), dB.p(), bd.f32(), d.x.f32(), d.ax.p(), d.A.f32(), d.B.f32(), s, N,
                     in, out, r, dropout, drop_seed, dx_acc);
    if (no_dx) return {dA.result(be), dB.result(be)};
    return {dx.result(be), dA.result(be), dB.result(be)};
  }
};

// n branches on one x (q/k/v, gate/up): against the naive reference, finite differences, and n
// separate lora_forward / lora_backward calls on the same backend.
struct LoraShared : OpCase {
  int n, N, in, r;
  IVec outs;
  float s = 0.75f;
  bool fwd_acc, dx_acc, skip1, no_dx;  // skip1: branch 1 has no dA / dB (null pointers)
  Vec x;
  std::vector<Vec> A, B;
  LoraShared(IVec outs_, int N_, int in_, int r_, bool fwd_acc_, bool dx_acc_, bool skip1_ = false, bool kernels = true,
             bool no_dx_ = false)
      : n(int(outs_.size())), N(N_), in(in_), r(r_), outs(outs_), fwd_acc(fwd_acc_), dx_acc(dx_acc_), skip1(skip1_),
        no_dx(no_dx_) {
    op = "lora_shared";
    rank_kernels = kernels;
    params = fmt("n=%d out=%s N=%d in=%d r=%d%s%s%s rank_kernels=%s", n, join(outs).c_str(), N, in, r,
                 fwd_acc ? " y+=" : " y=", no_dx ? " dx=null" : dx_acc ? " dx+=" : " dx=", skip1 ? " dA1=dB1=null" : "",
                 kernels ? "on" : "off");
    x = randv(size_t(N) * in, seed);
    for (int i = 0; i < n; i++) {
      A.push_back(randv(size_t(r) * in, seed + 10 + i));
      B.push_back(randv(size_t(outs[i]) * r, seed + 20 + i));
    }
  }
  bool trains(int i) const { return !(skip1 && i == 1); }
  struct Dev {
    Buffer x;
    std::vector<Buffer> A, B;
    std::vector<OutBuf> y;
    OutBuf ax;
  };
  Dev run(Backend& be) {
    Dev d{dev(be, x), {}, {}, {}, OutBuf(be, size_t(N) * n * r, false, 0)};
    std::vector<float*> yp;
    std::vector<const float*> Ap, Bp;
    for (int i = 0; i < n; i++) {
      d.A.push_back(dev(be, A[i]));
      d.B.push_back(dev(be, B[i]));
      d.y.emplace_back(be, size_t(N) * outs[i], fwd_acc, seed + 30 + i);
    }
    for (int i = 0; i < n; i++) {
      yp.push_back(d.y[i].p());
      Ap.push_back(d.A[i].f32());
      Bp.push_back(d.B[i].f32());
    }
    be.lora_forward_shared(n, yp.data(), outs.data(), d.ax.p(), d.x.f32(), Ap.data(), Bp.data(), s, N, in, r, fwd_acc);
    return d;
  }
  Outs forward(Backend& be) override {
    Dev d = run(be);
    DVec y;
    for (auto& yi : d.y) {
      Vec h = yi.result(be);
      y.insert(y.end(), h.begin(), h.end());
    }
    return {{"y", y}, {"ax", dbl(d.ax.result(be))}};
  }
  Outs reference() override {
    DVec y, ax(size_t(N) * n * r);
    for (int i = 0; i < n; i++) {
      DVec yi(size_t(N) * outs[i]);
      lora_ref(x, A[i], B[i], s, N, in, outs[i], r, 0, 0, yi, ax, n * r, i * r);
      y.insert(y.end(), yi.begin(), yi.end());
    }
    return {{"y", y}, {"ax", ax}};
  }
  std::vector<GradIn> grad_inputs() override {
    std::vector<GradIn> g;
    if (!no_dx) g.push_back({"x", &x});
    for (int i = 0; i < n; i++)
      if (trains(i)) g.push_back({fmt("A%d", i), &A[i]});
    for (int i = 0; i < n; i++)
      if (trains(i)) g.push_back({fmt("B%d", i), &B[i]});
    return g;
  }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Dev d = run(be);
    std::vector<Buffer> dy;
    std::vector<OutBuf> dA, dB;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
      size_t m = size_t(N) * outs[i];
      dy.push_back(dev(be, Vec(dout.begin() + off, dout.begin() + off + m)));
      off += m;
      dA.emplace_back(be, A[i].size(), true, seed + 40 + i);
      dB.emplace_back(be, B[i].size(), true, seed + 50 + i);
    }
    OutBuf dx(be, x.size(), dx_acc, seed + 7);
    std::vector<float*> dAp, dBp;
    std::vector<const float*> dyp, Ap, Bp;
    for (int i = 0; i < n; i++) {
      dAp.push_back(trains(i) ? dA[i].p() : nullptr);
      dBp.push_back(trains(i) ? dB[i].p() : nullptr);
      dyp.push_back(dy[i].f32());
      Ap.push_back(d.A[i].f32());
      Bp.push_back(d.B[i].f32());
    }
    be.lora_backward_shared(n, no_dx ? nullptr : dx.p(), dAp.data(), dBp.data(), dyp.data(), outs.data(), d.x.f32(),
                            d.ax.p(), Ap.data(), Bp.data(), s, N, in, r, dx_acc);
    std::vector<Vec> g;
    if (!no_dx) g.push_back(dx.result(be));
    for (int i = 0; i < n; i++)
      if (trains(i)) g.push_back(dA[i].result(be));
    for (int i = 0; i < n; i++)
      if (trains(i)) g.push_back(dB[i].result(be));
    return g;
  }
  // The same through n lora_forward / lora_backward calls.
  void extra(Checker& ck, Backend& be, const std::string& name) override {
    Outs shared = forward(be);
    Vec dout = randv(shared[0].v.size(), seed + 60);
    std::vector<Vec> gshared = backward(be, dout);
    Buffer bx = dev(be, x);
    OutBuf dx(be, x.size(), dx_acc, seed + 7);
    DVec y, ax(size_t(N) * n * r);
    std::vector<Vec> dAs, dBs;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
      Buffer bA = dev(be, A[i]), bB = dev(be, B[i]);
      OutBuf yi(be, size_t(N) * outs[i], fwd_acc, seed + 30 + i), axi(be, size_t(N) * r, false, 0);
      be.lora_forward(yi.p(), axi.p(), bx.f32(), bA.f32(), bB.f32(), s, N, in, outs[i], r, 0.0f, 0, fwd_acc);
      Vec h = yi.result(be), a = axi.result(be);
      y.insert(y.end(), h.begin(), h.end());
      for (int m = 0; m < N; m++)
        for (int j = 0; j < r; j++) ax[size_t(m) * n * r + i * r + j] = a[size_t(m) * r + j];
      size_t mo = size_t(N) * outs[i];
      Buffer dy = dev(be, Vec(dout.begin() + off, dout.begin() + off + mo));
      off += mo;
      OutBuf dA(be, A[i].size(), true, seed + 40 + i), dB(be, B[i].size(), true, seed + 50 + i);
      be.lora_backward(no_dx ? nullptr : dx.p(), trains(i) ? dA.p() : nullptr, trains(i) ? dB.p() : nullptr, dy.f32(), bx.f32(), axi.p(),
                       bA.f32(), bB.f32(), s, N, in, outs[i], r, 0.0f, 0, i == 0 ? dx_acc : true);
      if (trains(i)) {
        dAs.push_back(dA.result(be));
        dBs.push_back(dB.result(be));
      }
    }
    ck.compare(name + " y = separate calls", shared[0].v, y, 1e-5);
    ck.compare(name + " ax = separate calls", shared[1].v, ax, 1e-5);
    std::vector<Vec> sep;
    if (!no_dx) sep.push_back(dx.result(be));
    sep.insert(sep.end(), dAs.begin(), dAs.end());
    sep.insert(sep.end(), dBs.begin(), dBs.end());
    auto names = grad_inputs();
    for (size_t k = 0; k < sep.size(); k++)
      ck.compare(name + " d" + names[k].name + " = separate calls", dbl(gshared[k]), dbl(sep[k]), 1e-5);
  }
};

// ---------------------------------------------------------------- rope
struct Rope : OpCase {
  int N, H, D, maxpos;
  IVec pos;
  Vec x, cs, sn;
  Rope(int H_, int D_, IVec pos_, float theta = 10000.0f) : N(int(pos_.size())), H(H_), D(D_), pos(pos_) {
    op = "rope";
    params = fmt("N=%d H=%d D=%d pos=%s", N, H, D, join(pos).c_str());
    maxpos = 1 + *std::max_element(pos.begin(), pos.end());
    int half = D / 2;
    x = randv(size_t(N) * H * D, seed);
    cs.resize(size_t(maxpos) * half);
    sn.resize(cs.size());
    for (int t = 0; t < maxpos; t++)
      for (int i = 0; i < half; i++) {
        double a = t * std::pow(double(theta), -2.0 * i / D);
        cs[size_t(t) * half + i] = float(std::cos(a));
        sn[size_t(t) * half + i] = float(std::sin(a));
      }
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x), bc = dev(be, cs), bs = dev(be, sn), bp = devi(be, pos);
    be.rope_forward(bx.f32(), bc.f32(), bs.f32(), bp.i32(), N, H, D);
    return {{"x", dbl(host(be, bx))}};
  }
  // rotate_half: out = x cos + rotate_half(x) sin, rotate_half(x) = [-x2, x1].
  Outs reference() override {
    int half = D / 2;
    DVec o(x.size());
    for (int n = 0; n < N; n++)
      for (int h = 0; h < H; h++)
        for (int i = 0; i < D; i++) {
          size_t row = (size_t(n) * H + h) * D;
          int j = i % half;
          double c = cs[size_t(pos[n]) * half + j], s = sn[size_t(pos[n]) * half + j];
          double rot = i < half ? -double(x[row + i + half]) : double(x[row + i - half]);
          o[row + i] = x[row + i] * c + rot * s;
        }
    return {{"x", o}};
  }
  std::vector<GradIn> grad_inputs() override { return {{"x", &x}}; }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Buffer bd = dev(be, dout), bc = dev(be, cs), bs = dev(be, sn), bp = devi(be, pos);
    be.rope_backward(bd.f32(), bc.f32(), bs.f32(), bp.i32(), N, H, D);
    return {host(be, bd)};
  }
};

// ---------------------------------------------------------------- attention
// Without cache (training): sequence b owns rows [start[b], +len[b]) of q, k, v, packed.
// With cache (decoding): q rows packed by qlen; k/v rows [b*cap, b*cap + kvlen[b]) of a cache of
// cap rows per sequence, the rest NaN; queries are the last qlen[b] positions.
struct Attention : OpCase {
  IVec qlen, kvlen, qstart, kvstart;
  int B, Hq, Hk, D, cap, Nq, Nkv;
  bool cache;
  Vec q, k, v;
  Attention(IVec lens, int Hq_, int Hk_, int D_) : Attention(lens, lens, 0, Hq_, Hk_, D_) {}
  Attention(IVec qlen_, IVec kvlen_, int cap_, int Hq_, int Hk_, int D_)
      : qlen(qlen_), kvlen(kvlen_), B(int(qlen_.size())), Hq(Hq_), Hk(Hk_), D(D_), cap(cap_), cache(cap_ > 0) {
    op = cache ? "attention kv-cache" : "attention";
    params = cache ? fmt("B=%d qlen=%s kvlen=%s cap=%d Hq=%d Hk=%d D=%d", B, join(qlen).c_str(), join(kvlen).c_str(), cap,
                         Hq, Hk, D)
                   : fmt("B=%d len=%s Hq=%d Hk=%d D=%d", B, join(qlen).c_str(), Hq, Hk, D);
    Nq = 0;
    for (int b = 0; b < B; b++) {
      qstart.push_back(Nq);
      Nq += qlen[b];
    }
    if (cache) {
      for (int b = 0; b < B; b++) kvstart.push_back(b * cap);
      Nkv = B * cap;
    } else {
      kvstart = qstart;
      Nkv = Nq;
    }
    q = randv(size_t(Nq) * Hq * D, seed, 1.5f);
    k = randv(size_t(Nkv) * Hk * D, seed + 1, 1.5f);
    v = randv(size_t(Nkv) * Hk * D, seed + 2);
    if (cache)
      for (int b = 0; b < B; b++)
        for (int j = kvlen[b]; j < cap; j++)
          for (int c = 0; c < Hk * D; c++) k[size_t(b * cap + j) * Hk * D + c] = v[size_t(b * cap + j) * Hk * D + c] = kNaN;
  }
  struct Dev {
    Buffer q, k, v, qs, ql, ks, kl;
    OutBuf out, lse;
  };
  Dev run(Backend& be) {
    Dev d{dev(be, q), dev(be, k), dev(be, v), devi(be, qstart), devi(be, qlen), devi(be, kvstart), devi(be, kvlen),
          OutBuf(be, q.size(), false, 0), OutBuf(be, size_t(Nq) * Hq, false, 0)};
    be.attention_forward(d.out.p(), d.lse.p(), d.q.f32(), d.k.f32(), d.v.f32(), d.qs.i32(), d.ql.i32(), d.ks.i32(),
                         d.kl.i32(), B, Hq, Hk, D);
    return d;
  }
  Outs forward(Backend& be) override {
    Dev d = run(be);
    return {{"out", dbl(d.out.result(be))}, {"lse", dbl(d.lse.result(be))}};
  }
  Outs reference() override {
    DVec out(q.size()), lse(size_t(Nq) * Hq);
    int qs = Hq * D, ks = Hk * D, group = Hq / Hk;
    double scale = 1 / std::sqrt(double(D));
    for (int b = 0; b < B; b++)
      for (int i = 0; i < qlen[b]; i++) {
        int row = qstart[b] + i, p = kvlen[b] - qlen[b] + i;  // sees keys 0..p
        for (int h = 0; h < Hq; h++) {
          int hk = h / group;
          DVec s(size_t(p) + 1);
          double mx = -INFINITY;
          for (int j = 0; j <= p; j++) {
            double a = 0;
            for (int c = 0; c < D; c++)
              a += double(q[size_t(row) * qs + h * D + c]) * k[size_t(kvstart[b] + j) * ks + hk * D + c];
            s[j] = a * scale;
            mx = std::max(mx, s[j]);
          }
          double sum = 0;
          for (int j = 0; j <= p; j++) sum += std::exp(s[j] - mx);
          for (int c = 0; c < D; c++) {
            double o = 0;
            for (int j = 0; j <= p; j++) o += std::exp(s[j] - mx) / sum * v[size_t(kvstart[b] + j) * ks + hk * D + c];
            out[size_t(row) * qs + h * D + c] = o;
          }
          lse[size_t(row) * Hq + h] = mx + std::log(sum);
        }
      }
    return {{"out", out}, {"lse", lse}};
  }
  std::vector<GradIn> grad_inputs() override {
    if (cache) return {};  // backward is of a pass without cache
    return {{"q", &q}, {"k", &k}, {"v", &v}};
  }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Dev d = run(be);
    Buffer bd = dev(be, dout);
    OutBuf dq(be, q.size(), false, 0), dk(be, k.size(), false, 0), dv(be, v.size(), false, 0);  // written
    be.attention_backward(dq.p(), dk.p(), dv.p(), bd.f32(), d.out.p(), d.lse.p(), d.q.f32(), d.k.f32(), d.v.f32(),
                          d.qs.i32(), d.ql.i32(), B, Hq, Hk, D);
    return {dq.result(be), dk.result(be), dv.result(be)};
  }
};

// ---------------------------------------------------------------- swiglu
struct Swiglu : OpCase {
  size_t n;
  Vec g, u;
  Swiglu(size_t n_, float gscale, bool extremes = false) : n(n_) {
    op = "swiglu";
    params = fmt("n=%zu g in +-%g%s", n, gscale, extremes ? " with extremes" : "");
    g = randv(n, seed, gscale);
    u = randv(n, seed + 1, 2.0f);
    if (extremes) {
      const float e[] = {-100, -87.5f, -60, -30, 0, 30, 60, 87.5f, 100};
      for (size_t i = 0; i < std::min(n, sizeof e / sizeof e[0]); i++) g[i] = e[i];
    }
  }
  Outs forward(Backend& be) override {
    Buffer bg = dev(be, g), bu = dev(be, u);
    OutBuf h(be, n, false, 0);
    be.swiglu_forward(h.p(), bg.f32(), bu.f32(), n);
    return {{"h", dbl(h.result(be))}};
  }
  Outs reference() override {
    DVec h(n);
    for (size_t i = 0; i < n; i++) h[i] = double(g[i]) / (1 + std::exp(-double(g[i]))) * u[i];
    return {{"h", h}};
  }
  std::vector<GradIn> grad_inputs() override { return {{"g", &g}, {"u", &u}}; }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Buffer bg = dev(be, g), bu = dev(be, u), bd = dev(be, dout);
    OutBuf dg(be, n, false, 0), du(be, n, false, 0);  // written
    be.swiglu_backward(dg.p(), du.p(), bd.f32(), bg.f32(), bu.f32(), n);
    return {dg.result(be), du.result(be)};
  }
};

// ---------------------------------------------------------------- DoRA and dropout
// Row norms of W + s B A (W f32, or bf16 as the model holds it: the norms read the rounded W).
Buffer dev_bf16(Backend& be, const Vec& h);
double rbf(float x);
struct DoraNorm : OpCase {
  int out, in, r;
  bool bf16;
  float s = 1.3f;
  Vec W, A, B;
  DoraNorm(int out_, int in_, int r_, bool bf16_) : out(out_), in(in_), r(r_), bf16(bf16_) {
    op = "dora_norm";
    params = fmt("out=%d in=%d r=%d W %s", out, in, r, bf16 ? "bf16" : "f32");
    W = randv(size_t(out) * in, seed);
    A = randv(size_t(r) * in, seed + 1);
    B = randv(size_t(out) * r, seed + 2);
  }
  Outs forward(Backend& be) override {
    Buffer bW = bf16 ? dev_bf16(be, W) : dev(be, W), bA = dev(be, A), bB = dev(be, B);
    OutBuf n(be, size_t(out), false, 0);
    be.dora_norm(n.p(), bW, bA.f32(), bB.f32(), s, out, in, r);
    return {{"n", dbl(n.result(be))}};
  }
  Outs reference() override {
    DVec n(static_cast<size_t>(out));
    for (int j = 0; j < out; j++) {
      double ss = 0;
      for (int i = 0; i < in; i++) {
        double w = bf16 ? rbf(W[size_t(j) * in + i]) : double(W[size_t(j) * in + i]);
        for (int k = 0; k < r; k++) w += double(s) * B[size_t(j) * r + k] * A[size_t(k) * in + i];
        ss += w * w;
      }
      n[size_t(j)] = std::sqrt(ss);
    }
    return {{"n", n}};
  }
};

// y = c z + b (dora_scale, z kept) and y = base + (c - 1) u + c v (dora_mix), c = m / n; their
// backward is dora_backward: dyc = c dy (d/dz, d/dv), dyc1 = (c - 1) dy (d/du), dm += dy z / n.
struct DoraScaleMix : OpCase {
  int N, out;
  bool mix, bias;
  Vec z, u, v, base, m, n, b;
  DoraScaleMix(int N_, int out_, bool mix_, bool bias_) : N(N_), out(out_), mix(mix_), bias(bias_) {
    op = mix ? "dora_mix" : "dora_scale";
    params = fmt("N=%d out=%d%s", N, out, mix ? "" : bias ? " bias" : " no bias");
    size_t nN = size_t(N) * out;
    z = randv(nN, seed);
    u = randv(nN, seed + 1);
    v = randv(nN, seed + 2);
    base = randv(nN, seed + 3);
    m = randv(size_t(out), seed + 4);
    n = randv(size_t(out), seed + 5);
    for (auto& x : n) x = 0.5f + std::fabs(x);  // norms are positive
    b = randv(size_t(out), seed + 6);
  }
  Outs forward(Backend& be) override {
    Buffer bm = dev(be, m), bn = dev(be, n), bb = dev(be, b);
    if (!mix) {
      Buffer y = dev(be, z);
      OutBuf zk(be, z.size(), false, 0);
      be.dora_scale(y.f32(), zk.p(), bm.f32(), bn.f32(), bias ? bb.f32() : nullptr, N, out);
      return {{"y", dbl(host(be, y))}, {"z kept", dbl(zk.result(be))}};
    }
    Buffer y = dev(be, base), bu = dev(be, u), bv = dev(be, v);
    OutBuf zk(be, z.size(), false, 0);
    be.dora_mix(y.f32(), zk.p(), bu.f32(), bv.f32(), bm.f32(), bn.f32(), N, out);
    return {{"y", dbl(host(be, y))}, {"z", dbl(zk.result(be))}};
  }
  Outs reference() override {
    DVec y(z.size()), zz(z.size());
    for (int t = 0; t < N; t++)
      for (int j = 0; j < out; j++) {
        size_t o = size_t(t) * out + j;
        double c = double(m[size_t(j)]) / n[size_t(j)];
        if (!mix) {
          y[o] = c * z[o] + (bias ? double(b[size_t(j)]) : 0.0);
          zz[o] = z[o];
        } else {
          y[o] = double(base[o]) + (c - 1) * u[o] + c * v[o];
          zz[o] = double(u[o]) + v[o];
        }
      }
    return {{"y", y}, {mix ? "z" : "z kept", zz}};
  }
  std::vector<GradIn> grad_inputs() override {
    if (!mix) return {{"z", &z}, {"m", &m}};
    return {{"u", &u}, {"v", &v}, {"m", &m}};
  }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Vec zsum = z;
    if (mix)
      for (size_t i = 0; i < z.size(); i++) zsum[i] = u[i] + v[i];
    Buffer bd = dev(be, dout), bz = dev(be, zsum), bm = dev(be, m), bn = dev(be, n);
    OutBuf dyc(be, z.size(), false, 0), dyc1(be, z.size(), false, 0), dm(be, m.size(), true, seed + 9);
    be.dora_backward(dm.p(), dyc.p(), mix ? dyc1.p() : nullptr, bd.f32(), bz.f32(), bm.f32(), bn.f32(), N, out);
    if (!mix) return {dyc.result(be), dm.result(be)};
    return {dyc1.result(be), dyc.result(be), dm.result(be)};
  }
};

// dropout(x) with the LoRA branch's masks (lora_ref); linear, so its backward is itself.
struct DropoutCase : OpCase {
  size_t n;
  float p;
  uint64_t drop_seed = 77;
  Vec x;
  DropoutCase(size_t n_, float p_) : n(n_), p(p_) {
    op = "dropout";
    params = fmt("n=%zu p=%g", n, p);
    x = randv(n, seed);
  }
  Outs forward(Backend& be) override {
    Buffer bx = dev(be, x);
    OutBuf y(be, n, false, 0);
    be.dropout(y.p(), bx.f32(), n, p, drop_seed);
    return {{"y", dbl(y.result(be))}};
  }
  Outs reference() override {
    DVec y(n);
    for (size_t i = 0; i < n; i++) y[i] = tb::hash_uniform(drop_seed, i) < 1.0f - p ? double(x[i]) / (1.0 - p) : 0.0;
    return {{"y", y}};
  }
  std::vector<GradIn> grad_inputs() override { return {{"x", &x}}; }
  std::vector<Vec> backward(Backend& be, const Vec& dout) override {
    Buffer bd = dev(be, dout);
    be.dropout(bd.f32(), bd.f32(), n, p, drop_seed);  // in place, as the engine calls it
    return {host(be, bd)};
  }
};

// ---------------------------------------------------------------- log-prob head and logits
// trained: logprob_forward without ew, then logprob_backward (dh, dW). frozen: with ew, then
// logprob_backward_expected (dh only). chunk > 0 forces vocabulary chunks (online logsumexp).
struct LogProb : OpCase {
  int M, C, V;
  bool trained, prepared;
  IVec target;
  Vec h, W;
  LogProb(int C_, int V_, IVec target_, bool trained_, int chunk, bool prepared_ = false, float hscale = 2.0f)
      : M(int(target_.size())), C(C_), V(V_), trained(trained_), prepared(prepared_), target(target_) {
    op = "logprob";
    logprob_chunk = chunk;
    params = fmt("M=%d C=%d V=%d targets=%s %s chunk=%s%s h in +-%g", M, C, V, join(target).c_str(),
                 trained ? "trained" : "frozen (ew)", chunk ? std::to_string(chunk).c_str() : "auto",
                 prepared ? " prepared" : "", hscale);
    h = randv(size_t(M) * C, seed, hscale);
    W = randv(size_t(V) * C, seed + 1);
  }
  Buffer head(Backend& be, bool prep) {
    Buffer bW = dev(be, W);
    if (prep) bW.prepared = be.prepare(bW, V, C, true);
    return bW;
  }
  // The entropy comes from h.ew with ew (frozen) and from the online sums without (trained).
  struct Dev {
    Buffer h, W, t;
    OutBuf lp, lse, ew, ent;
  };
  Dev run(Backend& be, bool prep) {
    Dev d{dev(be, h), head(be, prep), devi(be, target), OutBuf(be, M, false, 0), OutBuf(be, M, false, 0),
          OutBuf(be, size_t(M) * C, false, 0), OutBuf(be, M, false, 0)};
    be.logprob_forward(d.lp.p(), d.lse.p(), trained ? nullptr : d.ew.p(), d.ent.p(), d.h.f32(), d.W, d.t.i32(), M, C, V);
    return d;
  }
  Outs outs(Backend& be, Dev& d) {
    Outs o = {{"lp", dbl(d.lp.result(be))}, {"lse", dbl(d.lse.result(be))}, {"entropy", dbl(d.ent.result(be))}};
    if (!trained) o.push_back({"ew", dbl(d.ew.result(be))});
    return o;
  }
  Outs forward(Backend& be) override {
    Dev d = run(be, prepared);
    return outs(be, d);
  }
  Outs reference() override {
    DVec lp(M), lse(M), ent(M, 0.0), ew(size_t(M) * C, 0.0);
    for (int m = 0; m < M; m++) {
      DVec l(V);
      double mx = -INFINITY;
      for (int v = 0; v < V; v++) {
        double a = 0;
        for (int c = 0; c < C; c++) a += double(h[size_t(m) * C + c]) * W[size_t(v) * C + c];
        l[v] = a;
        mx = std::max(mx, a);
      }
      double sum = 0;
      for (int v = 0; v < V; v++) sum += std::exp(l[v] - mx);
      lse[m] = mx + std::log(sum);
      lp[m] = l[target[m]] - lse[m];
      for (int v = 0; v < V; v++) ent[m] -= std::exp(l[v] - lse[m]) * (l[v] - lse[m]);
      for (int v = 0; v < V; v++)
        for (int c = 0; c < C; c++) ew[size_t(m) * C + c] += std::exp(l[v] - lse[m]) * W[size_t(v) * C + c];
    }
    Outs o = {{"lp", lp}, {"lse", lse}, {"entropy", ent}};
    if (!trained) o.push_back({"ew", ew});
    return o;
  }
  std::vector<GradIn> grad_inputs() override {
    if (trained) return {{"h", &h}, {"W", &W}};
    return {{"h", &h}};
  }
  std::vector<Vec> backward(Backend& be, const Vec& dlp) override {
    Dev d = run(be, prepared);
    Buffer bd = dev(be, dlp);
    OutBuf dh(be, h.size(), true, seed + 7), dW(be, W.size(), true, seed + 8);
    if (trained) {
      be.logprob_backward(dh.p(), dW.p(), bd.f32(), d.h.f32(), d.W, d.t.i32(), d.lse.p(), M, C, V);
      return {dh.result(be), dW.result(be)};
    }
    be.logprob_backward_expected(dh.p(), bd.f32(), d.ew.p(), d.W, d.t.i32(), M, C);
    return {dh.result(be)};
  }
  void extra(Checker& ck, Backend& be, const std::string& name) override {
    if (!prepared) return;
    Buffer bW = dev(be, W);
    auto p = be.prepare(bW, V, C, true);
    bool cpu = be.name() == "cpu", onednn = std::string(tb::blas_name()) == "onednn";
    if (!p) {
      bool ok = !(cpu && onednn);
      ck.report(ok, name + " prepared head = unprepared",
                ok ? "prepare() returned null on this build: unpacked path only (case still ran)"
                   : "oneDNN build, yet prepare() declined to pack the head");
      return;
    }
    if (cpu && !onednn) ck.report(false, name + " prepared head", "prepare() packed without oneDNN");
    Dev a = run(be, true), u = run(be, false);
    Outs oa = outs(be, a), ou = outs(be, u);
    for (size_t i = 0; i < oa.size(); i++)
      ck.compare(name + " prepared " + oa[i].name + " = unprepared" + fmt(" (%zu bytes packed)", p->bytes()), oa[i].v,
                 ou[i].v, 1e-5);
  }
};

struct Logits : OpCase {
  int M, C, V;
  Vec h, W;
  Logits(int M_, int C_, int V_) : M(M_), C(C_), V(V_) {
    op = "logits";
    params = fmt("M=%d C=%d V=%d", M, C, V);
    h = randv(size_t(M) * C, seed, 2.0f);
    W = randv(size_t(V) * C, seed + 1);
  }
  Outs forward(Backend& be) override {
    Buffer bh = dev(be, h), bW = dev(be, W);
    OutBuf out(be, size_t(M) * V, false, 0);
    be.logits(out.p(), bh.f32(), bW, M, C, V);
    return {{"logits", dbl(out.result(be))}};
  }
  Outs reference() override {
    DVec o(size_t(M) * V);
    for (int m = 0; m < M; m++)
      for (int v = 0; v < V; v++) {
        double a = 0;
        for (int c = 0; c < C; c++) a += double(h[size_t(m) * C + c]) * W[size_t(v) * C + c];
        o[size_t(m) * V + v] = a;
      }
    return {{"logits", o}};
  }
};

// ---------------------------------------------------------------- adamw
// `steps` consecutive steps with fresh gradients, the AdamW struct filled as optimizer.cpp
// does, against PyTorch's AdamW in double: w *= 1 - lr wd; m, v moments of clip * g;
// w -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
struct AdamWCase : OpCase {
  size_t n;
  int steps;
  double lr, wd, clip, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  Vec w0;
  std::vector<Vec> g;
  AdamWCase(size_t n_, int steps_, double lr_, double wd_, double clip_) : n(n_), steps(steps_), lr(lr_), wd(wd_), clip(clip_) {
    op = "adamw";
    params = fmt("n=%zu steps=%d lr=%g wd=%g clip=%g", n, steps, lr, wd, clip);
    w0 = randv(n, seed);
    for (int t = 0; t < steps; t++) {
      g.push_back(randv(n, seed + 1 + t, 0.5f));
      g.back()[0] = 0.0f;  // a zero gradient: m = v = 0 at step 1, update 0 / eps
    }
  }
  Outs forward(Backend& be) override {
    Buffer w = dev(be, w0), m = dev(be, Vec(n, 0.0f)), v = dev(be, Vec(n, 0.0f)), gb;
    for (int t = 1; t <= steps; t++) {
      gb = dev(be, g[size_t(t - 1)]);
      double bc1 = 1 - std::pow(float(beta1), double(t)), bc2 = 1 - std::pow(float(beta2), double(t));
      tb::AdamW a{float(clip), float(beta1), float(beta2), float(1.0f - float(lr) * float(wd)), float(lr / bc1),
                  float(std::sqrt(bc2)), float(eps)};
      be.adamw(w.f32(), gb.f32(), m.f32(), v.f32(), n, a);
    }
    return {{"w", dbl(host(be, w))}, {"m", dbl(host(be, m))}, {"v", dbl(host(be, v))}, {"g (clipped)", dbl(host(be, gb))}};
  }
  Outs reference() override {
    // The hyperparameters as the f32 values the kernel receives.
    double b1 = float(beta1), b2 = float(beta2), lrf = float(lr), dec = float(1.0f - float(lr) * float(wd));
    DVec w = dbl(w0), m(n, 0.0), v(n, 0.0), gl(n);
    for (int t = 1; t <= steps; t++) {
      double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
      for (size_t i = 0; i < n; i++) {
        double gi = double(g[size_t(t - 1)][i]) * float(clip);
        gl[i] = gi;
        m[i] = b1 * m[i] + (1 - b1) * gi;
        v[i] = b2 * v[i] + (1 - b2) * gi * gi;
        w[i] = w[i] * dec - lrf * (m[i] / bc1) / (std::sqrt(v[i] / bc2) + float(eps));
      }
    }
    return {{"w", w}, {"m", m}, {"v", v}, {"g (clipped)", gl}};
  }
};

// ---------------------------------------------------------------- the table
std::vector<std::unique_ptr<OpCase>> make_cases() {
  std::vector<std::unique_ptr<OpCase>> t;
  auto add = [&](OpCase* c) { t.emplace_back(c); };
  using E = Elementwise;
  using R = Rows;

  for (size_t n : {size_t(0), size_t(13), size_t(40000)}) {  // 40000: several 16k spans
    add(new E(E::Zero, n));
    add(new E(E::Copy, n));
    add(new E(E::Add, n));
    add(new E(E::Scale, n));
  }
  for (size_t n : {size_t(0), size_t(1), size_t(16397)}) add(new SumSquares(n));
  add(new R(R::Gather, 8, 13, {4, 0, 4, 2, 7}));
  add(new R(R::Gather, 3, 1, {2}));
  add(new R(R::ScatterAdd, 8, 13, {6, 1, 3}));
  add(new R(R::ScatterAdd, 5, 1, {4, 0, 1, 3, 2}));
  add(new R(R::Scatter, 8, 13, {0, 7, 2}));
  add(new R(R::Scatter, 2, 1, {1}));

  // gemm: all four transposes, beta 0 and 1, leading dimensions wider than the rows; a size above
  // the threaded-split threshold (M N K >= 262144); vectors; K = 0.
  for (int ta = 0; ta < 2; ta++)
    for (int tbb = 0; tbb < 2; tbb++)
      for (float beta : {0.0f, 1.0f}) {
        add(new Gemm(ta, tbb, 5, 7, 13, 1.0f, beta, 3));
        add(new Gemm(ta, tbb, 67, 65, 70, 0.5f, beta, 5));
      }
  add(new Gemm(false, true, 1, 37, 16, 1.0f, 0.0f, 0));
  add(new Gemm(true, false, 29, 1, 11, -2.0f, 1.0f, 2));
  add(new Gemm(false, false, 4, 6, 0, 1.0f, 0.0f, 1));
  add(new Gemm(false, false, 4, 6, 0, 1.0f, 1.0f, 1));
  // Thin products against wide B (decoding): column blocks of 2048, the last one ragged.
  add(new Gemm(false, true, 3, 4500, 20, 1.0f, 0.0f, 1));
  add(new Gemm(true, false, 16, 2049, 9, 0.5f, 1.0f, 2));
  // x W^T of 1..16 rows (thin.cpp where the CPU has AVX2; a k % 8 tail; threaded above N K =
  // 65536), the same with the kernel off (the library's GEMM), and 17 rows, past it.
  for (int m : {1, 4, 8, 9, 16})
    for (float beta : {0.0f, 1.0f}) {
      add(new Gemm(false, true, m, 3001, 37, 0.5f, beta, 3));
      add(new Gemm(false, true, m, 2, 13, 1.0f, beta, 1));
    }
  add(new Gemm(false, true, 8, 3001, 37, 1.0f, 1.0f, 3, false));
  add(new Gemm(false, true, 17, 3001, 37, 1.0f, 0.0f, 3));

  add(new Embedding(4, 6, {1, 3, 1, 5, 0}));
  add(new Embedding(13, 3, {2}));
  add(new Embedding(16, 7, {0, 6, 6, 6, 1, 2, 3, 4, 5, 0, 0, 6, 3, 3, 2, 1, 5, 4, 6, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 0, 1, 2, 3, 4, 5, 6, 0}));

  add(new RmsNorm(5, 16));
  add(new RmsNorm(1, 13));
  add(new RmsNorm(7, 40, false));
  add(new RmsNorm(24, 8));  // qk-norm's shape: N*H rows of head_dim

  //                 N  in out  bias  y+=    dx+=   frozen prepared
  add(new Linear(6, 12, 10, true, false, true));
  add(new Linear(1, 13, 7, false, true, false));
  add(new Linear(13, 37, 29, true, true, true));
  add(new Linear(5, 12, 10, false, false, false, true, true));
  add(new Linear(40, 64, 130, false, false, true, true, true));
  add(new Linear(1, 37, 10, false, false, false, true, true));
  add(new Linear(13, 29, 64, true, false, true, false, true));  // prepared W, trained (dW, db too)
  add(new Linear(6, 12, 10, true, false, false, false, false, true));  // dx = null: weight gradients only

  //               N  in  out  r  dropout y+=    dx+=   kernels
  add(new Lora(6, 12, 10, 3, 0.0f, true, true));
  add(new Lora(6, 12, 10, 3, 0.3f, true, true));
  add(new Lora(1, 5, 5, 1, 0.5f, false, false));
  for (bool k : {true, false}) {
    add(new Lora(13, 67, 130, 16, 0.0f, false, false, k));
    add(new Lora(37, 16, 67, 3, 0.1f, true, true, k));
    add(new Lora(7, 130, 5, 48, 0.0f, true, false, k));
  }
  add(new Lora(6, 12, 10, 3, 0.3f, true, true, true, true));  // dx = null
  add(new LoraShared({10, 6, 6}, 6, 12, 2, true, true));
  add(new LoraShared({24, 24}, 13, 16, 4, false, false, true));
  add(new LoraShared({67, 13, 13}, 37, 13, 3, false, true, false, false));
  add(new LoraShared({16}, 1, 9, 5, true, false));
  add(new LoraShared({10, 6, 6}, 6, 12, 2, false, false, false, true, true));  // dx = null

  add(new Rope(2, 8, {0, 1, 2, 3, 4}));
  add(new Rope(3, 2, {7, 3, 0, 7}));
  add(new Rope(1, 64, {31}));
  add(new Rope(4, 6, {5, 6, 7, 0, 1, 2}, 100.0f));

  add(new Attention({5, 3}, 4, 2, 8));           // GQA
  add(new Attention({4, 0, 3}, 2, 2, 4));        // a sequence of length 0 in the middle
  add(new Attention({0, 6}, 6, 3, 5));           // ... first; odd head_dim
  add(new Attention({1}, 3, 1, 4));              // N = 1, one kv head
  add(new Attention({70, 2}, 2, 1, 4));          // longer than a query block (64)
  add(new Attention({1, 1, 0}, {5, 9, 3}, 12, 4, 2, 8));   // decoding one token; a sequence with none
  add(new Attention({3, 2}, {7, 2}, 8, 2, 1, 4));          // a chunk after a cache; one without cache
  add(new Attention({66}, {70}, 72, 2, 2, 4));             // query blocks behind 4 cached keys
  add(new Attention({2, 4}, {2, 4}, 6, 4, 4, 8));          // cache form with kvlen = qlen

  add(new Swiglu(40, 3.0f));
  add(new Swiglu(13, 1.0f));
  add(new Swiglu(4099, 4.0f));  // past one 4096-element chunk
  add(new Swiglu(20, 3.0f, true));

  add(new DoraNorm(7, 13, 3, false));
  add(new DoraNorm(70, 33, 2, true));
  add(new DoraScaleMix(5, 9, false, true));
  add(new DoraScaleMix(3, 130, false, false));  // columns past one block of 64
  add(new DoraScaleMix(4, 70, true, false));
  add(new DropoutCase(1000, 0.25f));
  add(new ScaledRows(ScaledRows::ScatterAddScaled, 7, 33, {4, 0, 6, 2}));
  add(new ScaledRows(ScaledRows::Scale, 5, 70, {0, 1, 2, 3, 4}));
  add(new ScaledRows(ScaledRows::Dots, 6, 129, {0, 1, 2, 3, 4, 5}));
  add(new MoeRoute(5, 8, 2, true, false));
  add(new MoeRoute(4, 6, 3, false, false));
  add(new MoeRoute(6, 8, 2, true, true));
  add(new MoeRoute(3, 5, 1, false, true));

  add(new LogProb(8, 37, {3, 36, 0, 17}, true, 0));
  add(new LogProb(8, 37, {3, 36, 0, 17}, true, 7));  // 5 chunks of 7 and one of 2
  add(new LogProb(8, 37, {6, 7, 35, 36}, false, 7));  // targets at chunk edges
  add(new LogProb(13, 2, {1}, true, 1));
  add(new LogProb(16, 300, {0, 299, 150, 64, 65}, false, 0, true));
  add(new LogProb(8, 37, {3, 36, 0, 17}, false, 7, true));  // packed head in chunks of 7
  add(new LogProb(8, 37, {3, 36, 0, 17}, true, 5, false, 6.0f));  // logits far apart

  add(new Logits(3, 13, 37));
  add(new Logits(1, 16, 300));

  add(new AdamWCase(37, 3, 0.1, 0.01, 0.5));
  add(new AdamWCase(16397, 2, 1e-3, 0.0, 1.0));  // several 16k chunks
  add(new AdamWCase(5, 1, 1e-3, 0.1, 1.0));
  return t;
}

void run_case(Checker& ck, Backend& be, Backend* cpu, OpCase& c) {
  std::string name = be.name() + " " + c.op + " " + c.params;
  tb::set_rank_kernels(c.rank_kernels);
  tb::set_thin_kernels(c.thin_kernels);
  tb::set_logprob_chunk(c.logprob_chunk);
  try {
    be.activate();
    Outs got = c.forward(be);
    if (cpu) {
      cpu->activate();
      Outs ref = c.forward(*cpu);
      be.activate();
      for (size_t i = 0; i < got.size(); i++) ck.compare(name + ": " + got[i].name + " vs cpu", got[i].v, ref[i].v, kCrossTol);
    } else {
      Outs ref = c.reference();
      for (size_t i = 0; i < got.size(); i++) ck.compare(name + ": " + got[i].name, got[i].v, ref[i].v, c.fwd_tol);
    }
    std::vector<GradIn> in = c.grad_inputs();
    if (!in.empty()) {
      Vec w = randv(got[0].v.size(), c.seed + 99);
      std::vector<Vec> grads = c.backward(be, w);
      if (cpu) {
        cpu->activate();
        std::vector<Vec> ref = c.backward(*cpu, w);
        be.activate();
        for (size_t k = 0; k < in.size() && k < grads.size() && k < ref.size(); k++)
          ck.compare(name + ": d" + in[k].name + " vs cpu", dbl(grads[k]), dbl(ref[k]), kCrossTol);
      }
      auto loss = [&] { return dot(c.forward(be)[0].v, w); };
      for (size_t k = 0; k < in.size(); k++)
        ck.fd(name + ": d" + in[k].name, *in[k].x, k < grads.size() ? grads[k] : Vec(), loss, c.fd_eps, c.fd_tol);
    }
    c.extra(ck, be, name);
  } catch (const std::exception& e) {
    ck.report(false, name, std::string("threw: ") + e.what());
  }
  tb::set_rank_kernels(true);
  tb::set_thin_kernels(true);
  tb::set_logprob_chunk(0);
}

// ---------------------------------------------------------------- bf16 weights
// The ops that read a frozen matrix held in BF16 (Model precision bf16): the engine rounds the
// activation side to bf16 (nearest even) and sums the exact products in f32, so each output
// must equal the double-precision sum over the bf16-rounded operands up to f32 summation
// (kBf16Tol, relative to the output's largest magnitude), on every GEMM library and shape
// path (thin rows against many columns take the column-block path). Backward is not checked
// against finite differences here: rounding makes the forward piecewise constant in x.
const double kBf16Tol = 2e-6;

double rbf(float x) { return tb::bf16_to_f32(tb::f32_to_bf16(x)); }

Buffer dev_bf16(Backend& be, const Vec& h) {
  std::vector<uint16_t> b(h.size());
  for (size_t i = 0; i < h.size(); i++) b[i] = tb::f32_to_bf16(h[i]);
  Buffer out(be, DType::BF16, h.size());
  if (!h.empty()) be.upload(out.raw(), b.data(), out.bytes());
  return out;
}

// ref[m, n] (+ base) = sum_k rbf(x[m, k]) rbf(W[n, k]) for W [N, K]
DVec ref_xwt(const Vec& x, const Vec& W, int M, int N, int K) {
  DVec y(size_t(M) * N);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = 0;
      for (int k = 0; k < K; k++) s += rbf(x[size_t(m) * K + k]) * rbf(W[size_t(n) * K + k]);
      y[size_t(m) * N + n] = s;
    }
  return y;
}

void run_bf16_cases(Checker& ck, Backend& be) {
  struct Shape { int N, in, out; bool bias, acc; };
  // up to 16 rows x W^T: thin.cpp's dot products over W's rows where the CPU has AVX2 (a k % 8
  // tail), else up to 4 rows so and 9-16 rows against more than 2048 columns (and dx of few rows
  // against many) oneDNN in column blocks; more rows: one product
  for (Shape sh : {Shape{5, 37, 29, false, false}, Shape{40, 96, 80, true, true}, Shape{3, 64, 4100, false, true},
                   Shape{1, 48, 2500, true, false}, Shape{12, 64, 4100, true, true}, Shape{3, 4100, 40, false, false},
                   Shape{9, 100, 3000, false, true}, Shape{16, 100, 3000, false, false},
                   Shape{130, 72, 600, true, true}, Shape{140, 600, 72, false, false}}) {
    std::string p = fmt("N=%d in=%d out=%d%s%s", sh.N, sh.in, sh.out, sh.bias ? " bias" : "", sh.acc ? " +=" : "");
    Vec x = randv(size_t(sh.N) * sh.in, 11), W = randv(size_t(sh.out) * sh.in, 12), b = randv(sh.out, 13);
    Buffer bx = dev(be, x), bW = dev_bf16(be, W), bb = dev(be, b);
    OutBuf y(be, size_t(sh.N) * sh.out, sh.acc, 14);
    be.linear_forward(y.p(), bx.f32(), bW, sh.bias ? bb.f32() : nullptr, sh.N, sh.in, sh.out, sh.acc);
    DVec ref = ref_xwt(x, W, sh.N, sh.out, sh.in);
    if (sh.bias)
      for (int n = 0; n < sh.N; n++)
        for (int o = 0; o < sh.out; o++) ref[size_t(n) * sh.out + o] += b[o];
    ck.compare("bf16 linear forward " + p, dbl(y.result(be)), ref, kBf16Tol);
    // dx (+)= rbf(dy) rbf(W): W [out, in] read untransposed
    Vec dy = randv(size_t(sh.N) * sh.out, 15);
    Buffer bdy = dev(be, dy);
    OutBuf dx(be, x.size(), sh.acc, 16);
    be.linear_backward(dx.p(), nullptr, nullptr, bdy.f32(), bx.f32(), bW, sh.N, sh.in, sh.out, sh.acc);
    DVec rdx(x.size(), 0.0);
    for (int n = 0; n < sh.N; n++)
      for (int o = 0; o < sh.out; o++)
        for (int i = 0; i < sh.in; i++)
          rdx[size_t(n) * sh.in + i] += rbf(dy[size_t(n) * sh.out + o]) * rbf(W[size_t(o) * sh.in + i]);
    ck.compare("bf16 linear dx " + p, dbl(dx.result(be)), rdx, kBf16Tol);
    ck.report(!be.prepare(bW, sh.out, sh.in, false), "bf16 weights are not prepared " + p, "prepare() declines BF16");
    // As in f32 (Gemm::extra): a few rows' products give each row the same bits alone (y = the
    // initial values + the sum, when accumulating; shapes without bias, added afterwards).
    if (be.name() == "cpu" && tb::has_thin_kernels() && !sh.bias && sh.N > 1 && sh.N <= tb::kThinMaxRows) {
      Vec all = host(be, y.buf);
      bool same = true;
      for (int n = 0; n < sh.N && same; n++) {
        Vec row(x.begin() + size_t(n) * sh.in, x.begin() + size_t(n + 1) * sh.in);
        Buffer br = dev(be, row);
        OutBuf one(be, size_t(sh.out), false, 0);
        be.linear_forward(one.p(), br.f32(), bW, nullptr, 1, sh.in, sh.out, false);
        Vec alone = one.result(be);
        for (int o = 0; o < sh.out && same; o++) {
          float got = all[size_t(n) * sh.out + o];
          float expect = sh.acc ? y.base[size_t(n) * sh.out + o] + alone[o] : alone[o];
          same = std::memcmp(&got, &expect, sizeof(float)) == 0;
        }
      }
      ck.report(same, "bf16 linear forward " + p + ": each row alone = among the others", same ? "" : "a row differs");
    }
  }
  {
    const int N = 6, C = 33, V = 17;
    Vec table = randv(size_t(V) * C, 21);
    IVec ids{3, 0, 16, 3, 9, 1};
    Buffer bt = dev_bf16(be, table), bi(be, DType::I32, ids.size());
    be.upload(bi.raw(), ids.data(), bi.bytes());
    OutBuf out(be, size_t(N) * C, false, 22);
    be.embedding_forward(out.p(), bi.i32(), bt, N, C);
    DVec ref(size_t(N) * C);
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++) ref[size_t(n) * C + c] = rbf(table[size_t(ids[n]) * C + c]);
    ck.compare("bf16 embedding forward", dbl(out.result(be)), ref, 0.0);
  }
  // The head: logits chunk by chunk (set_logprob_chunk forces several), lp, lse and the
  // entropy from the online sums against double softmaxes of the bf16 logits; the expected row
  // sums bf16-rounded probabilities (its products read the head in bf16 too), so it and the
  // entropy taken from it (lse - h.ew) are compared at bf16's rounding (kBf16RowTol).
  const double kBf16RowTol = 8e-3;
  for (int chunk : {0, 7}) {
    tb::set_logprob_chunk(chunk);
    const int M = 5, C = 24, V = chunk ? 29 : 3000;
    Vec h = randv(size_t(M) * C, 31), W = randv(size_t(V) * C, 32, 0.5f);
    IVec t{0, 28, 5, 17, 2};
    Buffer bh = dev(be, h), bW = dev_bf16(be, W), bt(be, DType::I32, t.size());
    be.upload(bt.raw(), t.data(), bt.bytes());
    DVec logits = ref_xwt(h, W, M, V, C);
    DVec rlp(M), rlse(M), rent(M), rew(size_t(M) * C, 0.0);
    for (int m = 0; m < M; m++) {
      double mx = -INFINITY, sum = 0, pl = 0;
      for (int v = 0; v < V; v++) mx = std::max(mx, logits[size_t(m) * V + v]);
      for (int v = 0; v < V; v++) sum += std::exp(logits[size_t(m) * V + v] - mx);
      rlse[m] = mx + std::log(sum);
      rlp[m] = logits[size_t(m) * V + t[m]] - rlse[m];
      for (int v = 0; v < V; v++) {
        double pv = std::exp(logits[size_t(m) * V + v] - rlse[m]);
        pl += pv * logits[size_t(m) * V + v];
        for (int c = 0; c < C; c++) rew[size_t(m) * C + c] += pv * rbf(W[size_t(v) * C + c]);
      }
      rent[m] = rlse[m] - pl;
    }
    std::string p = fmt("M=%d C=%d V=%d chunk=%d", M, C, V, chunk);
    for (bool with_ew : {false, true}) {
      OutBuf lp(be, M, false, 33), lse(be, M, false, 34), ent(be, M, false, 35), ew(be, size_t(M) * C, false, 36);
      be.logprob_forward(lp.p(), lse.p(), with_ew ? ew.p() : nullptr, ent.p(), bh.f32(), bW, bt.i32(), M, C, V);
      std::string q = p + (with_ew ? " ew" : "");
      ck.compare("bf16 logprob lp " + q, dbl(lp.result(be)), rlp, kBf16Tol);
      ck.compare("bf16 logprob lse " + q, dbl(lse.result(be)), rlse, kBf16Tol);
      ck.compare("bf16 logprob entropy " + q, dbl(ent.result(be)), rent, with_ew ? kBf16RowTol : kBf16Tol);
      if (with_ew) ck.compare("bf16 logprob expected row " + q, dbl(ew.result(be)), rew, kBf16RowTol);
    }
    // dh += dlp (W[t] - ew), given ew: exact but for one rounding per entry
    Vec dlp = randv(M, 37), ewv = randv(size_t(M) * C, 38);
    Buffer bdlp = dev(be, dlp), bew = dev(be, ewv);
    OutBuf dh(be, size_t(M) * C, true, 39);
    be.logprob_backward_expected(dh.p(), bdlp.f32(), bew.f32(), bW, bt.i32(), M, C);
    DVec rdh(size_t(M) * C);
    for (int m = 0; m < M; m++)
      for (int c = 0; c < C; c++)
        rdh[size_t(m) * C + c] = double(dlp[m]) * (rbf(W[size_t(t[m]) * C + c]) - ewv[size_t(m) * C + c]);
    ck.compare("bf16 logprob backward (frozen head) " + p, dbl(dh.result(be)), rdh, 1e-6);
    OutBuf lg(be, size_t(M) * V, false, 40);
    be.logits(lg.p(), bh.f32(), bW, M, C, V);
    ck.compare("bf16 logits " + p, dbl(lg.result(be)), logits, kBf16Tol);
  }
  tb::set_logprob_chunk(0);
}

}  // namespace

void run_backend_op_tests(int& checks, int& failures) {
  Checker ck{checks, failures};
  const int threads = 2;
  std::unique_ptr<Backend> cpu = tb::make_backend("cpu", threads);
  auto cases = make_cases();
  for (const std::string& name : tb::backend_names()) {
    std::unique_ptr<Backend> own;
    Backend* be = cpu.get();
    if (name != "cpu") {
      try {
        own = tb::make_backend(name, threads);
      } catch (const std::exception& e) {
        ck.report(false, "backend " + name, std::string("cannot be made: ") + e.what());
        continue;
      }
      be = own.get();
    }
    printf("-- backend ops on %s (%zu cases, GEMM %s)\n", name.c_str(), cases.size(), tb::blas_name());
    for (auto& c : cases) run_case(ck, *be, name == "cpu" ? nullptr : cpu.get(), *c);
    // gemm_bf16's two paths for many rows on the CPU (oneDNN builds choose per CPU; both must
    // give the same sums up to their order): oneDNN's bf16 matmul, and widened f32 blocks
    if (name == "cpu") {
      for (int mode : {0, 1}) {
        printf("-- bf16 products %s\n", mode ? "widened to f32" : "by the library's bf16 matmul");
        tb::set_bf16_widening(mode);
        run_bf16_cases(ck, *be);
      }
      tb::set_bf16_widening(-1);
    } else {
      run_bf16_cases(ck, *be);
    }
  }
}
