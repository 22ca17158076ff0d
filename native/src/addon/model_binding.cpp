#include "model_binding.h"

#include <cmath>
#include <functional>
#include <mutex>

#include "engine_thread.h"

namespace tbjs {

namespace {

struct AddonData {
  Napi::FunctionReference model_ctor;
};

// Runs `work` on the engine thread (engine_thread.h) holding the model's lock; `done` turns the result into a JS
// value on the main thread. The JS wrapper object is referenced for the worker's lifetime.
class TaskWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<void()>;
  using Done = std::function<Napi::Value(Napi::Env)>;
  TaskWorker(Napi::Env env, std::shared_ptr<tb::Model> model, Napi::Object self, Work work, Done done)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), model_(std::move(model)),
        work_(std::move(work)), done_(std::move(done)) {
    if (!self.IsEmpty()) self_ = Napi::Persistent(self);
    if (model_) ticket_ = model_->issue_ticket();
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    try {
      run_on_engine_thread([this] {
        if (model_) {
          std::lock_guard<std::mutex> lock(model_->mu);
          model_->running_ticket = ticket_;
          if (model_->cancelled(ticket_)) throw tb::Cancelled();
          HeavyCall probe;
          work_();
        } else {
          HeavyCall probe;
          work_();
        }
      });
    } catch (const std::bad_alloc&) {
      SetError("native engine: out of memory (the model, batch or sequence length is too large for this machine)");
    } catch (const std::exception& e) {
      SetError(e.what());
    } catch (...) {
      SetError("native engine: unknown error");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    try {
      deferred_.Resolve(done_ ? done_(env) : env.Undefined());
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
    release();
  }
  void OnError(const Napi::Error& e) override {
    deferred_.Reject(e.Value());
    release();
  }

 private:
  void release() {
    if (!self_.IsEmpty()) self_.Reset();
    work_ = nullptr;
    done_ = nullptr;
    model_.reset();
  }
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<tb::Model> model_;
  Napi::ObjectReference self_;
  Work work_;
  Done done_;
  uint64_t ticket_ = 0;
};

// Queues `work` on the engine thread for the model of `info.This()` and returns its Promise;
// `done` (optional) makes the resolved value. The call takes the model's next cancel ticket.
Napi::Promise queue(const Napi::CallbackInfo& info, std::shared_ptr<tb::Model> m, TaskWorker::Work work,
                    TaskWorker::Done done = nullptr) {
  auto* w = new TaskWorker(info.Env(), m, m ? info.This().As<Napi::Object>() : Napi::Object(), std::move(work),
                           std::move(done));
  w->Queue();
  return w->Promise();
}

std::string str_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}
double num_arg(const Napi::Value& v, const char* name) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  return v.As<Napi::Number>().DoubleValue();
}
double num_field(const Napi::Object& o, const char* name) { return num_arg(o.Get(name), name); }

Napi::Object lora_to_js(Napi::Env env, const tb::LoraOptions& o) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("rank", o.rank);
  r.Set("alpha", o.alpha);
  r.Set("dropout", o.dropout);
  Napi::Array t = Napi::Array::New(env);
  uint32_t k = 0;
  for (int i = 0; i < tb::NUM_TARGETS; i++)
    if (o.targets[i]) t.Set(k++, tb::kTargetNames[i]);
  r.Set("targets", t);
  r.Set("rslora", o.rslora);
  r.Set("dora", o.dora);
  r.Set("seed", double(o.seed));
  return r;
}

template <class T>
std::vector<T> typed_copy(const Napi::Value& v, napi_typedarray_type type, const char* name) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " has the wrong typed-array type");
  Napi::TypedArrayOf<T> a = v.As<Napi::TypedArrayOf<T>>();
  return std::vector<T>(a.Data(), a.Data() + a.ElementLength());
}

Napi::Float32Array to_f32(Napi::Env env, const std::vector<float>& v) {
  Napi::Float32Array a = Napi::Float32Array::New(env, v.size());
  std::copy(v.begin(), v.end(), a.Data());
  return a;
}

}  // namespace

