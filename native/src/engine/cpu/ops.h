// One *_forward / *_backward pair of free functions per op, raw pointers and sizes (after llm.c).
// Activations are row-major [N, width] over the packed valid tokens of a batch.
// Backward functions ACCUMULATE (+=) into weight gradients and, unless told otherwise, into
// dx-style outputs, which is what lets residual branches and gradient accumulation share
// buffers; a null gradient pointer means "not trainable, skip". The first writer of a buffer
// passes accumulate = false instead of zeroing it first (one pass over the buffer less).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "gemm.h"

namespace tb {

// A frozen matrix [rows, cols] as the model holds it: f32 or bf16 (exactly one set).
struct Weights {
  const float* f = nullptr;
  const uint16_t* h = nullptr;
  Weights from_row(size_t r, int cols) const {  // the rows from r on
    return Weights{f ? f + r * size_t(cols) : nullptr, h ? h + r * size_t(cols) : nullptr};
  }
};
// y[M,N] (+)= x[M,K] W^T with W [N,K] (rows of x at stride ldx, of y at ldy).
void mul_wt(int M, int N, int K, const float* x, int ldx, const Weights& W, bool accumulate, float* y, int ldy);
// y[M,N] (+)= x[M,K] W with W [K,N].
void mul_w(int M, int N, int K, const float* x, int ldx, const Weights& W, bool accumulate, float* y, int ldy);

// Light passes (a few flops per element) fork the threads only from this many elements on:
// below it the fork and join cost more than the work (decoding's one-row norms, adds, ropes).
inline bool worth_forking(size_t elems) { return elems >= 8192; }

// Elementwise passes over long buffers, split across the threads: y += x, y = 0, y = x.
void add_inplace(float* y, const float* x, size_t n);
void scale_inplace(float* y, float a, size_t n);
void fill_zero(float* y, size_t n);
void copy_floats(float* y, const float* x, size_t n);

// out[n,:] = table[ids[n],:]
void embedding_forward(float* out, const int32_t* ids, const Weights& table, int N, int C);
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int N, int C);

// RMSNorm (fp32 as transformers): out = x * rsqrt(mean(x^2) + eps) * w; rstd[n] saved.
void rmsnorm_forward(float* out, float* rstd, const float* x, const float* w, int N, int C, float eps);
void rmsnorm_backward(float* dx, float* dw, const float* dout, const float* x, const float* w,
                      const float* rstd, int N, int C);

// y[N,out] (+)= x[N,in] W[out,in]^T + b. A frozen W may also come packed (gemm.h) as Wp, which
// backward then uses for dx.
void linear_forward(float* y, const float* x, const Weights& W, const float* b, int N, int in, int out,
                    bool accumulate = false);
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x, const Weights& W,
                     int N, int in, int out, bool dx_accumulate = true, const PackedMatrix* Wp = nullptr);

// LoRA branch as PEFT: y += s * (dropout(x) A^T) B^T with A [r,in], B [out,r]. ax [N,r] is saved
// for backward. Dropout masks come from a counter-based hash of (seed, element), so backward and
// gradient-checkpointing recomputation regenerate them instead of storing them.
// With accumulate = false, y = the branch alone (the base GEMM then adds itself with beta 1).
void lora_forward(float* y, float* ax, const float* x, const float* A, const float* B, float s, int N,
                  int in, int out, int r, float dropout, uint64_t seed, bool accumulate = true);
void lora_backward(float* dx, float* dA, float* dB, const float* dy, const float* x, const float* ax,
                   const float* A, const float* B, float s, int N, int in, int out, int r, float dropout,
                   uint64_t seed, bool dx_accumulate = true);

// The LoRA branches of n projections that read the same input x (q/k/v, gate/up), without dropout:
// their A matrices are stacked so that x is packed once for x A^T and for dA, and dx gets one
// update of inner size n*r instead of n of size r. ax [N, n*r] (projection i in columns i*r..).
// Same results as n lora_forward / lora_backward calls up to float rounding.
void lora_forward_shared(int n, float* const* y, const int* out, float* ax, const float* x, const float* const* A,
                         const float* const* B, float s, int N, int in, int r, bool accumulate = true);
void lora_backward_shared(int n, float* dx, float* const* dA, float* const* dB, const float* const* dy, const int* out,
                          const float* x, const float* ax, const float* const* A, const float* const* B, float s, int N,
                          int in, int r, bool dx_accumulate = true);

// DoRA as PEFT (native/README.md "DoRA"): per output row j, c_j = m_j / n_j with the magnitude
// m [out] and n_j = || W_j + s (B A)_j || treated as a constant.
// n[out] = row norms of W + s B A (A [r,in], B [out,r]).
void dora_norm(float* n, const Weights& W, const float* A, const float* B, float s, int out, int in, int r);
// No dropout: y [N,out] holds z = W x + s B A x; z is kept when non-null; y = c z + b.
void dora_scale(float* y, float* z, const float* m, const float* n, const float* b, int N, int out);
// With dropout: y holds W x + b; u = W x_d, v = s B A x_d; y += (c - 1) u + c v; z = u + v.
void dora_mix(float* y, float* z, const float* u, const float* v, const float* m, const float* n, int N, int out);
// dm[j] += sum_rows dy z / n_j; dyc = c dy; dyc1 = (c - 1) dy when non-null.
void dora_backward(float* dm, float* dyc, float* dyc1, const float* dy, const float* z, const float* m, const float* n,
                   int N, int out);
