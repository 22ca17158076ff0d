// The model's weights: names and shapes, loading, random test weights, LoRA, the trainable set
// and the packing policy of the frozen matrices.
#include <algorithm>
#include <cmath>
#include <map>
#include <stdexcept>

#include "facts.h"
#include "model.h"
#include "passes.h"
#include "platform.h"
#include "random.h"
#include "safetensors.h"

namespace tb {

int64_t Param::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void Model::upload(Buffer& dst, const std::vector<float>& src) {
  if (dst.backend() != be_.get() || dst.dtype() != DType::F32) dst.bind(*be_, DType::F32);
  dst.resize(src.size());
  upload_floats(dst, src.data());
}

void Model::init_params(bool allocate) {
  const ModelConfig& c = cfg_;
  auto set = [&](Param& p, const std::string& name, std::vector<int64_t> shape, bool decay) {
    p.name = name;
    p.shape = std::move(shape);
    p.decay = decay;
    for (Buffer* b : {&p.w, &p.grad, &p.m, &p.v}) b->bind(*be_, DType::F32);
    if (allocate) p.w.resize(size_t(p.numel()));
  };
  set(embed_, "model.embed_tokens.weight", {c.vocab, c.hidden}, true);
  set(final_norm_, "model.norm.weight", {c.hidden}, false);
  if (!c.tied_embeddings) set(lm_head_, "lm_head.weight", {c.vocab, c.hidden}, true);
  L_.clear();
  L_.resize(size_t(c.layers));
  for (int l = 0; l < c.layers; l++) {
    std::string pre = "model.layers." + std::to_string(l) + ".";
    LayerWeights& w = L_[l];
    set(w.in_norm, pre + "input_layernorm.weight", {c.hidden}, false);
    set(w.post_norm, pre + "post_attention_layernorm.weight", {c.hidden}, false);
    if (c.qk_norm) {
      set(w.q_norm, pre + "self_attn.q_norm.weight", {c.head_dim}, false);
      set(w.k_norm, pre + "self_attn.k_norm.weight", {c.head_dim}, false);
    }
    bool sparse = c.sparse_layer(l);
    for (int t = 0; t < NUM_TARGETS; t++) {
      if (sparse && t >= GATE) break;
      int in, out;
      target_dims(c, t, in, out);
      std::string mod = pre + (t <= O ? "self_attn." : "mlp.") + kModuleNames[t];
      set(w.W[t], mod + ".weight", {out, in}, true);
      bool bias = (t <= V && c.qkv_bias) || (t == O && c.o_bias) || (t >= GATE && c.mlp_bias);
      if (bias) set(w.bias[t], mod + ".bias", {out}, false);
    }
    if (!sparse) continue;
    set(w.router, pre + "mlp.gate.weight", {c.experts, c.hidden}, true);
    w.experts.resize(size_t(c.experts));
    for (int e = 0; e < c.experts; e++)
      for (int t = GATE; t <= DOWN; t++) {
        int in, out;
        target_dims(c, t, in, out, true);
        set(w.experts[size_t(e)].W[t], pre + "mlp.experts." + std::to_string(e) + "." + kModuleNames[t] + ".weight", {out, in}, true);
        w.experts[size_t(e)].W[t].routed = true;
        w.experts[size_t(e)].W[t].touched = false;
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
      if (!w.W[t].shape.empty()) out.push_back(&w.W[t]);
      if (!w.bias[t].shape.empty()) out.push_back(&w.bias[t]);
    }
    out.push_back(&w.post_norm);
    if (!w.sparse()) continue;
    out.push_back(&w.router);
    for (auto& ex : w.experts)
      for (int t = GATE; t <= DOWN; t++) out.push_back(&ex.W[t]);
  }
  out.push_back(&final_norm_);
  if (!lm_head_.shape.empty()) out.push_back(&lm_head_);
  return out;
}

std::vector<Param*> Model::matrices() {
  std::vector<Param*> out{&embed_};
  for (auto& w : L_) {
    for (auto& p : w.W)
      if (!p.shape.empty()) out.push_back(&p);
    if (!w.sparse()) continue;
    out.push_back(&w.router);
    for (auto& ex : w.experts)
      for (int t = GATE; t <= DOWN; t++) out.push_back(&ex.W[t]);
  }
  if (!lm_head_.shape.empty()) out.push_back(&lm_head_);
  return out;
}

std::vector<LoraSite> Model::lora_sites() {
  std::vector<LoraSite> out;
  for (int l = 0; l < cfg_.layers; l++) {
    LayerWeights& w = L_[size_t(l)];
    std::string pre = "model.layers." + std::to_string(l) + ".";
    for (int t = 0; t < NUM_TARGETS; t++) {
      LoraSite s{l, t, -1, 0, 0, "", nullptr, nullptr, nullptr, nullptr};
      if (!w.W[t].shape.empty()) {
        target_dims(cfg_, t, s.in, s.out);
        s.module = pre + (t <= O ? "self_attn." : "mlp.") + kModuleNames[t];
        s.W = &w.W[t]; s.A = &w.A[t]; s.B = &w.B[t]; s.M = &w.M[t];
        out.push_back(s);
        continue;
      }
      for (int e = 0; e < int(w.experts.size()); e++) {
        ExpertWeights& ex = w.experts[size_t(e)];
        LoraSite x{l, t, e, 0, 0, pre + "mlp.experts." + std::to_string(e) + "." + kModuleNames[t], &ex.W[t], &ex.A[t], &ex.B[t], nullptr};
        target_dims(cfg_, t, x.in, x.out, true);
        out.push_back(x);
      }
    }
  }
  return out;
}

// A BF16 buffer of the backend holding bf16(src), rounded on the host (a device backend has no
// host pointer); what dst held before is released.
static void upload_bf16(Backend& be, Buffer& dst, const std::vector<float>& src) {
  std::vector<uint16_t> h(src.size());
  for (size_t i = 0; i < h.size(); i++) h[i] = f32_to_bf16(src[i]);
  dst.bind(be, DType::BF16);
  dst.resize(h.size());
  be.upload(dst.raw(), h.data(), dst.bytes());
}

static void convert_buffer(Backend& be, Buffer& b, DType to) {
  size_t n = b.size();
  if (b.dtype() == DType::F32 && to == DType::BF16) {
    std::vector<float> src(n);
    be.download(src.data(), b.raw(), b.bytes());
    upload_bf16(be, b, src);
  } else if (b.dtype() == DType::BF16 && to == DType::F32) {
    std::vector<uint16_t> src(n);
    be.download(src.data(), b.raw(), b.bytes());
    std::vector<float> dst(n);
    for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(src[i]);
    b.bind(be, DType::F32);
    b.resize(n);
    be.upload(b.raw(), dst.data(), b.bytes());
  } else {
    throw std::logic_error(std::string("no conversion from ") + dtype_name(b.dtype()) + " to " + dtype_name(to));
  }
}

void Model::set_weight_dtype(DType dt) {
  if (dt != DType::F32 && dt != DType::BF16) throw std::logic_error("weights are held in F32 or BF16");
  if (dt == weight_dtype_) return;
  drop_packed_weights();
  for (Param* p : matrices())
    if (p->w.dtype() != dt) convert_buffer(*be_, p->w, dt);
  weight_dtype_ = dt;
  train_state_valid_ = false;
}

// The experts of a checkpoint in transformers >= 5's fused layout: per sparse layer
// mlp.experts.gate_up_proj [E, 2I, C] (each expert's gate rows, then its up rows) and
// mlp.experts.down_proj [E, C, I], used when the per-expert tensors
// (mlp.experts.{e}.gate_proj.weight, ...) are absent.
class ExpertSlices {
 public:
  struct Slice {
    std::string tensor;
    std::vector<int64_t> shape;
    size_t offset;  // elements
  };
  ExpertSlices(const Checkpoint& ck, const ModelConfig& c, const std::string& dir) : ck_(ck) {
    int64_t E = c.experts, I = c.moe_intermediate, C = c.hidden;
    for (int l = 0; l < c.layers; l++) {
      if (!c.sparse_layer(l)) continue;
      std::string pre = "model.layers." + std::to_string(l) + ".mlp.experts.";
      if (ck.has(pre + "0.gate_proj.weight")) continue;
      if (!ck.has(pre + "gate_up_proj") || !ck.has(pre + "down_proj"))
        throw std::runtime_error(dir + ": missing tensor '" + pre + "0.gate_proj.weight' (or the fused '" + pre + "gate_up_proj' and '" +
                                 pre + "down_proj')");
      std::vector<int64_t> gu{E, 2 * I, C}, dn{E, C, I};
      for (int64_t e = 0; e < E; e++) {
        std::string ex = pre + std::to_string(e) + ".";
        slices_[ex + "gate_proj.weight"] = {pre + "gate_up_proj", gu, size_t(e * 2 * I * C)};
        slices_[ex + "up_proj.weight"] = {pre + "gate_up_proj", gu, size_t((e * 2 + 1) * I * C)};
        slices_[ex + "down_proj.weight"] = {pre + "down_proj", dn, size_t(e * C * I)};
      }
    }
  }
  const Slice* find(const std::string& name) const {
    auto it = slices_.find(name);
    return it == slices_.end() ? nullptr : &it->second;
  }
  // The whole fused tensor as f32, read once for all its experts.
  const std::vector<float>& values(const std::string& tensor, const std::vector<int64_t>& shape) {
    if (tensor != cached_name_) {
      cached_.clear();
      cached_.shrink_to_fit();
      cached_ = ck_.load(tensor, shape);
      cached_name_ = tensor;
    }
    return cached_;
  }

