#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <utility>
#include <unistd.h>

#include "gemm.h"
#include "json.h"
#include "ops.h"
#include "safetensors.h"
#include "simd.h"

namespace tb {

const char* const kTargetNames[NUM_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};
const char* const kModuleNames[NUM_TARGETS] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

// ------------------------------------------------------------------ config.json
static const Json& need(const Json& j, const std::string& key, const std::string& path) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) throw std::runtime_error(path + ": missing field '" + key + "'");
  return *v;
}
static int need_int(const Json& j, const std::string& key, const std::string& path) {
  const Json& v = need(j, key, path);
  if (v.kind != Json::Number || v.num <= 0 || v.num != std::floor(v.num))
    throw std::runtime_error(path + ": field '" + key + "' must be a positive integer");
  return int(v.num);
}
static double num_or(const Json& j, const std::string& key, double dflt, const std::string& path) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) return dflt;
  if (v->kind != Json::Number) throw std::runtime_error(path + ": field '" + key + "' must be a number");
  return v->num;
}
static bool bool_or(const Json& j, const std::string& key, bool dflt, const std::string& path) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) return dflt;
  if (v->kind != Json::Bool) throw std::runtime_error(path + ": field '" + key + "' must be true or false");
  return v->b;
}

ModelConfig parse_config(const std::string& path) {
  Json j = json_parse_file(path);
  if (j.kind != Json::Object) throw std::runtime_error(path + ": not a JSON object");
  ModelConfig c;
  const Json& arch = need(j, "architectures", path);
  if (arch.kind != Json::Array || arch.arr.empty() || arch.arr[0].kind != Json::String)
    throw std::runtime_error(path + ": field 'architectures' must be a list of names");
  c.architecture = arch.arr[0].str;
  if (c.architecture != "LlamaForCausalLM" && c.architecture != "Qwen2ForCausalLM" && c.architecture != "Qwen3ForCausalLM")
    throw std::runtime_error(path + ": unsupported architecture '" + c.architecture +
                             "' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)");
  c.hidden = need_int(j, "hidden_size", path);
  c.intermediate = need_int(j, "intermediate_size", path);
  c.layers = need_int(j, "num_hidden_layers", path);
  c.heads = need_int(j, "num_attention_heads", path);
  c.kv_heads = j.find("num_key_value_heads") && !j.find("num_key_value_heads")->is_null() ? need_int(j, "num_key_value_heads", path) : c.heads;
  c.vocab = need_int(j, "vocab_size", path);
  c.head_dim = j.find("head_dim") && !j.find("head_dim")->is_null() ? need_int(j, "head_dim", path) : c.hidden / c.heads;
  if (c.architecture != "Qwen3ForCausalLM" && !j.has("head_dim") && c.hidden % c.heads != 0)
    throw std::runtime_error(path + ": hidden_size is not a multiple of num_attention_heads");
  if (c.heads % c.kv_heads != 0)
    throw std::runtime_error(path + ": num_attention_heads is not a multiple of num_key_value_heads");
  if (c.head_dim % 2 != 0) throw std::runtime_error(path + ": head_dim must be even for rotary embeddings");
  // transformers >= 5 writes rope_parameters {rope_theta, rope_type, ...}; older files
  // write rope_theta and rope_scaling at the top level.
  const Json* rp = j.find("rope_parameters");
  if (rp && rp->kind != Json::Object) rp = nullptr;
  c.rope_theta = num_or(j, "rope_theta", rp ? num_or(*rp, "rope_theta", 10000.0, path + " rope_parameters") : 10000.0, path);
  c.rms_eps = num_or(j, "rms_norm_eps", 1e-6, path);
  c.tied_embeddings = bool_or(j, "tie_word_embeddings", false, path);
  bool attention_bias = bool_or(j, "attention_bias", false, path);
  if (c.architecture == "Qwen2ForCausalLM") {
    c.qkv_bias = true;
    if (bool_or(j, "use_sliding_window", false, path))
      throw std::runtime_error(path + ": use_sliding_window=true is not supported");
  } else {
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
  }
  if (c.architecture == "Qwen3ForCausalLM") {
    c.qk_norm = true;
    if (bool_or(j, "use_sliding_window", false, path))
      throw std::runtime_error(path + ": use_sliding_window=true is not supported");
  }
  c.mlp_bias = bool_or(j, "mlp_bias", false, path);
  const Json* act = j.find("hidden_act");
  if (act && act->kind == Json::String && act->str != "silu")
    throw std::runtime_error(path + ": hidden_act '" + act->str + "' is not supported (silu only)");
  const Json* rs = j.find("rope_scaling");
  if (!rs || rs->is_null()) rs = rp;
  if (rs && !rs->is_null()) {
    const Json* type = rs->find("rope_type");
    if (!type) type = rs->find("type");
    std::string t = type && type->kind == Json::String ? type->str : "";
    if (t == "llama3") {
      c.rope_factor = need(*rs, "factor", path + " rope_scaling").num;
      c.rope_low = need(*rs, "low_freq_factor", path + " rope_scaling").num;
      c.rope_high = need(*rs, "high_freq_factor", path + " rope_scaling").num;
      c.rope_orig_ctx = need(*rs, "original_max_position_embeddings", path + " rope_scaling").num;
    } else if (t != "default") {
      throw std::runtime_error(path + ": rope_scaling type '" + t + "' is not supported (llama3 or default)");
    }
  }
  const Json* dt = j.find("torch_dtype");
  if (!dt || dt->kind != Json::String) dt = j.find("dtype");
  if (dt && dt->kind == Json::String) c.dtype = dt->str;
  return c;
}

