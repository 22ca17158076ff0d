// The seam between the model and the hardware, after ggml's backend table: memory (buffers),
// the GEMM and every op the model runs, forward and backward. Model code calls only this
// interface; cpu/ implements it, and a device backend adds kernels, not a second model.
//
// Conventions of every op (as cpu/ops.h): activations are row-major [N, width] over the packed
// valid tokens of a batch; pointers are in the backend's memory (Buffer::f32() / i32()).
// Backward ops ACCUMULATE (+=) into weight gradients and, unless told otherwise, into dx-style
// outputs; a null gradient pointer means "not trainable, skip"; the first writer of a buffer
// passes accumulate = false instead of zeroing it first.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace tb {

class Backend;

// A backend-specific prepared form of a constant matrix (cpu/: oneDNN's blocked layout).
struct Prepared {
  virtual ~Prepared() = default;
  virtual size_t bytes() const = 0;
};

// Memory owned by one backend, with its element type; move-only. resize() keeps the allocation
// when it is large enough (contents then undefined), otherwise allocates anew, zero-filled.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Backend& be, DType dt, size_t count);
  ~Buffer();
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void resize(size_t count);     // needs a backend (set by the constructor or bind())
  void bind(Backend& be, DType dt);  // an empty buffer of this backend and type
  void release();                // frees the memory, keeps backend and type
  void swap(Buffer& o) noexcept;
  // Memory the buffer does not own (a host backend's view of a mapped checkpoint tensor):
  // read-only, kept alive by `owner`; resize/bind/release let go of it and allocate anew.
  void borrow(Backend& be, DType dt, const void* data, size_t count, std::shared_ptr<const void> owner);
  bool borrowed() const { return owner_ != nullptr; }

  float* f32();
  const float* f32() const;
  int32_t* i32();
  const int32_t* i32() const;
  uint16_t* bf16();
  const uint16_t* bf16() const;
  void* raw() { return data_; }
  const void* raw() const { return data_; }

  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return count_ * dtype_size(dtype_); }
  Backend* backend() const { return be_; }

  // A prepared form kept with the data (Backend::prepare). resize/bind/release drop it; writes
  // in place do not, so whoever writes a prepared buffer drops it (the model prepares only
  // frozen weights and drops them all before full fine-tuning).
  std::shared_ptr<const Prepared> prepared;

 private:
  Backend* be_ = nullptr;
  DType dtype_ = DType::F32;
  size_t count_ = 0, capacity_ = 0;
  void* data_ = nullptr;
  std::shared_ptr<const void> owner_;  // set when borrowed
};

// Host-readable floats of a buffer: the buffer's own memory on a host backend, a copy otherwise.
class HostFloats {
 public:
  HostFloats(const Buffer& b);
  const float* data() const { return ptr_; }
  size_t size() const { return n_; }

 private:
  std::vector<float> copy_;
  const float* ptr_ = nullptr;
  size_t n_ = 0;
};

struct AdamW {
  float clip, beta1, beta2, decay, step_size, bc2_sqrt, eps;  // decay = 1 - lr * weight_decay
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Called at the start of each heavy call on the calling thread (thread pools are per thread).
  virtual void activate() = 0;

  // ---- memory
  virtual void* alloc(size_t bytes) = 0;  // zero-filled; throws std::bad_alloc
  virtual void free(void* p, size_t bytes) = 0;
  virtual bool host_memory() const = 0;   // f32() pointers are readable by the host
  virtual size_t available_memory() const = 0;  // bytes an allocation can take now (0: unknown)
  virtual void upload(void* dst, const void* src, size_t bytes) = 0;
  virtual void download(void* dst, const void* src, size_t bytes) const = 0;

  // ---- elementwise: y = 0, y = x, y += x, y *= a
  virtual void fill_zero(float* y, size_t n) = 0;
  virtual void copy(float* y, const float* x, size_t n) = 0;
  virtual void add(float* y, const float* x, size_t n) = 0;
  virtual void scale(float* y, float a, size_t n) = 0;