 private:
  const Checkpoint& ck_;
  std::map<std::string, Slice> slices_;
  std::string cached_name_;
  std::vector<float> cached_;
};

// Parameters a token uses: all but the experts the router does not choose.
static int64_t active_parameters(const ModelConfig& c, int64_t total) {
  int64_t expert = 3 * int64_t(c.hidden) * c.moe_intermediate, idle = 0;
  for (int l = 0; l < c.layers; l++)
    if (c.sparse_layer(l)) idle += int64_t(c.experts - c.experts_per_tok) * expert;
  return total - idle;
}

std::unique_ptr<Model> Model::load(const std::string& dir, int threads, Precision precision) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = parse_config(dir + "/config.json");
  m->be_ = make_cpu_backend(threads);
  auto ckp = std::make_shared<const Checkpoint>(dir);
  const Checkpoint& ck = *ckp;
  // The experts are allocated per layer from num_experts: the router's tensor vouches for it first.
  for (int l = 0; l < m->cfg_.layers; l++) {
    if (!m->cfg_.sparse_layer(l)) continue;
    std::string router = "model.layers." + std::to_string(l) + ".mlp.gate.weight";
    const TensorInfo* r = ck.info(router);
    if (!r) throw std::runtime_error(dir + "/model.safetensors: missing tensor '" + router + "' (the router of sparse layer " + std::to_string(l) + ")");
    if (r->shape != std::vector<int64_t>{m->cfg_.experts, m->cfg_.hidden})
      throw std::runtime_error(dir + ": tensor '" + router + "' has shape " + shape_str(r->shape) + " but config.json has num_experts " +
                               std::to_string(m->cfg_.experts) + " and hidden_size " + std::to_string(m->cfg_.hidden));
    break;
  }
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
  bool bf16 = precision == Precision::BF16;
  if (precision == Precision::Auto && !m->L_.empty()) {
    const TensorInfo* q = ck.info(m->L_[0].W[Q].name);
    bf16 = q && (q->dtype == DType::BF16 || q->dtype == DType::F16);
  }
  std::vector<Param*> mats = m->matrices();
  ExpertSlices fused(ck, m->cfg_, dir);
  int64_t count = 0;
  for (Param* p : m->all_base_params()) {
    count += p->numel();
    bool matrix = bf16 && std::find(mats.begin(), mats.end(), p) != mats.end();
    if (const ExpertSlices::Slice* f = fused.find(p->name)) {
      // A slice of a fused expert tensor: in place when BF16, else from its f32 copy.
      if (matrix)
        if (const uint16_t* d = ck.bf16_data(f->tensor, f->shape)) {
          p->w.borrow(*m->be_, DType::BF16, d + f->offset, size_t(p->numel()), ckp);
          continue;
        }
      const std::vector<float>& all = fused.values(f->tensor, f->shape);
      std::vector<float> part(all.begin() + ptrdiff_t(f->offset), all.begin() + ptrdiff_t(f->offset + size_t(p->numel())));
      if (matrix) upload_bf16(*m->be_, p->w, part);
      else m->upload(p->w, part);
      continue;
    }
    if (!matrix) {
      m->upload(p->w, ck.load(p->name, p->shape));
      continue;
    }
    // A BF16 tensor is used where it lies in the mapped file; others are rounded once.
    if (const uint16_t* d = ck.bf16_data(p->name, p->shape)) {
      p->w.borrow(*m->be_, DType::BF16, d, size_t(p->numel()), ckp);
      continue;
    }
    upload_bf16(*m->be_, p->w, ck.load(p->name, p->shape));
  }
  m->weight_dtype_ = bf16 ? DType::BF16 : DType::F32;
  m->cfg_.parameters = count;
  m->cfg_.active_parameters = active_parameters(m->cfg_, count);
  return m;
}

