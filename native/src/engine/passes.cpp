// The model's passes: pack the batch, run the layers, the head. Training passes keep what
// backward needs; scoring and decoding keep nothing but, when decoding, the KV cache.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "passes.h"

namespace tb {

Model::TrainState::TrainState(Backend& b) : grads(b), be(b) {
  pass.ids.bind(b, DType::I32);
  pass.pos_d.bind(b, DType::I32);
  pass.start_d.bind(b, DType::I32);
  pass.len_d.bind(b, DType::I32);
  pass.kvstart.bind(b, DType::I32);
  pass.kvlen.bind(b, DType::I32);
  pass.kvrows.bind(b, DType::I32);
  pass.cos.bind(b, DType::F32);
  pass.sin.bind(b, DType::F32);
  sel_rows.bind(b, DType::I32);
  targets.bind(b, DType::I32);
  for (Buffer* x : {&this->x, &x2, &dlp, &dhead, &dhx, &dx, &hsel_x, &hsel, &rstd_f, &lse, &ew, &lp, &logits, &ent})
    x->bind(b, DType::F32);
}

void Model::TrainState::resize_acts(size_t n) {
  while (acts.size() > n) acts.pop_back();
  while (acts.size() < n) acts.emplace_back(be);
}

// Rope tables for positions [0, maxlen) as transformers computes them (inverse frequencies in
// float32, llama3 scaling when configured).
static void build_rope(const ModelConfig& c, int maxlen, std::vector<float>& cos, std::vector<float>& sin) {
  int half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) {
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

static std::string s(int64_t v) { return std::to_string(v); }

// Checks the batch and packs its valid tokens; the head rows are the masked-in tokens (training
// and scoring) or, with a cache, each sequence's last new token (its tokens then follow the
// cached ones: positions, cache rows).
Model::Pass& Model::pack_batch(TrainState& ts, const BatchIn& b, bool adapters, bool train, uint64_t seed,
                               const KvCache* cache) {
  const ModelConfig& c = cfg_;
  if (b.batch <= 0 || b.seq_len <= 0) throw std::runtime_error("batch: batch and seqLen must be positive");
  size_t BT = size_t(b.batch) * b.seq_len;
  if (b.ids.size() != BT) throw std::runtime_error("batch: ids has " + s(b.ids.size()) + " entries, expected batch*seqLen = " + s(BT));
  if (!cache && b.mask.size() != BT) throw std::runtime_error("batch: mask has " + s(b.mask.size()) + " entries, expected batch*seqLen = " + s(BT));
  if (b.lengths.size() != size_t(b.batch)) throw std::runtime_error("batch: lengths has " + s(b.lengths.size()) + " entries, expected batch = " + s(b.batch));
  if (cache && b.batch != cache->batch) throw std::runtime_error("decode: batch " + s(b.batch) + " but the cache holds " + s(cache->batch) + " sequences");
  if (cache && (cache->k.size() != size_t(c.layers) || cache->k[0].backend() != be_.get() ||
                cache->k[0].size() != size_t(cache->batch) * cache->capacity * c.kv_heads * c.head_dim))
    throw std::runtime_error("decode: the KV cache was made by another model");
  Pass& p = ts.pass;
  p.N = 0;
  p.start.clear();
  p.len.clear();
  p.pos.clear();
  p.B = b.batch;
  p.T = b.seq_len;
  p.adapters = adapters && lora_on_;  // no adapter attached: the base model is the policy
  p.train = train;
  p.dropout_seed = seed;
  std::vector<int32_t> ids, sel_rows, targets, kvstart, kvlen, kvrows;
  ts.sel_pos.clear();
  int maxpos = 1;
  for (int r = 0; r < b.batch; r++) {
    int len = b.lengths[r], past = cache ? cache->length[size_t(r)] : 0;
    if (len < 0 || len > b.seq_len)
      throw std::runtime_error("batch: lengths[" + s(r) + "] = " + s(len) + " is outside [0, seqLen=" + s(b.seq_len) + "]");
    if (cache && past + len > cache->capacity)
      throw std::runtime_error("decode: sequence " + s(r) + " would hold " + s(past + len) + " tokens, more than the cache's " + s(cache->capacity));
    p.start.push_back(p.N);
    p.len.push_back(len);
    for (int t = 0; t < b.seq_len; t++) {
      size_t i = size_t(r) * b.seq_len + t;
      if (t < len) {
        int id = b.ids[i];
        if (id < 0 || id >= c.vocab)
          throw std::runtime_error("batch: ids[" + s(r) + "," + s(t) + "] = " + s(id) + " is outside the vocabulary [0, " + s(c.vocab) + ")");
        ids.push_back(id);
        p.pos.push_back(past + t);
        if (cache) kvrows.push_back(r * cache->capacity + past + t);
      }
      if (cache) continue;
      if (b.mask[i] && (t == 0 || t >= len))
        throw std::runtime_error("batch: mask[" + s(r) + "," + s(t) + "] is 1 at " + (t == 0 ? "position 0 (no previous token predicts it)" : "padding (t >= length " + s(len) + ")"));
      if (b.mask[i]) {
        sel_rows.push_back(p.start.back() + t - 1);
        ts.sel_pos.push_back(int32_t(i));
        targets.push_back(b.ids[i]);
      }
    }
    if (cache) {
      kvstart.push_back(r * cache->capacity);
      kvlen.push_back(past + len);
      if (len > 0) {
        sel_rows.push_back(p.N + len - 1);
        ts.sel_pos.push_back(r);
      }
    }
    p.N += len;
    maxpos = std::max(maxpos, past + len);
  }
  upload_ints(p.ids, ids);
  upload_ints(p.pos_d, p.pos);
  upload_ints(p.start_d, p.start);
  upload_ints(p.len_d, p.len);
  upload_ints(p.kvstart, kvstart);
  upload_ints(p.kvlen, kvlen);
  upload_ints(p.kvrows, kvrows);
  upload_ints(ts.sel_rows, sel_rows);
  upload_ints(ts.targets, targets);
  if (maxpos > p.rope_len) {  // the tables of n positions are a prefix of longer ones
    std::vector<float> cos, sin;
    p.rope_len = std::max(maxpos, 2 * p.rope_len);
    build_rope(c, p.rope_len, cos, sin);
    upload(p.cos, cos);
    upload(p.sin, sin);
  }
  return p;
}

std::vector<float> Model::logps(const BatchIn& b, bool adapters, bool train, uint64_t dropout_seed, float temperature,
                                std::vector<float>* entropy) {
  const ModelConfig& c = cfg_;
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw std::runtime_error("logps: temperature must be a positive number, got " + std::to_string(temperature));
  be_->activate();
  // A training pass reuses (and replaces) the saved one; other passes have their own buffers
  // so that a reference pass between logps(train) and backward leaves the saved one intact.
  std::shared_ptr<TrainState> ts;
  if (train) {
    ts = ts_ ? ts_ : std::make_shared<TrainState>(*be_);
    train_state_valid_ = false;
  } else {
    if (!infer_ts_) infer_ts_ = std::make_shared<TrainState>(*be_);
    ts = infer_ts_;
  }
  Pass& p = pack_batch(*ts, b, adapters, train, dropout_seed, nullptr);
  pack_weights();
  int N = p.N, C = c.hidden;
  ts->x.resize(size_t(N) * C);
  ts->x2.resize(size_t(N) * C);
  be_->embedding_forward(ts->x.f32(), p.ids.i32(), embed_.w, N, C);
  ts->checkpointing = train && checkpointing_;
  bool keep_all = train && !checkpointing_;
  ts->resize_acts(keep_all ? size_t(c.layers) : 1);
  if (ts->checkpointing) {
    ts->inputs.resize(size_t(c.layers));
    for (auto& in : ts->inputs)
      if (!in.backend()) in.bind(*be_, DType::F32);
  }
  ts->moe.reset(c.experts);
  for (int l = 0; l < c.layers; l++) {
    check_cancel();
    if (ts->checkpointing) {
      ts->inputs[l].resize(size_t(N) * C);
      be_->copy(ts->inputs[l].f32(), ts->x.f32(), size_t(N) * C);
    }
    layer_forward(l, ts->x.f32(), ts->x2.f32(), ts->acts[keep_all ? l : 0], p, keep_all, nullptr, &ts->moe);
    ts->x.swap(ts->x2);
  }
  // transformers' load_balancing_loss_func: E sum_e (chosen_e / R) (probability_e / R), R the
  // rows of every sparse layer.
  double aux = NAN;
  if (ts->moe.rows > 0) {
    double dot = 0, R = ts->moe.rows;
    for (int e = 0; e < c.experts; e++) dot += ts->moe.count[size_t(e)] * ts->moe.psum[size_t(e)];
    aux = c.experts * dot / (R * R);
  }
  aux_loss_.store(aux);
  std::vector<float> lp, ent;
  head_logps(*ts, ts->x.f32(), train, temperature, lp, entropy ? &ent : nullptr);
  std::vector<float> out(size_t(b.batch) * b.seq_len, 0.0f);
  for (size_t m = 0; m < lp.size(); m++) out[size_t(ts->sel_pos[m])] = lp[m];
  if (entropy) {
    entropy->assign(out.size(), 0.0f);
    for (size_t m = 0; m < ent.size(); m++) (*entropy)[size_t(ts->sel_pos[m])] = ent[m];
  }
  if (train) {
    ts_ = ts;
    train_state_valid_ = true;
  }
  return out;
}

void Model::backward(const std::vector<float>& dlogps, double aux_weight) {
  if (!ts_ || !train_state_valid_)
    throw std::runtime_error("backward: no train=true logps call since the last weight change");
  if (!full_ && !lora_on_)
    throw std::runtime_error("backward: nothing is trainable (add or load a LoRA adapter, or setTrainable('full'))");
  be_->activate();
  TrainState& ts = *ts_;
  const Pass& p = ts.pass;
  const ModelConfig& c = cfg_;
  if (dlogps.size() != size_t(p.B) * p.T)
    throw std::runtime_error("backward: gradLogps has " + s(dlogps.size()) + " entries, expected batch*seqLen = " + s(size_t(p.B) * p.T));
  int N = p.N, C = c.hidden, M = int(ts.sel_pos.size());
  std::vector<float> dlp(M);
  for (int m = 0; m < M; m++) {
    dlp[m] = dlogps[size_t(ts.sel_pos[m])];
    if (!std::isfinite(dlp[m])) throw std::runtime_error("backward: gradLogps[" + s(ts.sel_pos[m]) + "] is not finite");
  }
  upload(ts.dlp, dlp);
  if (!std::isfinite(aux_weight)) throw std::runtime_error("backward: auxWeight is not finite");
  // d aux / d probs[n,e] = E chosen_e / R^2 on every row of every sparse layer
  ts.grads.aux_g.release();
  if (aux_weight != 0 && ts.moe.rows > 0) {
    std::vector<float> g(size_t(c.experts));
    double R = ts.moe.rows;
    for (int e = 0; e < c.experts; e++) g[size_t(e)] = float(aux_weight * c.experts * ts.moe.count[size_t(e)] / (R * R));
    upload(ts.grads.aux_g, g);
  }
  ts.dx.resize(size_t(N) * C);
  be_->fill_zero(ts.dx.f32(), size_t(N) * C);
  head_backward(ts, ts.dx.f32());
  for (int l = c.layers - 1; l >= 0; l--) {
    check_cancel();
    if (ts.checkpointing) {
      ts.x2.resize(size_t(N) * C);
      layer_forward(l, ts.inputs[l].f32(), ts.x2.f32(), ts.acts[0], p, true, nullptr, nullptr);
      layer_backward(l, ts.dx.f32(), ts.acts[0], ts.grads, p);
    } else {
      layer_backward(l, ts.dx.f32(), ts.acts[l], ts.grads, p);
    }
  }
  if (full_) be_->embedding_backward(embed_.grad.f32(), ts.dx.f32(), p.ids.i32(), N, C);
}

// ------------------------------------------------------------------ decoding
size_t KvCache::bytes() const {
  size_t n = 0;
  for (auto& b : k) n += b.bytes();
  for (auto& b : v) n += b.bytes();
  return n;
}

size_t Model::kv_cache_bytes(const ModelConfig& c, int batch, int capacity) {
  return 2 * size_t(c.layers) * size_t(batch) * size_t(capacity) * size_t(c.kv_heads) * size_t(c.head_dim) *
         sizeof(float);
}

std::unique_ptr<KvCache> Model::new_kv_cache(int batch, int capacity) {
  if (batch <= 0 || capacity <= 0) throw std::runtime_error("KV cache: batch and capacity must be positive");
  size_t need = kv_cache_bytes(cfg_, batch, capacity), avail = be_->available_memory();
  auto mib = [](size_t b) { return s(int64_t(b >> 20)); };
  if (avail && need > avail)
    throw std::runtime_error("KV cache: " + s(batch) + " sequences of " + s(capacity) + " tokens need " + mib(need) +
                             " MiB, only " + mib(avail) + " MiB are available (fewer sequences or max new tokens)");
  auto cache = std::make_unique<KvCache>();
  cache->batch = batch;
  cache->capacity = capacity;
  cache->length.assign(size_t(batch), 0);
  size_t rows = size_t(batch) * capacity, width = size_t(cfg_.kv_heads) * cfg_.head_dim;
  try {
    for (int l = 0; l < cfg_.layers; l++) {
      cache->k.emplace_back(*be_, DType::F32, rows * width);
      cache->v.emplace_back(*be_, DType::F32, rows * width);
    }
  } catch (const std::bad_alloc&) {
    throw std::runtime_error("KV cache: cannot allocate " + mib(need) + " MiB for " + s(batch) + " sequences of " +
                             s(capacity) + " tokens");
  }
  return cache;
}

std::vector<float> Model::decode(KvCache& cache, const BatchIn& next, bool adapters) {
  std::vector<float> out;
  decode(cache, next, adapters, out);
  return out;
}

void Model::decode(KvCache& cache, const BatchIn& next, bool adapters, std::vector<float>& out) {
  const ModelConfig& c = cfg_;
  be_->activate();
  if (!infer_ts_) infer_ts_ = std::make_shared<TrainState>(*be_);
  TrainState& ts = *infer_ts_;
  Pass& p = pack_batch(ts, next, adapters, false, 0, &cache);
  int N = p.N, C = c.hidden, V = c.vocab;
  out.resize(size_t(next.batch) * V);
  // Rows without new tokens read zeros; the others are overwritten with their logits below.
  std::vector<uint8_t> has(size_t(next.batch), 0);
  for (int32_t r : ts.sel_pos) has[size_t(r)] = 1;
  for (int r = 0; r < next.batch; r++)
    if (!has[size_t(r)]) std::fill_n(out.begin() + size_t(r) * V, V, 0.0f);
  if (N == 0) return;
  ts.x.resize(size_t(N) * C);
  ts.x2.resize(size_t(N) * C);
  be_->embedding_forward(ts.x.f32(), p.ids.i32(), embed_.w, N, C);
  ts.resize_acts(1);
  for (int l = 0; l < c.layers; l++) {
    check_cancel();
    layer_forward(l, ts.x.f32(), ts.x2.f32(), ts.acts[0], p, false, &cache, nullptr);
    ts.x.swap(ts.x2);
  }
  head_logits(ts, ts.x.f32());
  for (size_t m = 0; m < ts.sel_pos.size(); m++)
    be_->download(out.data() + size_t(ts.sel_pos[m]) * V, ts.logits.f32() + m * V, sizeof(float) * size_t(V));
  // Only a finished step counts: after an error the same tokens can be decoded again.
  for (int r = 0; r < next.batch; r++) cache.length[size_t(r)] += next.lengths[size_t(r)];
}

}  // namespace tb
