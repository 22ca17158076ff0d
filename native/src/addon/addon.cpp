#include <napi.h>

#include "facts.h"
#include "model_binding.h"

namespace {

Napi::Value EngineFacts(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  tb::EngineFacts f = tb::engine_facts();
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", f.version);
  Napi::Array feats = Napi::Array::New(env, f.cpu_features.size());
  for (size_t i = 0; i < f.cpu_features.size(); i++) feats.Set(uint32_t(i), f.cpu_features[i]);
  o.Set("cpuFeatures", feats);
  o.Set("threads", f.threads);
  o.Set("blas", f.blas);
  o.Set("cudaCompiled", f.cuda_compiled);
  o.Set("cudaDevice", f.cuda_device.empty() ? env.Null() : Napi::String::New(env, f.cuda_device));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("engineFacts", Napi::Function::New(env, EngineFacts));
  exports.Set("loadModel", Napi::Function::New(env, tbjs::LoadModel));
  exports.Set("NativeModel", tbjs::ModelBinding::Init(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tunebench, Init)