std::unique_ptr<Model> Model::random(const ModelConfig& cfg, uint64_t seed, float scale, int threads) {
  std::unique_ptr<Model> m(new Model());
  m->cfg_ = cfg;
  m->be_ = make_cpu_backend(threads);
  m->init_params(false);
  int64_t count = 0;
  uint64_t k = 0;
  for (Param* p : m->all_base_params()) {
    bool norm = p->shape.size() == 1 && p->name.find("bias") == std::string::npos;
    std::vector<float> w(size_t(p->numel()));
    for (auto& x : w) {
      float r = hash_uniform(seed, k++) * 2.0f - 1.0f;
      x = norm ? 1.0f + 0.1f * r : scale * r;
    }
    m->upload(p->w, w);
    count += int64_t(w.size());
  }
  m->cfg_.parameters = count;
  m->cfg_.active_parameters = active_parameters(m->cfg_, count);
  if (m->cfg_.dtype.empty()) m->cfg_.dtype = "float32";
  return m;
}

// ------------------------------------------------------------------ LoRA and trainable set
float Model::lora_scale() const {
  return float(lora_.rslora ? lora_.alpha / std::sqrt(double(lora_.rank)) : lora_.alpha / lora_.rank);
}

void Model::add_lora(const LoraOptions& o) {
  if (o.rank < 1) throw std::runtime_error("LoRA rank must be at least 1");
  if (!(o.dropout >= kLoraDropoutMin && o.dropout < kLoraDropoutMaxExclusive))
    throw std::runtime_error("LoRA dropout must be in [" + std::to_string(int(kLoraDropoutMin)) + ", " +
                             std::to_string(int(kLoraDropoutMaxExclusive)) + ")");
  bool any = false;
  for (int t = 0; t < NUM_TARGETS; t++) any = any || o.targets[t];
  if (!any) throw std::runtime_error("LoRA needs at least one target module");
  if (o.dora && (o.targets[GATE] || o.targets[UP] || o.targets[DOWN]))
    for (auto& w : L_)
      if (w.sparse())
        throw std::runtime_error("DoRA on the experts' projections (gate_proj, up_proj, down_proj of a Qwen3-MoE layer) is not supported: target the attention projections only");
  lora_ = o;
  lora_on_ = true;
  for (auto& w : L_)
    for (auto& ex : w.experts)
      for (int t = GATE; t <= DOWN; t++) {
        ex.A[t] = Param{};
        ex.B[t] = Param{};
      }
  for (auto& w : L_)
    for (int t = 0; t < NUM_TARGETS; t++) {
      w.A[t] = Param{};
      w.B[t] = Param{};
      w.M[t] = Param{};
    }
  for (const LoraSite& site : lora_sites()) {
    if (!o.targets[site.target]) continue;
    int l = site.layer, t = site.target, in = site.in, out = site.out;
    Param &A = *site.A, &B = *site.B;
    A.name = "base_model.model." + site.module + ".lora_A.weight";
    A.shape = {o.rank, in};
    B.name = "base_model.model." + site.module + ".lora_B.weight";
    B.shape = {out, o.rank};
    A.routed = B.routed = site.expert >= 0;
    A.touched = B.touched = !A.routed;
    // PEFT init: kaiming_uniform(a=sqrt(5)) on A gives U(-1/sqrt(in), 1/sqrt(in)); B = 0.
    std::vector<float> a(size_t(o.rank) * in);
    float bound = 1.0f / std::sqrt(float(in));
    uint64_t s = mix_seed(o.seed, uint64_t(l) * NUM_TARGETS + t);
    if (site.expert >= 0) s = mix_seed(s, uint64_t(site.expert) + 1);
    for (size_t i = 0; i < a.size(); i++) a[i] = (hash_uniform(s, i) * 2.0f - 1.0f) * bound;
    upload(A.w, a);
    upload(B.w, std::vector<float>(size_t(out) * o.rank, 0.0f));
    for (Param* p : {&A, &B})
      for (Buffer* b : {&p->grad, &p->m, &p->v}) b->bind(*be_, DType::F32);
    if (o.dora) {
      // PEFT: m = ||W + s B A|| per row at creation, which with B = 0 is ||W||.
      Param& M = *site.M;
      M.name = "base_model.model." + site.module + ".lora_magnitude_vector";
      M.shape = {out};
      M.w.bind(*be_, DType::F32);
      M.w.resize(size_t(out));
      be_->dora_norm(M.w.f32(), site.W->w, A.w.f32(), B.w.f32(), lora_scale(), out, in, o.rank);
      for (Buffer* b : {&M.grad, &M.m, &M.v}) b->bind(*be_, DType::F32);
    }
  }
  adapter_changed();
  alloc_grads();
  step_ = 0;
  train_state_valid_ = false;  // buffers stay for the next pass to reuse
}

