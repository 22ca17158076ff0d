// Native test runner: every op's backward against central finite differences, then a whole
// tiny model (LoRA and full fine-tuning, with and without gradient checkpointing and dropout).
// Loss for every check: L = sum_i w_i * out_i with fixed random weights w, so dL/dout = w.
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "gemm.h"
#include "model.h"
#include "ops.h"
#include "random.h"

using namespace tb;

static int failures = 0, checks = 0;

static std::vector<float> randv(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; i++) v[i] = (hash_uniform(seed, i) * 2 - 1) * scale;
  return v;
}

static double dotw(const std::vector<float>& out, const std::vector<float>& w) {
  double s = 0;
  for (size_t i = 0; i < out.size(); i++) s += double(out[i]) * w[i];
  return s;
}

// Compares analytic gradient `grad` of loss() wrt `x` with central differences.
// Error measure: max |fd - analytic| / max(max |analytic|, 1e-3) over checked entries.
static void fd_check(const std::string& name, float* x, size_t n, const float* grad,
                     const std::function<double()>& loss, float eps = 1e-2f, double tol = 2e-2, size_t max_entries = 64) {
  checks++;
  double maxg = 0;
  for (size_t i = 0; i < n; i++) maxg = std::max(maxg, double(std::fabs(grad[i])));
  double worst = 0;
  size_t stride = std::max<size_t>(1, n / max_entries);
  for (size_t i = 0; i < n; i += stride) {
    float keep = x[i];
    x[i] = keep + eps;
    double lp = loss();
    x[i] = keep - eps;
    double lm = loss();
    x[i] = keep;
    double fd = (lp - lm) / (2 * eps);
    worst = std::max(worst, std::fabs(fd - grad[i]));
  }
  double rel = worst / std::max(maxg, 1e-3);
  bool ok = rel <= tol && std::isfinite(rel) && maxg > 0;
  if (!ok) failures++;
  printf("%s %-44s rel err %.2e (max |grad| %.3g)\n", ok ? "ok  " : "FAIL", name.c_str(), rel, maxg);
}
static void fd_check(const std::string& name, std::vector<float>& x, const std::vector<float>& grad,
                     const std::function<double()>& loss, float eps = 1e-2f, double tol = 2e-2, size_t max_entries = 64) {
  fd_check(name, x.data(), x.size(), grad.data(), loss, eps, tol, max_entries);
}
// A model parameter (the CPU backend's buffers are host memory, which the perturbation needs).
static void fd_check(const std::string& name, Param& p, const std::function<double()>& loss, float eps, double tol,
                     size_t max_entries) {
  fd_check(name, p.w.f32(), p.w.size(), p.grad.f32(), loss, eps, tol, max_entries);
}

static std::vector<float> host(const Buffer& b) {
  HostFloats h(b);
  return std::vector<float>(h.data(), h.data() + h.size());
}
static void set_host(Buffer& b, const std::vector<float>& v) { b.backend()->upload(b.raw(), v.data(), b.bytes()); }

static void test_rmsnorm() {
  int N = 5, C = 16;
  auto x = randv(N * C, 1), w = randv(C, 2), gw = randv(N * C, 3);
  for (auto& v : w) v += 1.5f;
  std::vector<float> out(N * C), rstd(N), dx(N * C, 0), dw(C, 0);
  auto loss = [&] { rmsnorm_forward(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6f); return dotw(out, gw); };
  loss();
  rmsnorm_backward(dx.data(), dw.data(), gw.data(), x.data(), w.data(), rstd.data(), N, C);
  fd_check("rmsnorm dx", x, dx, loss);
  fd_check("rmsnorm dw", w, dw, loss);
}