Napi::Function ModelBinding::Init(Napi::Env env) {
  Napi::Function f = DefineClass(env, "NativeModel", {
    InstanceMethod("config", &ModelBinding::Config),
    InstanceMethod("addLora", &ModelBinding::AddLora),
    InstanceMethod("loadAdapter", &ModelBinding::LoadAdapter),
    InstanceMethod("saveAdapter", &ModelBinding::SaveAdapter),
    InstanceMethod("setTrainable", &ModelBinding::SetTrainable),
    InstanceMethod("setGradientCheckpointing", &ModelBinding::SetGradientCheckpointing),
    InstanceMethod("logps", &ModelBinding::Logps),
    InstanceMethod("backward", &ModelBinding::Backward),
    InstanceMethod("auxLoss", &ModelBinding::AuxLoss),
    InstanceMethod("zeroGrad", &ModelBinding::ZeroGrad),
    InstanceMethod("optimizerStep", &ModelBinding::OptimizerStep),
    InstanceMethod("gradNorm", &ModelBinding::GradNorm),
    InstanceMethod("gradients", &ModelBinding::Gradients),
    InstanceMethod("saveTrainingState", &ModelBinding::SaveTrainingState),
    InstanceMethod("loadTrainingState", &ModelBinding::LoadTrainingState),
    InstanceMethod("generate", &ModelBinding::Generate),
    InstanceMethod("stopRow", &ModelBinding::StopRow),
    InstanceMethod("cancel", &ModelBinding::Cancel),
    InstanceMethod("dispose", &ModelBinding::Dispose),
  });
  AddonData* data = env.GetInstanceData<AddonData>();
  if (!data) {
    data = new AddonData();
    env.SetInstanceData(data);
  }
  data->model_ctor = Napi::Persistent(f);
  return f;
}

