// Minimal JSON reader/writer for config.json, safetensors headers and adapter_config.json.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tb {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;

  bool is_null() const { return kind == Null; }
  bool has(const std::string& key) const { return kind == Object && obj.count(key) > 0; }
  const Json* find(const std::string& key) const {
    if (kind != Object) return nullptr;
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &it->second;
  }
};

// Throws std::runtime_error("<where>: ...") with the byte offset of the problem.
Json json_parse(const std::string& text, const std::string& where);
Json json_parse_file(const std::string& path);
std::string json_quote(const std::string& s);

}  // namespace tb