static void test_linear() {
  int N = 6, in = 12, out = 10;
  auto x = randv(N * in, 4), W = randv(out * in, 5), b = randv(out, 6), gw = randv(N * out, 7);
  std::vector<float> y(N * out), dx(N * in, 0), dW(out * in, 0), db(out, 0);
  auto loss = [&] { linear_forward(y.data(), x.data(), W.data(), b.data(), N, in, out); return dotw(y, gw); };
  loss();
  linear_backward(dx.data(), dW.data(), db.data(), gw.data(), x.data(), W.data(), N, in, out);
  fd_check("linear dx", x, dx, loss);
  fd_check("linear dW", W, dW, loss);
  fd_check("linear db", b, db, loss);
}

// rank_expand's AVX-512 kernel against gemm() (set_rank_kernels(false)), written and
// accumulated, with row counts and widths that leave tails after every block and leading
// dimensions wider than the rows.
static void test_rank_expand() {
  double worst = 0;
  for (int r : {1, 3, 16, 48})
    for (int N : {1, 13, 37})
      for (int W : {5, 16, 67, 130})
        for (bool accumulate : {false, true}) {
          int ldy = r + 5, ldo = W + 3;
          auto Y = randv(size_t(N) * ldy, 2000 + r + N), M = randv(size_t(r) * W, 4000 + W);
          std::vector<float> res[2];
          for (int on = 0; on < 2; on++) {
            set_rank_kernels(on == 1);
            res[on] = randv(size_t(N) * ldo, 8);
            rank_expand(N, W, r, 0.5f, Y.data(), ldy, M.data(), res[on].data(), ldo, accumulate);
          }
          for (size_t i = 0; i < res[0].size(); i++) worst = std::max(worst, double(std::fabs(res[0][i] - res[1][i])));
        }
  set_rank_kernels(true);
  checks++;
  bool ok = worst < 1e-5;
  if (!ok) failures++;
  printf("%s %-44s max err %.2e\n", ok ? "ok  " : "FAIL", "rank_expand kernel against gemm", worst);
}

static void test_lora(float dropout) {
  int N = 6, in = 12, out = 10, r = 3;
  float s = 1.7f;
  auto x = randv(N * in, 8), A = randv(r * in, 9), B = randv(out * r, 10), gw = randv(N * out, 11);
  std::vector<float> y(N * out), ax(N * r), dx(N * in, 0), dA(r * in, 0), dB(out * r, 0);
  auto loss = [&] {
    std::fill(y.begin(), y.end(), 0.0f);
    lora_forward(y.data(), ax.data(), x.data(), A.data(), B.data(), s, N, in, out, r, dropout, 99);
    return dotw(y, gw);
  };
  loss();
  lora_backward(dx.data(), dA.data(), dB.data(), gw.data(), x.data(), ax.data(), A.data(), B.data(), s, N, in, out, r, dropout, 99);
  std::string tag = dropout > 0 ? " (dropout)" : "";
  fd_check("lora dx" + tag, x, dx, loss);
  fd_check("lora dA" + tag, A, dA, loss);
  fd_check("lora dB" + tag, B, dB, loss);
}

static void test_rope() {
  int N = 5, H = 2, D = 8, half = D / 2;
  auto x = randv(N * H * D, 12), gw = randv(N * H * D, 13);
  std::vector<float> cs(N * half), sn(N * half);
  std::vector<int32_t> pos = {0, 1, 2, 3, 4};
  for (int t = 0; t < N; t++)
    for (int i = 0; i < half; i++) {
      cs[t * half + i] = std::cos(t * std::pow(100.0f, -float(i) / half));
      sn[t * half + i] = std::sin(t * std::pow(100.0f, -float(i) / half));
    }
  std::vector<float> y;
  auto loss = [&] { y = x; rope_forward(y.data(), cs.data(), sn.data(), pos.data(), N, H, D); return dotw(y, gw); };
  loss();
  std::vector<float> dx = gw;
  rope_backward(dx.data(), cs.data(), sn.data(), pos.data(), N, H, D);
  fd_check("rope dx", x, dx, loss);
}