ModelBinding::ModelBinding(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelBinding>(info) {
  if (info.Length() < 1 || !info[0].IsExternal())
    throw Napi::TypeError::New(info.Env(), "NativeModel is created by loadModel(dir, threads)");
  auto* p = info[0].As<Napi::External<std::shared_ptr<tb::Model>>>().Data();
  model = *p;
}

std::shared_ptr<tb::Model> ModelBinding::need(const Napi::Env& env) {
  if (!model) throw Napi::Error::New(env, "model disposed");
  return model;
}

// Synchronous mutations must not race a running worker: they fail fast instead of blocking the loop.
#define SYNC_LOCK(m)                                                                                 \
  std::unique_lock<std::mutex> lock((m)->mu, std::try_to_lock);                                   \
  if (!lock.owns_lock()) throw Napi::Error::New(info.Env(), "model is busy with another call");

#define NATIVE_TRY(stmt)                                                      \
  try {                                                                       \
    stmt;                                                                     \
  } catch (const Napi::Error&) {                                              \
    throw;                                                                    \
  } catch (const std::exception& e) {                                         \
    throw Napi::Error::New(info.Env(), e.what());                             \
  }

Napi::Value ModelBinding::Config(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  const tb::ModelConfig& c = m->config();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("architecture", c.architecture);
  o.Set("layers", c.layers);
  o.Set("hidden", c.hidden);
  o.Set("intermediate", c.intermediate);
  o.Set("heads", c.heads);
  o.Set("kvHeads", c.kv_heads);
  o.Set("headDim", c.head_dim);
  o.Set("vocab", c.vocab);
  o.Set("ropeTheta", c.rope_theta);
  o.Set("rmsEps", c.rms_eps);
  o.Set("tiedEmbeddings", c.tied_embeddings);
  o.Set("dtype", c.dtype);
  o.Set("precision", m->weight_dtype() == tb::DType::BF16 ? "bf16" : "f32");
  o.Set("parameters", double(c.parameters));
  o.Set("activeParameters", double(c.active_parameters));
  if (c.experts > 0) {
    Napi::Object moe = Napi::Object::New(info.Env());
    moe.Set("experts", c.experts);
    moe.Set("expertsPerToken", c.experts_per_tok);
    moe.Set("expertIntermediate", c.moe_intermediate);
    int sparse = 0;
    for (int l = 0; l < c.layers; l++) sparse += c.sparse_layer(l);
    moe.Set("sparseLayers", sparse);
    moe.Set("normTopkProb", c.norm_topk_prob);
    moe.Set("routerAuxLossCoef", c.router_aux_loss_coef);
    o.Set("moe", moe);
  }
  return o;
}

Napi::Value ModelBinding::AddLora(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "addLora: options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  tb::LoraOptions lo;
  lo.rank = int(num_field(o, "rank"));
  lo.alpha = num_field(o, "alpha");
  lo.dropout = num_field(o, "dropout");
  lo.rslora = o.Get("rslora").ToBoolean();
  lo.dora = o.Get("dora").ToBoolean();
  lo.seed = uint64_t(num_field(o, "seed"));
  Napi::Value tv = o.Get("targets");
  if (!tv.IsArray()) throw Napi::TypeError::New(info.Env(), "addLora: targets must be an array");
  Napi::Array ta = tv.As<Napi::Array>();
  for (uint32_t i = 0; i < ta.Length(); i++) {
    std::string t = ta.Get(i).ToString().Utf8Value();
    bool found = false;
    for (int k = 0; k < tb::NUM_TARGETS; k++)
      if (t == tb::kTargetNames[k]) lo.targets[k] = found = true;
    if (!found) throw Napi::Error::New(info.Env(), "addLora: unknown target '" + t + "' (q, k, v, o, gate, up, down)");
  }
  SYNC_LOCK(m);
  NATIVE_TRY(m->add_lora(lo));
  return info.Env().Undefined();
}

Napi::Value ModelBinding::LoadAdapter(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  std::string dir = str_arg(info, 0, "loadAdapter: dir");
  auto result = std::make_shared<tb::LoraOptions>();
  return queue(info, m, [m, dir, result] { *result = m->load_adapter(dir); },
               [result](Napi::Env env) -> Napi::Value { return lora_to_js(env, *result); });
}

Napi::Value ModelBinding::SaveAdapter(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  std::string dir = str_arg(info, 0, "saveAdapter: dir");
  std::string base = str_arg(info, 1, "saveAdapter: baseModelNameOrPath");
  return queue(info, m, [m, dir, base] { m->save_adapter(dir, base); });
}

Napi::Value ModelBinding::SetTrainable(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  std::string mode = str_arg(info, 0, "setTrainable: mode");
  if (mode != "lora" && mode != "full") throw Napi::Error::New(info.Env(), "setTrainable: mode must be 'lora' or 'full'");
  SYNC_LOCK(m);
  NATIVE_TRY(m->set_trainable(mode == "full"));
  return info.Env().Undefined();
}

Napi::Value ModelBinding::SetGradientCheckpointing(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  bool on = info.Length() > 0 && info[0].ToBoolean();
  SYNC_LOCK(m);
  m->set_checkpointing(on);
  return info.Env().Undefined();
}

// logps(ids Int32Array, batch, seqLen, lengths Int32Array, mask Uint8Array, adapters, train, dropoutSeed
//       [, temperature = 1, entropy = false]): Float32Array, or {logps, entropy} with entropy.
Napi::Value ModelBinding::Logps(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  if (info.Length() < 8) throw Napi::TypeError::New(info.Env(), "logps: 8 arguments expected");
  auto batch = std::make_shared<tb::BatchIn>();
  batch->ids = typed_copy<int32_t>(info[0], napi_int32_array, "batch.ids");
  batch->batch = int(num_arg(info[1], "batch.batch"));
  batch->seq_len = int(num_arg(info[2], "batch.seqLen"));
  batch->lengths = typed_copy<int32_t>(info[3], napi_int32_array, "batch.lengths");
  batch->mask = typed_copy<uint8_t>(info[4], napi_uint8_array, "batch.mask");
  bool adapters = info[5].ToBoolean(), train = info[6].ToBoolean();
  uint64_t seed = uint64_t(num_arg(info[7], "dropoutSeed"));
  float temperature = info.Length() > 8 && !info[8].IsUndefined() ? float(num_arg(info[8], "temperature")) : 1.0f;
  bool want_entropy = info.Length() > 9 && info[9].ToBoolean();
  auto out = std::make_shared<std::vector<float>>();
  auto ent = std::make_shared<std::vector<float>>();
  return queue(info, m,
               [m, batch, adapters, train, seed, temperature, want_entropy, out, ent] {
                 *out = m->logps(*batch, adapters, train, seed, temperature, want_entropy ? ent.get() : nullptr);
               },
               [out, ent, want_entropy](Napi::Env env) -> Napi::Value {
                 if (!want_entropy) return to_f32(env, *out);
                 Napi::Object o = Napi::Object::New(env);
                 o.Set("logps", to_f32(env, *out));
                 o.Set("entropy", to_f32(env, *ent));
                 return o;
               });
}

Napi::Value ModelBinding::Backward(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  if (info.Length() < 1) throw Napi::TypeError::New(info.Env(), "backward: gradLogps expected");
  auto g = std::make_shared<std::vector<float>>(typed_copy<float>(info[0], napi_float32_array, "gradLogps"));
  double aux = info.Length() > 1 && !info[1].IsUndefined() ? num_arg(info[1], "auxWeight") : 0.0;
  return queue(info, m, [m, g, aux] { m->backward(*g, aux); });
}

// auxLoss(): the Qwen3-MoE load-balancing loss of the last logps call, null for a dense model.
Napi::Value ModelBinding::AuxLoss(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  double a = m->aux_loss();
  return std::isnan(a) ? info.Env().Null() : Napi::Number::New(info.Env(), a);
}

Napi::Value ModelBinding::ZeroGrad(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  SYNC_LOCK(m);
  m->zero_grad();
  return info.Env().Undefined();
}

// optimizerStep({lr, beta1, beta2, eps, weightDecay, maxGradNorm}): Promise<{gradNorm}>
Napi::Value ModelBinding::OptimizerStep(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "optimizerStep: options object expected");
  Napi::Object o = info[0].As<Napi::Object>();
  tb::OptimizerOptions oo;
  oo.lr = num_field(o, "lr");
  oo.beta1 = num_field(o, "beta1");
  oo.beta2 = num_field(o, "beta2");
  oo.eps = num_field(o, "eps");
  oo.weight_decay = num_field(o, "weightDecay");
  oo.max_grad_norm = num_field(o, "maxGradNorm");
  auto norm = std::make_shared<double>(0);
  return queue(info, m, [m, oo, norm] { *norm = m->optimizer_step(oo); },
               [norm](Napi::Env env) -> Napi::Value {
                             Napi::Object r = Napi::Object::New(env);
                             r.Set("gradNorm", *norm);
                             return r;
                           });
}