// ------------------------------------------------------------------ construction
static int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

static void target_dims(const ModelConfig& c, int t, int& in, int& out) {
  int C = c.hidden, qd = c.heads * c.head_dim, kd = c.kv_heads * c.head_dim, I = c.intermediate;
  switch (t) {
    case Q: in = C; out = qd; break;
    case K: case V: in = C; out = kd; break;
    case O: in = qd; out = C; break;
    case GATE: case UP: in = C; out = I; break;
    default: in = I; out = C; break;
  }
}

void Model::init_params(bool allocate) {
  const ModelConfig& c = cfg_;
  auto set = [&](Param& p, const std::string& name, std::vector<int64_t> shape, bool decay) {
    p.name = name;
    p.shape = std::move(shape);
    p.decay = decay;
    if (allocate) p.w.assign(size_t(numel(p.shape)), 0.0f);
  };
  set(embed_, "model.embed_tokens.weight", {c.vocab, c.hidden}, true);
  set(final_norm_, "model.norm.weight", {c.hidden}, false);
  if (!c.tied_embeddings) set(lm_head_, "lm_head.weight", {c.vocab, c.hidden}, true);
  L_.assign(size_t(c.layers), LayerWeights{});
  for (int l = 0; l < c.layers; l++) {
    std::string pre = "model.layers." + std::to_string(l) + ".";
    LayerWeights& w = L_[l];
    set(w.in_norm, pre + "input_layernorm.weight", {c.hidden}, false);
    set(w.post_norm, pre + "post_attention_layernorm.weight", {c.hidden}, false);
    if (c.qk_norm) {
      set(w.q_norm, pre + "self_attn.q_norm.weight", {c.head_dim}, false);
      set(w.k_norm, pre + "self_attn.k_norm.weight", {c.head_dim}, false);
    }
    for (int t = 0; t < NUM_TARGETS; t++) {
      int in, out;
      target_dims(c, t, in, out);
      std::string mod = pre + (t <= O ? "self_attn." : "mlp.") + kModuleNames[t];
      set(w.W[t], mod + ".weight", {out, in}, true);
      bool bias = (t <= V && c.qkv_bias) || (t == O && c.o_bias) || (t >= GATE && c.mlp_bias);
      if (bias) set(w.bias[t], mod + ".bias", {out}, false);
    }
  }
}

std::vector<Param*> Model::all_base_params() {
  std::vector<Param*> out{&embed_};
  for (auto& w : L_) {
    out.push_back(&w.in_norm);
    if (!w.q_norm.shape.empty()) {
      out.push_back(&w.q_norm);
      out.push_back(&w.k_norm);
    }
    for (int t = 0; t < NUM_TARGETS; t++) {
      out.push_back(&w.W[t]);
      if (!w.bias[t].shape.empty()) out.push_back(&w.bias[t]);
    }
    out.push_back(&w.post_norm);
  }
  out.push_back(&final_norm_);
  if (!lm_head_.shape.empty()) out.push_back(&lm_head_);
  return out;
}

std::unique_ptr<Model> Model::load(const std::string& dir, int threads) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = parse_config(dir + "/config.json");
  m->threads_ = std::max(1, threads);
  Checkpoint ck(dir);
  m->init_params(false);
  if (m->cfg_.dtype.empty()) m->cfg_.dtype = ck.first_dtype();
  // Some checkpoints omit tie_word_embeddings yet have no lm_head: follow the checkpoint.
  if (!m->cfg_.tied_embeddings && !ck.has("lm_head.weight")) {
    throw std::runtime_error(dir + "/model.safetensors: missing tensor 'lm_head.weight' (config.json has tie_word_embeddings=false)");
  }
  const auto embed_info = ck.info("model.embed_tokens.weight");
  if (embed_info && embed_info->shape.size() == 2 && embed_info->shape[0] != m->cfg_.vocab)
    throw std::runtime_error(dir + ": tensor 'model.embed_tokens.weight' has shape " + shape_str(embed_info->shape) +
                             " but config.json has vocab_size " + std::to_string(m->cfg_.vocab));
  int64_t count = 0;
  for (Param* p : m->all_base_params()) {
    p->w = ck.load(p->name, p->shape);
    count += int64_t(p->w.size());
  }
  m->cfg_.parameters = count;
  return m;
}

std::unique_ptr<Model> Model::random(const ModelConfig& cfg, uint64_t seed, float scale) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = cfg;
  m->init_params(true);
  int64_t count = 0;
  uint64_t k = 0;
  for (Param* p : m->all_base_params()) {
    bool norm = p->shape.size() == 1 && p->name.find("bias") == std::string::npos;
    for (auto& x : p->w) {
      float r = hash_uniform(seed, k++) * 2.0f - 1.0f;
      x = norm ? 1.0f + 0.1f * r : scale * r;
    }
    count += int64_t(p->w.size());
  }
  m->cfg_.parameters = count;
  if (m->cfg_.dtype.empty()) m->cfg_.dtype = "float32";
  return m;
}