void Model::set_trainable(bool full) {
  full_ = full;
  if (full) drop_packed_weights();  // the weights will change
  if (full) set_weight_dtype(DType::F32);  // trained as f32 master weights
  if (!full)
    for (Param* p : all_base_params())
      for (Buffer* b : {&p->grad, &p->m, &p->v}) b->release();
  for (Param* p : all_base_params()) {
    p->steps = 0;
    p->touched = !p->routed;
  }
  alloc_grads();
  step_ = 0;
  train_state_valid_ = false;  // buffers stay for the next pass to reuse
}

void Model::alloc_grads() {
  for (Param* p : trainable())
    for (Buffer* b : {&p->grad, &p->m, &p->v})
      if (b->size() != p->w.size()) {
        b->release();
        b->resize(p->w.size());  // zero-filled
      }
}

// ------------------------------------------------------------------ packing
void Model::set_weight_packing(Packing p) {
  packing_ = p;
  drop_packed_weights();  // made again, if wanted, by the next pass
}

void Model::drop_packed_weights() {
  for (Param* p : matrices()) p->w.prepared.reset();
  head().w.prepared.reset();
  packed_ = false;
}

size_t Model::packed_bytes() const {
  size_t n = head().w.prepared ? head().w.prepared->bytes() : 0;
  for (auto& w : L_)
    for (auto& p : w.W) n += p.w.prepared ? p.w.prepared->bytes() : 0;
  return n;
}

