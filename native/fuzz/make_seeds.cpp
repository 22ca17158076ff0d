// Writes the generated part of the seed corpora, valid inputs of each target made with the
// engine's own writers (write_safetensors, save_adapter, save_training_state) and, for the
// dtypes those never write (BF16, F16) and PEFT's ".default" names, a plain safetensors writer:
//   native/build-fuzz/make_seeds native/fuzz/corpus
// Seeds are named gen-*, each safetensors part raw and framed (fuzz_util.h safetensors_bytes);
// the hand-written config.json seeds, the test fixtures (fixture-*) and the crash reproducers
// (crash-*) beside them are not touched.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "fuzz_util.h"
#include "json.h"
#include "safetensors.h"

using namespace tb;

namespace {

std::string dir_of;

std::string read(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  std::string d = dir_of + "/" + target;
  std::filesystem::create_directories(d);
  std::string p = d + "/gen-" + name;
  fuzz::write_file(p, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  printf("%s (%zu bytes)\n", p.c_str(), bytes.size());
}

struct Raw {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// A safetensors file of any dtype, laid out as the format says (header padded to 8 bytes).
std::string safetensors(const std::vector<Raw>& ts, const std::string& metadata_json = "") {
  std::string h = "{";
  if (!metadata_json.empty()) h += "\"__metadata__\":" + metadata_json;
  size_t off = 0;
  for (auto& t : ts) {
    h += (h.size() > 1 ? "," : "") + json_quote(t.name) + ":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); i++) h += (i ? "," : "") + std::to_string(t.shape[i]);
    h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(off + t.bytes.size()) + "]}";
    off += t.bytes.size();
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  std::string out(8, '\0');
  for (int k = 0; k < 8; k++) out[size_t(k)] = char(uint64_t(h.size()) >> (8 * k));
  out += h;
  for (auto& t : ts) out += t.bytes;
  return out;
}

std::string halves(size_t n, bool bf16) {
  std::string b;
  for (size_t i = 0; i < n; i++) {
    float x = 0.25f * float(i) - 1.0f;
    uint16_t h = bf16 ? f32_to_bf16(x) : uint16_t(0x3C00 + i);  // f16: 1.0 and up
    b += char(h & 0xFF);
    b += char(h >> 8);
  }
  return b;
}

std::string floats(size_t n, float base) {
  std::string b(n * 4, '\0');
  for (size_t i = 0; i < n; i++) {
    float x = base + 0.5f * float(i);
    memcpy(&b[i * 4], &x, 4);
  }
  return b;
}

// A safetensors file framed as fuzz_util.h safetensors_bytes reads it: header, NUL, data.
std::string framed(const std::string& file) {
  uint64_t hlen = 0;
  for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | uint8_t(file[size_t(k)]);
  return file.substr(8, size_t(hlen)) + std::string(1, '\0') + file.substr(8 + size_t(hlen));
}

// safetensors target input: flags (bit 0: framed), the file; both forms.
void put_safetensors(const std::string& name, const std::string& file) {
  put("safetensors", name, std::string(1, '\0') + file);
  put("safetensors", name + "-framed", std::string(1, '\1') + framed(file));
}

// adapter target input: flags, length of adapter_config.json, the two files.
std::string adapter_input(uint8_t flags, const std::string& config, const std::string& weights) {
  std::string out(1, char(flags));
  for (int k = 0; k < 4; k++) out += char(uint32_t(config.size()) >> (8 * k));
  return out + config + weights;
}

void set_moments(Model& m) {
  for (Param* p : m.trainable())
    for (Buffer* b : {&p->m, &p->v}) {
      std::vector<float> v(b->size());
      for (size_t i = 0; i < v.size(); i++) v[i] = 0.01f * float(i % 7) + (b == &p->v ? 0.5f : -0.1f);
      b->backend()->upload(b->raw(), v.data(), b->bytes());
    }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_seeds <corpus dir>\n");
    return 2;
  }
  dir_of = argv[1];
  const std::string tmp = fuzz::scratch_dir();

  // safetensors: the engine's f32 writer, then the other dtypes, a scalar and an empty tensor.
  {
    std::vector<float> a(6), b(4);
    for (size_t i = 0; i < a.size(); i++) a[i] = float(i) - 2.5f;
    for (size_t i = 0; i < b.size(); i++) b[i] = 1.0f / float(i + 1);
    write_safetensors(tmp + "/w.safetensors", {{"model.embed_tokens.weight", {2, 3}, a.data()}, {"model.norm.weight", {4}, b.data()}},
                      {{"format", "pt"}});
    put_safetensors("f32", read(tmp + "/w.safetensors"));
    put_safetensors("bf16-f16",
        safetensors({{"a.weight", "BF16", {2, 4}, halves(8, true)}, {"b.weight", "F16", {3}, halves(3, false)}}, "{\"format\":\"pt\"}"));
    put_safetensors("scalar-empty",
        safetensors({{"scalar", "F32", {}, floats(1, 3.0f)}, {"empty", "F32", {0, 4}, ""}, {"odd", "BF16", {1}, halves(1, true)}}));
  }

  // adapter: save_adapter of the fuzz model, without and with an adapter already attached.
  {
    auto m = fuzz::tiny_model();
    m->add_lora(fuzz::tiny_lora());
    m->save_adapter(tmp + "/a", "fuzz/tiny-llama");
    std::string cfg = read(tmp + "/a/adapter_config.json"), w = read(tmp + "/a/adapter_model.safetensors");
    put("adapter", "qv-r2", adapter_input(0, cfg, w));
    put("adapter", "qv-r2-attached", adapter_input(1, cfg, w));
    put("adapter", "qv-r2-framed", adapter_input(2, cfg, framed(w)));

    LoraOptions all = fuzz::tiny_lora(1);
    for (auto& t : all.targets) t = true;
    all.rslora = true;
    all.alpha = 2.5;
    auto m2 = fuzz::tiny_model();
    m2->add_lora(all);
    m2->save_adapter(tmp + "/b", "fuzz/tiny-llama");
    put("adapter", "all-r1-rslora", adapter_input(0, read(tmp + "/b/adapter_config.json"), read(tmp + "/b/adapter_model.safetensors")));

    // As PEFT writes it: "all-linear", BF16 tensors, the ".default" adapter name in some versions.
    std::vector<Raw> ts;
    for (Param* p : m->trainable()) {
      std::string name = p->name;
      name.replace(name.rfind(".weight"), 7, ".default.weight");
      ts.push_back({name, "BF16", p->shape, halves(size_t(p->numel()), true)});
    }
    std::string peft =
        "{\"peft_type\": \"LORA\", \"task_type\": \"CAUSAL_LM\", \"r\": 2, \"lora_alpha\": 16, \"lora_dropout\": 0.05,"
        " \"target_modules\": [\"v_proj\", \"q_proj\"], \"bias\": \"none\", \"use_dora\": false, \"use_rslora\": false,"
        " \"rank_pattern\": {}, \"alpha_pattern\": {}, \"modules_to_save\": null, \"layers_to_transform\": null}";
    put("adapter", "peft-bf16-default", adapter_input(1, peft, safetensors(ts, "{\"format\":\"pt\"}")));
    put("adapter", "peft-bf16-default-framed", adapter_input(3, peft, framed(safetensors(ts, "{\"format\":\"pt\"}"))));
  }

  // training_state: save_training_state after a step, LoRA (flags 0) and full fine-tuning (1).
  for (bool full : {false, true}) {
    auto m = fuzz::tiny_model();
    if (full) m->set_trainable(true);
    else m->add_lora(fuzz::tiny_lora());
    set_moments(*m);
    m->zero_grad();
    m->optimizer_step(OptimizerOptions{});
    std::string p = tmp + (full ? "/full.bin" : "/lora.bin");
    m->save_training_state(p);
    put("training_state", full ? "full" : "lora", std::string(1, char(full ? 1 : 0)) + read(p));
    put("training_state", full ? "full-framed" : "lora-framed", std::string(1, char(full ? 3 : 2)) + framed(read(p)));
  }
  return 0;
}
