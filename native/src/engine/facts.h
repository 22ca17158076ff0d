#pragma once
#include <string>
#include <vector>

namespace tb {

struct EngineFacts {
  std::string version;
  std::vector<std::string> cpu_features;
  int threads;
  std::string blas;
  bool cuda_compiled;
  std::string cuda_device;  // empty: none
};

EngineFacts engine_facts();
std::vector<std::string> cpu_features();

}  // namespace tb