static void test_attention() {
  int Hq = 4, Hk = 2, D = 8;
  std::vector<int32_t> start = {0, 5}, len = {5, 3};
  int B = 2, N = 8;
  auto q = randv(N * Hq * D, 14), k = randv(N * Hk * D, 15), v = randv(N * Hk * D, 16), gw = randv(N * Hq * D, 17);
  std::vector<float> out(N * Hq * D), lse(N * Hq), dq(q.size()), dk(k.size()), dv(v.size());
  auto loss = [&] {
    attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), start.data(), len.data(), start.data(), len.data(), B, Hq, Hk, D);
    return dotw(out, gw);
  };
  loss();
  attention_backward(dq.data(), dk.data(), dv.data(), gw.data(), out.data(), lse.data(), q.data(), k.data(), v.data(),
                     start.data(), len.data(), B, Hq, Hk, D);
  fd_check("attention dq", q, dq, loss);
  fd_check("attention dk", k, dk, loss);
  fd_check("attention dv", v, dv, loss);
}

static void test_swiglu() {
  size_t n = 40;
  auto g = randv(n, 18, 3), u = randv(n, 19, 2), gw = randv(n, 20);
  std::vector<float> h(n), dg(n), du(n);
  auto loss = [&] { swiglu_forward(h.data(), g.data(), u.data(), n); return dotw(h, gw); };
  loss();
  swiglu_backward(dg.data(), du.data(), gw.data(), g.data(), u.data(), n);
  fd_check("swiglu dg", g, dg, loss);
  fd_check("swiglu du", u, du, loss);
}

// PackedMatrix (oneDNN builds) against gemm(): written and accumulated, row strides wider than
// the rows. Without oneDNN, pack() must decline so that callers use gemm().
static void test_packed_matrix() {
  checks++;
  bool onednn = std::string(blas_name()) == "onednn";
  auto probe = PackedMatrix::pack(randv(12, 1).data(), 3, 4);
  if (!onednn || !probe) {
    bool ok = !onednn && !probe;
    if (!ok) failures++;
    printf("%s %-44s %s\n", ok ? "ok  " : "FAIL", "packed matrices", onednn ? "oneDNN declined to pack" : "none without oneDNN, as expected");
    return;
  }
  double worst = 0;
  for (int K : {12, 37, 64})
    for (int N : {10, 29, 130}) {
      auto W = randv(size_t(K) * N, 100 + K + N);
      auto P = PackedMatrix::pack(W.data(), K, N);
      if (!P) {
        worst = INFINITY;
        continue;
      }
      for (int M : {1, 5, 40})
        for (bool accumulate : {false, true}) {
          int ldx = K + 3, ldy = N + 5;
          auto x = randv(size_t(M) * ldx, 200 + M);
          std::vector<float> res[2];
          for (int k = 0; k < 2; k++) {
            res[k] = randv(size_t(M) * ldy, 9);
            if (k == 0) P->multiply(M, x.data(), ldx, res[k].data(), ldy, accumulate);
            else gemm(false, false, M, N, K, 1.0f, x.data(), ldx, W.data(), N, accumulate ? 1.0f : 0.0f, res[k].data(), ldy);
          }
          for (size_t i = 0; i < res[0].size(); i++) worst = std::max(worst, double(std::fabs(res[0][i] - res[1][i])));
        }
    }
  bool ok = worst < 1e-5;
  if (!ok) failures++;
  printf("%s %-44s max err %.2e\n", ok ? "ok  " : "FAIL", "packed matrices against gemm", worst);
}

