// PackedMatrix (gemm.h) on oneDNN's matmul primitive: the weights are reordered once into the
// blocked layout the primitive asks for (the same for every M), and one primitive per problem
// shape is kept, since a training run repeats a handful of shapes. oneDNN threads each product
// over the whole OpenMP team itself.
#include "gemm.h"

#include <stdexcept>
#include <string>

#if defined(TUNEBENCH_ONEDNN)
#include <dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>
#endif

namespace tb {

#if defined(TUNEBENCH_ONEDNN)
using dnnl::memory;

struct PackedMatrix::Impl {
  memory packed;
};

static dnnl::engine& cpu_engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

static memory::desc plain_desc(int rows, int cols, int ld) {
  return memory::desc({rows, cols}, memory::data_type::f32, memory::dims{ld, 1});
}

static dnnl::matmul::primitive_desc matmul_desc(int M, int K, int N, int ldx, int ldy, bool accumulate,
                                                const memory::desc& weights) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::matmul::primitive_desc(cpu_engine(), plain_desc(M, K, ldx), weights, plain_desc(M, N, ldy), attr);
#else
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(plain_desc(M, K, ldx), weights, plain_desc(M, N, ldy)), attr,
                                      cpu_engine());
#endif
}

// Primitives by (M, K, N, ldx, ldy, accumulate). The packed layout depends on K and N only, so
// every matrix of one shape shares them. Bounded: a run with many batch lengths starts over.
struct Product {
  dnnl::matmul mm;
  memory::desc scratchpad;
};
static Product product_for(int M, int K, int N, int ldx, int ldy, bool accumulate, const memory::desc& weights) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int, int, int, bool>, Product> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto key = std::make_tuple(M, K, N, ldx, ldy, accumulate);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 512) cache.clear();
  auto pd = matmul_desc(M, K, N, ldx, ldy, accumulate, weights);
  return cache.emplace(key, Product{dnnl::matmul(pd), pd.scratchpad_desc()}).first->second;
}

std::unique_ptr<PackedMatrix> PackedMatrix::pack(const float* W, int K, int N) {
  if (K <= 0 || N <= 0) return nullptr;
  try {
    memory::desc any({K, N}, memory::data_type::f32, memory::format_tag::any);
    // The layout the primitive wants for this K x N (any M gives the same; 256 is typical).
    auto pd = matmul_desc(256, K, N, K, N, false, any);
    memory plain(plain_desc(K, N, N), cpu_engine(), const_cast<float*>(W));
    std::unique_ptr<PackedMatrix> p(new PackedMatrix());
    p->impl_.reset(new Impl{memory(pd.weights_desc(), cpu_engine())});
    p->K_ = K;
    p->N_ = N;
    dnnl::stream s(cpu_engine());
    dnnl::reorder(plain, p->impl_->packed).execute(s, plain, p->impl_->packed);
    s.wait();
    return p;
  } catch (const dnnl::error&) {
    return nullptr;  // no matmul for this shape or no memory: the caller multiplies with gemm()
  }
}

PackedMatrix::~PackedMatrix() = default;

size_t PackedMatrix::bytes() const { return impl_->packed.get_desc().get_size(); }

void PackedMatrix::multiply(int M, const float* x, int ldx, float* y, int ldy, bool accumulate) const {
  if (M <= 0) return;
  try {
    Product p = product_for(M, K_, N_, ldx, ldy, accumulate, impl_->packed.get_desc());
    memory src(plain_desc(M, K_, ldx), cpu_engine(), const_cast<float*>(x));
    memory dst(plain_desc(M, N_, ldy), cpu_engine(), y);
    // The calling thread's scratchpad: products on other threads (other models) never share one.
    thread_local std::vector<char> scratch;
    if (scratch.size() < p.scratchpad.get_size()) scratch.resize(p.scratchpad.get_size());
    memory pad(p.scratchpad, cpu_engine(), scratch.data());
    dnnl::stream s(cpu_engine());
    p.mm.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, impl_->packed}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}});
    s.wait();
  } catch (const dnnl::error& e) {
    throw std::runtime_error("oneDNN matmul (" + std::to_string(M) + "x" + std::to_string(K_) + " by " +
                             std::to_string(K_) + "x" + std::to_string(N_) + "): " + e.what());
  }
}
#else
struct PackedMatrix::Impl {};
std::unique_ptr<PackedMatrix> PackedMatrix::pack(const float*, int, int) { return nullptr; }
PackedMatrix::~PackedMatrix() = default;
size_t PackedMatrix::bytes() const { return 0; }
void PackedMatrix::multiply(int, const float*, int, float*, int, bool) const {
  throw std::logic_error("PackedMatrix without oneDNN");
}
#endif

}  // namespace tb
