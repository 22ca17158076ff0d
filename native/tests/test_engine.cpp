// Native test runner: the backend-ops table (test_backend_ops.cpp), then whole tiny models
// against central finite differences (LoRA and full fine-tuning, with and without gradient
// checkpointing and dropout), packing, AdamW through the model, and KV-cache decoding.
// Loss for every check: L = sum_i w_i * out_i with fixed random weights w, so dL/dout = w.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "backend_ops.h"
#include "finite_diff.h"
#include "gemm.h"
#include "model.h"
#include "random.h"
#include "untrusted_files.h"

using namespace tb;

static int failures = 0, checks = 0;

// Whole-model finite differences: step, tolerance on each entry's |fd - analytic| /
// (max(|fd|, |analytic|) + floor), and the floor as a fraction of the tensor's max |analytic|
// (at least 1e-4): below it a float32 forward's difference quotient is rounding and truncation
// noise. Correct code stays below 1.5e-2; a 5% error in the largest entries gives ~4.5e-2.
const float kModelFdEps = 1e-2f;
const double kModelFdTol = 3e-2;
const double kModelFdFloorFrac = 3e-2;

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

// Compares analytic gradient `grad` of loss() wrt `x` with central differences, every entry (a
// sample beyond kFdAllEntries): max over entries of |fd - analytic| / (max(|fd|, |analytic|) + floor),
// floor = max(1e-4, floor_frac * max |analytic|).
static void fd_check(const std::string& name, float* x, size_t n, const float* grad,
                     const std::function<double()>& loss, float eps, double tol, double floor_frac,
                     double abs_floor = 1e-4) {
  checks++;
  FdResult r = fd_compare(x, n, grad, loss, eps, abs_floor, floor_frac);
  bool ok = r.rel <= tol && std::isfinite(r.rel) && r.finite && r.maxg > 0;
  if (!ok) failures++;
  printf("%s %-44s rel err %.2e (tol %.0e, worst [%zu] fd %.4g vs %.4g; max |grad| %.3g, %zu of %zu entries)\n",
         ok ? "ok  " : "FAIL", name.c_str(), r.rel, tol, r.worst, r.worst_fd, r.worst_grad, r.maxg, r.checked, n);
}
// A model parameter (the CPU backend's buffers are host memory, which the perturbation needs).
static void fd_check(const std::string& name, Param& p, const std::function<double()>& loss, float eps, double tol,
                     double floor_frac, double abs_floor = 1e-4) {
  fd_check(name, p.w.f32(), p.w.size(), p.grad.f32(), loss, eps, tol, floor_frac, abs_floor);
}

static std::vector<float> host(const Buffer& b) {
  HostFloats h(b);
  return std::vector<float>(h.data(), h.data() + h.size());
}
static void set_host(Buffer& b, const std::vector<float>& v) { b.backend()->upload(b.raw(), v.data(), b.bytes()); }

static ModelConfig tiny_config(const std::string& arch) {
  ModelConfig c;
  c.architecture = arch;
  c.layers = 2;
  c.hidden = 16;
  c.intermediate = 24;
  c.heads = 4;
  c.kv_heads = 2;
  bool qwen3 = arch == "Qwen3ForCausalLM" || arch == "Qwen3MoeForCausalLM";
  c.head_dim = qwen3 ? 8 : 4;
  c.vocab = 23;
  c.rms_eps = 1e-6f;
  c.qkv_bias = arch == "Qwen2ForCausalLM";
  c.qk_norm = qwen3;
  c.tied_embeddings = arch == "Qwen2ForCausalLM";
  if (arch == "Qwen3MoeForCausalLM") {  // sparse, dense, sparse
    c.layers = 3;
    c.experts = 4;
    c.experts_per_tok = 2;
    c.moe_intermediate = 12;
    c.mlp_only_layers = {1};
    c.norm_topk_prob = true;
  }
  return c;
}