static void test_logprob() {
  int M = 4, C = 8, V = 37;
  auto h = randv(M * C, 21, 2), W = randv(V * C, 22), gw = randv(M, 23);
  std::vector<int32_t> target = {3, 36, 0, 17};
  std::vector<float> lp(M), lse(M), dh(M * C, 0), dW(V * C, 0);
  auto loss = [&] { logprob_forward(lp.data(), lse.data(), nullptr, h.data(), W.data(), target.data(), M, C, V); return dotw(lp, gw); };
  loss();
  // lp must be a log-probability: exp(lp) summed over all targets of a row is 1.
  double total = 0;
  std::vector<int32_t> tt(1);
  std::vector<float> lp1(1), lse1(1);
  for (int v = 0; v < V; v++) {
    tt[0] = v;
    logprob_forward(lp1.data(), lse1.data(), nullptr, h.data(), W.data(), tt.data(), 1, C, V);
    total += std::exp(double(lp1[0]));
  }
  checks++;
  bool ok = std::fabs(total - 1) < 1e-5;
  if (!ok) failures++;
  printf("%s %-44s sum exp(lp) = %.7f\n", ok ? "ok  " : "FAIL", "logprob normalises", total);
  logprob_backward(dh.data(), dW.data(), gw.data(), h.data(), W.data(), target.data(), lse.data(), M, C, V);
  fd_check("logprob dh", h, dh, loss);
  fd_check("logprob dW", W, dW, loss);
  // Frozen-head path: expected head rows from the forward give the same dh without logits.
  std::vector<float> ew(M * C), dh2(M * C, 0);
  logprob_forward(lp.data(), lse.data(), ew.data(), h.data(), W.data(), target.data(), M, C, V);
  logprob_backward_expected(dh2.data(), gw.data(), ew.data(), W.data(), target.data(), M, C);
  fd_check("logprob dh (expected head rows)", h, dh2, loss);
  // A packed head (oneDNN builds) gives the same log-probs and expected rows.
  auto packed = PackedHead::pack(W.data(), V, C);
  if (packed) {
    std::vector<float> lp2(M), lse2(M), ew2(M * C);
    logprob_forward(lp.data(), lse.data(), ew.data(), h.data(), W.data(), target.data(), M, C, V);
    logprob_forward(lp2.data(), lse2.data(), ew2.data(), h.data(), W.data(), target.data(), M, C, V, nullptr, packed.get());
    double worst = 0;
    for (int m = 0; m < M; m++) worst = std::max(worst, double(std::fabs(lp2[m] - lp[m])));
    for (int i = 0; i < M * C; i++) worst = std::max(worst, double(std::fabs(ew2[i] - ew[i])));
    checks++;
    bool ok = worst < 1e-5;
    if (!ok) failures++;
    printf("%s %-44s max err %.2e\n", ok ? "ok  " : "FAIL", ("packed head, chunks of " + std::to_string(packed->rows)).c_str(), worst);
  }
}

static void test_embedding() {
  int N = 5, C = 4, V = 6;
  std::vector<int32_t> ids = {1, 3, 1, 5, 0};
  auto table = randv(V * C, 24), gw = randv(N * C, 25);
  std::vector<float> out(N * C), dt(V * C, 0);
  auto loss = [&] { embedding_forward(out.data(), ids.data(), table.data(), N, C); return dotw(out, gw); };
  loss();
  embedding_backward(dt.data(), gw.data(), ids.data(), N, C);
  fd_check("embedding dtable", table, dt, loss);
}

static ModelConfig tiny_config(const std::string& arch) {
  ModelConfig c;
  c.architecture = arch;
  c.layers = 2;
  c.hidden = 16;
  c.intermediate = 24;
  c.heads = 4;
  c.kv_heads = 2;
  c.head_dim = arch == "Qwen3ForCausalLM" ? 8 : 4;
  c.vocab = 23;
  c.rms_eps = 1e-6f;
  c.qkv_bias = arch == "Qwen2ForCausalLM";
  c.qk_norm = arch == "Qwen3ForCausalLM";
  c.tied_embeddings = arch == "Qwen2ForCausalLM";
  return c;
}

static BatchIn tiny_batch(int vocab) {
  BatchIn b;
  b.batch = 2;
  b.seq_len = 6;
  b.lengths = {6, 4};
  b.ids.assign(12, 0);
  b.mask.assign(12, 0);
  for (int r = 0; r < 2; r++)
    for (int t = 0; t < b.lengths[r]; t++) {
      b.ids[r * 6 + t] = int32_t(mix_seed(7, r * 6 + t) % vocab);
      if (t >= 1) b.mask[r * 6 + t] = 1;
    }
  return b;
}

