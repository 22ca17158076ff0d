#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "cuda/probe.h"

namespace tb {

// What this engine accepts, in one place: the config parser, the checkpoint loader and the
// LoRA checks refuse anything outside these lists, and engine_facts() reports them to
// JavaScript so the app never offers what the engine would refuse.
/** config.json `architectures[0]` values the model implements. */
extern const char* const kArchitectures[];
extern const size_t kArchitectureCount;
/** safetensors tensor dtypes the checkpoint loader reads. */
extern const char* const kCheckpointDTypes[];
extern const size_t kCheckpointDTypeCount;
/** LoRA dropout p must satisfy kLoraDropoutMin <= p < kLoraDropoutMaxExclusive. */
constexpr double kLoraDropoutMin = 0.0;
constexpr double kLoraDropoutMaxExclusive = 1.0;

struct EngineFacts {
  std::string version;
  std::vector<std::string> cpu_features;
  int threads;
  std::string blas;
  bool cuda_compiled;  // the CUDA backend (not in this version: models load on the CPU only)
  CudaInfo cuda;       // the toolkit the build found, the driver and the GPUs (cuda/probe.h)
  std::vector<std::string> architectures;
  std::vector<std::string> dtypes;
  double lora_dropout_min;
  double lora_dropout_max_exclusive;
  /** Devices a model can be loaded on: "cpu", and "cuda" when the CUDA backend is compiled. */
  std::vector<std::string> devices;
};

EngineFacts engine_facts();
std::vector<std::string> cpu_features();

}  // namespace tb