Napi::Value ModelBinding::GradNorm(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  SYNC_LOCK(m);
  return Napi::Number::New(info.Env(), m->grad_norm());
}

Napi::Value ModelBinding::Gradients(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  SYNC_LOCK(m);
  Napi::Object o = Napi::Object::New(info.Env());
  for (auto& [name, g] : m->gradients()) o.Set(name, to_f32(info.Env(), g));
  return o;
}

Napi::Value ModelBinding::SaveTrainingState(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  std::string path = str_arg(info, 0, "saveTrainingState: path");
  return queue(info, m, [m, path] { m->save_training_state(path); });
}

Napi::Value ModelBinding::LoadTrainingState(const Napi::CallbackInfo& info) {
  auto m = need(info.Env());
  std::string path = str_arg(info, 0, "loadTrainingState: path");
  return queue(info, m, [m, path] { m->load_training_state(path); });
}

static const char* finish_name(tb::Finish f) {
  switch (f) {
    case tb::Finish::Eos: return "eos";
    case tb::Finish::Length: return "length";
    case tb::Finish::Stopped: return "stop";
    default: return "running";
  }
}

// generate(prompts Int32Array[], seeds number[], options, onStep(tokens Int32Array, logps Float32Array) | null):
// Promise<{tokens, logps, finish}[]>. Steps reach onStep through a thread-safe function as they are
// decoded; the Promise's rows hold every token whether or not a step arrived first.
Napi::Value ModelBinding::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = need(env);
  if (info.Length() < 4 || !info[0].IsArray() || !info[1].IsArray() || !info[2].IsObject())
    throw Napi::TypeError::New(env, "generate: (prompts, seeds, options, onStep) expected");
  auto req = std::make_shared<tb::GenerateRequest>();
  Napi::Array pa = info[0].As<Napi::Array>(), sa = info[1].As<Napi::Array>();
  for (uint32_t i = 0; i < pa.Length(); i++) req->prompts.push_back(typed_copy<int32_t>(pa.Get(i), napi_int32_array, "generate: prompts[i]"));
  for (uint32_t i = 0; i < sa.Length(); i++) req->seeds.push_back(uint64_t(num_arg(sa.Get(i), "generate: seeds[i]")));
  Napi::Object o = info[2].As<Napi::Object>();
  req->max_new_tokens = int(num_field(o, "maxNewTokens"));
  req->sampling.temperature = num_field(o, "temperature");
  req->sampling.top_k = int(num_field(o, "topK"));
  req->sampling.top_p = num_field(o, "topP");
  req->sampling.min_p = num_field(o, "minP");
  req->sampling.repetition_penalty = num_field(o, "repetitionPenalty");
  req->adapters = o.Get("adapters").ToBoolean();
  req->eos_ids = typed_copy<int32_t>(o.Get("eosIds"), napi_int32_array, "generate: eosIds");
  auto stop = std::make_shared<std::vector<std::atomic<bool>>>(req->prompts.size());
  auto slot = running;
  struct Tsfn {
    Napi::ThreadSafeFunction fn;
    bool on = false;
    ~Tsfn() {
      if (on) fn.Release();
    }
  };
  auto tsfn = std::make_shared<Tsfn>();
  if (info[3].IsFunction()) {
    tsfn->fn = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "tunebench.generate", 0, 1);
    tsfn->on = true;
  }
  auto rows = std::make_shared<std::vector<tb::GeneratedRow>>();
  return queue(
      info, m,
      [m, req, stop, slot, tsfn, rows] {
        struct Running {
          RunningGeneration& slot;
          Running(RunningGeneration& s, std::shared_ptr<std::vector<std::atomic<bool>>> stop) : slot(s) {
            std::lock_guard<std::mutex> l(slot.mu);
            slot.stop = std::move(stop);
          }
          ~Running() {
            std::lock_guard<std::mutex> l(slot.mu);
            slot.stop.reset();
          }
        } running_now(*slot, stop);
        // Released on the engine thread on both paths; steps already queued are still delivered.
        struct Release {
          Tsfn& t;
          ~Release() {
            if (t.on) t.fn.Release();
            t.on = false;
          }
        } release{*tsfn};
        auto on_step = [tsfn](const tb::GenerateStep& st) {
          if (!tsfn->on) return;
          auto* copy = new tb::GenerateStep(st);
          napi_status s = tsfn->fn.NonBlockingCall(copy, [](Napi::Env env, Napi::Function cb, tb::GenerateStep* d) {
            std::unique_ptr<tb::GenerateStep> own(d);
            Napi::Int32Array t = Napi::Int32Array::New(env, d->token.size());
            std::copy(d->token.begin(), d->token.end(), t.Data());
            cb.Call({t, to_f32(env, d->logp)});
          });
          if (s != napi_ok) delete copy;
        };
        *rows = m->generate(*req, on_step, stop->data());
      },
      [rows](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, rows->size());
        for (size_t r = 0; r < rows->size(); r++) {
          const tb::GeneratedRow& g = (*rows)[r];
          Napi::Object row = Napi::Object::New(env);
          Napi::Int32Array t = Napi::Int32Array::New(env, g.tokens.size());
          std::copy(g.tokens.begin(), g.tokens.end(), t.Data());
          row.Set("tokens", t);
          row.Set("logps", to_f32(env, g.logps));
          row.Set("finish", finish_name(g.finish));
          out.Set(uint32_t(r), row);
        }
        return out;
      });
}

