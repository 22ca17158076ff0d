#include "facts.h"

#include "backend.h"
#include "gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace tb {

const char* const kArchitectures[] = {"LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen3MoeForCausalLM"};
const size_t kArchitectureCount = sizeof(kArchitectures) / sizeof(kArchitectures[0]);
const char* const kCheckpointDTypes[] = {"F32", "BF16", "F16"};
const size_t kCheckpointDTypeCount = sizeof(kCheckpointDTypes) / sizeof(kCheckpointDTypes[0]);

std::vector<std::string> cpu_features() {
  std::vector<std::string> f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a, b, c, d;
  if (__get_cpuid(1, &a, &b, &c, &d)) {
    if (d & (1u << 26)) f.push_back("sse2");
    if (c & (1u << 0)) f.push_back("sse3");
    if (c & (1u << 9)) f.push_back("ssse3");
    if (c & (1u << 19)) f.push_back("sse4.1");
    if (c & (1u << 20)) f.push_back("sse4.2");
    if (c & (1u << 28)) f.push_back("avx");
    if (c & (1u << 12)) f.push_back("fma");
    if (c & (1u << 29)) f.push_back("f16c");
  }
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    if (b & (1u << 5)) f.push_back("avx2");
    if (b & (1u << 16)) f.push_back("avx512f");
    if (b & (1u << 30)) f.push_back("avx512bw");
    if (b & (1u << 31)) f.push_back("avx512vl");
    if (c & (1u << 11)) f.push_back("avx512vnni");
    if (d & (1u << 22)) f.push_back("amx-bf16");
  }
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) {
    if (a & (1u << 5)) f.push_back("avx512bf16");
    if (a & (1u << 4)) f.push_back("avx-vnni");
  }
#elif defined(__aarch64__)
  f.push_back("neon");
#endif
  return f;
}

EngineFacts engine_facts() {
  EngineFacts e;
  e.version = TUNEBENCH_VERSION;
  e.cpu_features = cpu_features();
  e.threads = default_threads();
  e.blas = blas_name();
  e.cuda_compiled = false;  // no CUDA backend yet: a toolkit compiles the probe only
  e.cuda = cuda_info();
  e.architectures.assign(kArchitectures, kArchitectures + kArchitectureCount);
  e.dtypes.assign(kCheckpointDTypes, kCheckpointDTypes + kCheckpointDTypeCount);
  e.lora_dropout_min = kLoraDropoutMin;
  e.lora_dropout_max_exclusive = kLoraDropoutMaxExclusive;
  e.devices = backend_names();
  return e;
}

}  // namespace tb
