// Fuzz target: config.json. The bytes go through the JSON reader in memory (json_parse), whose
// result must survive a write-out and re-parse unchanged (json_quote for strings, shortest
// round-trip numbers, NaN / Infinity as the reader accepts them); then through the model config
// reader (parse_config on the file) and, when accepted, through what Model::load computes from
// the config before it reads a tensor: every projection's shape (target_dims), the frozen
// weight count and the KV cache size, all of which must be positive and free of overflow.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "fuzz_util.h"
#include "json.h"
#include "model.h"

using namespace tb;

namespace {

std::string number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  char buf[40];
  snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string write(const Json& j) {
  switch (j.kind) {
    case Json::Null: return "null";
    case Json::Bool: return j.b ? "true" : "false";
    case Json::Number: return number(j.num);
    case Json::String: return json_quote(j.str);
    case Json::Array: {
      std::string out = "[";
      for (size_t i = 0; i < j.arr.size(); i++) out += (i ? "," : "") + write(j.arr[i]);
      return out + "]";
    }
    case Json::Object: {
      std::string out = "{";
      bool first = true;
      for (auto& [k, v] : j.obj) {
        out += (first ? "" : ",") + json_quote(k) + ":" + write(v);
        first = false;
      }
      return out + "}";
    }
  }
  return "";
}

bool same(const Json& a, const Json& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Json::Null: return true;
    case Json::Bool: return a.b == b.b;
    case Json::Number: return memcmp(&a.num, &b.num, sizeof(double)) == 0 || (std::isnan(a.num) && std::isnan(b.num));
    case Json::String: return a.str == b.str;
    case Json::Array:
      if (a.arr.size() != b.arr.size()) return false;
      for (size_t i = 0; i < a.arr.size(); i++)
        if (!same(a.arr[i], b.arr[i])) return false;
      return true;
    case Json::Object:
      if (a.obj.size() != b.obj.size()) return false;
      for (auto ia = a.obj.begin(), ib = b.obj.begin(); ia != a.obj.end(); ++ia, ++ib)
        if (ia->first != ib->first || !same(ia->second, ib->second)) return false;
      return true;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    Json j = json_parse(text, "fuzz");
    std::string again = write(j);
    Json k;
    try {
      k = json_parse(again, "fuzz (written back)");
    } catch (const std::runtime_error& e) {
      fuzz::fail("written-back JSON does not parse", std::string(e.what()) + ": " + again.substr(0, 200));
    }
    FUZZ_CHECK(same(j, k), again.substr(0, 200));
  } catch (const std::runtime_error&) {
    return 0;  // not JSON: parse_config would reject it the same way
  }

  static const std::string path = fuzz::scratch_dir() + "/config.json";
  fuzz::write_file(path, data, size);
  try {
    ModelConfig c = parse_config(path);
    FUZZ_CHECK(c.layers > 0 && c.hidden > 0 && c.intermediate > 0 && c.heads > 0 && c.kv_heads > 0 && c.head_dim > 0 &&
                   c.vocab > 0,
               "a dimension is not positive");
    FUZZ_CHECK(c.heads % c.kv_heads == 0 && c.head_dim % 2 == 0, "heads / head_dim");
    double frozen = double(c.vocab) * c.hidden;
    for (int t = 0; t < NUM_TARGETS; t++) {
      int in = 0, out = 0;
      target_dims(c, t, in, out);  // int products: UBSan reports an overflow here
      FUZZ_CHECK(in > 0 && out > 0, std::string(kModuleNames[t]) + " has a non-positive dimension");
      frozen += double(c.layers) * in * out;
    }
    FUZZ_CHECK(frozen > 0, "frozen weight count");
    if (c.experts > 0) {
      FUZZ_CHECK(c.experts_per_tok >= 1 && c.experts_per_tok <= c.experts && c.moe_intermediate > 0 && c.sparse_step > 0,
                 "Qwen3-MoE sizes");
      for (int t = GATE; t <= DOWN; t++) {
        int in = 0, out = 0;
        target_dims(c, t, in, out, true);
        FUZZ_CHECK(in > 0 && out > 0, std::string("expert ") + kModuleNames[t] + " has a non-positive dimension");
      }
      int sparse = 0;
      for (int l = 0; l < c.layers && l < 4096; l++) sparse += c.sparse_layer(l);
      (void)sparse;
    }
    (void)Model::kv_cache_bytes(c, 1, 1);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
