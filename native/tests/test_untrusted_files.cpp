// Readers of untrusted files: the defects the fuzz targets (native/fuzz) found, each pinned here
// and, as bytes, by a crash-* file of native/fuzz/corpus/<target>/ that every fuzz run replays
// under the sanitizers. A rejected file must throw a std::runtime_error naming it and leave the
// model as it was.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "json.h"
#include "model.h"
#include "safetensors.h"
#include "untrusted_files.h"

using namespace tb;

namespace {

int* g_checks = nullptr;
int* g_failures = nullptr;

void check(const std::string& name, bool ok, const std::string& detail = "") {
  (*g_checks)++;
  if (!ok) (*g_failures)++;
  printf("%s %-60s %s\n", ok ? "ok  " : "FAIL", name.c_str(), detail.substr(0, 160).c_str());
}

// The message of the runtime_error f() throws; "" when it returns, "<other> ..." for another type.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not a runtime_error> ") + e.what();
  }
  return "";
}
bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void write(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << bytes;
}
std::string read(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A safetensors file from its header JSON and data bytes.
std::string safetensors(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int k = 0; k < 8; k++) out[size_t(k)] = char(uint64_t(header.size()) >> (8 * k));
  return out + header + data;
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  if (at == std::string::npos) throw std::logic_error("test: '" + from + "' not found");
  return s.replace(at, from.size(), to);
}

ModelConfig tiny() {
  ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.layers = 1;
  c.hidden = 8;
  c.intermediate = 12;
  c.heads = 2;
  c.kv_heads = 1;
  c.head_dim = 4;
  c.vocab = 11;
  return c;
}

LoraOptions qv_lora() {
  LoraOptions o;
  o.rank = 2;
  o.alpha = 4;
  o.targets[Q] = o.targets[V] = true;
  return o;
}

// Names and f32 values of every trainable tensor and its moments.
std::vector<std::pair<std::string, std::vector<float>>> state_of(Model& m) {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  for (Param* p : m.trainable())
    for (const Buffer* b : {&p->w, &p->m, &p->v}) {
      HostFloats h(*b);
      out.emplace_back(p->name, std::vector<float>(h.data(), h.data() + h.size()));
    }
  return out;
}