// ------------------------------------------------------------------ LoRA and trainable set
float Model::lora_scale() const {
  return float(lora_.rslora ? lora_.alpha / std::sqrt(double(lora_.rank)) : lora_.alpha / lora_.rank);
}

void Model::add_lora(const LoraOptions& o) {
  if (o.rank < 1) throw std::runtime_error("LoRA rank must be at least 1");
  if (!(o.dropout >= 0 && o.dropout < 1)) throw std::runtime_error("LoRA dropout must be in [0, 1)");
  bool any = false;
  for (int t = 0; t < NUM_TARGETS; t++) any = any || o.targets[t];
  if (!any) throw std::runtime_error("LoRA needs at least one target module");
  lora_ = o;
  lora_on_ = true;
  for (int l = 0; l < cfg_.layers; l++) {
    for (int t = 0; t < NUM_TARGETS; t++) {
      Param& A = L_[l].A[t];
      Param& B = L_[l].B[t];
      A = Param{};
      B = Param{};
      if (!o.targets[t]) continue;
      int in, out;
      target_dims(cfg_, t, in, out);
      std::string mod = "base_model.model.model.layers." + std::to_string(l) + (t <= O ? ".self_attn." : ".mlp.") + kModuleNames[t];
      A.name = mod + ".lora_A.weight";
      A.shape = {o.rank, in};
      B.name = mod + ".lora_B.weight";
      B.shape = {out, o.rank};
      // PEFT init: kaiming_uniform(a=sqrt(5)) on A gives U(-1/sqrt(in), 1/sqrt(in)); B = 0.
      A.w.resize(size_t(o.rank) * in);
      float bound = 1.0f / std::sqrt(float(in));
      uint64_t s = mix_seed(o.seed, uint64_t(l) * NUM_TARGETS + t);
      for (size_t i = 0; i < A.w.size(); i++) A.w[i] = (hash_uniform(s, i) * 2.0f - 1.0f) * bound;
      B.w.assign(size_t(out) * o.rank, 0.0f);
    }
  }
  alloc_grads();
  step_ = 0;
  train_state_valid_ = false;  // buffers stay for the next pass to reuse
}

void Model::set_trainable(bool full) {
  full_ = full;
  if (full) drop_packed_weights();  // the weights will change
  if (!full) {
    for (Param* p : all_base_params()) {
      p->grad.clear(); p->grad.shrink_to_fit();
      p->m.clear(); p->m.shrink_to_fit();
      p->v.clear(); p->v.shrink_to_fit();
    }
  }
  alloc_grads();
  step_ = 0;
  train_state_valid_ = false;  // buffers stay for the next pass to reuse
}

void Model::alloc_grads() {
  for (Param* p : trainable()) {
    if (p->grad.size() != p->w.size()) p->grad.assign(p->w.size(), 0.0f);
    if (p->m.size() != p->w.size()) p->m.assign(p->w.size(), 0.0f);
    if (p->v.size() != p->w.size()) p->v.assign(p->w.size(), 0.0f);
  }
}

void Model::set_weight_packing(Packing p) {
  packing_ = p;
  drop_packed_weights();  // made again, if wanted, by the next pass
}

void Model::drop_packed_weights() {
  for (auto& w : L_)
    for (auto& p : w.Wp) p.reset();
  head_packed_.reset();
  packed_ = false;
}

size_t Model::packed_bytes() const {
  size_t n = head_packed_ ? head_packed_->bytes() : 0;
  for (auto& w : L_)
    for (auto& p : w.Wp) n += p ? p->bytes() : 0;
  return n;
}

// Packs every frozen matrix that is multiplied untransposed; any the library declines stays on
// gemm(). Full fine-tuning changes the weights, so nothing is packed then.
void Model::pack_weights() {
  if (packed_ || full_ || packing_ == Packing::Off) return;
  packed_ = true;  // also when nothing could be packed: the decision holds until the weights change
  const ModelConfig& c = cfg_;
  int64_t frozen = int64_t(c.vocab) * c.hidden;
  for (int t = 0; t < NUM_TARGETS; t++) {
    int in, out;
    target_dims(c, t, in, out);
    frozen += int64_t(c.layers) * in * out;
  }
  double physical = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
  if (packing_ == Packing::Auto && !(physical > 0 && 4.0 * double(frozen) <= physical / 8)) return;
  for (auto& w : L_)
    for (int t = 0; t < NUM_TARGETS; t++) {
      int in, out;
      target_dims(c, t, in, out);
      w.Wp[t] = PackedMatrix::pack(w.W[t].w.data(), out, in);
    }
  head_packed_ = PackedHead::pack(c.tied_embeddings ? embed_.w.data() : lm_head_.w.data(), c.vocab, c.hidden);
}

std::vector<Param*> Model::trainable() {
  std::vector<Param*> out;
  if (full_) out = all_base_params();
  if (lora_on_)
    for (auto& w : L_)
      for (int t = 0; t < NUM_TARGETS; t++)
        if (!w.A[t].empty()) {
          out.push_back(&w.A[t]);
          out.push_back(&w.B[t]);
        }
  return out;
}