// stopRow(r): ends row r of the generation in flight after its current token (stop strings).
Napi::Value ModelBinding::StopRow(const Napi::CallbackInfo& info) {
  double r = num_arg(info.Length() > 0 ? info[0] : info.Env().Undefined(), "stopRow: row");
  std::lock_guard<std::mutex> l(running->mu);
  if (running->stop && r >= 0 && size_t(r) < running->stop->size()) (*running->stop)[size_t(r)] = true;
  return info.Env().Undefined();
}

Napi::Value ModelBinding::Cancel(const Napi::CallbackInfo& info) {
  if (model) model->cancel_issued();
  return info.Env().Undefined();
}

Napi::Value ModelBinding::Dispose(const Napi::CallbackInfo& info) {
  if (model) {
    model->cancel_all();
    model.reset();  // running workers hold their own reference
  }
  return info.Env().Undefined();
}

Napi::Value LoadModel(const Napi::CallbackInfo& info) {
  std::string dir = str_arg(info, 0, "loadModel: dir");
  int threads = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 0;
  std::string p = info.Length() > 2 && info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "auto";
  tb::Precision precision = tb::Precision::Auto;
  if (p == "f32") precision = tb::Precision::F32;
  else if (p == "bf16") precision = tb::Precision::BF16;
  else if (p != "auto") throw Napi::TypeError::New(info.Env(), "loadModel: precision must be auto, f32 or bf16, got " + p);
  auto holder = std::make_shared<std::shared_ptr<tb::Model>>();
  return queue(
      info, nullptr, [dir, threads, precision, holder] { *holder = tb::Model::load(dir, threads, precision); },
      [holder](Napi::Env env) -> Napi::Value {
        AddonData* data = env.GetInstanceData<AddonData>();
        return data->model_ctor.New({Napi::External<std::shared_ptr<tb::Model>>::New(env, holder.get())});
      });
}

}  // namespace tbjs