void test_safetensors(const std::filesystem::path& dir) {
  // crash-empty-tensor-memcpy-null: read_f32 passed an empty vector's null data() to memcpy.
  // crash-numel-overflow: numel() multiplied 1e12 * 1e12 (signed overflow) before the 0.
  std::filesystem::create_directories(dir);
  float three = 3.0f;
  write(dir / "model.safetensors",
        safetensors("{\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                    "\"z\":{\"dtype\":\"F32\",\"shape\":[1000000000000,1000000000000,0],\"data_offsets\":[0,0]},"
                    "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                    std::string(reinterpret_cast<const char*>(&three), 4)));
  bool ok = false;
  std::string err = error_of([&] {
    Checkpoint ck(dir.string());
    const TensorInfo* z = ck.info("z");
    ok = ck.load("e", {0, 4}).empty() && z && z->numel() == 0 && ck.load("z", z->shape).empty() &&
         ck.load("s", {}) == std::vector<float>{3.0f};
  });
  check("safetensors: empty tensors, [1e12, 1e12, 0], a scalar", ok && err.empty(), err);
}

void test_json() {
  // A high surrogate followed by an escape that is not a low one: "\ud800\u0041" was read as
  // one garbage code point above U+10FFFF, and the 'A' was lost.
  std::string lone, pair;
  std::string err = error_of([&] {
    lone = json_parse("\"\\ud800\\u0041\"", "test").str;
    pair = json_parse("\"\\ud83d\\ude00\"", "test").str;
  });
  check("json: \\ud800\\u0041 is a lone surrogate and 'A'", err.empty() && lone == "\xED\xA0\x80" "A", err);
  check("json: \\ud83d\\ude00 is U+1F600", err.empty() && pair == "\xF0\x9F\x98\x80", err);
}

void test_config(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const std::string path = (dir / "config.json").string();
  // crash-hidden-size-beyond-int: int(1e13) was undefined.
  write(path, "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":1e13}");
  std::string err = error_of([&] { parse_config(path); });
  check("config: hidden_size 1e13 is refused", has(err, "field 'hidden_size' must be a positive integer"), err);
  write(path, "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":Infinity}");
  err = error_of([&] { parse_config(path); });
  check("config: hidden_size Infinity is refused", has(err, "field 'hidden_size' must be a positive integer"), err);
  // crash-qwen3-head-dim-zero: a Qwen3 config without head_dim had hidden_size / heads = 0.
  write(path, "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":16,\"vocab_size\":8}");
  err = error_of([&] { parse_config(path); });
  check("config: Qwen3 with fewer hidden dims than heads is refused", has(err, "hidden_size / num_attention_heads is 0 (8 / 16)"), err);
  // crash-heads-x-head-dim-overflow: target_dims multiplied 65536 * 65536 in int.
  write(path, "{\"architectures\":[\"Qwen3ForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
              "\"num_attention_heads\":65536,\"head_dim\":65536,\"vocab_size\":8}");
  err = error_of([&] { parse_config(path); });
  check("config: num_attention_heads x head_dim beyond int is refused", has(err, "num_attention_heads x head_dim (4294967296) is too large"), err);
  // Qwen3-MoE: the keys of Qwen3MoeConfig, transformers 5's num_local_experts, bad values named.
  const std::string moe = "{\"architectures\":[\"Qwen3MoeForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":4,"
                          "\"num_attention_heads\":2,\"head_dim\":4,\"vocab_size\":8,\"moe_intermediate_size\":6";
  ModelConfig c;
  write(path, moe + ",\"num_local_experts\":6,\"num_experts_per_tok\":2,\"decoder_sparse_step\":2,\"mlp_only_layers\":[3,9]}");
  err = error_of([&] { c = parse_config(path); });
  check("config: Qwen3-MoE layers sparse by decoder_sparse_step and mlp_only_layers",
        err.empty() && c.experts == 6 && c.experts_per_tok == 2 && c.moe_intermediate == 6 && !c.sparse_layer(0) && c.sparse_layer(1) &&
            !c.sparse_layer(2) && !c.sparse_layer(3) && !c.norm_topk_prob && c.router_aux_loss_coef == 0.001,
        err);
  write(path, moe + ",\"num_experts\":4,\"num_experts_per_tok\":5}");
  err = error_of([&] { parse_config(path); });
  check("config: more experts per token than experts is refused", has(err, "num_experts_per_tok (5) is more than num_experts (4)"), err);
  write(path, moe + ",\"num_experts\":4,\"num_experts_per_tok\":2,\"mlp_only_layers\":[1.5]}");
  err = error_of([&] { parse_config(path); });
  check("config: a fractional mlp_only_layers entry is refused", has(err, "mlp_only_layers holds") && has(err, "not a layer index"), err);
  write(path, moe + ",\"num_experts\":4,\"num_experts_per_tok\":0}");
  err = error_of([&] { parse_config(path); });
  check("config: num_experts_per_tok 0 is refused", has(err, "field 'num_experts_per_tok' must be an integer of at least 1"), err);
}

void test_adapter(const std::filesystem::path& root) {
  auto m = Model::random(tiny(), 5, 0.5f);
  m->add_lora(qv_lora());
  const std::filesystem::path good = root / "adapter-good";
  m->save_adapter(good.string(), "test");
  const std::string cfg = read(good / "adapter_config.json");
  const auto before = state_of(*m);
  struct Case {
    const char* name;
    std::string config;
    const char* error;
  };
  const Case cases[] = {
      // crash-rank-beyond-int: int(1e10) was undefined
      {"adapter: r 1e10 is refused", replaced(cfg, "\"r\": 2", "\"r\": 1e10"), "field 'r' must be a positive integer"},
      {"adapter: r 2.5 is refused", replaced(cfg, "\"r\": 2", "\"r\": 2.5"), "field 'r' must be a positive integer"},
      // crash-rank-huge-alloc: add_lora allocated 3.2 GB of A and B before any shape was checked
      {"adapter: r 1e8 is refused before allocating", replaced(cfg, "\"r\": 2", "\"r\": 100000000"),
       "has shape [2, 8], expected [100000000, 8]"},
      // crash-alpha-nan: NaN was accepted and saved as "nan", which no JSON reader takes back
      {"adapter: lora_alpha NaN is refused", replaced(cfg, "\"lora_alpha\": 4", "\"lora_alpha\": NaN"),
       "field 'lora_alpha' must be a finite number"},
      {"adapter: lora_alpha -Infinity is refused", replaced(cfg, "\"lora_alpha\": 4", "\"lora_alpha\": -Infinity"),
       "field 'lora_alpha' must be a finite number"},
  };
  int k = 0;
  for (const Case& c : cases) {
    const std::filesystem::path dir = root / ("adapter-bad-" + std::to_string(k++));
    std::filesystem::create_directories(dir);
    std::filesystem::copy_file(good / "adapter_model.safetensors", dir / "adapter_model.safetensors");
    write(dir / "adapter_config.json", c.config);
    std::string err = error_of([&] { m->load_adapter(dir.string()); });
    check(c.name, has(err, c.error) && m->has_lora() && state_of(*m) == before, err);
  }
  std::string err = error_of([&] { m->load_adapter(good.string()); });
  check("adapter: the saved adapter loads back", err.empty() && state_of(*m) == before, err);
}

void test_training_state(const std::filesystem::path& root) {
  auto m = Model::random(tiny(), 6, 0.5f);
  m->add_lora(qv_lora());
  // moments of a state file, and other values in the model, so that a partial load shows
  std::vector<std::vector<float>> saved;
  std::vector<TensorOut> ts;
  for (Param* p : m->trainable())
    for (const char* suffix : {".exp_avg", ".exp_avg_sq"}) {
      saved.emplace_back(p->size(), std::strcmp(suffix, ".exp_avg") == 0 ? -0.5f : 0.25f);
      ts.push_back({p->name + suffix, p->shape, nullptr});
    }
  for (size_t i = 0; i < ts.size(); i++) ts[i].data = saved[i].data();
  for (Param* p : m->trainable())
    for (Buffer* b : {&p->m, &p->v}) {
      std::vector<float> v(b->size(), 1.5f);
      b->backend()->upload(b->raw(), v.data(), b->bytes());
    }
  const auto before = state_of(*m);
  // crash-step-*: std::stoll ran after the moments were replaced: "abc" threw
  // std::invalid_argument with the state half loaded, "12abc" was step 12, "-1" made the next
  // AdamW step divide by 1 - beta1^0 = 0, 20 digits threw std::out_of_range.
  int k = 0;
  for (const char* step : {"abc", "12abc", "-1", "99999999999999999999", "", " 7"}) {
    const std::string path = (root / ("state-" + std::to_string(k++) + ".bin")).string();
    write_safetensors(path, ts, {{"format", "tunebench-training-state-1"}, {"mode", "lora"}, {"step", step}});
    std::string err = error_of([&] { m->load_training_state(path); });
    check(std::string("training state: step '") + step + "' is refused, nothing changed",
          has(err, "not a whole number of steps") && state_of(*m) == before, err);
  }
  const std::string path = (root / "state-ok.bin").string();
  write_safetensors(path, ts, {{"format", "tunebench-training-state-1"}, {"mode", "lora"}, {"step", "7"}});
  std::string err = error_of([&] { m->load_training_state(path); });
  std::string step_back;
  if (err.empty()) {
    m->save_training_state((root / "state-again.bin").string());
    step_back = SafetensorsFile((root / "state-again.bin").string()).metadata().at("step");
  }
  check("training state: step '7' loads and saves back as 7", err.empty() && step_back == "7", err);
}

}  // namespace

void run_untrusted_file_tests(int& checks, int& failures) {
  g_checks = &checks;
  g_failures = &failures;
  const std::filesystem::path root = std::filesystem::temp_directory_path() /
      ("tunebench-untrusted-" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::filesystem::create_directories(root);
  test_safetensors(root / "checkpoint");
  test_json();
  test_config(root / "config");
  test_adapter(root);
  test_training_state(root);
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
}
