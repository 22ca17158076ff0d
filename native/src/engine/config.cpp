// config.json of a Hugging Face causal LM into ModelConfig; errors name the file and the field.
#include <climits>
#include <cmath>
#include <stdexcept>

#include "facts.h"
#include "json.h"
#include "model.h"

namespace tb {

const char* const kTargetNames[NUM_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};
const char* const kModuleNames[NUM_TARGETS] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

static const Json& need(const Json& j, const std::string& key, const std::string& path) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) throw std::runtime_error(path + ": missing field '" + key + "'");
  return *v;
}
static int need_int(const Json& j, const std::string& key, const std::string& path) {
  const Json& v = need(j, key, path);
  // NaN fails the floor test; above INT_MAX the conversion to int would be undefined.
  if (v.kind != Json::Number || v.num <= 0 || v.num != std::floor(v.num) || v.num > INT_MAX)
    throw std::runtime_error(path + ": field '" + key + "' must be a positive integer (at most " + std::to_string(INT_MAX) + ")");
  return int(v.num);
}
static double num_or(const Json& j, const std::string& key, double dflt, const std::string& path) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) return dflt;
  if (v->kind != Json::Number) throw std::runtime_error(path + ": field '" + key + "' must be a number");
  return v->num;
}
static std::string num_text(double v) {
  std::string t = std::to_string(v);
  return v == std::floor(v) && std::fabs(v) < 1e15 ? std::to_string(int64_t(v)) : t;
}
static bool bool_or(const Json& j, const std::string& key, bool dflt, const std::string& path) {
  const Json* v = j.find(key);
  if (!v || v->is_null()) return dflt;
  if (v->kind != Json::Bool) throw std::runtime_error(path + ": field '" + key + "' must be true or false");
  return v->b;
}

// Qwen3MoeConfig's keys, with its defaults where a key is absent.
static void parse_moe(const Json& j, const std::string& path, ModelConfig& c) {
  auto int_or = [&](const char* key, int dflt, int min) {
    const Json* v = j.find(key);
    if (!v || v->is_null()) return dflt;
    if (v->kind != Json::Number || v->num < min || v->num != std::floor(v->num) || v->num > INT_MAX)
      throw std::runtime_error(path + ": field '" + key + "' must be an integer of at least " + std::to_string(min));
    return int(v->num);
  };
  // transformers >= 5 writes num_experts as num_local_experts
  c.experts = int_or(j.has("num_experts") ? "num_experts" : "num_local_experts", 128, 0);
  c.experts_per_tok = int_or("num_experts_per_tok", 8, 1);
  c.moe_intermediate = int_or("moe_intermediate_size", 768, 1);
  c.sparse_step = int_or("decoder_sparse_step", 1, 1);
  c.norm_topk_prob = bool_or(j, "norm_topk_prob", false, path);
  c.router_aux_loss_coef = num_or(j, "router_aux_loss_coef", 0.001, path);
  if (c.experts > 0 && c.experts_per_tok > c.experts)
    throw std::runtime_error(path + ": num_experts_per_tok (" + std::to_string(c.experts_per_tok) + ") is more than num_experts (" +
                             std::to_string(c.experts) + ")");
  const Json* only = j.find("mlp_only_layers");
  if (only && !only->is_null()) {
    if (only->kind != Json::Array) throw std::runtime_error(path + ": field 'mlp_only_layers' must be a list of layer indices");
    for (const Json& v : only->arr) {
      // an index past the last layer names no layer (transformers ignores it too)
      if (v.kind != Json::Number || v.num < 0 || v.num != std::floor(v.num))
        throw std::runtime_error(path + ": mlp_only_layers holds " + (v.kind == Json::Number ? num_text(v.num) : std::string("a non-number")) +
                                 ", not a layer index");
      if (v.num < c.layers) c.mlp_only_layers.push_back(int(v.num));
    }
  }
}

bool ModelConfig::sparse_layer(int l) const {
  if (experts <= 0 || (l + 1) % sparse_step != 0) return false;
  for (int d : mlp_only_layers)
    if (d == l) return false;
  return true;
}

