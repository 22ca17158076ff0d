// oneDNN's matmul primitive as the CPU backend uses it (oneDNN builds only): one engine, a
// bounded cache of primitives by problem, and execution with the calling thread's scratchpad,
// so that products on several threads at once never share one. Used by PackedMatrix
// (packed.cpp) and the bf16 GEMM (gemm_bf16.cpp).
#pragma once
#if defined(TUNEBENCH_ONEDNN)
#include <dnnl.hpp>

#include <string>

namespace tb::onednn {

using dnnl::memory;

dnnl::engine& engine();
// A row-major [rows, cols] matrix with leading dimension ld.
memory::desc plain(int rows, int cols, int ld, memory::data_type dt);

struct Product {
  dnnl::matmul mm;
  memory::desc scratchpad;
};
// dst (+)= src wei, cached under `key`, which must name everything the descs say.
Product product(const std::string& key, const memory::desc& src, const memory::desc& wei, const memory::desc& dst,
                bool accumulate);
void execute(const Product& p, const memory& src, const memory& wei, const memory& dst);

}  // namespace tb::onednn
#endif