static void test_model(const std::string& arch, bool full, bool checkpointing, float dropout) {
  ModelConfig c = tiny_config(arch);
  auto m = Model::random(c, 42, 0.5f);
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 3;
  lo.dropout = dropout;
  for (auto& t : lo.targets) t = true;
  lo.seed = 5;
  m->add_lora(lo);
  // Non-zero B so that A's gradient is not trivially zero.
  for (Param* p : m->trainable())
    if (p->name.find("lora_B") != std::string::npos) set_host(p->w, randv(p->w.size(), std::hash<std::string>()(p->name), 0.5f));
  if (full) m->set_trainable(true);
  m->set_checkpointing(checkpointing);
  BatchIn b = tiny_batch(c.vocab);
  auto gw = randv(b.ids.size(), 77);
  bool train_mode = dropout > 0;  // dropout only exists in train mode; masks are fixed by the seed
  auto loss = [&] { return dotw(m->logps(b, true, train_mode, 1234), gw); };
  m->logps(b, true, true, 1234);
  m->backward(gw);
  std::string tag = arch.substr(0, arch.find("For")) + (full ? " full" : " lora") + (checkpointing ? " ckpt" : "") + (dropout > 0 ? " dropout" : "");
  for (Param* p : m->trainable()) {
    // A sample of parameters keeps the runner fast: every kind appears in layer 1 and the globals.
    bool pick = p->name.find("layers.1.") != std::string::npos || p->name.find("layers.") == std::string::npos;
    if (!pick) continue;
    fd_check(tag + " " + p->name.substr(p->name.find("layers.") == std::string::npos ? 0 : p->name.find("layers.")), *p, loss, 1e-2f, 3e-2, 12);
  }
}

static void test_checkpointing_equal() {
  ModelConfig c = tiny_config("LlamaForCausalLM");
  BatchIn b = tiny_batch(c.vocab);
  auto gw = randv(b.ids.size(), 78);
  std::vector<std::vector<float>> grads[2];
  for (int ck = 0; ck < 2; ck++) {
    auto m = Model::random(c, 43, 0.5f);
    LoraOptions lo;
    lo.rank = 2;
    lo.alpha = 4;
    lo.dropout = 0.2f;
    for (auto& t : lo.targets) t = true;
    m->add_lora(lo);
    m->set_trainable(true);
    m->set_checkpointing(ck == 1);
    m->logps(b, true, true, 9);
    m->backward(gw);
    for (Param* p : m->trainable()) grads[ck].push_back(host(p->grad));
  }
  checks++;
  bool same = grads[0] == grads[1];
  if (!same) failures++;
  printf("%s %-44s\n", same ? "ok  " : "FAIL", "checkpointing gives identical gradients");
}