ModelConfig parse_config(const std::string& path) {
  Json j = json_parse_file(path);
  if (j.kind != Json::Object) throw std::runtime_error(path + ": not a JSON object");
  ModelConfig c;
  const Json& arch = need(j, "architectures", path);
  if (arch.kind != Json::Array || arch.arr.empty() || arch.arr[0].kind != Json::String)
    throw std::runtime_error(path + ": field 'architectures' must be a list of names");
  c.architecture = arch.arr[0].str;
  bool known = false;
  std::string names;
  for (size_t i = 0; i < kArchitectureCount; i++) {
    known = known || c.architecture == kArchitectures[i];
    names += std::string(i ? ", " : "") + kArchitectures[i];
  }
  if (!known) throw std::runtime_error(path + ": unsupported architecture '" + c.architecture + "' (supported: " + names + ")");
  c.hidden = need_int(j, "hidden_size", path);
  c.intermediate = need_int(j, "intermediate_size", path);
  c.layers = need_int(j, "num_hidden_layers", path);
  c.heads = need_int(j, "num_attention_heads", path);
  c.kv_heads = j.find("num_key_value_heads") && !j.find("num_key_value_heads")->is_null() ? need_int(j, "num_key_value_heads", path) : c.heads;
  c.vocab = need_int(j, "vocab_size", path);
  c.head_dim = j.find("head_dim") && !j.find("head_dim")->is_null() ? need_int(j, "head_dim", path) : c.hidden / c.heads;
  if (c.architecture != "Qwen3ForCausalLM" && c.architecture != "Qwen3MoeForCausalLM" && !j.has("head_dim") && c.hidden % c.heads != 0)
    throw std::runtime_error(path + ": hidden_size is not a multiple of num_attention_heads");
  if (c.heads % c.kv_heads != 0)
    throw std::runtime_error(path + ": num_attention_heads is not a multiple of num_key_value_heads");
  // Qwen3 may leave head_dim out with hidden_size not a multiple of the heads: at fewer than
  // one dim per head the quotient is 0, and every attention projection would be empty.
  if (c.head_dim < 1)
    throw std::runtime_error(path + ": hidden_size / num_attention_heads is 0 (" + std::to_string(c.hidden) + " / " + std::to_string(c.heads) +
                             "); give head_dim");
  if (c.head_dim % 2 != 0) throw std::runtime_error(path + ": head_dim must be even for rotary embeddings");
  // The projections' widths (target_dims) are heads x head_dim in int; kv_heads divides heads.
  if (int64_t(c.heads) * c.head_dim > INT_MAX)
    throw std::runtime_error(path + ": num_attention_heads x head_dim (" + std::to_string(int64_t(c.heads) * c.head_dim) +
                             ") is too large (at most " + std::to_string(INT_MAX) + ")");
  // transformers >= 5 writes rope_parameters {rope_theta, rope_type, ...}; older files
  // write rope_theta and rope_scaling at the top level.
  const Json* rp = j.find("rope_parameters");
  if (rp && rp->kind != Json::Object) rp = nullptr;
  c.rope_theta = num_or(j, "rope_theta", rp ? num_or(*rp, "rope_theta", 10000.0, path + " rope_parameters") : 10000.0, path);
  c.rms_eps = num_or(j, "rms_norm_eps", 1e-6, path);
  c.tied_embeddings = bool_or(j, "tie_word_embeddings", false, path);
  bool attention_bias = bool_or(j, "attention_bias", false, path);
  if (c.architecture == "Qwen2ForCausalLM") {
    c.qkv_bias = true;
    if (bool_or(j, "use_sliding_window", false, path))
      throw std::runtime_error(path + ": use_sliding_window=true is not supported");
  } else {
    c.qkv_bias = attention_bias;
    c.o_bias = attention_bias;
  }
  if (c.architecture == "Qwen3ForCausalLM" || c.architecture == "Qwen3MoeForCausalLM") {
    c.qk_norm = true;
    if (bool_or(j, "use_sliding_window", false, path))
      throw std::runtime_error(path + ": use_sliding_window=true is not supported");
  }
  c.mlp_bias = bool_or(j, "mlp_bias", false, path);
  if (c.architecture == "Qwen3MoeForCausalLM") parse_moe(j, path, c);
  const Json* act = j.find("hidden_act");
  if (act && act->kind == Json::String && act->str != "silu")
    throw std::runtime_error(path + ": hidden_act '" + act->str + "' is not supported (silu only)");
  const Json* rs = j.find("rope_scaling");
  if (!rs || rs->is_null()) rs = rp;
  if (rs && !rs->is_null()) {
    const Json* type = rs->find("rope_type");
    if (!type) type = rs->find("type");
    std::string t = type && type->kind == Json::String ? type->str : "";
    if (t == "llama3") {
      c.rope_factor = need(*rs, "factor", path + " rope_scaling").num;
      c.rope_low = need(*rs, "low_freq_factor", path + " rope_scaling").num;
      c.rope_high = need(*rs, "high_freq_factor", path + " rope_scaling").num;
      c.rope_orig_ctx = need(*rs, "original_max_position_embeddings", path + " rope_scaling").num;
    } else if (t != "default") {
      throw std::runtime_error(path + ": rope_scaling type '" + t + "' is not supported (llama3 or default)");
    }
  }
  const Json* dt = j.find("torch_dtype");
  if (!dt || dt->kind != Json::String) dt = j.find("dtype");
  if (dt && dt->kind == Json::String) c.dtype = dt->str;
  return c;
}

void target_dims(const ModelConfig& c, int t, int& in, int& out, bool expert) {
  int C = c.hidden, qd = c.heads * c.head_dim, kd = c.kv_heads * c.head_dim, I = expert ? c.moe_intermediate : c.intermediate;
  switch (t) {
    case Q: in = C; out = qd; break;
    case K: case V: in = C; out = kd; break;
    case O: in = qd; out = C; break;
    case GATE: case UP: in = C; out = I; break;
    default: in = I; out = C; break;
  }
}

}  // namespace tb