  // ---- rows: out[m] = x[rows[m]]; x[rows[m]] += in[m] (rows distinct); x[rows[m]] = in[m]
  virtual void gather_rows(float* out, const float* x, const int32_t* rows, int M, int C) = 0;
  virtual void scatter_add_rows(float* x, const float* in, const int32_t* rows, int M, int C) = 0;
  virtual void scatter_rows(float* x, const float* in, const int32_t* rows, int M, int C) = 0;
  virtual double sum_squares(const float* x, size_t n) = 0;

  // ---- GEMM: C = alpha op(A) op(B) + beta C, row-major
  virtual void gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                    int ldb, float beta, float* C, int ldc) = 0;
  // A faster form of a constant matrix W [rows, cols] for the products that multiply it
  // untransposed (dy W, expected head rows); head = the model's output head. Null when the
  // backend gains nothing. The caller keeps it in W.prepared while W does not change.
  virtual std::shared_ptr<const Prepared> prepare(const Buffer& W, int rows, int cols, bool head) = 0;

  // ---- ops
  // out[n,:] = table[ids[n],:]
  virtual void embedding_forward(float* out, const int32_t* ids, const Buffer& table, int N, int C) = 0;
  virtual void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int N, int C) = 0;
  // RMSNorm in f32 as transformers: out = x * rsqrt(mean(x^2) + eps) * w; rstd [N] saved.
  virtual void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps) = 0;
  virtual void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                                const float* rstd, int N, int C) = 0;
  // y[N,out] (+)= x[N,in] W[out,in]^T + b
  virtual void linear_forward(float* y, const float* x, const Buffer& W, const float* b, int N, int in, int out,
                              bool accumulate) = 0;
  virtual void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const Buffer& W,
                               int N, int in, int out, bool dx_accumulate) = 0;
  // LoRA as PEFT: y (+)= s (dropout(x) A^T) B^T; ax [N,r] saved. Dropout masks come from a
  // counter hash of (seed, element), so backward regenerates them.
  virtual void lora_forward(float* y, float* ax, const float* x, const float* A, const float* B, float s, int N,
                            int in, int out, int r, float dropout, uint64_t seed, bool accumulate) = 0;
  virtual void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* ax,
                             const float* A, const float* B, float s, int N, int in, int out, int r, float dropout,
                             uint64_t seed, bool dx_accumulate) = 0;
  // n LoRA branches reading the same x, without dropout, stacked (ax [N, n*r]).
  virtual void lora_forward_shared(int n, float* const* y, const int* out, float* ax, const float* x,
                                   const float* const* A, const float* const* B, float s, int N, int in, int r,
                                   bool accumulate) = 0;
  virtual void lora_backward_shared(int n, float* dx, float* const* dA, float* const* dB, const float* const* dy,
                                    const int* out, const float* x, const float* ax, const float* const* A,
                                    const float* const* B, float s, int N, int in, int r, bool dx_accumulate) = 0;
  // DoRA as PEFT, per output row j: c_j = m_j / n_j, n = row norms of W + s B A (constant in
  // backward). dora_norm: n [out]. dora_scale (no dropout): y holds z = W x + s B A x, kept in z
  // when non-null; y = c z + b. dora_mix (dropout): y holds W x + b, u = W x_d, v = s B A x_d;
  // y += (c - 1) u + c v, z = u + v. dora_backward: dm += sum_rows dy z / n, dyc = c dy,
  // dyc1 = (c - 1) dy when non-null.
  virtual void dora_norm(float* n, const Buffer& W, const float* A, const float* B, float s, int out, int in, int r) = 0;
  virtual void dora_scale(float* y, float* z, const float* m, const float* n, const float* b, int N, int out) = 0;
  virtual void dora_mix(float* y, float* z, const float* u, const float* v, const float* m, const float* n, int N,
                        int out) = 0;
  virtual void dora_backward(float* dm, float* dyc, float* dyc1, const float* dy, const float* z, const float* m,
                             const float* n, int N, int out) = 0;
  // out = dropout(x) with the masks lora_forward draws for the same seed (out may be x).
  virtual void dropout(float* out, const float* x, size_t n, float p, uint64_t seed) = 0;
  // Rotary embedding (rotate_half), in place on x [N, H*D]; pos[n]; cos/sin [maxpos, D/2].
  virtual void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D) = 0;
  virtual void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int N, int H,
                             int D) = 0;
  // Causal grouped-query attention. Sequence b's queries are rows [qstart[b], qstart[b]+qlen[b])
  // of q/out [*, Hq*D]; its keys and values rows [kvstart[b], kvstart[b]+kvlen[b]) of k/v
  // [*, Hk*D], the last qlen[b] of which belong to the queries (query i sits at position
  // kvlen[b]-qlen[b]+i and sees keys 0..that position): a KV cache holds the earlier ones.
  // lse [rows of q, Hq] saved.
  virtual void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                                 const int32_t* qstart, const int32_t* qlen, const int32_t* kvstart,
                                 const int32_t* kvlen, int B, int Hq, int Hk, int D) = 0;
  // Backward of a pass without cache (kv rows = query rows); writes dq, dk, dv.
  virtual void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                                  const float* lse, const float* q, const float* k, const float* v,
                                  const int32_t* start, const int32_t* len, int B, int Hq, int Hk, int D) = 0;
  // h = silu(g) * u
  virtual void swiglu_forward(float* h, const float* g, const float* u, size_t n) = 0;
  virtual void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n) = 0;
  // Qwen3-MoE routing (cpu/ops.h moe_route_forward / moe_route_backward): probs [N,E] =
  // softmax(logits) in f32, idx [N,k] the top k, w [N,k] their probabilities (renormalised when
  // norm); backward writes dlogits [N,E] from dw [N,k] plus aux_g[e] on every probs[n,e].
  // given_idx: idx already holds the choice (tests hold routing fixed); only w is computed.
  virtual void moe_route_forward(float* probs, int32_t* idx, float* w, const float* logits, int N, int E, int k,
                                 bool norm, bool given_idx) = 0;
  virtual void moe_route_backward(float* dlogits, const float* dw, const float* probs, const int32_t* idx,
                                  const float* w, const float* aux_g, int N, int E, int k, bool norm) = 0;
  // y[m,:] *= s[m];  x[rows[m],:] += s[m] in[m,:] (rows distinct);  out[m] = a[m,:] . b[m,:]
  virtual void scatter_add_rows_scaled(float* x, const float* in, const int32_t* rows, const float* s, int M, int C) = 0;
  virtual void scale_rows(float* y, const float* s, int M, int C) = 0;
  virtual void row_dots(float* out, const float* a, const float* b, int M, int C) = 0;
  // Head in vocabulary chunks (M x V logits never materialised): lp[m] = logit[target] - lse[m];
  // ew (when non-null) = sum_v softmax_v W[v,:], the expected head row; ent (when non-null) =
  // the entropy of the softmax, -sum_v p_v log p_v = lse - sum_v p_v logit_v.
  virtual void logprob_forward(float* lp, float* lse, float* ew, float* ent, const float* h, const Buffer& W,
                               const int32_t* target, int M, int C, int V) = 0;
  // dh += dlp (W[target] - ew): backward of a frozen head.
  virtual void logprob_backward_expected(float* dh, const float* dlp, const float* ew, const Buffer& W,
                                         const int32_t* target, int M, int C) = 0;
  // dh (and dW when non-null) of a trained head, recomputing each logits chunk.
  virtual void logprob_backward(float* dh, float* dW, const float* dlp, const float* h, const Buffer& W,
                                const int32_t* target, const float* lse, int M, int C, int V) = 0;
  // logits[M,V] = h W^T (decoding's chosen rows).
  virtual void logits(float* out, const float* h, const Buffer& W, int M, int C, int V) = 0;
  // AdamW on n elements with PyTorch's formula; grads scaled by clip first.
  virtual void adamw(float* w, float* g, float* m, float* v, size_t n, const AdamW& o) = 0;
};

// The CPU backend (cpu/): OpenMP threads, oneDNN / OpenBLAS / built-in GEMM.
std::unique_ptr<Backend> make_cpu_backend(int threads);
// Every backend this build can make ("cpu", and device ones when compiled), for the op tests.
std::vector<std::string> backend_names();
std::unique_ptr<Backend> make_backend(const std::string& name, int threads);

}  // namespace tb