bool Model::packing_fits(int64_t frozen_weights, double physical_bytes) {
  return physical_bytes > 0 && 4.0 * double(frozen_weights) <= physical_bytes / 8;
}

int64_t Model::frozen_weights() const {
  const ModelConfig& c = cfg_;
  int64_t frozen = int64_t(c.vocab) * c.hidden;
  for (int l = 0; l < c.layers; l++)
    for (int t = 0; t < NUM_TARGETS; t++) {
      if (c.sparse_layer(l) && t >= GATE) break;  // experts are not packed
      int in, out;
      target_dims(c, t, in, out);
      frozen += int64_t(in) * out;
    }
  return frozen;
}

void Model::set_physical_memory_for_testing(double bytes) {
  physical_memory_override_ = bytes;
  drop_packed_weights();
}

// Prepares every frozen matrix that is multiplied untransposed; any the backend declines stays
// plain. Full fine-tuning changes the weights, so nothing is prepared then.
void Model::pack_weights() {
  if (packed_ || full_ || packing_ == Packing::Off) return;
  packed_ = true;  // also when nothing could be packed: the decision holds until the weights change
  const ModelConfig& c = cfg_;
  double physical = physical_memory_override_ > 0 ? physical_memory_override_ : physical_memory_bytes();
  if (packing_ == Packing::Auto && !packing_fits(frozen_weights(), physical)) return;
  for (auto& w : L_)
    for (int t = 0; t < NUM_TARGETS; t++) {
      if (w.W[t].shape.empty()) continue;  // a sparse layer's MLP: its experts are used as they are
      int in, out;
      target_dims(c, t, in, out);
      w.W[t].w.prepared = be_->prepare(w.W[t].w, out, in, false);
    }
  head().w.prepared = be_->prepare(head().w, c.vocab, c.hidden, true);
}

std::vector<Param*> Model::trainable() {
  std::vector<Param*> out;
  if (full_) out = all_base_params();
  if (lora_on_)
    for (const LoraSite& s : lora_sites())
      if (!s.A->empty()) {
        out.push_back(s.A);
        out.push_back(s.B);
        if (s.M && !s.M->empty()) out.push_back(s.M);
      }
  return out;
}

std::vector<const Param*> Model::trainable() const {
  auto v = const_cast<Model*>(this)->trainable();
  return std::vector<const Param*>(v.begin(), v.end());
}

}  // namespace tb
