// Fuzz target: a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) loaded
// into a tiny Llama (fuzz_util.h) with Model::load_adapter.
// Input: byte 0 flags (bit 0: the model already has a LoRA adapter; bit 1: the safetensors part
// is framed, fuzz_util.h safetensors_bytes), bytes 1-4 the length N of adapter_config.json
// (little-endian, clamped to what follows), then N bytes of adapter_config.json, then
// adapter_model.safetensors (the rest).
// Properties beyond the sanitizers: a rejected folder leaves the model as it was (its adapter,
// or none); an accepted one gives every LoRA tensor its [r, in] / [out, r] shape, and saving it
// (save_adapter) and loading that into a fresh model gives the same options and values.
#include <cmath>
#include <stdexcept>

#include "fuzz_util.h"
#include "safetensors.h"

using namespace tb;

static bool same_options(const LoraOptions& a, const LoraOptions& b) {
  for (int t = 0; t < NUM_TARGETS; t++)
    if (a.targets[t] != b.targets[t]) return false;
  auto eq = [](double x, double y) { return x == y || (std::isnan(x) && std::isnan(y)); };
  return a.rank == b.rank && eq(a.alpha, b.alpha) && eq(a.dropout, b.dropout) && a.rslora == b.rslora;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 5) return 0;
  const bool attached = data[0] & 1;
  size_t n = size_t(data[1]) | size_t(data[2]) << 8 | size_t(data[3]) << 16 | size_t(data[4]) << 24;
  n = std::min(n, size - 5);
  static const std::string dir = fuzz::scratch_dir() + "/adapter";
  static const std::string saved = fuzz::scratch_dir() + "/adapter-saved";
  static const bool made = std::filesystem::create_directory(dir) || true;
  (void)made;
  fuzz::write_file(dir + "/adapter_config.json", data + 5, n);
  fuzz::write_file(dir + "/adapter_model.safetensors", fuzz::safetensors_bytes(data + 5 + n, size - 5 - n, data[0] & 2));

  auto m = fuzz::tiny_model();
  if (attached) m->add_lora(fuzz::tiny_lora());
  const LoraOptions before_opts = m->lora();
  const std::vector<fuzz::ParamState> before = fuzz::trainable_state(*m);
  LoraOptions o;
  try {
    o = m->load_adapter(dir);
  } catch (const std::runtime_error&) {
    FUZZ_CHECK(m->has_lora() == attached, "a rejected adapter changed whether the model has one");
    FUZZ_CHECK(!attached || same_options(m->lora(), before_opts), "a rejected adapter changed the LoRA options");
    FUZZ_CHECK(fuzz::trainable_state(*m) == before, "a rejected adapter changed the model's LoRA tensors");
    return 0;
  }
  FUZZ_CHECK(m->has_lora() && o.rank >= 1 && same_options(o, m->lora()), "accepted adapter's options");
  for (Param* p : m->trainable()) {
    int t = 0;
    while (t < NUM_TARGETS && p->name.find(std::string(".") + kModuleNames[t] + ".") == std::string::npos) t++;
    FUZZ_CHECK(t < NUM_TARGETS && o.targets[t], p->name);
    int in, out;
    target_dims(m->config(), t, in, out);
    FUZZ_CHECK(p->w.size() == size_t(p->numel()), p->name + " has shape " + shape_str(p->shape));
    if (p->name.find(".lora_A.") != std::string::npos)
      FUZZ_CHECK((p->shape == std::vector<int64_t>{o.rank, in}), p->name + " has shape " + shape_str(p->shape));
    else if (p->name.find(".lora_B.") != std::string::npos)
      FUZZ_CHECK((p->shape == std::vector<int64_t>{out, o.rank}), p->name + " has shape " + shape_str(p->shape));
  }
  // What was loaded saves and loads back the same (alpha and dropout are written as numbers).
  std::error_code ec;
  std::filesystem::remove_all(saved, ec);
  m->save_adapter(saved, "fuzz");
  auto again = fuzz::tiny_model();
  LoraOptions o2;
  try {
    o2 = again->load_adapter(saved);
  } catch (const std::runtime_error& e) {
    fuzz::fail("a saved adapter does not load back", e.what());
  }
  FUZZ_CHECK(same_options(o, o2), "saved adapter's options differ");
  FUZZ_CHECK(fuzz::trainable_state(*m) == fuzz::trainable_state(*again), "saved adapter's tensors differ");
  return 0;
}
