// The CUDA probe, compiled by nvcc when the build finds a toolkit (probe.h). Runtime API calls
// only: the static runtime loads the driver library, if any, when first asked.
#include <cuda_runtime.h>

#include "probe.h"

namespace tb {

static std::string cuda_version(int v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

CudaInfo cuda_info() {
  CudaInfo info;
  info.toolkit = true;
  int runtime = 0, driver = 0;
  if (cudaRuntimeGetVersion(&runtime) == cudaSuccess) info.runtime = cuda_version(runtime);
  if (cudaDriverGetVersion(&driver) == cudaSuccess && driver > 0) info.driver = cuda_version(driver);
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    info.note = info.driver.empty() ? std::string("no NVIDIA driver (") + cudaGetErrorString(err) + ")" : cudaGetErrorString(err);
    cudaGetLastError();  // clears the error, so that a later call does not see it
    return info;
  }
  for (int i = 0; i < count; i++) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    CudaGpu g;
    g.name = p.name;
    g.memory_bytes = p.totalGlobalMem;
    g.major = p.major;
    g.minor = p.minor;
    info.gpus.push_back(g);
  }
  if (info.gpus.empty()) info.note = "the driver lists no GPU";
  return info;
}

}  // namespace tb
