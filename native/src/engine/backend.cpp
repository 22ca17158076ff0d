#include "backend.h"

#include <stdexcept>
#include <utility>

namespace tb {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::BF16: return "BF16";
    case DType::F16: return "F16";
    case DType::I32: return "I32";
  }
  return "?";
}

size_t dtype_size(DType d) { return d == DType::BF16 || d == DType::F16 ? 2 : 4; }

Buffer::Buffer(Backend& be, DType dt, size_t count) : be_(&be), dtype_(dt) { resize(count); }

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& o) noexcept { swap(o); }

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    swap(o);
  }
  return *this;
}

void Buffer::swap(Buffer& o) noexcept {
  std::swap(be_, o.be_);
  std::swap(dtype_, o.dtype_);
  std::swap(count_, o.count_);
  std::swap(capacity_, o.capacity_);
  std::swap(data_, o.data_);
  std::swap(owner_, o.owner_);
  std::swap(prepared, o.prepared);
}

void Buffer::bind(Backend& be, DType dt) {
  release();
  be_ = &be;
  dtype_ = dt;
}

void Buffer::borrow(Backend& be, DType dt, const void* data, size_t count, std::shared_ptr<const void> owner) {
  if (!be.host_memory()) throw std::logic_error("Buffer::borrow needs a host-memory backend");
  bind(be, dt);
  data_ = const_cast<void*>(data);
  count_ = count;
  owner_ = owner ? std::move(owner) : std::make_shared<int>(0);
}

void Buffer::resize(size_t count) {
  prepared.reset();
  if (owner_) release();
  if (count <= capacity_) {
    count_ = count;
    return;
  }
  if (!be_) throw std::logic_error("Buffer::resize on a buffer of no backend");
  void* p = be_->alloc(count * dtype_size(dtype_));
  if (data_) be_->free(data_, capacity_ * dtype_size(dtype_));
  data_ = p;
  count_ = capacity_ = count;
}

void Buffer::release() {
  if (data_ && !owner_) be_->free(data_, capacity_ * dtype_size(dtype_));
  owner_.reset();
  data_ = nullptr;
  count_ = capacity_ = 0;
  prepared.reset();
}

static void need_type(DType have, DType want) {
  if (have != want)
    throw std::logic_error(std::string("buffer of type ") + dtype_name(have) + " used as " + dtype_name(want));
}
float* Buffer::f32() {
  need_type(dtype_, DType::F32);
  return static_cast<float*>(data_);
}
const float* Buffer::f32() const {
  need_type(dtype_, DType::F32);
  return static_cast<const float*>(data_);
}
int32_t* Buffer::i32() {
  need_type(dtype_, DType::I32);
  return static_cast<int32_t*>(data_);
}
const int32_t* Buffer::i32() const {
  need_type(dtype_, DType::I32);
  return static_cast<const int32_t*>(data_);
}

uint16_t* Buffer::bf16() {
  need_type(dtype_, DType::BF16);
  return static_cast<uint16_t*>(data_);
}
const uint16_t* Buffer::bf16() const {
  need_type(dtype_, DType::BF16);
  return static_cast<const uint16_t*>(data_);
}

HostFloats::HostFloats(const Buffer& b) : n_(b.size()) {
  if (b.empty()) return;
  if (b.backend()->host_memory()) {
    ptr_ = b.f32();
    return;
  }
  copy_.resize(n_);
  b.backend()->download(copy_.data(), b.f32(), b.bytes());
  ptr_ = copy_.data();
}

std::vector<std::string> backend_names() { return {"cpu"}; }

std::unique_ptr<Backend> make_backend(const std::string& name, int threads) {
  if (name == "cpu") return make_cpu_backend(threads);
  throw std::runtime_error("unknown backend '" + name + "' (this build has: cpu)");
}

}  // namespace tb
