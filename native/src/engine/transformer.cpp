// One decoder layer, forward and backward, on the backend. Training, scoring and decoding all
// run this code; what differs (save activations, attend to a KV cache) is a parameter.
#include <stdexcept>

#include "passes.h"
#include "random.h"

namespace tb {

// Projections that read the same input, in the order they are computed. Their LoRA branches run
// stacked (the input is packed once) when two or more have an adapter and no dropout.
struct Model::Group {
  int n;
  int t[3];
};
static const Model::Group kQKV{3, {Q, K, V}}, kOut{1, {O}}, kGateUp{2, {GATE, UP}}, kDown{1, {DOWN}};

Model::LayerActs::LayerActs(Backend& be) {
  for (Buffer* b : {&x_in, &xn1, &rstd1, &qraw, &kraw, &rstdq, &rstdk, &q, &k, &v, &att, &lse, &x_mid, &xn2, &rstd2,
                    &g, &u, &h})
    b->bind(be, DType::F32);
  for (auto& b : ax) b.bind(be, DType::F32);
  for (auto& b : dz) b.bind(be, DType::F32);
}

Model::LayerGrads::LayerGrads(Backend& be) {
  for (Buffer* b : {&dh, &dg, &du, &dxn, &datt, &dq, &dk, &dv, &dqr, &dkr, &dys, &dxs, &dsw, &dw, &dlogits, &aux_g})
    b->bind(be, DType::F32);
}

Model::MoeActs::MoeActs(Backend& be) {
  for (Buffer* b : {&logits, &probs, &w, &sw, &xs, &g, &u, &h, &ys}) b->bind(be, DType::F32);
  for (Buffer* b : {&idx, &tok, &slot}) b->bind(be, DType::I32);
  for (auto& b : ax) b.bind(be, DType::F32);
}

bool Model::has_adapter(int l, int t, const Pass& p) const { return p.adapters && lora_on_ && !L_[l].A[t].empty(); }

// Dropout masks differ per projection, so a branch with dropout runs on its own.
bool Model::lora_shared_target(int l, int t, const Pass& p) const {
  return has_adapter(l, t, p) && !(p.train && lora_.dropout > 0);
}

static uint64_t branch_seed(const Model::Pass& p, int l, int t) {
  return mix_seed(p.dropout_seed, uint64_t(l) * NUM_TARGETS + t);
}

// The LoRA branches of a group that run stacked: those with an adapter and no dropout, when
// there are two or more of them (group positions, shapes and weights, in group order).
struct Model::LoraStack {
  int n = 0, in = 0, first = -1;
  bool on[3] = {false, false, false};
  int pos[3], out[3];
  const float *A[3], *B[3];
};

Model::LoraStack Model::lora_stack(int l, const Group& gr, const Pass& p) const {
  LoraStack st;
  for (int i = 0; i < gr.n; i++) st.n += lora_shared_target(l, gr.t[i], p);
  if (st.n < 2) return LoraStack{};
  int k = 0;
  for (int i = 0; i < gr.n; i++) {
    int t = gr.t[i];
    if (!lora_shared_target(l, t, p)) continue;
    if (st.first < 0) st.first = t;
    st.on[i] = true;
    st.pos[k] = i;
    target_dims(cfg_, t, st.in, st.out[k]);
    st.A[k] = L_[l].A[t].w.f32();
    st.B[k] = L_[l].B[t].w.f32();
    k++;
  }
  return st;
}

Model::DoraScratch& Model::dora_scratch() {
  if (!dora_scratch_) dora_scratch_ = std::make_shared<DoraScratch>(*be_);
  return *dora_scratch_;
}

const float* Model::dora_norm(int l, int t) {
  LayerWeights& w = L_[l];
  if (w.norm_version[t] != lora_version_) {
    int in, out;
    target_dims(cfg_, t, in, out);
    w.norm[t].bind(*be_, DType::F32);
    w.norm[t].resize(size_t(out));
    be_->dora_norm(w.norm[t].f32(), w.W[t].w, w.A[t].w.f32(), w.B[t].w.f32(), lora_scale(), out, in, lora_.rank);
    w.norm_version[t] = lora_version_;
  }
  return w.norm[t].f32();
}

// y_i = x W_i^T + b_i (+ LoRA). The LoRA branch writes y first and the base GEMM then adds itself
// (beta = 1) instead of writing y and having the branch read it back. DoRA without dropout scales
// that sum afterwards (y = c z + b, the bias added then); with dropout it needs W x_d apart.
void Model::group_forward(int l, const Group& gr, const float* x, float* const* y, LayerActs& a, const Pass& p) {
  LayerWeights& w = L_[l];
  int N = p.N, r = lora_.rank;
  LoraStack st = lora_stack(l, gr, p);
  if (st.n) {
    float* ys[3];
    for (int k = 0; k < st.n; k++) ys[k] = y[st.pos[k]];
    a.ax[st.first].resize(size_t(N) * st.n * r);  // kept by the first of the group
    be_->lora_forward_shared(st.n, ys, st.out, a.ax[st.first].f32(), x, st.A, st.B, lora_scale(), N, st.in, r, false);
  }
  for (int i = 0; i < gr.n; i++) {
    int t = gr.t[i], in, out;
    target_dims(cfg_, t, in, out);
    const float* bias = w.bias[t].empty() ? nullptr : w.bias[t].w.f32();
    float dropout = p.train ? float(lora_.dropout) : 0.0f;
    bool dora = has_dora(l, t, p);
    float* z = nullptr;
    if (dora && p.train) {
      a.dz[t].resize(size_t(N) * out);
      z = a.dz[t].f32();
    }
    if (dora && dropout > 0) {
      DoraScratch& ds = dora_scratch();
      ds.u.resize(size_t(N) * out); ds.v.resize(size_t(N) * out); ds.xd.resize(size_t(N) * in);
      a.ax[t].resize(size_t(N) * r);
      be_->lora_forward(ds.v.f32(), a.ax[t].f32(), x, w.A[t].w.f32(), w.B[t].w.f32(), lora_scale(), N, in, out, r,
                        dropout, branch_seed(p, l, t), false);
      be_->dropout(ds.xd.f32(), x, size_t(N) * in, dropout, branch_seed(p, l, t));
      be_->linear_forward(ds.u.f32(), ds.xd.f32(), w.W[t].w, nullptr, N, in, out, false);
      be_->linear_forward(y[i], x, w.W[t].w, bias, N, in, out, false);
      be_->dora_mix(y[i], z, ds.u.f32(), ds.v.f32(), w.M[t].w.f32(), dora_norm(l, t), N, out);
      continue;
    }
    bool lora = st.on[i];
    if (!st.on[i] && has_adapter(l, t, p)) {
      a.ax[t].resize(size_t(N) * r);
      be_->lora_forward(y[i], a.ax[t].f32(), x, w.A[t].w.f32(), w.B[t].w.f32(), lora_scale(), N, in, out, r, dropout,
                        branch_seed(p, l, t), false);
      lora = true;
    }
    be_->linear_forward(y[i], x, w.W[t].w, dora ? nullptr : bias, N, in, out, lora);
    if (dora) be_->dora_scale(y[i], z, w.M[t].w.f32(), dora_norm(l, t), bias, N, out);
  }
}

static float* grad_of(Param& p, bool on) { return on && !p.grad.empty() ? p.grad.f32() : nullptr; }

// ------------------------------------------------------------------ Qwen3-MoE sparse block
static uint64_t expert_seed(const Model::Pass& p, int l, int t, int e) {
  return mix_seed(branch_seed(p, l, t), uint64_t(e) + 1);
}

// Expert e's projection t over its n slots from `first`: y = x W^T (+ LoRA).
void Model::expert_forward(int l, int e, int t, const float* x, float* y, MoeActs& m, int first, int n,
                           const Pass& p) {
  ExpertWeights& ex = L_[l].experts[size_t(e)];
  int in, out, r = lora_.rank;
  target_dims(cfg_, t, in, out, true);
  bool lora = p.adapters && lora_on_ && !ex.A[t].empty();
  if (lora)
    be_->lora_forward(y, m.ax[t].f32() + size_t(first) * r, x, ex.A[t].w.f32(), ex.B[t].w.f32(), lora_scale(), n, in,
                      out, r, p.train ? float(lora_.dropout) : 0.0f, expert_seed(p, l, t, e), false);
  be_->linear_forward(y, x, ex.W[t].w, nullptr, n, in, out, lora);
}

void Model::expert_backward(int l, int e, int t, const float* x, const float* dy, float* dx, bool dx_accumulate,
                            const MoeActs& m, int first, int n, const Pass& p) {
  ExpertWeights& ex = L_[l].experts[size_t(e)];
  int in, out, r = lora_.rank;
  target_dims(cfg_, t, in, out, true);
  bool lora = p.adapters && lora_on_ && !ex.A[t].empty();
  ex.A[t].touched = ex.B[t].touched = ex.W[t].touched = true;
  if (lora)
    be_->lora_backward(dx, grad_of(ex.A[t], true), grad_of(ex.B[t], true), dy, x, m.ax[t].f32() + size_t(first) * r,
                       ex.A[t].w.f32(), ex.B[t].w.f32(), lora_scale(), n, in, out, r,
                       p.train ? float(lora_.dropout) : 0.0f, expert_seed(p, l, t, e), dx_accumulate);
  be_->linear_backward(dx, grad_of(ex.W[t], full_), nullptr, dy, x, ex.W[t].w, n, in, out, dx_accumulate || lora);
}

// y = sum over the chosen experts of w * down(silu(gate(x)) * up(x)), the router's choice as
// transformers' Qwen3MoeSparseMoeBlock; each expert runs one GEMM per projection over its slots.
void Model::moe_forward(int l, const float* x, float* y, LayerActs& a, const Pass& p, MoeStats* stats) {
  const ModelConfig& c = cfg_;
  LayerWeights& w = L_[l];
  Backend& be = *be_;
  int N = p.N, C = c.hidden, E = c.experts, k = c.experts_per_tok, I = c.moe_intermediate, r = lora_.rank;
  if (!a.moe) a.moe = std::make_unique<MoeActs>(be);
  MoeActs& m = *a.moe;
  int S = N * k;
  m.logits.resize(size_t(N) * E); m.probs.resize(size_t(N) * E);
  m.idx.resize(size_t(S)); m.w.resize(size_t(S));
  be.linear_forward(m.logits.f32(), x, w.router.w, nullptr, N, C, E, false);
  std::vector<int32_t> idx(static_cast<size_t>(S)), slot(static_cast<size_t>(S));
  auto frozen = frozen_routes_ ? frozen_routes_->find(l) : std::map<int, std::vector<int32_t>>::iterator{};
  bool given = frozen_routes_ && frozen != frozen_routes_->end() && frozen->second.size() == size_t(S);
  if (given) upload_ints(m.idx, frozen->second);
  be.moe_route_forward(m.probs.f32(), m.idx.i32(), m.w.f32(), m.logits.f32(), N, E, k, c.norm_topk_prob, given);
  if (S) be.download(idx.data(), m.idx.raw(), m.idx.bytes());
  if (frozen_routes_ && !given) (*frozen_routes_)[l] = idx;
  // Slots sorted by expert (stable, so each expert sees its tokens in order).
  m.offset.assign(size_t(E) + 1, 0);
  for (int32_t e : idx) m.offset[size_t(e) + 1]++;
  for (int e = 0; e < E; e++) m.offset[size_t(e) + 1] += m.offset[size_t(e)];
  std::vector<int32_t> fill(m.offset.begin(), m.offset.end() - 1);
  m.tok_host.resize(size_t(S));
  for (int i = 0; i < S; i++) {
    int32_t at = fill[size_t(idx[size_t(i)])]++;
    slot[size_t(at)] = i;
    m.tok_host[size_t(at)] = i / k;
  }
  upload_ints(m.tok, m.tok_host);
  upload_ints(m.slot, slot);
  m.sw.resize(size_t(S));
  be.gather_rows(m.sw.f32(), m.w.f32(), m.slot.i32(), S, 1);
  if (stats) {
    HostFloats probs(m.probs);
    for (int e = 0; e < E; e++) stats->count[size_t(e)] += m.offset[size_t(e) + 1] - m.offset[size_t(e)];
    for (int n = 0; n < N; n++)
      for (int e = 0; e < E; e++) stats->psum[size_t(e)] += probs.data()[size_t(n) * E + e];
    stats->rows += N;
  }
  m.xs.resize(size_t(S) * C); m.ys.resize(size_t(S) * C);
  m.g.resize(size_t(S) * I); m.u.resize(size_t(S) * I); m.h.resize(size_t(S) * I);
  for (int t = GATE; t <= DOWN; t++) m.ax[t].resize(size_t(S) * r);
  be.gather_rows(m.xs.f32(), x, m.tok.i32(), S, C);
  for (int e = 0; e < E; e++) {
    int o = m.offset[size_t(e)], n = m.offset[size_t(e) + 1] - o;
    if (!n) continue;
    const float* xe = m.xs.f32() + size_t(o) * C;
    expert_forward(l, e, GATE, xe, m.g.f32() + size_t(o) * I, m, o, n, p);
    expert_forward(l, e, UP, xe, m.u.f32() + size_t(o) * I, m, o, n, p);
  }
  be.swiglu_forward(m.h.f32(), m.g.f32(), m.u.f32(), size_t(S) * I);
  be.fill_zero(y, size_t(N) * C);
  for (int e = 0; e < E; e++) {
    int o = m.offset[size_t(e)], n = m.offset[size_t(e) + 1] - o;
    if (!n) continue;
    float* ye = m.ys.f32() + size_t(o) * C;
    expert_forward(l, e, DOWN, m.h.f32() + size_t(o) * I, ye, m, o, n, p);
    be.scatter_add_rows_scaled(y, ye, m.tok.i32() + o, m.sw.f32() + o, n, C);  // an expert's tokens are distinct
  }
}

// dx = d loss / d x (written) from dy = d loss / d y: through the experts and, for the router's
// input, through the weights (softmax, top-k renormalisation) plus the load-balancing gradient
// in g.aux_g when set.
void Model::moe_backward(int l, const float* dy, float* dx, LayerActs& a, LayerGrads& gr, const Pass& p) {
  const ModelConfig& c = cfg_;
  LayerWeights& w = L_[l];
  Backend& be = *be_;
  MoeActs& m = *a.moe;
  int N = p.N, C = c.hidden, E = c.experts, k = c.experts_per_tok, I = c.moe_intermediate, S = N * k;
  gr.dys.resize(size_t(S) * C); gr.dxs.resize(size_t(S) * C);
  gr.dsw.resize(size_t(S)); gr.dw.resize(size_t(S)); gr.dlogits.resize(size_t(N) * E);
  gr.dh.resize(size_t(S) * I); gr.dg.resize(size_t(S) * I); gr.du.resize(size_t(S) * I);
  be.gather_rows(gr.dys.f32(), dy, m.tok.i32(), S, C);
  be.row_dots(gr.dsw.f32(), gr.dys.f32(), m.ys.f32(), S, C);  // d weight of each slot
  be.scatter_rows(gr.dw.f32(), gr.dsw.f32(), m.slot.i32(), S, 1);
  be.scale_rows(gr.dys.f32(), m.sw.f32(), S, C);
  for (int e = 0; e < E; e++) {
    int o = m.offset[size_t(e)], n = m.offset[size_t(e) + 1] - o;
    if (n)
      expert_backward(l, e, DOWN, m.h.f32() + size_t(o) * I, gr.dys.f32() + size_t(o) * C, gr.dh.f32() + size_t(o) * I,
                      false, m, o, n, p);
  }
  be.swiglu_backward(gr.dg.f32(), gr.du.f32(), gr.dh.f32(), m.g.f32(), m.u.f32(), size_t(S) * I);
  for (int e = 0; e < E; e++) {
    int o = m.offset[size_t(e)], n = m.offset[size_t(e) + 1] - o;
    if (!n) continue;
    const float* xe = m.xs.f32() + size_t(o) * C;
    float* dxe = gr.dxs.f32() + size_t(o) * C;
    expert_backward(l, e, GATE, xe, gr.dg.f32() + size_t(o) * I, dxe, false, m, o, n, p);
    expert_backward(l, e, UP, xe, gr.du.f32() + size_t(o) * I, dxe, true, m, o, n, p);
  }
  be.moe_route_backward(gr.dlogits.f32(), gr.dw.f32(), m.probs.f32(), m.idx.i32(), m.w.f32(),
                        gr.aux_g.empty() ? nullptr : gr.aux_g.f32(), N, E, k, c.norm_topk_prob);
  const float* xn = a.xn2.f32();
  be.linear_backward(dx, grad_of(w.router, full_), nullptr, gr.dlogits.f32(), xn, w.router.w, N, C, E, false);
  for (int e = 0; e < E; e++) {
    int o = m.offset[size_t(e)], n = m.offset[size_t(e) + 1] - o;
    if (n) be.scatter_add_rows(dx, gr.dxs.f32() + size_t(o) * C, m.tok.i32() + o, n, C);
  }
}

// dx (+)= sum_i dy_i d(y_i)/dx, and the weight gradients. dx holds nothing on entry: its first
// writer overwrites it (a LoRA branch when there is one, then each base GEMM adds itself).
// A null dx skips the input gradient.
void Model::group_backward(int l, const Group& gr, const float* x, const float* const* dy, float* dx, LayerActs& a,
                           const Pass& p) {
  LayerWeights& w = L_[l];
  int N = p.N, r = lora_.rank;
  bool full = full_, fresh = true;
  float dropout = p.train ? float(lora_.dropout) : 0.0f;
  // DoRA: the magnitude's gradient, and c dy in place of dy for what the magnitude scales (the
  // whole projection without dropout; the LoRA branch and the extra W x_d product with it).
  const float* dyb[3];  // what each base GEMM sees
  const float* dyl[3];  // what each LoRA branch sees
  for (int i = 0; i < gr.n; i++) {
    int t = gr.t[i], in, out;
    dyb[i] = dyl[i] = dy[i];
    if (!has_dora(l, t, p)) continue;
    target_dims(cfg_, t, in, out);
    DoraScratch& ds = dora_scratch();
    ds.dyc[i].resize(size_t(N) * out);
    if (dropout > 0) ds.dyc1[i].resize(size_t(N) * out);
    be_->dora_backward(grad_of(w.M[t], true), ds.dyc[i].f32(), dropout > 0 ? ds.dyc1[i].f32() : nullptr, dy[i],
                       a.dz[t].f32(), w.M[t].w.f32(), dora_norm(l, t), N, out);
    dyl[i] = ds.dyc[i].f32();
    if (dropout <= 0) dyb[i] = dyl[i];
  }
  LoraStack st = lora_stack(l, gr, p);
  if (st.n) {
    const float* dys[3];
    float *dA[3], *dB[3];
    for (int k = 0; k < st.n; k++) {
      int t = gr.t[st.pos[k]];
      dys[k] = dyl[st.pos[k]];
      dA[k] = grad_of(w.A[t], true);
      dB[k] = grad_of(w.B[t], true);
    }
    be_->lora_backward_shared(st.n, dx, dA, dB, dys, st.out, x, a.ax[st.first].f32(), st.A, st.B, lora_scale(), N,
                              st.in, r, false);
    fresh = !dx;
  }
  for (int i = 0; i < gr.n; i++) {
    int t = gr.t[i], in, out;
    target_dims(cfg_, t, in, out);
    if (!st.on[i] && has_adapter(l, t, p)) {
      be_->lora_backward(dx, grad_of(w.A[t], true), grad_of(w.B[t], true), dyl[i], x, a.ax[t].f32(), w.A[t].w.f32(),
                         w.B[t].w.f32(), lora_scale(), N, in, out, r, dropout, branch_seed(p, l, t), !fresh);
      fresh = fresh && !dx;
    }
    if (dx && has_dora(l, t, p) && dropout > 0) {
      // d/dx of (c - 1) W x_d: through W, then the same dropout mask.
      DoraScratch& ds = dora_scratch();
      ds.dxd.resize(size_t(N) * in);
      be_->linear_backward(ds.dxd.f32(), nullptr, nullptr, ds.dyc1[i].f32(), x, w.W[t].w, N, in, out, false);
      be_->dropout(ds.dxd.f32(), ds.dxd.f32(), size_t(N) * in, dropout, branch_seed(p, l, t));
      if (fresh) be_->copy(dx, ds.dxd.f32(), size_t(N) * in);
      else be_->add(dx, ds.dxd.f32(), size_t(N) * in);
      fresh = false;
    }
    be_->linear_backward(dx, grad_of(w.W[t], full), w.bias[t].empty() ? nullptr : grad_of(w.bias[t], full), dyb[i], x,
                         w.W[t].w, N, in, out, !fresh);
    fresh = fresh && !dx;
  }
}

// x_out = x_mid + down(silu(gate(xn2)) * up(xn2)),  x_mid = x_in + o(attn(rope(q), rope(k), v)).
// save: keep what backward needs (the layer input too); otherwise a is scratch. With a cache,
// this pass's keys and values are appended to it and attention reads them from there.
void Model::layer_forward(int l, const float* x_in, float* x_out, LayerActs& a, const Pass& p, bool save,
                          KvCache* cache, MoeStats* stats) {
  const ModelConfig& c = cfg_;
  LayerWeights& w = L_[l];
  Backend& be = *be_;
  int N = p.N, C = c.hidden, Hq = c.heads, Hk = c.kv_heads, D = c.head_dim, I = c.intermediate;
  size_t nC = size_t(N) * C, nq = size_t(N) * Hq * D, nk = size_t(N) * Hk * D, nI = size_t(N) * I;
  float eps = float(c.rms_eps);
  const float* xin = x_in;
  if (save) {
    a.x_in.resize(nC);
    be.copy(a.x_in.f32(), x_in, nC);
    xin = a.x_in.f32();
  }
  a.xn1.resize(nC); a.rstd1.resize(N);
  a.q.resize(nq); a.k.resize(nk); a.v.resize(nk);
  a.att.resize(nq); a.lse.resize(size_t(N) * Hq);
  a.x_mid.resize(nC); a.xn2.resize(nC); a.rstd2.resize(N);

  be.rmsnorm_forward(a.xn1.f32(), a.rstd1.f32(), xin, w.in_norm.w.f32(), N, C, eps);
  if (c.qk_norm) {
    a.qraw.resize(nq); a.kraw.resize(nk);
    a.rstdq.resize(size_t(N) * Hq); a.rstdk.resize(size_t(N) * Hk);
    float* y[3] = {a.qraw.f32(), a.kraw.f32(), a.v.f32()};
    group_forward(l, kQKV, a.xn1.f32(), y, a, p);
    be.rmsnorm_forward(a.q.f32(), a.rstdq.f32(), a.qraw.f32(), w.q_norm.w.f32(), N * Hq, D, eps);
    be.rmsnorm_forward(a.k.f32(), a.rstdk.f32(), a.kraw.f32(), w.k_norm.w.f32(), N * Hk, D, eps);
  } else {
    float* y[3] = {a.q.f32(), a.k.f32(), a.v.f32()};
    group_forward(l, kQKV, a.xn1.f32(), y, a, p);
  }
  be.rope_forward(a.q.f32(), p.cos.f32(), p.sin.f32(), p.pos_d.i32(), N, Hq, D);
  be.rope_forward(a.k.f32(), p.cos.f32(), p.sin.f32(), p.pos_d.i32(), N, Hk, D);
  if (cache) {
    Buffer &K = cache->k[size_t(l)], &Vc = cache->v[size_t(l)];
    be.scatter_rows(K.f32(), a.k.f32(), p.kvrows.i32(), N, Hk * D);
    be.scatter_rows(Vc.f32(), a.v.f32(), p.kvrows.i32(), N, Hk * D);
    be.attention_forward(a.att.f32(), a.lse.f32(), a.q.f32(), K.f32(), Vc.f32(), p.start_d.i32(), p.len_d.i32(),
                         p.kvstart.i32(), p.kvlen.i32(), p.B, Hq, Hk, D);
  } else {
    be.attention_forward(a.att.f32(), a.lse.f32(), a.q.f32(), a.k.f32(), a.v.f32(), p.start_d.i32(), p.len_d.i32(),
                         p.start_d.i32(), p.len_d.i32(), p.B, Hq, Hk, D);
  }
  float* yo[1] = {a.x_mid.f32()};
  group_forward(l, kOut, a.att.f32(), yo, a, p);
  be.add(a.x_mid.f32(), xin, nC);
  be.rmsnorm_forward(a.xn2.f32(), a.rstd2.f32(), a.x_mid.f32(), w.post_norm.w.f32(), N, C, eps);
  if (w.sparse()) {
    moe_forward(l, a.xn2.f32(), x_out, a, p, stats);
    be.add(x_out, a.x_mid.f32(), nC);
    return;
  }
  a.g.resize(nI); a.u.resize(nI); a.h.resize(nI);
  float* ygu[2] = {a.g.f32(), a.u.f32()};
  group_forward(l, kGateUp, a.xn2.f32(), ygu, a, p);
  be.swiglu_forward(a.h.f32(), a.g.f32(), a.u.f32(), nI);
  float* yd[1] = {x_out};
  group_forward(l, kDown, a.h.f32(), yd, a, p);
  be.add(x_out, a.x_mid.f32(), nC);
}

// dx: on entry d loss / d x_out, on return d loss / d x_in (the first layer of a frozen
// embedding skips it).
void Model::layer_backward(int l, float* dx, LayerActs& a, LayerGrads& gr, const Pass& p) {
  const ModelConfig& c = cfg_;
  LayerWeights& w = L_[l];
  Backend& be = *be_;
  int N = p.N, C = c.hidden, Hq = c.heads, Hk = c.kv_heads, D = c.head_dim, I = c.intermediate;
  size_t nC = size_t(N) * C, nq = size_t(N) * Hq * D, nk = size_t(N) * Hk * D, nI = size_t(N) * I;
  bool full = full_;

  // MLP
  gr.dxn.resize(nC);
  if (w.sparse()) {
    moe_backward(l, dx, gr.dxn.f32(), a, gr, p);
  } else {
    gr.dh.resize(nI); gr.dg.resize(nI); gr.du.resize(nI);
    const float* dyd[1] = {dx};
    group_backward(l, kDown, a.h.f32(), dyd, gr.dh.f32(), a, p);
    be.swiglu_backward(gr.dg.f32(), gr.du.f32(), gr.dh.f32(), a.g.f32(), a.u.f32(), nI);
    const float* dygu[2] = {gr.dg.f32(), gr.du.f32()};
    group_backward(l, kGateUp, a.xn2.f32(), dygu, gr.dxn.f32(), a, p);
  }
  be.rmsnorm_backward(dx, grad_of(w.post_norm, full), gr.dxn.f32(), a.x_mid.f32(), w.post_norm.w.f32(),
                      a.rstd2.f32(), N, C);
  // attention
  gr.datt.resize(nq); gr.dq.resize(nq); gr.dk.resize(nk); gr.dv.resize(nk);
  const float* dyo[1] = {dx};
  group_backward(l, kOut, a.att.f32(), dyo, gr.datt.f32(), a, p);
  be.attention_backward(gr.dq.f32(), gr.dk.f32(), gr.dv.f32(), gr.datt.f32(), a.att.f32(), a.lse.f32(), a.q.f32(),
                        a.k.f32(), a.v.f32(), p.start_d.i32(), p.len_d.i32(), p.B, Hq, Hk, D);
  be.rope_backward(gr.dq.f32(), p.cos.f32(), p.sin.f32(), p.pos_d.i32(), N, Hq, D);
  be.rope_backward(gr.dk.f32(), p.cos.f32(), p.sin.f32(), p.pos_d.i32(), N, Hk, D);
  if (c.qk_norm) {
    gr.dqr.resize(nq); gr.dkr.resize(nk);
    be.fill_zero(gr.dqr.f32(), nq);
    be.fill_zero(gr.dkr.f32(), nk);
    be.rmsnorm_backward(gr.dqr.f32(), grad_of(w.q_norm, full), gr.dq.f32(), a.qraw.f32(), w.q_norm.w.f32(),
                        a.rstdq.f32(), N * Hq, D);
    be.rmsnorm_backward(gr.dkr.f32(), grad_of(w.k_norm, full), gr.dk.f32(), a.kraw.f32(), w.k_norm.w.f32(),
                        a.rstdk.f32(), N * Hk, D);
    gr.dq.swap(gr.dqr);
    gr.dk.swap(gr.dkr);
  }
  // The first layer's input gradient only feeds the embedding: skip it when that is frozen.
  bool need_dx = full || l > 0;
  const float* dyqkv[3] = {gr.dq.f32(), gr.dk.f32(), gr.dv.f32()};
  group_backward(l, kQKV, a.xn1.f32(), dyqkv, need_dx ? gr.dxn.f32() : nullptr, a, p);
  if (need_dx)
    be.rmsnorm_backward(dx, grad_of(w.in_norm, full), gr.dxn.f32(), a.x_in.f32(), w.in_norm.w.f32(), a.rstd1.f32(), N,
                        C);
}

}  // namespace tb
