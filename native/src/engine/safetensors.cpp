#include "safetensors.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

#include "facts.h"
#include "json.h"
#include "platform.h"

namespace tb {

// A dtype the loader reads (facts.h kCheckpointDTypes), by its safetensors name.
static bool checkpoint_dtype(const std::string& name, DType& out) {
  for (size_t i = 0; i < kCheckpointDTypeCount; i++)
    if (name == kCheckpointDTypes[i])
      for (DType d : {DType::F32, DType::BF16, DType::F16})
        if (name == dtype_name(d)) {
          out = d;
          return true;
        }
  return false;
}

int64_t TensorInfo::numel() const {
  // A shape with a zero has no elements whatever its other dims, whose product may not fit in
  // 64 bits ([1e12, 1e12, 0] is a valid header); without a zero the reader has bounded the
  // product by the file's size.
  for (auto d : shape)
    if (d == 0) return 0;
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); i++) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((man & 0x400) == 0) { man <<= 1; exp--; }
      man &= 0x3FF;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000 | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  FileMap m = map_file(path);
  map_ = m.data;
  size_ = m.size;
  try {
    if (size_ < 8)
      throw std::runtime_error(path + ": truncated safetensors file (" + std::to_string(size_) + " bytes, no header length)");
    const uint8_t* base = static_cast<const uint8_t*>(map_);
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | base[k];
    if (hlen == 0 || hlen > size_ - 8 || hlen > (100u << 20))
      throw std::runtime_error(path + ": bad safetensors header length " + std::to_string(hlen) +
                               " (file has " + std::to_string(size_) + " bytes)");
    std::string header(reinterpret_cast<const char*>(base + 8), size_t(hlen));
    Json h = json_parse(header, path + " (safetensors header)");
    if (h.kind != Json::Object) throw std::runtime_error(path + ": safetensors header is not a JSON object");
    data_ = base + 8 + hlen;
    size_t data_size = size_ - 8 - hlen;
    for (auto& [name, t] : h.obj) {
      if (name == "__metadata__") {
        for (auto& [k, v] : t.obj)
          if (v.kind == Json::String) metadata_[k] = v.str;
        continue;
      }
      const Json* dt = t.find("dtype");
      const Json* sh = t.find("shape");
      const Json* off = t.find("data_offsets");
      if (!dt || dt->kind != Json::String || !sh || sh->kind != Json::Array || !off || off->kind != Json::Array || off->arr.size() != 2)
        throw std::runtime_error(path + ": tensor '" + name + "' has a malformed header entry");
      TensorInfo ti;
      ti.name = name;
      if (!checkpoint_dtype(dt->str, ti.dtype)) {
        std::string known;
        for (size_t i = 0; i < kCheckpointDTypeCount; i++)
          known += std::string(i == 0 ? "" : i + 1 == kCheckpointDTypeCount ? " and " : ", ") + kCheckpointDTypes[i];
        throw std::runtime_error(path + ": tensor '" + name + "' has unsupported dtype " + dt->str + " (" + known + " are supported)");
      }
      double count = 1;
      for (auto& d : sh->arr) {
        if (d.kind != Json::Number || d.num < 0 || d.num != std::floor(d.num) || d.num > 1e12)
          throw std::runtime_error(path + ": tensor '" + name + "' has a bad shape");
        ti.shape.push_back(int64_t(d.num));
        count *= d.num;
      }
      for (auto& o : off->arr)
        if (o.kind != Json::Number || o.num < 0 || o.num != std::floor(o.num) || o.num > double(data_size))
          throw std::runtime_error(path + ": truncated file: tensor '" + name + "' has data offsets beyond the data section of " +
                                   std::to_string(data_size) + " bytes");
      if (count * double(dtype_size(ti.dtype)) > double(data_size))
        throw std::runtime_error(path + ": truncated file: tensor '" + name + "' of shape " + shape_str(ti.shape) + " does not fit in the file");
      ti.begin = size_t(off->arr[0].num);
      ti.end = size_t(off->arr[1].num);
      if (ti.end < ti.begin || size_t(ti.numel()) * dtype_size(ti.dtype) != ti.end - ti.begin)
        throw std::runtime_error(path + ": tensor '" + name + "' byte range [" + std::to_string(ti.begin) + ", " + std::to_string(ti.end) +
                                 ") does not match dtype " + dt->str + " and shape " + shape_str(ti.shape));
      if (ti.end > data_size)
        throw std::runtime_error(path + ": truncated file: tensor '" + name + "' ends at byte " + std::to_string(ti.end) +
                                 " of a data section of " + std::to_string(data_size) + " bytes");
      tensors_[name] = ti;
    }
  } catch (...) {
    unmap_file({map_, size_});
    map_ = nullptr;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  unmap_file({map_, size_});
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void SafetensorsFile::read_f32(const TensorInfo& t, float* out) const {
  const uint8_t* p = data_ + t.begin;
  int64_t n = t.numel();
  if (n == 0) return;  // an empty tensor: nothing to copy (memcpy must not see a null out)
  if (t.dtype == DType::F32) {
    memcpy(out, p, size_t(n) * 4);
  } else {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
    for (int64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      out[i] = t.dtype == DType::BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  // The f32 copy is what the engine keeps: drop the file pages now so that loading never
  // holds the checkpoint twice (peak memory = one copy of the weights).
  drop_pages(p, t.end - t.begin);
}

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  std::string single = dir + "/model.safetensors";
  std::string index = dir + "/model.safetensors.index.json";
  if (file_exists(index)) {
    Json j = json_parse_file(index);
    const Json* wm = j.find("weight_map");
    if (!wm || wm->kind != Json::Object) throw std::runtime_error(index + ": missing 'weight_map'");
    std::map<std::string, size_t> shard_index;
    for (auto& [tensor, file] : wm->obj) {
      if (file.kind != Json::String) throw std::runtime_error(index + ": weight_map entry '" + tensor + "' is not a file name");
      if (file.str.find('/') != std::string::npos || file.str.find("..") != std::string::npos)
        throw std::runtime_error(index + ": weight_map entry '" + tensor + "' names a file outside the folder: " + file.str);
      auto it = shard_index.find(file.str);
      if (it == shard_index.end()) {
        files_.push_back(std::make_unique<SafetensorsFile>(dir + "/" + file.str));
        it = shard_index.emplace(file.str, files_.size() - 1).first;
      }
      if (!files_[it->second]->find(tensor))
        throw std::runtime_error(dir + "/" + file.str + ": tensor '" + tensor + "' listed in model.safetensors.index.json is missing");
      where_[tensor] = it->second;
    }
  } else if (file_exists(single)) {
    files_.push_back(std::make_unique<SafetensorsFile>(single));
    for (auto& [name, t] : files_[0]->tensors()) where_[name] = 0;
  } else {
    throw std::runtime_error(dir + ": no model.safetensors or model.safetensors.index.json");
  }
}

const TensorInfo* Checkpoint::info(const std::string& name, const SafetensorsFile** file) const {
  auto it = where_.find(name);
  if (it == where_.end()) return nullptr;
  if (file) *file = files_[it->second].get();
  return files_[it->second]->find(name);
}

bool Checkpoint::has(const std::string& name) const { return where_.count(name) > 0; }

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (auto& [n, i] : where_) out.push_back(n);
  return out;
}

std::string Checkpoint::first_dtype() const {
  for (auto& [n, i] : where_) return dtype_name(files_[i]->find(n)->dtype);
  return "F32";
}

const TensorInfo* Checkpoint::checked(const std::string& name, const std::vector<int64_t>& shape,
                                      const SafetensorsFile** file) const {
  const SafetensorsFile* f = nullptr;
  const TensorInfo* t = info(name, &f);
  if (!t) {
    std::string where = files_.size() == 1 ? files_[0]->path() : dir_ + " (sharded checkpoint)";
    throw std::runtime_error(where + ": missing tensor '" + name + "' (expected shape " + shape_str(shape) + ")");
  }
  if (t->shape != shape)
    throw std::runtime_error(f->path() + ": tensor '" + name + "' has shape " + shape_str(t->shape) + ", expected " + shape_str(shape));
  *file = f;
  return t;
}

std::vector<float> Checkpoint::load(const std::string& name, const std::vector<int64_t>& shape) const {
  const SafetensorsFile* f = nullptr;
  const TensorInfo* t = checked(name, shape, &f);
  std::vector<float> out(size_t(t->numel()));
  f->read_f32(*t, out.data());
  return out;
}

const uint16_t* Checkpoint::bf16_data(const std::string& name, const std::vector<int64_t>& shape) const {
  const SafetensorsFile* f = nullptr;
  const TensorInfo* t = checked(name, shape, &f);
  if (t->dtype != DType::BF16) return nullptr;
  const uint8_t* p = f->data() + t->begin;
  return uintptr_t(p) % alignof(uint16_t) == 0 ? reinterpret_cast<const uint16_t*>(p) : nullptr;
}

void write_safetensors(const std::string& path, const std::vector<TensorOut>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool f2 = true;
    for (auto& [k, v] : metadata) {
      header += (f2 ? "" : ",") + json_quote(k) + ":" + json_quote(v);
      f2 = false;
    }
    header += "}";
    first = false;
  }
  size_t offset = 0;
  for (auto& t : tensors) {
    int64_t n = 1;
    for (auto d : t.shape) n *= d;
    size_t bytes = size_t(n) * 4;
    std::string shape;
    for (size_t i = 0; i < t.shape.size(); i++) shape += (i ? "," : "") + std::to_string(t.shape[i]);
    header += (first ? "" : ",") + json_quote(t.name) + ":{\"dtype\":\"F32\",\"shape\":[" + shape +
              "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    first = false;
    offset += bytes;
  }
  header += "}";
  while ((header.size() + 8) % 8 != 0) header += ' ';  // align the data section to 8 bytes
  std::string tmp = path + ".tmp";
  int err = 0;
  {
    std::ofstream out(fs_path(tmp), std::ios::binary | std::ios::trunc);
    if (!out) throw_write_failure(tmp, "cannot open for writing", errno);
    uint64_t hl = header.size();
    uint8_t lenbuf[8];
    for (int k = 0; k < 8; k++) lenbuf[k] = uint8_t(hl >> (8 * k));
    out.write(reinterpret_cast<const char*>(lenbuf), 8);
    out.write(header.data(), std::streamsize(header.size()));
    for (auto& t : tensors) {
      int64_t n = 1;
      for (auto d : t.shape) n *= d;
      out.write(reinterpret_cast<const char*>(t.data), std::streamsize(n * 4));
    }
    out.flush();
    if (!out) err = errno ? errno : EIO;
  }
  if (err) throw_write_failure(tmp, "write failed", err);
  sync_file(tmp);
  std::string reason;
  if (!replace_file(tmp, path, reason)) throw std::runtime_error(path + ": rename from temporary file failed (" + reason + ")");
}

}  // namespace tb
