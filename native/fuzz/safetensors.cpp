// Fuzz target: a .safetensors file (8-byte header length, JSON header, tensor table, data) as
// the engine reads a checkpoint: Checkpoint(dir) over dir/model.safetensors, then every tensor
// through load() (f32/bf16/f16 -> f32) and bf16_data() (in place).
// Input: byte 0 flags (bit 0: framed, fuzz_util.h safetensors_bytes: header JSON, NUL, data;
// else the rest is the file as it is).
// Properties beyond the sanitizers: every accepted tensor's byte range lies inside the data
// section and matches dtype x shape, and the values read equal the input's bytes at that range
// (the reference is decoded from a heap copy of the file, which ASan bounds, since the engine
// reads a memory map that ASan cannot see past).
#include <cstring>
#include <stdexcept>

#include "fuzz_util.h"
#include "safetensors.h"

using namespace tb;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t input_size) {
  if (input_size < 1) return 0;
  // the file's bytes on the heap, where ASan bounds every read of the reference below
  const std::string file = fuzz::safetensors_bytes(input + 1, input_size - 1, input[0] & 1);
  const uint8_t* data = reinterpret_cast<const uint8_t*>(file.data());
  const size_t size = file.size();
  static const std::string dir = fuzz::scratch_dir() + "/checkpoint";
  static const bool made = std::filesystem::create_directory(dir) || true;
  (void)made;
  const std::string path = dir + "/model.safetensors";
  fuzz::write_file(path, file);
  try {
    Checkpoint ck(dir);
    // The data section as the format defines it, independently of the engine.
    FUZZ_CHECK(size >= 8, "accepted a file without a header length");
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | data[k];
    FUZZ_CHECK(hlen <= size - 8, "header length beyond the file");
    const uint8_t* section = data + 8 + hlen;
    const size_t section_size = size - 8 - size_t(hlen);
    (void)ck.first_dtype();
    for (const std::string& name : ck.names()) {
      const SafetensorsFile* f = nullptr;
      const TensorInfo* t = ck.info(name, &f);
      FUZZ_CHECK(t && f, name);
      FUZZ_CHECK(t->begin <= t->end && t->end <= section_size, name + " range outside the data section");
      int64_t n = t->numel();
      FUZZ_CHECK(n >= 0, name);
      FUZZ_CHECK(uint64_t(n) * dtype_size(t->dtype) == t->end - t->begin, name + " range does not match its shape");
      std::vector<float> v = ck.load(name, t->shape);
      FUZZ_CHECK(v.size() == size_t(n), name);
      const uint8_t* ref = section + t->begin;
      for (int64_t i = 0; i < n; i++) {
        float want;
        if (t->dtype == DType::F32) {
          memcpy(&want, ref + 4 * i, 4);
        } else {
          uint16_t h;
          memcpy(&h, ref + 2 * i, 2);
          want = t->dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        FUZZ_CHECK(memcmp(&want, &v[size_t(i)], 4) == 0, name + " value differs");
      }
      if (const uint16_t* p = ck.bf16_data(name, t->shape))
        FUZZ_CHECK(t->dtype == DType::BF16 && memcmp(p, ref, size_t(n) * 2) == 0, name + " bf16 view differs");
    }
  } catch (const std::runtime_error&) {
    // a rejected file: the engine's errors are runtime_errors naming the file
  }
  fuzz::remove_file(path);
  return 0;
}
