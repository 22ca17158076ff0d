// PackedMatrix (gemm.h) on oneDNN's matmul primitive: the weights are reordered once into the
// blocked layout the primitive asks for (the same for every M), and one primitive per problem
// shape is kept, since a training run repeats a handful of shapes. oneDNN threads each product
// over the whole OpenMP team itself.
#include "gemm.h"

#include <stdexcept>
#include <string>

#include "matmul.h"

namespace tb {

#if defined(TUNEBENCH_ONEDNN)
using onednn::memory;

struct PackedMatrix::Impl {
  memory packed;
};

static std::string product_key(int M, int K, int N, int ldx, int ldy, bool accumulate) {
  return "packed " + std::to_string(M) + " " + std::to_string(K) + " " + std::to_string(N) + " " + std::to_string(ldx) +
         " " + std::to_string(ldy) + (accumulate ? " +" : "");
}

static memory::desc f32(int rows, int cols, int ld) { return onednn::plain(rows, cols, ld, memory::data_type::f32); }

std::unique_ptr<PackedMatrix> PackedMatrix::pack(const float* W, int K, int N) {
  if (K <= 0 || N <= 0) return nullptr;
  try {
    memory::desc any({K, N}, memory::data_type::f32, memory::format_tag::any);
    // The layout the primitive wants for this K x N (any M gives the same; 256 is typical).
#if DNNL_VERSION_MAJOR >= 3
    dnnl::matmul::primitive_desc pd(onednn::engine(), f32(256, K, K), any, f32(256, N, N));
#else
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(f32(256, K, K), any, f32(256, N, N)), onednn::engine());
#endif
    memory plain(f32(K, N, N), onednn::engine(), const_cast<float*>(W));
    std::unique_ptr<PackedMatrix> p(new PackedMatrix());
    p->impl_.reset(new Impl{memory(pd.weights_desc(), onednn::engine())});
    p->K_ = K;
    p->N_ = N;
    dnnl::stream s(onednn::engine());
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
    const memory::desc& w = impl_->packed.get_desc();
    memory::desc src = f32(M, K_, ldx), dst = f32(M, N_, ldy);
    auto p = onednn::product(product_key(M, K_, N_, ldx, ldy, accumulate), src, w, dst, accumulate);
    onednn::execute(p, memory(src, onednn::engine(), const_cast<float*>(x)), impl_->packed,
                    memory(dst, onednn::engine(), y));
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
