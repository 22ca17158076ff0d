#include <napi.h>

#include "engine_thread.h"
#include "facts.h"
#include "model_binding.h"

namespace {

Napi::Array StringArray(Napi::Env env, const std::vector<std::string>& items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); i++) a.Set(uint32_t(i), items[i]);
  return a;
}

Napi::Value EngineFacts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tb::EngineFacts f = tb::engine_facts();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", f.version);
  o.Set("cpuFeatures", StringArray(env, f.cpu_features));
  o.Set("threads", f.threads);
  o.Set("blas", f.blas);
  o.Set("cudaCompiled", f.cuda_compiled);
  Napi::Object cuda = Napi::Object::New(env);
  cuda.Set("toolkit", f.cuda.toolkit);
  cuda.Set("runtime", f.cuda.runtime.empty() ? env.Null() : Napi::String::New(env, f.cuda.runtime));
  cuda.Set("driver", f.cuda.driver.empty() ? env.Null() : Napi::String::New(env, f.cuda.driver));
  Napi::Array gpus = Napi::Array::New(env, f.cuda.gpus.size());
  for (size_t i = 0; i < f.cuda.gpus.size(); i++) {
    const tb::CudaGpu& g = f.cuda.gpus[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", g.name);
    o.Set("memoryBytes", double(g.memory_bytes));
    o.Set("computeCapability", std::to_string(g.major) + "." + std::to_string(g.minor));
    gpus.Set(uint32_t(i), o);
  }
  cuda.Set("gpus", gpus);
  cuda.Set("note", f.cuda.note.empty() ? env.Null() : Napi::String::New(env, f.cuda.note));
  o.Set("cuda", cuda);
  o.Set("architectures", StringArray(env, f.architectures));
  o.Set("dtypes", StringArray(env, f.dtypes));
  Napi::Object dropout = Napi::Object::New(env);
  dropout.Set("min", f.lora_dropout_min);
  dropout.Set("maxExclusive", f.lora_dropout_max_exclusive);
  o.Set("loraDropout", dropout);
  o.Set("devices", StringArray(env, f.devices));
  return o;
}

// Test probe: how the heavy calls so far ran (engine_thread.h).
Napi::Value GetHeavyCallStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tbjs::HeavyCallStats s = tbjs::heavy_call_stats();
  Napi::Object o = Napi::Object::New(env);
  o.Set("calls", s.calls);
  o.Set("maxInFlight", s.max_in_flight);
  o.Set("threads", s.threads);
  o.Set("onJsThread", s.on_js_thread);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  tbjs::note_js_thread();
  exports.Set("engineFacts", Napi::Function::New(env, EngineFacts));
  exports.Set("heavyCallStats", Napi::Function::New(env, GetHeavyCallStats));
  exports.Set("loadModel", Napi::Function::New(env, tbjs::LoadModel));
  exports.Set("NativeModel", tbjs::ModelBinding::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tunebench, Init)