std::vector<const Param*> Model::trainable() const {
  auto v = const_cast<Model*>(this)->trainable();
  return std::vector<const Param*>(v.begin(), v.end());
}

// ------------------------------------------------------------------ forward / backward
struct Model::Pass {
  int B = 0, T = 0, N = 0;
  std::vector<int32_t> start, len, pos, ids;  // packed
  std::vector<float> cos, sin;                 // [maxlen, D/2]
  bool adapters = false, train = false;
  uint64_t dropout_seed = 0;
};

// Backward scratch of one layer, reused across layers and calls.
struct LayerGrads {
  std::vector<float> dh, dg, du, dxn, datt, dq, dk, dv, dqr, dkr;
};

// Everything one pass needs, kept between calls so that buffers are reused instead of being
// allocated (and page-faulted and zeroed) again on every step.
struct Model::TrainState {
  Pass pass;
  std::vector<float> x, x2;                 // residual stream ping-pong [N,C]
  LayerGrads grads;
  std::vector<float> dlp, dhead, dhx, dx;   // backward of the head and the residual stream
  std::vector<LayerActs> acts;              // one per layer, or one scratch with checkpointing
  std::vector<std::vector<float>> inputs;   // layer inputs (checkpointing only)
  std::vector<int32_t> sel_rows, sel_pos, targets;
  std::vector<float> hsel_x, hsel, rstd_f, lse;
  std::vector<float> ew;  // [M,C] expected head rows when the head is frozen
  bool checkpointing = false;
};

static void build_rope(const ModelConfig& c, int maxlen, std::vector<float>& cos, std::vector<float>& sin) {
  int half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) {
    // as transformers: computed in float32
    float e = float(2 * i) / float(c.head_dim);
    inv[i] = 1.0f / float(std::pow(c.rope_theta, double(e)));
  }
  if (c.rope_factor > 0) {  // llama3
    double low_wl = c.rope_orig_ctx / c.rope_low, high_wl = c.rope_orig_ctx / c.rope_high;
    for (int i = 0; i < half; i++) {
      double f = inv[i], wl = 2 * M_PI / f;
      double scaled = wl > low_wl ? f / c.rope_factor : f;
      if (!(wl < high_wl) && !(wl > low_wl)) {
        double smooth = (c.rope_orig_ctx / wl - c.rope_low) / (c.rope_high - c.rope_low);
        scaled = (1 - smooth) * scaled / c.rope_factor + smooth * scaled;
      }
      inv[i] = float(scaled);
    }
  }
  cos.resize(size_t(maxlen) * half);
  sin.resize(size_t(maxlen) * half);
  for (int t = 0; t < maxlen; t++)
    for (int i = 0; i < half; i++) {
      float f = inv[i] * float(t);
      cos[size_t(t) * half + i] = float(std::cos(double(f)));
      sin[size_t(t) * half + i] = float(std::sin(double(f)));
    }
}