// Packed frozen weights change nothing but speed: same log-probs and LoRA gradients as gemm();
// full fine-tuning drops them, since its weights move.
static void test_packing_equal(const std::string& arch) {
  ModelConfig c = tiny_config(arch);
  BatchIn b = tiny_batch(c.vocab);
  auto gw = randv(b.ids.size(), 79);
  std::vector<float> lp[2];
  std::vector<std::vector<float>> grads[2];
  size_t bytes[2] = {0, 0}, full_bytes = 1;
  for (int on = 0; on < 2; on++) {
    auto m = Model::random(c, 45, 0.5f);
    LoraOptions lo;
    lo.rank = 2;
    lo.alpha = 4;
    for (auto& t : lo.targets) t = true;
    m->add_lora(lo);
    for (Param* p : m->trainable())
      if (p->name.find("lora_B") != std::string::npos) set_host(p->w, randv(p->w.size(), 11, 0.5f));
    m->set_weight_packing(on ? Model::Packing::On : Model::Packing::Off);
    lp[on] = m->logps(b, true, true, 9);
    m->backward(gw);
    bytes[on] = m->packed_bytes();
    for (Param* p : m->trainable()) grads[on].push_back(host(p->grad));
    if (on) {
      m->set_trainable(true);
      m->logps(b, true, true, 9);
      full_bytes = m->packed_bytes();
    }
  }
  double worst = 0, scale = 1e-3;
  for (size_t i = 0; i < lp[0].size(); i++) worst = std::max(worst, double(std::fabs(lp[0][i] - lp[1][i])));
  for (size_t k = 0; k < grads[0].size(); k++)
    for (size_t i = 0; i < grads[0][k].size(); i++) {
      scale = std::max(scale, double(std::fabs(grads[0][k][i])));
      worst = std::max(worst, double(std::fabs(grads[0][k][i] - grads[1][k][i])));
    }
  bool onednn = std::string(blas_name()) == "onednn";
  checks++;
  bool ok = worst / scale < 1e-5 && bytes[0] == 0 && (bytes[1] > 0) == onednn && full_bytes == 0;
  if (!ok) failures++;
  printf("%s %-44s max err %.2e, %zu bytes packed, %zu in full mode\n", ok ? "ok  " : "FAIL",
         (arch.substr(0, arch.find("For")) + " packed weights change nothing").c_str(), worst / scale, bytes[1], full_bytes);
}

static void test_adamw() {
  // One parameter, known numbers: after one AdamW step with bias correction the update is
  // lr * sign(g) (m_hat / sqrt(v_hat) = g / |g|), plus decoupled decay lr*wd*w.
  ModelConfig c = tiny_config("LlamaForCausalLM");
  auto m = Model::random(c, 44, 0.5f);
  LoraOptions lo;
  lo.rank = 1;
  lo.alpha = 1;
  lo.targets[Q] = true;
  m->add_lora(lo);
  Param* A = m->trainable()[0];
  std::vector<float> w0 = host(A->w);
  std::vector<float> g0(A->grad.size());
  for (size_t i = 0; i < g0.size(); i++) g0[i] = (i % 2 ? 0.5f : -0.25f);
  m->zero_grad();
  set_host(A->grad, g0);
  OptimizerOptions o;
  o.lr = 0.1;
  o.weight_decay = 0.01;
  o.max_grad_norm = 0;  // no clipping
  double norm = m->optimizer_step(o);
  double expect_norm = 0;
  for (size_t i = 0; i < A->grad.size(); i++) expect_norm += (i % 2 ? 0.25 : 0.0625);
  expect_norm = std::sqrt(expect_norm);
  double worst = std::fabs(norm - expect_norm);
  std::vector<float> w1 = host(A->w);
  for (size_t i = 0; i < w1.size(); i++) {
    double g = i % 2 ? 0.5 : -0.25;
    double expect = w0[i] * (1 - 0.1 * 0.01) - 0.1 * (g > 0 ? 1 : -1) * (std::fabs(g) / (std::fabs(g) + 1e-8));
    worst = std::max(worst, std::fabs(w1[i] - expect));
  }
  checks++;
  bool ok = worst < 1e-5;
  if (!ok) failures++;
  printf("%s %-44s max err %.2e\n", ok ? "ok  " : "FAIL", "adamw step and grad norm", worst);
}

