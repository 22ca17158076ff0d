// PEFT adapter folders and the optimiser's training state on disk.
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "json.h"
#include "model.h"
#include "passes.h"
#include "platform.h"
#include "safetensors.h"

namespace tb {

// A tensor of the file into a buffer of the same size (read in place on host memory).
static void read_tensor(const SafetensorsFile& f, const TensorInfo& t, Buffer& dst) {
  dst.prepared.reset();
  if (dst.backend()->host_memory()) return f.read_f32(t, dst.f32());
  std::vector<float> host(dst.size());
  f.read_f32(t, host.data());
  upload_floats(dst, host.data());
}

// Host views of parameters for write_safetensors; they live as long as this list.
struct TensorsOut {
  std::vector<std::unique_ptr<HostFloats>> host;
  std::vector<TensorOut> out;
  void add(const std::string& name, const std::vector<int64_t>& shape, const Buffer& b) {
    host.push_back(std::make_unique<HostFloats>(b));
    out.push_back({name, shape, host.back()->data()});
  }
};

static void write_text_atomic(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int err = 0;
  {
    std::ofstream f(fs_path(tmp), std::ios::binary | std::ios::trunc);
    if (!f) throw_write_failure(tmp, "cannot open for writing", errno);
    f << text;
    f.flush();
    if (!f) err = errno ? errno : EIO;
  }
  if (err) throw_write_failure(tmp, "write failed", err);
  sync_file(tmp);
  std::string reason;
  if (!replace_file(tmp, path, reason)) throw std::runtime_error(path + ": rename from temporary file failed");
}

static std::string num_json(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(int64_t(v));
  // shortest decimal that reads back as the same double (0.1 is written "0.1")
  char buf[64];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void Model::save_adapter(const std::string& dir, const std::string& base_model) const {
  if (!lora_on_) throw std::runtime_error("saveAdapter: no LoRA adapter is attached");
  make_dirs(dir);
  TensorsOut ts;
  for (const LoraSite& site : const_cast<Model*>(this)->lora_sites())
    for (const Param* p : {site.A, site.B, site.M})
      if (p && !p->empty()) ts.add(p->name, p->shape, p->w);
  write_safetensors(dir + "/adapter_model.safetensors", ts.out, {{"format", "pt"}});
  std::string targets;
  for (int t = 0; t < NUM_TARGETS; t++)
    if (lora_.targets[t]) targets += std::string(targets.empty() ? "" : ", ") + json_quote(kModuleNames[t]);
  // PEFT stores lora_alpha as an integer in its configs; keep a fractional alpha exact otherwise.
  std::string cfg = "{\n";
  cfg += "  \"peft_type\": \"LORA\",\n";
  cfg += "  \"task_type\": \"CAUSAL_LM\",\n";
  cfg += "  \"r\": " + std::to_string(lora_.rank) + ",\n";
  cfg += "  \"lora_alpha\": " + num_json(lora_.alpha) + ",\n";
  cfg += "  \"lora_dropout\": " + num_json(lora_.dropout) + ",\n";
  cfg += "  \"target_modules\": [" + targets + "],\n";
  cfg += "  \"bias\": \"none\",\n";
  cfg += "  \"fan_in_fan_out\": false,\n";
  cfg += std::string("  \"use_rslora\": ") + (lora_.rslora ? "true" : "false") + ",\n";
  cfg += std::string("  \"use_dora\": ") + (lora_.dora ? "true" : "false") + ",\n";
  cfg += "  \"init_lora_weights\": true,\n";
  cfg += "  \"modules_to_save\": null,\n";
  cfg += "  \"base_model_name_or_path\": " + json_quote(base_model) + ",\n";
  cfg += "  \"inference_mode\": true\n";
  cfg += "}\n";
  write_text_atomic(dir + "/adapter_config.json", cfg);
}

LoraOptions Model::load_adapter(const std::string& dir) {
  std::string cpath = dir + "/adapter_config.json";
  Json j = json_parse_file(cpath);
  auto str = [&](const char* k) -> std::string {
    const Json* v = j.find(k);
    return v && v->kind == Json::String ? v->str : "";
  };
  if (str("peft_type") != "LORA") throw std::runtime_error(cpath + ": peft_type '" + str("peft_type") + "' is not supported (LORA only)");
  const Json* fifo = j.find("fan_in_fan_out");
  if (fifo && fifo->kind == Json::Bool && fifo->b) throw std::runtime_error(cpath + ": fan_in_fan_out=true is not supported");
  std::string bias = str("bias");
  if (!bias.empty() && bias != "none") throw std::runtime_error(cpath + ": bias '" + bias + "' is not supported (none only)");
  for (const char* k : {"rank_pattern", "alpha_pattern"}) {
    const Json* v = j.find(k);
    if (v && v->kind == Json::Object && !v->obj.empty()) throw std::runtime_error(cpath + ": '" + k + "' is not supported");
  }
  const Json* ltt = j.find("layers_to_transform");
  if (ltt && !ltt->is_null()) throw std::runtime_error(cpath + ": layers_to_transform is not supported");
  const Json* lb = j.find("lora_bias");
  if (lb && lb->kind == Json::Bool && lb->b) throw std::runtime_error(cpath + ": lora_bias=true is not supported");
  const Json* mts = j.find("modules_to_save");
  if (mts && mts->kind == Json::Array && !mts->arr.empty()) throw std::runtime_error(cpath + ": modules_to_save is not supported");
  LoraOptions o;
  const Json* r = j.find("r");
  // NaN fails the floor test; above INT_MAX the conversion to int would be undefined.
  if (!r || r->kind != Json::Number || r->num < 1 || r->num != std::floor(r->num) || r->num > INT_MAX)
    throw std::runtime_error(cpath + ": field 'r' must be a positive integer");
  o.rank = int(r->num);
  const Json* a = j.find("lora_alpha");
  o.alpha = a && a->kind == Json::Number ? a->num : 8.0;
  // save_adapter writes it back as a JSON number, which NaN and Infinity are not.
  if (!std::isfinite(o.alpha)) throw std::runtime_error(cpath + ": field 'lora_alpha' must be a finite number");
  const Json* d = j.find("lora_dropout");
  o.dropout = d && d->kind == Json::Number ? d->num : 0.0;
  const Json* rs = j.find("use_rslora");
  o.rslora = rs && rs->kind == Json::Bool && rs->b;
  const Json* dora = j.find("use_dora");
  o.dora = dora && dora->kind == Json::Bool && dora->b;
  const Json* tm = j.find("target_modules");
  if (!tm) throw std::runtime_error(cpath + ": missing field 'target_modules'");
  if (tm->kind == Json::String && tm->str == "all-linear") {
    for (auto& t : o.targets) t = true;
  } else if (tm->kind == Json::Array) {
    for (auto& m : tm->arr) {
      bool found = false;
      for (int t = 0; t < NUM_TARGETS; t++)
        if (m.kind == Json::String && m.str == kModuleNames[t]) o.targets[t] = found = true;
      if (!found) throw std::runtime_error(cpath + ": target module '" + m.str + "' is not supported (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    }
  } else {
    throw std::runtime_error(cpath + ": target_modules must be a list of module names or \"all-linear\"");
  }
  std::string wpath = dir + "/adapter_model.safetensors";
  SafetensorsFile f(wpath);
  // PEFT keeps the adapter name in some versions (".default.weight").
  auto find_lora = [&](const std::string& name, std::set<std::string>* expected) -> const TensorInfo* {
    const TensorInfo* ti = f.find(name);
    size_t w = name.rfind(".weight");
    bool suffix = w != std::string::npos && w + 7 == name.size();
    if (!ti) ti = f.find(suffix ? name.substr(0, w) + ".default.weight" : name + ".default");
    if (ti && expected) expected->insert(ti->name);
    return ti;
  };
  // Names and shapes are checked before add_lora allocates A [r, in] and B [out, r] for every
  // layer and target: an adapter_config.json with r = 1e8 must not cost gigabytes to refuse.
  for (const LoraSite& site : lora_sites())
    if (o.targets[site.target])
      for (bool a : {true, false}) {
        // as add_lora (weights.cpp) names them
        std::string name = "base_model.model." + site.module + (a ? ".lora_A.weight" : ".lora_B.weight");
        std::vector<int64_t> shape = a ? std::vector<int64_t>{o.rank, site.in} : std::vector<int64_t>{site.out, o.rank};
        const TensorInfo* ti = find_lora(name, nullptr);
        if (!ti) throw std::runtime_error(wpath + ": missing tensor '" + name + "'");
        if (ti->shape != shape)
          throw std::runtime_error(wpath + ": tensor '" + ti->name + "' has shape " + shape_str(ti->shape) + ", expected " + shape_str(shape));
      }
  // Read into a fresh adapter, then swap in, so a bad file leaves the current adapter intact.
  LoraOptions saved = lora_;
  bool saved_on = lora_on_;
  std::vector<LoraSite> sites = lora_sites();
  std::vector<Param> backup;  // A, B, M of each site
  if (lora_on_)
    for (const LoraSite& site : sites)
      for (Param* p : {site.A, site.B, site.M})
        backup.push_back(p ? std::move(*p) : Param{});
  try {
    add_lora(o);
    std::set<std::string> expected;
    for (const LoraSite& site : sites)
      for (Param* p : {site.A, site.B, site.M}) {
      if (!p || p->empty()) continue;  // M: DoRA only
      expected.insert(p->name);
      const TensorInfo* ti = find_lora(p->name, &expected);
      if (!ti) throw std::runtime_error(wpath + ": missing tensor '" + p->name + "'");
      if (ti->shape != p->shape)
        throw std::runtime_error(wpath + ": tensor '" + ti->name + "' has shape " + shape_str(ti->shape) + ", expected " + shape_str(p->shape));
      read_tensor(f, *ti, p->w);
      }
    for (auto& [name, ti] : f.tensors())
      if (!expected.count(name)) throw std::runtime_error(wpath + ": unexpected tensor '" + name + "' (not a LoRA weight of this model's targets)");
  } catch (...) {
    lora_ = saved;
    lora_on_ = saved_on;
    size_t i = 0;
    for (const LoraSite& site : sites)
      for (Param* p : {site.A, site.B, site.M}) {
        Param restored = saved_on ? std::move(backup[i]) : Param{};
        i++;
        if (p) *p = std::move(restored);
      }
    adapter_changed();
    throw;
  }
  adapter_changed();
  return o;
}

void Model::save_training_state(const std::string& path) const {
  TensorsOut ts;
  std::string routed;  // "name:steps,..." of the experts' tensors (AdamW steps of their own)
  for (const Param* p : trainable()) {
    ts.add(p->name + ".exp_avg", p->shape, p->m);
    ts.add(p->name + ".exp_avg_sq", p->shape, p->v);
    if (full_) ts.add(p->name, p->shape, p->w);
    if (p->routed) routed += (routed.empty() ? "" : ",") + p->name + ":" + std::to_string(p->steps);
  }
  std::map<std::string, std::string> md{{"format", "tunebench-training-state-1"}, {"step", std::to_string(step_)}, {"mode", full_ ? "full" : "lora"}};
  if (!routed.empty()) md["routed_steps"] = routed;
  write_safetensors(path, ts.out, md);
}

void Model::load_training_state(const std::string& path) {
  SafetensorsFile f(path);
  auto& md = f.metadata();
  auto fmt = md.find("format");
  if (fmt == md.end() || fmt->second != "tunebench-training-state-1") throw std::runtime_error(path + ": not a Tunebench training state");
  auto mode = md.find("mode");
  std::string want = full_ ? "full" : "lora";
  if (mode == md.end() || mode->second != want)
    throw std::runtime_error(path + ": training state is for mode '" + (mode == md.end() ? "?" : mode->second) + "' but the model is in mode '" + want + "'");
  auto st = md.find("step");
  if (st == md.end()) throw std::runtime_error(path + ": missing 'step' in metadata");
  // Validate everything before touching any state. The step is a whole number of at most 15
  // digits (below 2^53, so step + 1 stays exact): std::stoll after the reads took "12abc" as 12,
  // threw std::invalid_argument on "abc" with the moments already replaced, and took "-1", whose
  // next AdamW step divides by the bias correction 1 - beta1^0 = 0.
  const std::string& sv = st->second;
  if (sv.empty() || sv.size() > 15 || sv.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error(path + ": 'step' in metadata is '" + sv.substr(0, 40) + "', not a whole number of steps");
  const int64_t step = std::stoll(sv);
  std::vector<Param*> ps = trainable();
  // Each expert tensor's own AdamW step count (absent: the global step, as a dense model has).
  std::map<std::string, int64_t> routed;
  auto rs = md.find("routed_steps");
  if (rs != md.end()) {
    const std::string& text = rs->second;
    size_t at = 0;
    while (at < text.size()) {
      size_t end = text.find(',', at);
      if (end == std::string::npos) end = text.size();
      std::string item = text.substr(at, end - at);
      size_t colon = item.rfind(':');
      std::string n = colon == std::string::npos ? "" : item.substr(colon + 1);
      if (n.empty() || n.size() > 15 || n.find_first_not_of("0123456789") != std::string::npos || std::stoll(n) > step)
        throw std::runtime_error(path + ": 'routed_steps' in metadata has '" + item.substr(0, 80) + "', not name:steps with steps <= step " + sv);
      routed[item.substr(0, colon)] = std::stoll(n);
      at = end + 1;
    }
    for (auto& [name, n] : routed) {
      bool known = false;
      for (Param* p : ps) known = known || (p->routed && p->name == name);
      if (!known) throw std::runtime_error(path + ": 'routed_steps' names '" + name + "', which is not an expert tensor being trained");
    }
  }
  for (Param* p : ps)
    for (std::string n : {p->name + ".exp_avg", p->name + ".exp_avg_sq", full_ ? p->name : std::string()}) {
      if (n.empty()) continue;
      const TensorInfo* ti = f.find(n);
      if (!ti) throw std::runtime_error(path + ": missing tensor '" + n + "'");
      if (ti->dtype != DType::F32)
        throw std::runtime_error(path + ": tensor '" + n + "' has dtype " + dtype_name(ti->dtype) + ", expected F32");
      if (ti->shape != p->shape)
        throw std::runtime_error(path + ": tensor '" + n + "' has shape " + shape_str(ti->shape) + ", expected " + shape_str(p->shape));
    }
  for (Param* p : ps) {
    read_tensor(f, *f.find(p->name + ".exp_avg"), p->m);
    read_tensor(f, *f.find(p->name + ".exp_avg_sq"), p->v);
    if (full_) read_tensor(f, *f.find(p->name), p->w);
    if (p->routed) {
      auto it = routed.find(p->name);
      p->steps = it == routed.end() ? step : it->second;
    }
  }
  step_ = step;
  // the saved pass belongs to the old weights
  train_state_valid_ = false;
}

}  // namespace tb