void Model::layer_forward(int l, const float* x_in, float* x_out, LayerActs& a, const Pass& p) {
  const ModelConfig& c = cfg_;
  LayerWeights& w = L_[l];
  int N = p.N, C = c.hidden, Hq = c.heads, Hk = c.kv_heads, D = c.head_dim, I = c.intermediate;
  size_t nC = size_t(N) * C, nq = size_t(N) * Hq * D, nk = size_t(N) * Hk * D, nI = size_t(N) * I;
  a.x_in.resize(nC);
  copy_floats(a.x_in.data(), x_in, nC);
  a.xn1.resize(nC); a.rstd1.resize(N);
  a.q.resize(nq); a.k.resize(nk); a.v.resize(nk);
  a.att.resize(nq); a.lse.resize(size_t(N) * Hq);
  a.x_mid.resize(nC); a.xn2.resize(nC); a.rstd2.resize(N);
  a.g.resize(nI); a.u.resize(nI); a.h.resize(nI);

  // The LoRA branch writes y first; the base GEMM then adds itself (beta = 1) instead of
  // writing y and having the branch read it back.
  auto proj = [&](int t, const float* x, float* y) {
    int in, out;
    target_dims(c, t, in, out);
    bool lora = p.adapters && lora_on_ && !w.A[t].empty();
    if (lora) {
      a.ax[t].resize(size_t(N) * lora_.rank);
      lora_forward(y, a.ax[t].data(), x, w.A[t].w.data(), w.B[t].w.data(), lora_scale(), N, in, out, lora_.rank,
                   p.train ? float(lora_.dropout) : 0.0f, mix_seed(p.dropout_seed, uint64_t(l) * NUM_TARGETS + t), false);
    }
    linear_forward(y, x, w.W[t].w.data(), w.bias[t].empty() ? nullptr : w.bias[t].w.data(), N, in, out, lora);
  };

  // Projections that share an input: their LoRA branches together, then the base GEMMs one by one.
  auto shared = [&](std::initializer_list<std::pair<int, float*>> ys, const float* x) {
    int ts[NUM_TARGETS], n = 0;
    for (auto& ty : ys)
      if (lora_shared_target(l, ty.first, p)) ts[n++] = ty.first;
    if (n >= 2) {
      float* y[NUM_TARGETS];
      const float *A[NUM_TARGETS], *B[NUM_TARGETS];
      int outs[NUM_TARGETS], in = 0;
      for (int i = 0; i < n; i++) {
        for (auto& ty : ys)
          if (ty.first == ts[i]) y[i] = ty.second;
        target_dims(c, ts[i], in, outs[i]);
        A[i] = w.A[ts[i]].w.data();
        B[i] = w.B[ts[i]].w.data();
      }
      a.ax[ts[0]].resize(size_t(N) * n * lora_.rank);  // stacked, kept by the first of the group
      lora_forward_shared(n, y, outs, a.ax[ts[0]].data(), x, A, B, lora_scale(), N, in, lora_.rank, false);
    }
    for (auto& ty : ys) {
      bool grouped = n >= 2 && lora_shared_target(l, ty.first, p);
      if (!grouped) {
        proj(ty.first, x, ty.second);
        continue;
      }
      int in, out;
      target_dims(c, ty.first, in, out);
      linear_forward(ty.second, x, w.W[ty.first].w.data(), w.bias[ty.first].empty() ? nullptr : w.bias[ty.first].w.data(), N,
                     in, out, true);
    }
  };

  rmsnorm_forward(a.xn1.data(), a.rstd1.data(), a.x_in.data(), w.in_norm.w.data(), N, C, float(c.rms_eps));
  if (c.qk_norm) {
    a.qraw.resize(nq); a.kraw.resize(nk);
    a.rstdq.resize(size_t(N) * Hq); a.rstdk.resize(size_t(N) * Hk);
    shared({{Q, a.qraw.data()}, {K, a.kraw.data()}, {V, a.v.data()}}, a.xn1.data());
    rmsnorm_forward(a.q.data(), a.rstdq.data(), a.qraw.data(), w.q_norm.w.data(), N * Hq, D, float(c.rms_eps));
    rmsnorm_forward(a.k.data(), a.rstdk.data(), a.kraw.data(), w.k_norm.w.data(), N * Hk, D, float(c.rms_eps));
  } else {
    shared({{Q, a.q.data()}, {K, a.k.data()}, {V, a.v.data()}}, a.xn1.data());
  }
  rope_forward(a.q.data(), p.cos.data(), p.sin.data(), p.pos.data(), N, Hq, D);
  rope_forward(a.k.data(), p.cos.data(), p.sin.data(), p.pos.data(), N, Hk, D);
  attention_forward(a.att.data(), a.lse.data(), a.q.data(), a.k.data(), a.v.data(), p.start.data(), p.len.data(), p.B, Hq, Hk, D);
  proj(O, a.att.data(), a.x_mid.data());
  add_inplace(a.x_mid.data(), a.x_in.data(), nC);
  rmsnorm_forward(a.xn2.data(), a.rstd2.data(), a.x_mid.data(), w.post_norm.w.data(), N, C, float(c.rms_eps));
  shared({{GATE, a.g.data()}, {UP, a.u.data()}}, a.xn2.data());
  swiglu_forward(a.h.data(), a.g.data(), a.u.data(), nI);
  proj(DOWN, a.h.data(), x_out);
  add_inplace(x_out, a.x_mid.data(), nC);
}

// A projection whose LoRA branch may run stacked with the others reading the same input: it has
// an adapter in this pass and no dropout (dropout masks differ per projection).
bool Model::lora_shared_target(int l, int t, const Pass& p) const {
  return p.adapters && lora_on_ && !L_[l].A[t].empty() && !(p.train && lora_.dropout > 0);
}

static float* grad_of(Param& p, bool on) { return on && !p.grad.empty() ? p.grad.data() : nullptr; }

static void zeros(std::vector<float>& v, size_t n) {
  v.resize(n);
  fill_zero(v.data(), n);
}