// Decoding with the KV cache runs the same layers as training: a prefill of the first tokens,
// then one token per call (a finished row passes none), gives at every step the log-probs that
// one full logps pass gives for the next token.
static void test_decode(const std::string& arch) {
  ModelConfig c = tiny_config(arch);
  auto m = Model::random(c, 46, 0.5f);
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 4;
  for (auto& t : lo.targets) t = true;
  m->add_lora(lo);
  for (Param* p : m->trainable())
    if (p->name.find("lora_B") != std::string::npos) set_host(p->w, randv(p->w.size(), 12, 0.5f));
  BatchIn b = tiny_batch(c.vocab);  // lengths 6 and 4
  std::vector<float> lp = m->logps(b, true, false, 0);
  auto cache = m->new_kv_cache(b.batch, b.seq_len);
  const int prompt = 2, V = c.vocab;
  double worst = 0;
  int compared = 0;
  bool idle_rows_zero = true;
  for (int t0 = 0; t0 < b.seq_len - 1; t0 = t0 == 0 ? prompt : t0 + 1) {
    BatchIn next;
    next.batch = b.batch;
    next.seq_len = t0 == 0 ? prompt : 1;
    for (int r = 0; r < b.batch; r++) {
      int n = std::max(0, std::min(next.seq_len, b.lengths[r] - 1 - t0));  // the last token predicts nothing
      next.lengths.push_back(n);
      for (int i = 0; i < next.seq_len; i++) next.ids.push_back(i < n ? b.ids[size_t(r) * b.seq_len + t0 + i] : 0);
    }
    std::vector<float> logits = m->decode(*cache, next, true);
    for (int r = 0; r < b.batch; r++) {
      const float* row = logits.data() + size_t(r) * V;
      if (next.lengths[r] == 0) {
        for (int v = 0; v < V; v++) idle_rows_zero = idle_rows_zero && row[v] == 0.0f;
        continue;
      }
      int t = t0 + next.lengths[r];  // the token these logits predict
      double mx = row[0], sum = 0;
      for (int v = 1; v < V; v++) mx = std::max(mx, double(row[v]));
      for (int v = 0; v < V; v++) sum += std::exp(row[v] - mx);
      double got = row[b.ids[size_t(r) * b.seq_len + t]] - mx - std::log(sum);
      worst = std::max(worst, std::fabs(got - lp[size_t(r) * b.seq_len + t]));
      compared++;
    }
  }
  bool filled = cache->length[0] == b.lengths[0] - 1 && cache->length[1] == b.lengths[1] - 1;
  bool refused = false;
  try {
    BatchIn over;
    over.batch = b.batch;
    over.seq_len = b.seq_len;
    over.ids.assign(size_t(b.batch) * b.seq_len, 1);
    over.lengths = {b.seq_len, 0};  // 5 cached + 6 > capacity 6
    m->decode(*cache, over, true);
  } catch (const std::exception& e) {
    refused = std::string(e.what()).find("more than the cache") != std::string::npos;
  }
  checks++;
  bool ok = worst < 1e-4 && compared == b.lengths[0] - 1 + b.lengths[1] - 1 - 2 * (prompt - 1) && filled && idle_rows_zero && refused;
  if (!ok) failures++;
  printf("%s %-44s max err %.2e over %d steps%s%s%s\n", ok ? "ok  " : "FAIL",
         (arch.substr(0, arch.find("For")) + " KV-cache decoding = logps").c_str(), worst, compared,
         filled ? "" : ", cache lengths wrong", idle_rows_zero ? "" : ", idle rows not zero", refused ? "" : ", overflow not refused");
}

int main() {
  set_threads(2);
  test_rmsnorm();
  test_linear();
  test_rank_expand();
  test_packed_matrix();
  test_lora(0.0f);
  test_lora(0.3f);
  test_rope();
  test_attention();
  test_swiglu();
  test_logprob();
  set_logprob_chunk(7);  // 37 = 5 chunks of 7 and one of 2
  test_logprob();
  set_logprob_chunk(0);
  test_embedding();
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) test_model(arch, false, false, 0.0f);
  test_model("LlamaForCausalLM", false, false, 0.25f);
  test_model("Qwen3ForCausalLM", true, false, 0.0f);
  test_model("Qwen2ForCausalLM", true, true, 0.0f);
  test_checkpointing_equal();
  test_packing_equal("LlamaForCausalLM");
  test_packing_equal("Qwen2ForCausalLM");  // tied head
  test_adamw();
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) test_decode(arch);
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
