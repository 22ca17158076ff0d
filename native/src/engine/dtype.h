// Element types of checkpoint tensors and backend buffers, and the bf16 conversions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tb {

enum class DType { F32, BF16, F16, I32 };
const char* dtype_name(DType d);  // safetensors spelling: "F32", "BF16", ...
size_t dtype_size(DType d);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as torch's .to(torch.bfloat16); NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

}  // namespace tb