void Model::layer_backward(int l, float* dx, LayerActs& a, LayerGrads& gr, const Pass& p) {
  const ModelConfig& c = cfg_;
  LayerWeights& w = L_[l];
  int N = p.N, C = c.hidden, Hq = c.heads, Hk = c.kv_heads, D = c.head_dim, I = c.intermediate;
  size_t nC = size_t(N) * C, nq = size_t(N) * Hq * D, nk = size_t(N) * Hk * D, nI = size_t(N) * I;
  bool full = full_;

  // `fresh` says dxin holds nothing yet: its first writer overwrites it (the LoRA branch when
  // there is one, then the base GEMM adds itself), so no pass zeroes it beforehand.
  auto bproj = [&](int t, const float* dy, const float* x, float* dxin, bool& fresh) {
    int in, out;
    target_dims(c, t, in, out);
    if (p.adapters && lora_on_ && !w.A[t].empty()) {
      lora_backward(dxin, grad_of(w.A[t], true), grad_of(w.B[t], true), dy, x, a.ax[t].data(), w.A[t].w.data(),
                    w.B[t].w.data(), lora_scale(), N, in, out, lora_.rank, p.train ? float(lora_.dropout) : 0.0f,
                    mix_seed(p.dropout_seed, uint64_t(l) * NUM_TARGETS + t), !fresh);
      fresh = fresh && !dxin;
    }
    linear_backward(dxin, grad_of(w.W[t], full), w.bias[t].empty() ? nullptr : grad_of(w.bias[t], full), dy, x,
                    w.W[t].w.data(), N, in, out, !fresh, w.Wp[t].get());
    fresh = fresh && !dxin;
  };

  // Backward of projections sharing an input: LoRA branches together, then base GEMMs one by one.
  auto bshared = [&](std::initializer_list<std::pair<int, const float*>> dys, const float* x, float* dxin) {
    bool fresh = true;
    int ts[NUM_TARGETS], n = 0;
    for (auto& td : dys)
      if (lora_shared_target(l, td.first, p)) ts[n++] = td.first;
    if (n >= 2) {
      const float* dy[NUM_TARGETS];
      float *dA[NUM_TARGETS], *dB[NUM_TARGETS];
      const float *A[NUM_TARGETS], *B[NUM_TARGETS];
      int outs[NUM_TARGETS], in = 0;
      for (int i = 0; i < n; i++) {
        for (auto& td : dys)
          if (td.first == ts[i]) dy[i] = td.second;
        target_dims(c, ts[i], in, outs[i]);
        A[i] = w.A[ts[i]].w.data();
        B[i] = w.B[ts[i]].w.data();
        dA[i] = grad_of(w.A[ts[i]], true);
        dB[i] = grad_of(w.B[ts[i]], true);
      }
      lora_backward_shared(n, dxin, dA, dB, dy, outs, x, a.ax[ts[0]].data(), A, B, lora_scale(), N, in, lora_.rank, false);
      fresh = !dxin;
    }
    for (auto& td : dys) {
      bool grouped = n >= 2 && lora_shared_target(l, td.first, p);
      if (!grouped) {
        bproj(td.first, td.second, x, dxin, fresh);
        continue;
      }
      int in, out;
      target_dims(c, td.first, in, out);
      linear_backward(dxin, grad_of(w.W[td.first], full), w.bias[td.first].empty() ? nullptr : grad_of(w.bias[td.first], full),
                      td.second, x, w.W[td.first].w.data(), N, in, out, !fresh, w.Wp[td.first].get());
      fresh = fresh && !dxin;
    }
  };

  // MLP: x_out = x_mid + down(silu(gate(xn2)) * up(xn2))
  std::vector<float>&dh = gr.dh, &dg = gr.dg, &du = gr.du, &dxn = gr.dxn, &datt = gr.datt, &dq = gr.dq, &dk = gr.dk, &dv = gr.dv;
  dh.resize(nI);
  dxn.resize(nC);
  dg.resize(nI);
  du.resize(nI);
  bool fresh = true;
  bproj(DOWN, dx, a.h.data(), dh.data(), fresh);
  swiglu_backward(dg.data(), du.data(), dh.data(), a.g.data(), a.u.data(), nI);
  bshared({{GATE, dg.data()}, {UP, du.data()}}, a.xn2.data(), dxn.data());
  rmsnorm_backward(dx, grad_of(w.post_norm, full), dxn.data(), a.x_mid.data(), w.post_norm.w.data(), a.rstd2.data(), N, C);
  // attention: x_mid = x_in + o(attn(rope(q), rope(k), v))
  datt.resize(nq);
  dq.resize(nq);
  dk.resize(nk);
  dv.resize(nk);
  fresh = true;
  bproj(O, dx, a.att.data(), datt.data(), fresh);
  attention_backward(dq.data(), dk.data(), dv.data(), datt.data(), a.att.data(), a.lse.data(), a.q.data(), a.k.data(),
                     a.v.data(), p.start.data(), p.len.data(), p.B, Hq, Hk, D);
  rope_backward(dq.data(), p.cos.data(), p.sin.data(), p.pos.data(), N, Hq, D);
  rope_backward(dk.data(), p.cos.data(), p.sin.data(), p.pos.data(), N, Hk, D);
  if (c.qk_norm) {
    std::vector<float>&dqr = gr.dqr, &dkr = gr.dkr;
    zeros(dqr, nq);
    zeros(dkr, nk);
    rmsnorm_backward(dqr.data(), grad_of(w.q_norm, full), dq.data(), a.qraw.data(), w.q_norm.w.data(), a.rstdq.data(), N * Hq, D);
    rmsnorm_backward(dkr.data(), grad_of(w.k_norm, full), dk.data(), a.kraw.data(), w.k_norm.w.data(), a.rstdk.data(), N * Hk, D);
    dq.swap(dqr);
    dk.swap(dkr);
  }
  // The first layer's input gradient only feeds the embedding: skip it when that is frozen.
  bool need_dx = full || l > 0;
  bshared({{Q, dq.data()}, {K, dk.data()}, {V, dv.data()}}, a.xn1.data(), need_dx ? dxn.data() : nullptr);
  if (need_dx)
    rmsnorm_backward(dx, grad_of(w.in_norm, full), dxn.data(), a.x_in.data(), w.in_norm.w.data(), a.rstd1.data(), N, C);
}