// A random model with rank-2 LoRA on every target and non-zero B (so that the adapters act).
static std::unique_ptr<Model> lora_model(const ModelConfig& c, uint64_t seed, uint64_t b_seed, bool dora = false) {
  auto m = Model::random(c, seed, 0.5f);
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 4;
  lo.dora = dora;
  for (auto& t : lo.targets) t = true;
  m->add_lora(lo);
  for (Param* p : m->trainable())
    if (p->name.find("lora_B") != std::string::npos) set_host(p->w, randv(p->w.size(), b_seed, 0.5f));
  return m;
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

// DoRA: the magnitudes moved off their initial row norms too, so that c = m / n differs from 1.
// The finite differences see the norms n as the backward does, constant: the model computes them
// when its adapter changes (add_lora, a load, an optimiser step), and the probes below write
// into the parameters directly.
static void test_model(const std::string& arch, bool full, bool checkpointing, float dropout, float temperature = 1.0f,
                       bool dora = false) {
  ModelConfig c = tiny_config(arch);
  auto m = Model::random(c, 42, 0.5f);
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 3;
  lo.dropout = dropout;
  lo.dora = dora;
  for (auto& t : lo.targets) t = true;
  lo.seed = 5;
  m->add_lora(lo);
  // Non-zero B so that A's gradient is not trivially zero.
  for (Param* p : m->trainable()) {
    if (p->name.find("lora_B") != std::string::npos) set_host(p->w, randv(p->w.size(), std::hash<std::string>()(p->name), 0.5f));
    if (p->name.find("lora_magnitude_vector") != std::string::npos) {
      auto v = host(p->w), r = randv(v.size(), std::hash<std::string>()(p->name), 0.3f);
      for (size_t i = 0; i < v.size(); i++) v[i] *= 1.0f + r[i];
      set_host(p->w, v);
    }
  }
  if (full) m->set_trainable(true);
  m->set_checkpointing(checkpointing);
  BatchIn b = tiny_batch(c.vocab);
  auto gw = randv(b.ids.size(), 77);
  bool train_mode = dropout > 0;  // dropout only exists in train mode; masks are fixed by the seed
  auto loss = [&] { return dotw(m->logps(b, true, train_mode, 1234, temperature), gw); };
  m->logps(b, true, true, 1234, temperature);
  m->backward(gw);
  std::string tag = arch.substr(0, arch.find("For")) + (full ? " full" : dora ? " dora" : " lora") + (checkpointing ? " ckpt" : "") +
                    (dropout > 0 ? " dropout" : "") + (temperature != 1.0f ? " T=" + std::to_string(temperature).substr(0, 4) : "");
  // Every parameter of both layers and the globals, every entry.
  for (Param* p : m->trainable())
    fd_check(tag + " " + p->name.substr(p->name.find("layers.") == std::string::npos ? 0 : p->name.find("layers.")), *p, loss,
             kModelFdEps, kModelFdTol, kModelFdFloorFrac);
}

// Qwen3-MoE: every LoRA tensor (attention, the dense layer's MLP, each expert's projections) or
// every weight (router included), through the routing weights, the renormalised top-k and the
// load-balancing loss (weighted into the objective as the trainer does). The choice of experts is
// piecewise constant in the weights, and a probe that moves a token across a boundary makes a
// jump, not a derivative: the probes keep the first pass's choices (freeze_routing_for_testing),
// which is the function whose gradient backward computes at that point.
// An expert sees a few tokens, so many of its gradients are small (entries of 1e-5 .. 1e-3) while
// the float32 loss's difference quotient carries noise of ~4e-5 at eps 1e-2 (measured: it shrinks
// as eps grows, and the quotients converge on the analytic values up to eps 4e-2): entries below
// 3e-3 are compared in absolute terms. Full fine-tuning's embedding rows curve more (truncation
// error 3% at 1e-2, under 1% at 5e-3), so its base weights are probed at 5e-3 (its LoRA tensors
// are those of the other cases).
const float kMoeFdEps = 1e-2f, kMoeFdEpsFull = 5e-3f;
const double kMoeFdFloor = 3e-3, kMoeFdFloorFull = 6e-3;  // half the step: twice the noise

static void test_moe(bool norm_topk, bool full, bool checkpointing, float dropout) {
  ModelConfig c = tiny_config("Qwen3MoeForCausalLM");
  c.norm_topk_prob = norm_topk;
  auto m = Model::random(c, 43, 0.5f);
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 3;
  lo.dropout = dropout;
  for (auto& t : lo.targets) t = true;
  lo.seed = 6;
  m->add_lora(lo);
  for (Param* p : m->trainable())
    if (p->name.find("lora_B") != std::string::npos) set_host(p->w, randv(p->w.size(), std::hash<std::string>()(p->name), 0.5f));
  if (full) m->set_trainable(true);
  m->set_checkpointing(checkpointing);
  BatchIn b = tiny_batch(c.vocab);
  auto gw = randv(b.ids.size(), 81);
  const double aux_w = 0.7;
  bool train_mode = dropout > 0;
  auto loss = [&] {
    double l = dotw(m->logps(b, true, train_mode, 99, 1.0f), gw);
    return l + aux_w * m->aux_loss();
  };
  m->freeze_routing_for_testing(true);
  m->logps(b, true, true, 99, 1.0f);
  double aux = m->aux_loss();
  checks++;
  bool aux_ok = std::isfinite(aux) && aux > 0;  // its value: tests/python/engine_moe_parity.py
  if (!aux_ok) failures++;
  printf("%s MoE aux loss %.4f finite and positive\n", aux_ok ? "ok  " : "FAIL", aux);
  m->backward(gw, aux_w);
  std::string tag = std::string("Qwen3Moe") + (norm_topk ? " norm" : "") + (full ? " full" : " lora") + (checkpointing ? " ckpt" : "") +
                    (dropout > 0 ? " dropout" : "");
  int experts_seen = 0;
  for (Param* p : m->trainable()) {
    if (full && p->name.find("lora_") != std::string::npos) continue;
    experts_seen += p->name.find("experts.") != std::string::npos;
    fd_check(tag + " " + p->name.substr(p->name.find("layers.") == std::string::npos ? 0 : p->name.find("layers.")), *p, loss,
             full ? kMoeFdEpsFull : kMoeFdEps, kModelFdTol, kModelFdFloorFrac, full ? kMoeFdFloorFull : kMoeFdFloor);
  }
  checks++;
  if (!experts_seen) failures++;
  printf("%s %s trains the experts (%d tensors)\n", experts_seen ? "ok  " : "FAIL", tag.c_str(), experts_seen);
}

// An expert the router sends no token has no gradient: AdamW leaves its tensors (and moments)
// alone and counts no step for them, as PyTorch does for a parameter whose grad is None; the
// training state keeps each expert tensor's own count for an exact resume.
static void test_moe_idle_experts() {
  ModelConfig c = tiny_config("Qwen3MoeForCausalLM");
  auto m = lora_model(c, 51, 15);
  BatchIn b;  // two tokens: at most 2 x 2 of the 4 experts per layer see one
  b.batch = 1;
  b.seq_len = 2;
  b.lengths = {2};
  b.ids = {3, 7};
  b.mask = {0, 1};
  OptimizerOptions o;
  o.lr = 0.05;
  o.weight_decay = 0.1;
  m->zero_grad();
  m->logps(b, true, true, 0);
  m->backward({0.0f, 1.0f});
  std::map<std::string, std::vector<float>> before;
  for (Param* p : m->trainable()) before[p->name] = host(p->w);
  m->optimizer_step(o);
  int idle = 0, moved = 0, bad = 0;
  for (Param* p : m->trainable()) {
    bool same = host(p->w) == before[p->name];
    if (p->routed && !p->touched) {
      idle++;
      bad += !same || p->steps != 0 || host(p->m) != std::vector<float>(p->m.size(), 0.0f);
    } else {
      moved += !same;
      bad += p->routed && p->steps != 1;
    }
  }
  checks++;
  bool ok = idle > 0 && moved > 0 && bad == 0;
  if (!ok) failures++;
  printf("%s MoE: %d idle expert tensors left alone (no update, no decay, no step), %d others moved%s\n", ok ? "ok  " : "FAIL", idle,
         moved, bad ? " (some wrong)" : "");
  // A second step with every expert reached: the idle ones take their first step (count 1).
  m->zero_grad();
  m->logps(tiny_batch(c.vocab), true, true, 0);
  m->backward(randv(12, 3));
  m->optimizer_step(o);
  std::string path = (std::filesystem::temp_directory_path() / ("tunebench-moe-state-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) + ".bin")).string();
  m->save_training_state(path);
  auto again = lora_model(c, 51, 15);
  again->load_training_state(path);
  std::remove(path.c_str());
  int same_steps = 0, counted = 0, ones = 0;
  auto ta = again->trainable();
  auto tm = m->trainable();
  for (size_t i = 0; i < tm.size(); i++)
    if (tm[i]->routed) {
      counted++;
      same_steps += ta[i]->steps == tm[i]->steps;
      ones += tm[i]->steps == 1;
    }
  checks++;
  ok = counted > 0 && same_steps == counted && ones > 0 && ones < counted;
  if (!ok) failures++;
  printf("%s MoE: each expert tensor's AdamW step count survives the training state (%d of %d; %d at 1 step)\n", ok ? "ok  " : "FAIL",
         same_steps, counted, ones);
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
    auto m = lora_model(c, 45, 11);
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

// README Limits: Auto keeps a packed copy (4 bytes per frozen weight) only when it fits an
// eighth of the physical memory. The rule on its own at its edges, then through a model's
// passes with the memory it sees set around the edge: only the oneDNN backend prepares
// matrices, so elsewhere nothing is ever packed.
static void test_packing_policy() {
  const int64_t n = 1000000000;  // a 4 GB copy: packs with 32 GB, not with a byte less
  bool rule = Model::packing_fits(n, 32e9) && !Model::packing_fits(n, 32e9 - 1) && !Model::packing_fits(n, 16e9) &&
              Model::packing_fits(n, 64e9) && Model::packing_fits(1000, 32000) && !Model::packing_fits(1000, 31999) &&
              !Model::packing_fits(1000, 0) && !Model::packing_fits(1000, -1) && Model::packing_fits(0, 1);
  checks++;
  if (!rule) failures++;
  printf("%s %-44s\n", rule ? "ok  " : "FAIL", "packing rule: the copy fits an eighth of memory");

  ModelConfig c = tiny_config("LlamaForCausalLM");
  BatchIn b = tiny_batch(c.vocab);
  int64_t frozen = int64_t(c.vocab) * c.hidden;
  for (int t = 0; t < NUM_TARGETS; t++) {
    int in, out;
    target_dims(c, t, in, out);
    frozen += int64_t(c.layers) * in * out;
  }
  const double edge = 32.0 * double(frozen);  // 8 x the copy's 4 bytes per weight
  auto m = lora_model(c, 45, 11);
  auto packed_with = [&](Model::Packing p, double physical) {
    m->set_weight_packing(p);
    m->set_physical_memory_for_testing(physical);
    m->logps(b, true, false, 0);
    return m->packed_bytes();
  };
  size_t at_edge = packed_with(Model::Packing::Auto, edge);
  size_t below = packed_with(Model::Packing::Auto, edge - 1);
  size_t quarter = packed_with(Model::Packing::Auto, 16.0 * double(frozen));  // fits a quarter, not an eighth
  size_t machine = packed_with(Model::Packing::Auto, 0);  // this machine's memory: the tiny copy fits
  size_t forced = packed_with(Model::Packing::On, 1);     // On packs whatever the memory
  size_t off = packed_with(Model::Packing::Off, 1e18);
  bool onednn = std::string(blas_name()) == "onednn";
  bool ok = m->frozen_weights() == frozen && below == 0 && quarter == 0 && off == 0 &&
            (at_edge > 0) == onednn && (machine > 0) == onednn && (forced > 0) == onednn;
  checks++;
  if (!ok) failures++;
  printf("%s %-44s packed bytes: edge %zu, edge-1 %zu, quarter %zu, machine %zu, on %zu, off %zu (%s)\n",
         ok ? "ok  " : "FAIL", "auto packing follows the rule in passes", at_edge, below, quarter, machine, forced, off,
         blas_name());
}

// AdamW through the model against a double-precision reference of PyTorch's AdamW after
// torch.nn.utils.clip_grad_norm_: five steps with changing gradients, weight decay, beta1/beta2
// off their defaults and clipping active on some steps only. Per step and parameter:
//   c = min(1, max_norm / (norm + 1e-6)), g = c * g, w -= lr * wd * w (decoupled),
//   m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
//   w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps);
// the step returns the norm before clipping. One step alone cannot tell betas or bias correction
// apart (the update is then lr * sign(g) whatever they are); several steps, with the weights'
// decay and the clipping in them, can.
static void test_adamw() {
  ModelConfig c = tiny_config("LlamaForCausalLM");
  auto m = Model::random(c, 44, 0.5f);
  LoraOptions lo;
  lo.rank = 2;
  lo.alpha = 1;
  lo.targets[Q] = true;
  m->add_lora(lo);
  std::vector<Param*> ps = m->trainable();
  std::vector<std::vector<double>> w, mm, vv;
  for (size_t k = 0; k < ps.size(); k++) {
    std::vector<float> w0 = randv(ps[k]->w.size(), 500 + k, 0.8f);  // B too, so that decay acts on it
    set_host(ps[k]->w, w0);
    w.emplace_back(w0.begin(), w0.end());
    mm.emplace_back(w0.size(), 0.0);
    vv.emplace_back(w0.size(), 0.0);
  }
  OptimizerOptions o;
  o.lr = 0.05;
  o.beta1 = 0.8;
  o.beta2 = 0.95;
  o.eps = 1e-8;
  o.weight_decay = 0.1;
  o.max_grad_norm = 2.0;
  // Gradient scales per step: the norm of the base gradients (|g| in [0.2, 1]) is ~3.5, so steps
  // 0, 2 and 3 are clipped, 1 and 4 are not.
  const double scale[5] = {1.0, 0.3, 2.5, 0.8, 0.15};
  double worst_w = 0, worst_mv = 0, worst_norm = 0, wscale = 1e-3, mscale = 1e-12, vscale = 1e-12;
  int clipped = 0;
  for (int t = 1; t <= 5; t++) {
    m->zero_grad();
    std::vector<std::vector<double>> g(ps.size());
    double ss = 0;
    for (size_t k = 0; k < ps.size(); k++) {
      size_t n = ps[k]->grad.size();
      std::vector<float> gf(n);
      for (size_t i = 0; i < n; i++) {
        double u = hash_uniform(900 + 31 * t + k, i);
        double sign = mix_seed(1000 + 17 * t + k, i) % 2 ? 1 : -1;
        gf[i] = float(sign * (0.2 + 0.8 * u) * scale[t - 1] * (k == 0 ? 0.5 : 1.0));
        g[k].push_back(gf[i]);
        ss += double(gf[i]) * gf[i];
      }
      set_host(ps[k]->grad, gf);
    }
    double norm = m->optimizer_step(o);
    double expect_norm = std::sqrt(ss);
    worst_norm = std::max(worst_norm, std::fabs(norm - expect_norm) / expect_norm);
    double clip = std::min(1.0, o.max_grad_norm / (expect_norm + 1e-6));
    if (clip < 1) clipped++;
    double bc1 = 1 - std::pow(o.beta1, t), bc2 = 1 - std::pow(o.beta2, t);
    for (size_t k = 0; k < ps.size(); k++) {
      std::vector<float> wf = host(ps[k]->w), mf = host(ps[k]->m), vf = host(ps[k]->v);
      for (size_t i = 0; i < w[k].size(); i++) {
        double gi = g[k][i] * clip;
        if (ps[k]->decay) w[k][i] -= o.lr * o.weight_decay * w[k][i];
        mm[k][i] = o.beta1 * mm[k][i] + (1 - o.beta1) * gi;
        vv[k][i] = o.beta2 * vv[k][i] + (1 - o.beta2) * gi * gi;
        w[k][i] -= o.lr / bc1 * mm[k][i] / (std::sqrt(vv[k][i]) / std::sqrt(bc2) + o.eps);
        wscale = std::max(wscale, std::fabs(w[k][i]));
        mscale = std::max(mscale, std::fabs(mm[k][i]));
        vscale = std::max(vscale, vv[k][i]);
        worst_w = std::max(worst_w, std::fabs(wf[i] - w[k][i]));
        worst_mv = std::max({worst_mv, std::fabs(mf[i] - mm[k][i]) / mscale, std::fabs(vf[i] - vv[k][i]) / vscale});
      }
    }
  }
  checks++;
  // Float32 against double over five steps: ~1e-7 of the weights; a wrong beta, a missing bias
  // correction, coupled decay or clipping after the update each move the weights by >= 1e-3.
  bool ok = worst_w / wscale < 2e-6 && worst_mv < 1e-5 && worst_norm < 1e-6 && clipped == 3;
  if (!ok) failures++;
  printf("%s %-44s max err w %.2e m,v %.2e norm %.2e (%d of 5 steps clipped)\n", ok ? "ok  " : "FAIL",
         "adamw 5 steps vs reference (decay, clipping)", worst_w / wscale, worst_mv, worst_norm, clipped);
}

// Decoding with the KV cache runs the same layers as training: a prefill of the first tokens,
// then one token per call (a finished row passes none), gives at every step the log-probs that
// one full logps pass gives for the next token.
static void test_decode(const std::string& arch, bool bf16 = false) {
  ModelConfig c = tiny_config(arch);
  auto m = lora_model(c, 46, 12);
  if (bf16) m->set_weight_dtype(DType::BF16);
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
  bool foreign_refused = false;
  try {
    auto other = Model::random(tiny_config(arch == "Qwen3ForCausalLM" ? "LlamaForCausalLM" : "Qwen3ForCausalLM"), 47, 0.5f);
    auto theirs = other->new_kv_cache(b.batch, b.seq_len);
    BatchIn one;
    one.batch = b.batch;
    one.seq_len = 1;
    one.ids = {1, 1};
    one.lengths = {1, 1};
    m->decode(*theirs, one, true);
  } catch (const std::exception& e) {
    foreign_refused = std::string(e.what()).find("another model") != std::string::npos;
  }
  refused = refused && foreign_refused;
  checks++;
  bool ok = worst < 1e-4 && compared == b.lengths[0] - 1 + b.lengths[1] - 1 - 2 * (prompt - 1) && filled && idle_rows_zero && refused;
  if (!ok) failures++;
  printf("%s %-44s max err %.2e over %d steps%s%s%s\n", ok ? "ok  " : "FAIL",
         (arch.substr(0, arch.find("For")) + (bf16 ? " bf16" : "") + " KV-cache decoding = logps").c_str(), worst, compared,
         filled ? "" : ", cache lengths wrong", idle_rows_zero ? "" : ", idle rows not zero", refused ? "" : ", overflow or a foreign cache not refused");
}

// logps at a temperature are log_softmax(logits / T) and the entropies those of softmax(logits / T),
// with the logits of a prefill of each prefix as the reference; for a frozen head in training (the
// expected-row path), for evaluation and for a trained head (the online path).
static void test_temperature_entropy(const std::string& arch) {
  ModelConfig c = tiny_config(arch);
  BatchIn b = tiny_batch(c.vocab);
  const float T = 0.6f;
  for (int variant = 0; variant < 3; variant++) {
    auto m = lora_model(c, 48, 13);
    bool train = variant != 1;
    if (variant == 2) m->set_trainable(true);
    std::vector<float> ent;
    std::vector<float> lp = m->logps(b, true, train, 0, T, &ent);
    double worst = 0;
    for (int r = 0; r < b.batch; r++)
      for (int t = 1; t < b.lengths[r]; t++) {
        auto cache = m->new_kv_cache(1, b.seq_len);
        BatchIn pre;
        pre.batch = 1;
        pre.seq_len = t;
        pre.lengths = {t};
        pre.ids.assign(b.ids.begin() + size_t(r) * b.seq_len, b.ids.begin() + size_t(r) * b.seq_len + t);
        std::vector<float> z = m->decode(*cache, pre, true);
        double mx = -INFINITY, sum = 0, h = 0;
        for (float v : z) mx = std::max(mx, double(v) / T);
        for (float v : z) sum += std::exp(double(v) / T - mx);
        double lse = mx + std::log(sum);
        for (float v : z) h -= std::exp(double(v) / T - lse) * (double(v) / T - lse);
        size_t i = size_t(r) * b.seq_len + t;
        worst = std::max({worst, std::fabs(double(z[size_t(b.ids[i])]) / T - lse - lp[i]), std::fabs(h - ent[i])});
      }
    checks++;
    bool ok = worst < 1e-4;
    if (!ok) failures++;
    const char* what[] = {"lora train", "eval", "full"};
    printf("%s %-44s max err %.2e\n", ok ? "ok  " : "FAIL",
           (arch.substr(0, arch.find("For")) + " logps/entropy at T=0.6, " + what[variant]).c_str(), worst);
  }
}

// Sampling as docs/algorithms.md defines it. Draws at evenly spaced uniforms integrate the
// sampler's distribution exactly (up to the grid), which is then compared with the expected
// truncated softmax; greedy, top-k = 1 and a tiny top-p all give the argmax.
static void test_sampling() {
  const int V = 10;
  std::vector<float> logits = {1.0f, 2.5f, -0.5f, 2.0f, 0.3f, 3.0f, -2.0f, 1.5f, 0.0f, 2.2f};
  std::vector<uint8_t> seen(V, 0);
  seen[5] = 1;  // the top token, penalised
  seen[2] = 1;  // a negative logit, penalised
  struct Case {
    const char* name;
    SamplingOptions o;
    bool use_seen;
  };
  std::vector<Case> cases;
  auto opt = [](double t, int k, double p, double minp, double rep) {
    SamplingOptions o;
    o.temperature = t;
    o.top_k = k;
    o.top_p = p;
    o.min_p = minp;
    o.repetition_penalty = rep;
    return o;
  };
  cases.push_back({"temperature 0.7", opt(0.7, 0, 1, 0, 1), false});
  cases.push_back({"top-k 3", opt(1, 3, 1, 0, 1), false});
  cases.push_back({"top-p 0.8", opt(1, 0, 0.8, 0, 1), false});
  cases.push_back({"top-k 5 + top-p 0.6", opt(1.3, 5, 0.6, 0, 1), false});
  cases.push_back({"min-p 0.2", opt(1, 0, 1, 0.2, 1), false});
  cases.push_back({"top-p 0.9 + min-p 0.3", opt(0.8, 0, 0.9, 0.3, 1), false});
  cases.push_back({"repetition penalty 1.5", opt(1, 0, 1, 0, 1.5), true});
  for (const Case& c : cases) {
    // expected: z = logits / T, penalty, softmax, truncations in the order of the definition
    std::vector<double> z(V);
    for (int v = 0; v < V; v++) {
      z[v] = logits[v] / c.o.temperature;
      if (c.use_seen && seen[v]) z[v] = z[v] > 0 ? z[v] / c.o.repetition_penalty : z[v] * c.o.repetition_penalty;
    }
    std::vector<int> idx(V);
    for (int v = 0; v < V; v++) idx[v] = v;
    std::sort(idx.begin(), idx.end(), [&](int a, int b) { return z[a] > z[b]; });
    std::vector<bool> keep(V, true);
    if (c.o.top_k > 0)
      for (int i = c.o.top_k; i < V; i++) keep[idx[i]] = false;
    auto probs = [&] {
      std::vector<double> p(V, 0.0);
      double tot = 0;
      for (int v = 0; v < V; v++)
        if (keep[v]) tot += (p[v] = std::exp(z[v]));
      for (auto& x : p) x /= tot;
      return p;
    };
    if (c.o.top_p < 1) {
      std::vector<double> p = probs();
      double cum = 0;
      for (int i = 0; i < V; i++) {
        int v = idx[i];
        if (!keep[v]) continue;
        if (cum >= c.o.top_p) keep[v] = false;
        cum += p[v];
      }
    }
    if (c.o.min_p > 0) {
      std::vector<double> p = probs();
      double pmax = *std::max_element(p.begin(), p.end());
      for (int v = 0; v < V; v++)
        if (p[v] < c.o.min_p * pmax) keep[v] = false;
    }
    std::vector<double> want = probs(), got(V, 0.0);
    const int draws = 200000;
    SamplerScratch scratch;
    double lp_err = 0;
    for (int i = 0; i < draws; i++) {
      Sampled t = sample_token(logits.data(), V, c.o, c.use_seen ? seen.data() : nullptr, (i + 0.5f) / draws, scratch);
      got[t.token] += 1.0 / draws;
      // the reported log-prob is log_softmax(logits / T) before penalty and filters
      double mx = -1e30, sum = 0;
      for (int v = 0; v < V; v++) mx = std::max(mx, double(logits[v]) / c.o.temperature);
      for (int v = 0; v < V; v++) sum += std::exp(double(logits[v]) / c.o.temperature - mx);
      if (i % 997 == 0) lp_err = std::max(lp_err, std::fabs(t.logp - (logits[t.token] / c.o.temperature - mx - std::log(sum))));
    }
    double worst = 0;
    for (int v = 0; v < V; v++) worst = std::max(worst, std::fabs(got[v] - want[v]));
    checks++;
    bool ok = worst < 1e-4 && lp_err < 1e-5;
    if (!ok) failures++;
    printf("%s %-44s max |freq - p| %.1e, logp err %.1e\n", ok ? "ok  " : "FAIL", (std::string("sampling ") + c.name).c_str(), worst, lp_err);
  }
  // the argmax three ways, whatever the uniform
  bool argmax = true;
  SamplerScratch scratch;
  for (float u : {0.0f, 0.3f, 0.999f}) {
    argmax = argmax && sample_token(logits.data(), V, opt(0, 0, 1, 0, 1), nullptr, u, scratch).token == 5;
    argmax = argmax && sample_token(logits.data(), V, opt(1, 1, 1, 0, 1), nullptr, u, scratch).token == 5;
    argmax = argmax && sample_token(logits.data(), V, opt(1, 0, 1e-6, 0, 1), nullptr, u, scratch).token == 5;
  }
  checks++;
  if (!argmax) failures++;
  printf("%s %-44s\n", argmax ? "ok  " : "FAIL", "greedy, top-k 1 and top-p 1e-6 give the argmax");
}

// generate(): a row's tokens depend on its prompt and seed, not on the batch around it,
// greedy rows stop at eos or max_new_tokens, and stopping a row ends it with 'stop'.
static void test_generate() {
  ModelConfig c = tiny_config("Qwen3ForCausalLM");
  auto m = lora_model(c, 48, 13);
  GenerateRequest alone, both;
  alone.prompts = {{3, 4, 5}};
  alone.seeds = {77};
  alone.max_new_tokens = 6;
  alone.sampling.temperature = 1.0;
  both = alone;
  both.prompts.insert(both.prompts.begin(), std::vector<int32_t>{9, 1, 2, 8, 8, 7, 6});
  both.seeds.insert(both.seeds.begin(), 5);
  auto a = m->generate(alone, nullptr, nullptr);
  int steps = 0;
  auto b = m->generate(both, [&](const GenerateStep&) { steps++; }, nullptr);
  // (the batched GEMMs round differently, so log-probs agree to float precision only)
  bool same = a[0].tokens == b[1].tokens && a[0].finish == Finish::Length;
  for (size_t i = 0; same && i < a[0].logps.size(); i++) same = std::fabs(a[0].logps[i] - b[1].logps[i]) < 1e-5;
  // eos: make the row's first greedy token an eos id
  GenerateRequest g = alone;
  g.sampling.temperature = 0;
  auto first = m->generate(g, nullptr, nullptr)[0].tokens[0];
  g.eos_ids = {first};
  auto e = m->generate(g, nullptr, nullptr)[0];
  bool eos = e.finish == Finish::Eos && e.tokens.size() == 1;
  std::atomic<bool> stop[1];
  stop[0] = true;
  auto st = m->generate(alone, nullptr, stop)[0];
  bool stopped = st.finish == Finish::Stopped && st.tokens.size() == 1;
  checks++;
  bool ok = same && steps == 6 && eos && stopped;
  if (!ok) failures++;
  printf("%s %-44s%s%s%s%s\n", ok ? "ok  " : "FAIL", "generate: batch-independent rows, eos, stop", same ? "" : " rows differ", steps == 6 ? "" : " steps", eos ? "" : " eos", stopped ? "" : " stop");
}

// Precision bf16 through whole models: the matrices in BF16 against an f32 model holding the
// same (bf16-rounded) weights, so that the only difference is the rounding of each GEMM's
// activation side to bf16 (up to 2^-9 relative per element), amplified through the layers of
// these random models (weights of scale 0.5 on a hidden size of 16 have gains above 1). Measured:
// log-probs 1e-3 to 1.1e-2 of their largest magnitude, LoRA gradients 2.7e-2 to 4.5e-2 of each
// tensor's largest entry; the tolerances are about twice that, while a wrong operand or offset
// gives errors of order 1 (the ops themselves are checked to 2e-6 in test_backend_ops.cpp). Full
// fine-tuning converts to f32 master weights and then equals the f32 model exactly.
const double kBf16ModelLpTol = 3e-2, kBf16ModelGradTol = 1e-1;

// DoRA: the row norms read the bf16 matrices as the products do.
static void test_bf16_model(const std::string& arch, bool dora = false) {
  ModelConfig c = tiny_config(arch);
  BatchIn b = tiny_batch(c.vocab);
  auto gw = randv(b.ids.size(), 79);
  auto rounded = lora_model(c, 50, 14, dora);
  rounded->set_weight_dtype(DType::BF16);
  rounded->set_weight_dtype(DType::F32);
  auto half = lora_model(c, 50, 14, dora);
  half->set_weight_dtype(DType::BF16);
  bool types = rounded->weight_dtype() == DType::F32 && half->weight_dtype() == DType::BF16;
  for (Param* p : half->matrices()) types = types && p->w.dtype() == DType::BF16;
  std::vector<float> lp32 = rounded->logps(b, true, true, 0), lp16 = half->logps(b, true, true, 0);
  double lp_err = 0, lp_scale = 1e-6;
  for (size_t i = 0; i < lp32.size(); i++) {
    lp_err = std::max(lp_err, double(std::fabs(lp32[i] - lp16[i])));
    lp_scale = std::max(lp_scale, double(std::fabs(lp32[i])));
  }
  lp_err /= lp_scale;
  rounded->backward(gw);
  half->backward(gw);
  double g_err = 0;
  auto t32 = rounded->trainable(), t16 = half->trainable();
  for (size_t k = 0; k < t32.size(); k++) {
    std::vector<float> a = host(t32[k]->grad), h = host(t16[k]->grad);
    double mx = 1e-6, d = 0;
    for (size_t i = 0; i < a.size(); i++) {
      mx = std::max(mx, double(std::fabs(a[i])));
      d = std::max(d, double(std::fabs(a[i] - h[i])));
    }
    g_err = std::max(g_err, d / mx);
  }
  // full fine-tuning: f32 master weights, identical to the f32 model of the rounded weights
  auto full16 = Model::random(c, 51, 0.5f), full32 = Model::random(c, 51, 0.5f);
  full16->set_weight_dtype(DType::BF16);
  full32->set_weight_dtype(DType::BF16);
  full32->set_weight_dtype(DType::F32);
  full16->set_trainable(true);
  full32->set_trainable(true);
  bool full_same = full16->weight_dtype() == DType::F32 && full16->logps(b, false, true, 0) == full32->logps(b, false, true, 0);
  full16->backward(gw);
  full32->backward(gw);
  auto f16 = full16->trainable(), f32 = full32->trainable();
  for (size_t k = 0; k < f16.size(); k++) full_same = full_same && host(f16[k]->grad) == host(f32[k]->grad);
  checks++;
  bool ok = types && lp_err <= kBf16ModelLpTol && g_err <= kBf16ModelGradTol && full_same;
  if (!ok) failures++;
  printf("%s %-44s lp rel err %.2e (tol %.0e), LoRA grad err %.2e (tol %.0e)%s%s\n", ok ? "ok  " : "FAIL",
         (arch.substr(0, arch.find("For")) + (dora ? " DoRA" : "") + " bf16 weights = f32 of the same weights").c_str(), lp_err, kBf16ModelLpTol,
         g_err, kBf16ModelGradTol, types ? "" : ", wrong buffer types", full_same ? "" : ", full fine-tuning differs from f32");
}

int main() {
  set_threads(2);
  run_backend_op_tests(checks, failures);
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) test_model(arch, false, false, 0.0f);
  test_model("LlamaForCausalLM", false, false, 0.25f);
  test_model("Qwen3ForCausalLM", true, false, 0.0f);
  test_model("Qwen2ForCausalLM", true, true, 0.0f);
  test_model("LlamaForCausalLM", false, false, 0.0f, 0.7f);
  test_model("Qwen2ForCausalLM", true, false, 0.0f, 1.5f);  // trained tied head
  test_model("LlamaForCausalLM", false, false, 0.0f, 1.0f, true);
  test_model("Qwen2ForCausalLM", false, true, 0.25f, 1.0f, true);  // biases, dropout, checkpointing
  test_model("Qwen3ForCausalLM", false, false, 0.25f, 1.0f, true);
  test_moe(true, false, false, 0.0f);
  test_moe(false, false, true, 0.0f);
  test_moe(true, false, false, 0.25f);
  test_moe(false, true, false, 0.0f);
  test_moe_idle_experts();
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM"}) test_temperature_entropy(arch);
  test_checkpointing_equal();
  test_packing_equal("LlamaForCausalLM");
  test_packing_equal("Qwen2ForCausalLM");  // tied head
  test_packing_policy();
  test_adamw();
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM"}) test_decode(arch);
  for (const char* arch : {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM"}) {
    test_bf16_model(arch);
    test_decode(arch, true);
  }
  test_bf16_model("Qwen3ForCausalLM", true);
  test_bf16_model("Qwen3MoeForCausalLM");
  test_decode("Qwen3MoeForCausalLM", true);
  test_sampling();
  test_generate();
  run_untrusted_file_tests(checks, failures);
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