// out = dropout(x) with lora_forward's masks for the same seed (out may be x: in place).
void dropout_apply(float* out, const float* x, size_t n, float p, uint64_t seed);

// Rotary embedding (rotate_half convention), in place on x [N, H*D]; pos[n] is the position of
// row n; cos/sin tables are [maxpos, D/2]. Backward is the inverse rotation, also in place.
void rope_forward(float* x, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D);
void rope_backward(float* dx, const float* cos, const float* sin, const int32_t* pos, int N, int H, int D);

// Causal grouped-query attention (backend.h states the row layout): sequence b's queries are
// rows [qstart[b], +qlen[b]) of q/out [*, Hq*D], its keys/values rows [kvstart[b], +kvlen[b])
// of k/v [*, Hk*D], the queries being the last qlen[b] positions. lse [rows of q, Hq] saved, so
// backward recomputes probabilities instead of storing T x T matrices.
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const int32_t* qstart, const int32_t* qlen, const int32_t* kvstart, const int32_t* kvlen,
                       int B, int Hq, int Hk, int D);
// Backward of a pass without cache: sequence b owns rows [start[b], +len[b]) of every tensor.
// Writes (not accumulates) dq, dk, dv.
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* out,
                        const float* lse, const float* q, const float* k, const float* v,
                        const int32_t* start, const int32_t* len, int B, int Hq, int Hk, int D);

// h = silu(g) * u, elementwise over n values; backward writes dg, du.
void swiglu_forward(float* h, const float* g, const float* u, size_t n);
void swiglu_backward(float* dg, float* du, const float* dh, const float* g, const float* u, size_t n);

// Qwen3-MoE routing as transformers: probs = softmax(logits) [N,E] in f32, idx [N,k] the k most
// probable experts (most probable first, ties to the lower index), w [N,k] their probabilities,
// divided by their sum when norm. Backward writes dlogits [N,E] from dw [N,k] and, when aux_g
// is non-null, a gradient aux_g[e] on every probs[n,e] (the load-balancing loss).
// given_idx: idx holds the choice already (tests hold it fixed), only w is computed.
void moe_route_forward(float* probs, int32_t* idx, float* w, const float* logits, int N, int E, int k, bool norm,
                       bool given_idx);
void moe_route_backward(float* dlogits, const float* dw, const float* probs, const int32_t* idx, const float* w,
                        const float* aux_g, int N, int E, int k, bool norm);
// y[m,:] *= s[m];  out[m] = a[m,:] . b[m,:]
void scale_rows(float* y, const float* s, int M, int C);
void row_dots(float* out, const float* a, const float* b, int M, int C);

// A frozen head W [V,C] packed in vocabulary chunks of `rows` rows (the last may be shorter), for
// the expected rows p_c W_c of logprob_forward.
struct PackedHead {
  int rows = 0;
  std::vector<std::unique_ptr<PackedMatrix>> chunks;
  // Null when the GEMM library cannot pack (then every product goes through gemm()).
  static std::unique_ptr<PackedHead> pack(const float* W, int V, int C);
  size_t bytes() const;
};

// Token log-probs without materialising [M, V] logits: logits are computed chunk by chunk of the
// vocabulary with an online logsumexp. h [M,C] (already normed), W [V,C], target[m] in [0,V).
// lp[m] = logits[m,target] - lse[m]; lse saved for backward.
// When ew is non-null it receives sum_v softmax_v W[v,:] per row (the expected head row), which
// makes the backward of a frozen head one axpy per row (logprob_backward_expected).
// When ent is non-null it receives the entropy of each row's softmax: lse - h.ew when ew is
// computed anyway, else from sum_v p_v logit_v accumulated with the online logsumexp.
// scratch (optional) holds the logits chunk between calls, so that a step does not allocate, page
// in and zero 16 MB again. With `packed` (W packed by PackedHead::pack) its chunks are used.
void logprob_forward(float* lp, float* lse, float* ew, float* ent, const float* h, const Weights& W,
                     const int32_t* target, int M, int C, int V, std::vector<float>* scratch = nullptr, const PackedHead* packed = nullptr);
// dh += dlp * (W[target] - ew): the backward for a head that is not trained.
void logprob_backward_expected(float* dh, const float* dlp, const float* ew, const Weights& W, const int32_t* target,
                               int M, int C);
// dh += d lp / d h * dlp ; dW += ... (when non-null), recomputing each logits chunk.
void logprob_backward(float* dh, float* dW, const float* dlp, const float* h, const Weights& W,
                      const int32_t* target, const float* lse, int M, int C, int V,
                      std::vector<float>* scratch = nullptr);

// Tests: force the vocabulary chunk size (0 = automatic) to exercise the online logsumexp.
void set_logprob_chunk(int vocab_rows);

}  // namespace tb