std::vector<float> Model::logps(const BatchIn& b, bool adapters, bool train, uint64_t dropout_seed) {
  const ModelConfig& c = cfg_;
  set_threads(threads_);
  if (b.batch <= 0 || b.seq_len <= 0) throw std::runtime_error("batch: batch and seqLen must be positive");
  size_t BT = size_t(b.batch) * b.seq_len;
  if (b.ids.size() != BT) throw std::runtime_error("batch: ids has " + std::to_string(b.ids.size()) + " entries, expected batch*seqLen = " + std::to_string(BT));
  if (b.mask.size() != BT) throw std::runtime_error("batch: mask has " + std::to_string(b.mask.size()) + " entries, expected batch*seqLen = " + std::to_string(BT));
  if (b.lengths.size() != size_t(b.batch)) throw std::runtime_error("batch: lengths has " + std::to_string(b.lengths.size()) + " entries, expected batch = " + std::to_string(b.batch));
  if (adapters && !lora_on_) adapters = false;  // no adapter attached: the base model is the policy

  // A training pass reuses (and replaces) the saved one; other passes have their own buffers
  // so that a reference pass between logps(train) and backward leaves the saved one intact.
  std::shared_ptr<TrainState> ts;
  if (train) {
    ts = ts_ ? ts_ : std::make_shared<TrainState>();
    train_state_valid_ = false;
  } else {
    if (!infer_ts_) infer_ts_ = std::make_shared<TrainState>();
    ts = infer_ts_;
  }
  Pass& p = ts->pass;
  p.N = 0;
  p.start.clear();
  p.len.clear();
  p.pos.clear();
  p.ids.clear();
  ts->sel_rows.clear();
  ts->sel_pos.clear();
  ts->targets.clear();
  p.B = b.batch;
  p.T = b.seq_len;
  p.adapters = adapters;
  p.train = train;
  p.dropout_seed = dropout_seed;
  int maxlen = 1;
  for (int r = 0; r < b.batch; r++) {
    int len = b.lengths[r];
    if (len < 0 || len > b.seq_len)
      throw std::runtime_error("batch: lengths[" + std::to_string(r) + "] = " + std::to_string(len) + " is outside [0, seqLen=" + std::to_string(b.seq_len) + "]");
    p.start.push_back(p.N);
    p.len.push_back(len);
    for (int t = 0; t < b.seq_len; t++) {
      size_t i = size_t(r) * b.seq_len + t;
      if (t < len) {
        int id = b.ids[i];
        if (id < 0 || id >= c.vocab)
          throw std::runtime_error("batch: ids[" + std::to_string(r) + "," + std::to_string(t) + "] = " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocab) + ")");
        p.ids.push_back(id);
        p.pos.push_back(t);
      }
      if (b.mask[i] && (t == 0 || t >= len))
        throw std::runtime_error("batch: mask[" + std::to_string(r) + "," + std::to_string(t) + "] is 1 at " + (t == 0 ? "position 0 (no previous token predicts it)" : "padding (t >= length " + std::to_string(len) + ")"));
      if (b.mask[i]) {
        ts->sel_rows.push_back(p.start.back() + t - 1);
        ts->sel_pos.push_back(int32_t(i));
        ts->targets.push_back(b.ids[i]);
      }
    }
    p.N += len;
    maxlen = std::max(maxlen, len);
  }
  build_rope(c, maxlen, p.cos, p.sin);
  pack_weights();
  int N = p.N, C = c.hidden, M = int(ts->sel_rows.size());

  std::vector<float>&x = ts->x, &x2 = ts->x2;
  x.resize(size_t(N) * C);
  x2.resize(size_t(N) * C);
  embedding_forward(x.data(), p.ids.data(), embed_.w.data(), N, C);
  ts->checkpointing = train && checkpointing_;
  bool keep_all = train && !checkpointing_;
  ts->acts.resize(keep_all ? size_t(c.layers) : 1);
  if (ts->checkpointing) ts->inputs.resize(size_t(c.layers));
  for (int l = 0; l < c.layers; l++) {
    check_cancel();
    if (ts->checkpointing) ts->inputs[l] = x;
    layer_forward(l, x.data(), x2.data(), ts->acts[keep_all ? l : 0], p);
    x.swap(x2);
  }
  // Final norm and log-probs only on the M rows that predict a masked-in token.
  ts->hsel_x.resize(size_t(M) * C);
  ts->hsel.resize(size_t(M) * C);
  ts->rstd_f.resize(M);
  ts->lse.resize(M);
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) memcpy(&ts->hsel_x[size_t(m) * C], &x[size_t(ts->sel_rows[m]) * C], sizeof(float) * C);
  rmsnorm_forward(ts->hsel.data(), ts->rstd_f.data(), ts->hsel_x.data(), final_norm_.w.data(), M, C, float(c.rms_eps));
  check_cancel();
  std::vector<float> lp_sel(M);
  const float* head = c.tied_embeddings ? embed_.w.data() : lm_head_.w.data();
  // A frozen head (LoRA training) gets the expected head row now, so backward never
  // recomputes logits; a trained head needs dlogits for its own gradient and recomputes them.
  bool head_trained = full_;
  if (train && !head_trained) ts->ew.resize(size_t(M) * C);
  else ts->ew.clear();
  logprob_forward(lp_sel.data(), ts->lse.data(), ts->ew.empty() ? nullptr : ts->ew.data(), ts->hsel.data(), head,
                  ts->targets.data(), M, C, c.vocab, &head_scratch_, full_ ? nullptr : head_packed_.get());
  std::vector<float> out(BT, 0.0f);
  for (int m = 0; m < M; m++) out[ts->sel_pos[m]] = lp_sel[m];
  if (train) {
    ts_ = ts;
    train_state_valid_ = true;
  }
  return out;
}

