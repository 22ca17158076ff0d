// The JS class NativeModel: wraps tb::Model; every heavy method returns a Promise from an AsyncWorker.
#pragma once
#include <napi.h>

#include <atomic>
#include <mutex>
#include <memory>
#include <vector>

#include "model.h"

namespace tbjs {

class ModelBinding : public Napi::ObjectWrap<ModelBinding> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ModelBinding(const Napi::CallbackInfo& info);
  std::shared_ptr<tb::Model> model;  // shared with running workers, so dispose() never frees under them
  // The stop flags of the generation running now (stopRow), set by its worker when it starts
  // and cleared when it ends, so that a generation queued behind it is not the one stopped.
  struct RunningGeneration {
    std::mutex mu;
    std::shared_ptr<std::vector<std::atomic<bool>>> stop;
  };
  std::shared_ptr<RunningGeneration> running = std::make_shared<RunningGeneration>();

 private:
  std::shared_ptr<tb::Model> need(const Napi::Env& env);
  Napi::Value Config(const Napi::CallbackInfo& info);
  Napi::Value AddLora(const Napi::CallbackInfo& info);
  Napi::Value LoadAdapter(const Napi::CallbackInfo& info);
  Napi::Value SaveAdapter(const Napi::CallbackInfo& info);
  Napi::Value SetTrainable(const Napi::CallbackInfo& info);
  Napi::Value SetGradientCheckpointing(const Napi::CallbackInfo& info);
  Napi::Value Logps(const Napi::CallbackInfo& info);
  Napi::Value Backward(const Napi::CallbackInfo& info);
  Napi::Value AuxLoss(const Napi::CallbackInfo& info);
  Napi::Value ZeroGrad(const Napi::CallbackInfo& info);
  Napi::Value OptimizerStep(const Napi::CallbackInfo& info);
  Napi::Value GradNorm(const Napi::CallbackInfo& info);
  Napi::Value Gradients(const Napi::CallbackInfo& info);
  Napi::Value SaveTrainingState(const Napi::CallbackInfo& info);
  Napi::Value LoadTrainingState(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value StopRow(const Napi::CallbackInfo& info);
  Napi::Value Cancel(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
};

// loadModel(dir, threads): Promise<NativeModel>
Napi::Value LoadModel(const Napi::CallbackInfo& info);

}  // namespace tbjs
