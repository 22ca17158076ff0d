// The CPU backend: the kernels of ops.cpp, gemm.cpp, packed.cpp, rank.cpp and simd.cpp behind
// the Backend table, one instance per model (its threads and the head's logits chunk).
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "backend.h"
#include "gemm.h"
#include "ops.h"
#include "platform.h"
#include "simd.h"

namespace tb {

namespace {

struct PreparedMatrix : Prepared {
  std::unique_ptr<PackedMatrix> m;
  size_t bytes() const override { return m->bytes(); }
};

struct PreparedHead : Prepared {
  std::unique_ptr<PackedHead> h;
  size_t bytes() const override { return h->bytes(); }
};

const PackedMatrix* packed_matrix(const Buffer& W) {
  auto* p = dynamic_cast<const PreparedMatrix*>(W.prepared.get());
  return p ? p->m.get() : nullptr;
}

Weights weights(const Buffer& W) {
  if (W.dtype() == DType::BF16) return Weights{nullptr, W.bf16()};
  return Weights{W.f32(), nullptr};
}

const PackedHead* packed_head(const Buffer& W) {
  auto* p = dynamic_cast<const PreparedHead*>(W.prepared.get());
  return p ? p->h.get() : nullptr;
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(int threads) : threads_(threads > 0 ? threads : default_threads()) {}
  std::string name() const override { return "cpu"; }
  void activate() override {
    set_threads(threads_);
    engine_thread_ = std::this_thread::get_id();
  }

  void* alloc(size_t bytes) override {
    // calloc: large blocks come zeroed from the OS without a pass over them
    void* p = std::calloc(bytes ? bytes : 1, 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void free(void* p, size_t) override { std::free(p); }
  bool host_memory() const override { return true; }
  size_t available_memory() const override { return available_memory_bytes(); }
  void upload(void* dst, const void* src, size_t bytes) override { memcpy(dst, src, bytes); }
  void download(void* dst, const void* src, size_t bytes) const override { memcpy(dst, src, bytes); }

  void fill_zero(float* y, size_t n) override {
    team();
    tb::fill_zero(y, n);
  }
  void copy(float* y, const float* x, size_t n) override {
    team();
    copy_floats(y, x, n);
  }
  void add(float* y, const float* x, size_t n) override {
    team();
    add_inplace(y, x, n);
  }
  void scale(float* y, float a, size_t n) override {
    team();
    scale_inplace(y, a, n);
  }

  void gather_rows(float* out, const float* x, const int32_t* rows, int M, int C) override {
    team();
#pragma omp parallel for schedule(static) if (worth_forking(size_t(M) * C))
    for (int m = 0; m < M; m++) memcpy(out + size_t(m) * C, x + size_t(rows[m]) * C, sizeof(float) * C);
  }
  void scatter_add_rows(float* x, const float* in, const int32_t* rows, int M, int C) override {
    team();
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) row_axpy(x + size_t(rows[m]) * C, in + size_t(m) * C, C, 1.0f);
  }
  void scatter_rows(float* x, const float* in, const int32_t* rows, int M, int C) override {
    team();
#pragma omp parallel for schedule(static) if (worth_forking(size_t(M) * C))
    for (int m = 0; m < M; m++) memcpy(x + size_t(rows[m]) * C, in + size_t(m) * C, sizeof(float) * C);
  }
  double sum_squares(const float* x, size_t n) override {
    team();
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += double(x[i]) * x[i];
    return ss;
  }

  void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B, int ldb,
            float beta, float* C, int ldc) override {
    team();
    tb::gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  std::shared_ptr<const Prepared> prepare(const Buffer& W, int rows, int cols, bool head) override {
    if (W.dtype() != DType::F32) return nullptr;  // bf16 products read the weights as they are
    if (head) {
      auto p = std::make_shared<PreparedHead>();
      p->h = PackedHead::pack(W.f32(), rows, cols);
      return p->h ? p : nullptr;
    }
    auto p = std::make_shared<PreparedMatrix>();
    p->m = PackedMatrix::pack(W.f32(), rows, cols);
    return p->m ? p : nullptr;
  }

  void embedding_forward(float* out, const int32_t* ids, const Buffer& table, int N, int C) override {
    team();
    tb::embedding_forward(out, ids, weights(table), N, C);
  }
  void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int N, int C) override {
    team();
    tb::embedding_backward(dtable, dout, ids, N, C);
  }
  void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps) override {
    team();
    tb::rmsnorm_forward(out, rstd, x, w, N, C, eps);
  }
  void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w, const float* rstd,
                        int N, int C) override {
    team();
    tb::rmsnorm_backward(dx, dw, dout, x, w, rstd, N, C);
  }
  void linear_forward(float* y, const float* x, const Buffer& W, const float* b, int N, int in, int out,
                      bool accumulate) override {
    team();
    tb::linear_forward(y, x, weights(W), b, N, in, out, accumulate);
  }
  void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const Buffer& W, int N, int in,
                       int out, bool dx_accumulate) override {
    team();
    tb::linear_backward(dx, dW, db, dy, x, weights(W), N, in, out, dx_accumulate, packed_matrix(W));
  }
  void lora_forward(float* y, float* ax, const float* x, const float* A, const float* B, float s, int N, int in,
                    int out, int r, float dropout, uint64_t seed, bool accumulate) override {
    team();
    tb::lora_forward(y, ax, x, A, B, s, N, in, out, r, dropout, seed, accumulate);
  }
  void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* ax, const float* A,
                     const float* B, float s, int N, int in, int out, int r, float dropout, uint64_t seed,
                     bool dx_accumulate) override {
    team();
    tb::lora_backward(dx, dA, dB, dy, x, ax, A, B, s, N, in, out, r, dropout, seed, dx_accumulate);
  }
  void lora_forward_shared(int n, float* const* y, const int* out, float* ax, const float* x, const float* const* A,
                           const float* const* B, float s, int N, int in, int r, bool accumulate) override {
    team();
    tb::lora_forward_shared(n, y, out, ax, x, A, B, s, N, in, r, accumulate);
  }
  void lora_backward_shared(int n, float* dx, float* const* dA, float* const* dB, const float* const* dy,
                            const int* out, const float* x, const float* ax, const float* const* A,
                            const float* const* B, float s, int N, int in, int r, bool dx_accumulate) override {
    team();
    tb::lora_backward_shared(n, dx, dA, dB, dy, out, x, ax, A, B, s, N, in, r, dx_accumulate);
  }
  void dora_norm(float* n, const Buffer& W, const float* A, const float* B, float s, int out, int in, int r) override {
    team();
    tb::dora_norm(n, weights(W), A, B, s, out, in, r);
  }
  void dora_scale(float* y, float* z, const float* m, const float* n, const float* b, int N, int out) override {
    team();
    tb::dora_scale(y, z, m, n, b, N, out);
  }
  void dora_mix(float* y, float* z, const float* u, const float* v, const float* m, const float* n, int N,
                int out) override {
    team();
    tb::dora_mix(y, z, u, v, m, n, N, out);
  }
  void dora_backward(float* dm, float* dyc, float* dyc1, const float* dy, const float* z, const float* m,
                     const float* n, int N, int out) override {
    team();
    tb::dora_backward(dm, dyc, dyc1, dy, z, m, n, N, out);
  }
  void dropout(float* out, const float* x, size_t n, float p, uint64_t seed) override {
    team();
    tb::dropout_apply(out, x, n, p, seed);
  }
  void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) override {
    team();
    tb::rope_forward(x, cos, sin, pos, N, H, D);
  }
  void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) override {
    team();
    tb::rope_backward(dx, cos, sin, pos, N, H, D);
  }
  void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                         const int32_t* qstart, const int32_t* qlen, const int32_t* kvstart, const int32_t* kvlen,
                         int B, int Hq, int Hk, int D) override {
    team();
    tb::attention_forward(out, lse, q, k, v, qstart, qlen, kvstart, kvlen, B, Hq, Hk, D);
  }
  void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out, const float* lse,
                          const float* q, const float* k, const float* v, const int32_t* start, const int32_t* len,
                          int B, int Hq, int Hk, int D) override {
    team();
    tb::attention_backward(dq, dk, dv, dout, out, lse, q, k, v, start, len, B, Hq, Hk, D);
  }
  void swiglu_forward(float* h, const float* g, const float* u, size_t n) override {
    team();
    tb::swiglu_forward(h, g, u, n);
  }
  void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n) override {
    team();
    tb::swiglu_backward(dg, du, dh, g, u, n);
  }
  void moe_route_forward(float* probs, int32_t* idx, float* w, const float* logits, int N, int E, int k, bool norm,
                         bool given_idx) override {
    team();
    tb::moe_route_forward(probs, idx, w, logits, N, E, k, norm, given_idx);
  }
  void moe_route_backward(float* dlogits, const float* dw, const float* probs, const int32_t* idx, const float* w,
                          const float* aux_g, int N, int E, int k, bool norm) override {
    team();
    tb::moe_route_backward(dlogits, dw, probs, idx, w, aux_g, N, E, k, norm);
  }
  void scatter_add_rows_scaled(float* x, const float* in, const int32_t* rows, const float* s, int M, int C) override {
    team();
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) row_axpy(x + size_t(rows[m]) * C, in + size_t(m) * C, C, s[m]);
  }
  void scale_rows(float* y, const float* s, int M, int C) override {
    team();
    tb::scale_rows(y, s, M, C);
  }
  void row_dots(float* out, const float* a, const float* b, int M, int C) override {
    team();
    tb::row_dots(out, a, b, M, C);
  }
  void logprob_forward(float* lp, float* lse, float* ew, float* ent, const float* h, const Buffer& W,
                       const int32_t* target, int M, int C, int V) override {
    team();
    tb::logprob_forward(lp, lse, ew, ent, h, weights(W), target, M, C, V, &head_scratch_, packed_head(W));
  }
  void logprob_backward_expected(float* dh, const float* dlp, const float* ew, const Buffer& W, const int32_t* target,
                                 int M, int C) override {
    team();
    tb::logprob_backward_expected(dh, dlp, ew, weights(W), target, M, C);
  }
  void logprob_backward(float* dh, float* dW, const float* dlp, const float* h, const Buffer& W, const int32_t* target,
                        const float* lse, int M, int C, int V) override {
    team();
    tb::logprob_backward(dh, dW, dlp, h, weights(W), target, lse, M, C, V, &head_scratch_);
  }
  void logits(float* out, const float* h, const Buffer& W, int M, int C, int V) override {
    team();
    mul_wt(M, V, C, h, C, weights(W), false, out, V);
  }
  void adamw(float* w, float* g, float* m, float* v, size_t n, const AdamW& o) override {
    team();
    const size_t kc = 1 << 14;
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < int64_t((n + kc - 1) / kc); c0++) {
      size_t i = size_t(c0) * kc;
      chunk_adamw(w + i, g + i, m + i, v + i, std::min(kc, n - i), o.clip, o.beta1, o.beta2, o.decay, o.step_size,
                  o.bc2_sqrt, o.eps);
    }
  }

 private:
  // Ops run with the backend's threads on the thread that activated it (the engine thread) and
  // alone on any other: the JavaScript thread's quick synchronous calls (zeroGrad) would
  // otherwise start a second OpenMP team, whose idle threads spin on the cores the engine
  // thread's team needs.
  void team() {
    if (std::this_thread::get_id() != engine_thread_) set_threads(1);
  }
  int threads_;
  std::thread::id engine_thread_;
  // The head's logits chunk (16 MB at the bench shape), reused by every pass of this backend's
  // model instead of being allocated, paged in and zeroed each time.
  std::vector<float> head_scratch_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(int threads) { return std::make_unique<CpuBackend>(threads); }

}  // namespace tb