void Model::backward(const std::vector<float>& dlogps) {
  if (!ts_ || !train_state_valid_)
    throw std::runtime_error("backward: no train=true logps call since the last weight change");
  if (!full_ && !lora_on_)
    throw std::runtime_error("backward: nothing is trainable (add or load a LoRA adapter, or setTrainable('full'))");
  set_threads(threads_);
  TrainState& ts = *ts_;
  const Pass& p = ts.pass;
  const ModelConfig& c = cfg_;
  if (dlogps.size() != size_t(p.B) * p.T)
    throw std::runtime_error("backward: gradLogps has " + std::to_string(dlogps.size()) + " entries, expected batch*seqLen = " + std::to_string(size_t(p.B) * p.T));
  int N = p.N, C = c.hidden, M = int(ts.sel_rows.size());
  std::vector<float>& dlp = ts.dlp;
  dlp.resize(M);
  for (int m = 0; m < M; m++) {
    dlp[m] = dlogps[ts.sel_pos[m]];
    if (!std::isfinite(dlp[m])) throw std::runtime_error("backward: gradLogps[" + std::to_string(ts.sel_pos[m]) + "] is not finite");
  }
  std::vector<float>&dh = ts.dhead, &dhx = ts.dhx;
  zeros(dh, size_t(M) * C);
  zeros(dhx, size_t(M) * C);
  Param& head = c.tied_embeddings ? embed_ : lm_head_;
  if (!ts.ew.empty())
    logprob_backward_expected(dh.data(), dlp.data(), ts.ew.data(), head.w.data(), ts.targets.data(), M, C);
  else
    logprob_backward(dh.data(), grad_of(head, full_), dlp.data(), ts.hsel.data(), head.w.data(), ts.targets.data(), ts.lse.data(), M, C, c.vocab, &head_scratch_);
  rmsnorm_backward(dhx.data(), grad_of(final_norm_, full_), dh.data(), ts.hsel_x.data(), final_norm_.w.data(), ts.rstd_f.data(), M, C);
  std::vector<float>& dx = ts.dx;
  zeros(dx, size_t(N) * C);
  // Each selected row is a distinct position, so rows can be added in parallel.
#pragma omp parallel for schedule(static)
  for (int m = 0; m < M; m++) row_axpy(&dx[size_t(ts.sel_rows[m]) * C], &dhx[size_t(m) * C], C, 1.0f);
  std::vector<float>& scratch_out = ts.x2;
  for (int l = c.layers - 1; l >= 0; l--) {
    check_cancel();
    if (ts.checkpointing) {
      scratch_out.resize(size_t(N) * C);
      layer_forward(l, ts.inputs[l].data(), scratch_out.data(), ts.acts[0], p);
      layer_backward(l, dx.data(), ts.acts[0], ts.grads, p);
    } else {
      layer_backward(l, dx.data(), ts.acts[l], ts.grads, p);
    }
  }
  if (full_) embedding_backward(embed_.grad.data(), dx.data(), p.ids.data(), N, C);
}

void Model::zero_grad() {
  for (Param* p : trainable()) std::fill(p->grad.begin(), p->grad.end(), 0.0f);
}

double Model::grad_norm() const {
  double ss = 0;
  for (const Param* p : trainable())
    for (float g : p->grad) ss += double(g) * g;
  return std::sqrt(ss);
}

double Model::optimizer_step(const OptimizerOptions& o) {
  set_threads(threads_);
  std::vector<Param*> ps = trainable();
  if (ps.empty()) throw std::runtime_error("optimizerStep: nothing is trainable (add or load a LoRA adapter, or setTrainable('full'))");
  double norm = grad_norm();
  // A non-finite norm would poison every weight: leave weights and moments as they are and let
  // the caller see the norm and decide (skip the batch, stop the run).
  if (!std::isfinite(norm)) return norm;
  float clip = 1.0f;
  if (o.max_grad_norm > 0) {
    double coef = o.max_grad_norm / (norm + 1e-6);
    if (coef < 1) clip = float(coef);
  }
  step_++;
  double bc1 = 1 - std::pow(o.beta1, double(step_)), bc2 = 1 - std::pow(o.beta2, double(step_));
  float b1 = float(o.beta1), b2 = float(o.beta2), lr = float(o.lr), eps = float(o.eps);
  float step_size = float(o.lr / bc1), bc2_sqrt = float(std::sqrt(bc2));
  for (Param* p : ps) {
    float decay = p->decay ? 1.0f - lr * float(o.weight_decay) : 1.0f;
    float* w = p->w.data();
    float* g = p->grad.data();
    float* m = p->m.data();
    float* v = p->v.data();
    int64_t n = int64_t(p->w.size());
    const size_t kc = 1 << 14;
#pragma omp parallel for schedule(static)
    for (int64_t c0 = 0; c0 < (n + int64_t(kc) - 1) / int64_t(kc); c0++) {
      size_t i = size_t(c0) * kc;
      chunk_adamw(w + i, g + i, m + i, v + i, std::min(kc, size_t(n) - i), clip, b1, b2, decay, step_size, bc2_sqrt, eps);
    }
  }
  train_state_valid_ = false;  // buffers stay for the next pass to reuse
  return norm;
}

}  // namespace tb
