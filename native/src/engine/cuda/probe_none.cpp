// The CUDA probe of a build that found no CUDA toolkit (probe.h).
#include "probe.h"

namespace tb {

CudaInfo cuda_info() {
  CudaInfo info;
  info.note = "this build found no CUDA toolkit (CUDACXX or nvcc on PATH when it was built)";
  return info;
}

}  // namespace tb
