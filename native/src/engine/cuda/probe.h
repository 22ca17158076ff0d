#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace tb {

// What the CUDA runtime this build was compiled against says about the machine: its version,
// the driver's, and the NVIDIA GPUs it sees. It only asks (no kernel runs); the CUDA backend
// that trains on a GPU is not part of this version, so no model is ever put on one.
struct CudaGpu {
  std::string name;
  size_t memory_bytes = 0;
  int major = 0, minor = 0;  // compute capability
};

struct CudaInfo {
  bool toolkit = false;      // the build found a CUDA toolkit and compiled the probe with it
  std::string runtime;       // "13.2": the runtime linked in; empty without a toolkit
  std::string driver;        // the driver's CUDA version; empty when no driver is installed
  std::vector<CudaGpu> gpus;
  std::string note;          // why no GPU is listed, when none is
};

CudaInfo cuda_info();

}  // namespace tb
