// safetensors reading (mmap, f32/bf16/f16 -> f32, or a BF16 tensor in place) and writing (f32, atomic temp + rename).
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

namespace tb {

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t begin = 0, end = 0;  // byte offsets inside the data section
  int64_t numel() const;
};

// One memory-mapped .safetensors file with a validated header.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);  // throws with the file name on any defect
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorInfo* find(const std::string& name) const;
  // Converts to f32 into out (numel floats).
  void read_f32(const TensorInfo& t, float* out) const;
  const uint8_t* data() const { return data_; }  // the data section, mapped read-only

 private:
  std::string path_;
  const void* map_ = nullptr;
  size_t size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint: one file, or the shards named by model.safetensors.index.json.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& dir);
  // Reads tensor `name` as f32 after checking its shape; errors name the file and tensor.
  std::vector<float> load(const std::string& name, const std::vector<int64_t>& shape) const;
  // The mapped bytes of a BF16 tensor (same checks), valid while this checkpoint lives; null
  // when the tensor is stored in another type or misaligned.
  const uint16_t* bf16_data(const std::string& name, const std::vector<int64_t>& shape) const;
  bool has(const std::string& name) const;
  const TensorInfo* info(const std::string& name, const SafetensorsFile** file = nullptr) const;
  std::string first_dtype() const;
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
  const TensorInfo* checked(const std::string& name, const std::vector<int64_t>& shape, const SafetensorsFile** file) const;
};

struct TensorOut {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};
// Writes f32 tensors to path via path + ".tmp" + rename, so a crash never leaves a half file.
void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata);

std::string shape_str(const std::vector<int64_t>& s);
float f16_to_f32(uint16_t h);

}  // namespace tb
