// Fuzz target: the optimiser's training state file (training_state.bin: safetensors with the
// AdamW moments of every trainable parameter, and the weights in full fine-tuning; metadata
// format, mode, step), read by Model::load_training_state into a tiny Llama (fuzz_util.h).
// Input: byte 0 flags (bit 0: full fine-tuning, else a LoRA adapter on q and v; bit 1: the file
// is framed, fuzz_util.h safetensors_bytes), then the file.
// Properties beyond the sanitizers: a rejected file leaves every weight and moment as it was;
// an accepted one saves back (save_training_state) with the same tensors and step, and one
// AdamW step after it keeps the weights finite when the file's values are moderate.
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "fuzz_util.h"
#include "safetensors.h"

using namespace tb;

static void fill(Buffer& b, float base) {
  std::vector<float> v(b.size());
  for (size_t i = 0; i < v.size(); i++) v[i] = base + 0.001f * float(i);
  b.backend()->upload(b.raw(), v.data(), b.bytes());
}

static bool moderate(const std::vector<float>& v, bool nonnegative) {
  for (float x : v)
    if (!(std::fabs(x) <= 1e6f) || (nonnegative && x < 0)) return false;
  return true;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool full = data[0] & 1;
  static const std::string path = fuzz::scratch_dir() + "/training_state.bin";
  static const std::string saved = fuzz::scratch_dir() + "/training_state-saved.bin";
  fuzz::write_file(path, fuzz::safetensors_bytes(data + 1, size - 1, data[0] & 2));

  auto m = fuzz::tiny_model();
  if (full) m->set_trainable(true);
  else m->add_lora(fuzz::tiny_lora());
  for (Param* p : m->trainable()) {  // moments a partial load would visibly overwrite
    fill(p->m, -1.5f);
    fill(p->v, 2.5f);
  }
  const std::vector<fuzz::ParamState> before = fuzz::trainable_state(*m);
  try {
    m->load_training_state(path);
  } catch (const std::runtime_error&) {
    FUZZ_CHECK(fuzz::trainable_state(*m) == before, "a rejected training state changed the model");
    return 0;
  }

  // Accepted: the file's step is a whole number, and what was loaded saves back unchanged.
  SafetensorsFile in(path);
  const std::string& step = in.metadata().at("step");
  FUZZ_CHECK(!step.empty() && step.size() <= 15 && step.find_first_not_of("0123456789") == std::string::npos,
             "accepted step '" + step + "'");
  m->save_training_state(saved);
  {
    SafetensorsFile out(saved);
    FUZZ_CHECK(std::stoll(out.metadata().at("step")) == std::stoll(step), "step " + step + " saved as " + out.metadata().at("step"));
    for (auto& [name, t] : out.tensors()) {
      const TensorInfo* src = in.find(name);
      FUZZ_CHECK(src && src->dtype == DType::F32 && src->shape == t.shape, name);
      FUZZ_CHECK(memcmp(in.data() + src->begin, out.data() + t.begin, t.end - t.begin) == 0, name + " saved differently");
    }
  }
  bool finite_inputs = true;
  for (Param* p : m->trainable())
    finite_inputs = finite_inputs && moderate(fuzz::host(p->m), false) && moderate(fuzz::host(p->v), true) &&
                    moderate(fuzz::host(p->w), false);
  if (finite_inputs) {
    m->zero_grad();
    m->optimizer_step(OptimizerOptions{});
    for (Param* p : m->trainable())
      for (float x : fuzz::host(p->w)) FUZZ_CHECK(std::isfinite(x), p->name + " is not finite after an AdamW step from step " + step);
  }
  return 0;
}
