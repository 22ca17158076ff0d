// Element types of checkpoint tensors and backend buffers.
#pragma once
#include <cstddef>

namespace tb {

enum class DType { F32, BF16, F16, I32 };
const char* dtype_name(DType d);  // safetensors spelling: "F32", "BF16", ...
size_t dtype_size(DType d);

}  // namespace tb
