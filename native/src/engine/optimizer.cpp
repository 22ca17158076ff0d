// Gradients and AdamW over the trainable parameters (PyTorch's AdamW, global-norm clipping).
#include <cmath>
#include <stdexcept>

#include "passes.h"

namespace tb {

void Model::zero_grad() {
  for (Param* p : trainable()) {
    be_->fill_zero(p->grad.f32(), p->grad.size());
    if (p->routed) p->touched = false;
  }
}

double Model::grad_norm() const {
  double ss = 0;
  for (const Param* p : trainable()) ss += be_->sum_squares(p->grad.f32(), p->grad.size());
  return std::sqrt(ss);
}

std::vector<std::pair<std::string, std::vector<float>>> Model::gradients() const {
  std::vector<std::pair<std::string, std::vector<float>>> out;
  for (const Param* p : trainable()) {
    HostFloats g(p->grad);
    out.emplace_back(p->name, std::vector<float>(g.data(), g.data() + g.size()));
  }
  return out;
}

double Model::optimizer_step(const OptimizerOptions& o) {
  be_->activate();
  std::vector<Param*> ps = trainable();
  if (ps.empty()) throw std::runtime_error("optimizerStep: nothing is trainable (add or load a LoRA adapter, or setTrainable('full'))");
  double norm = grad_norm();
  // A non-finite norm would poison every weight: leave weights and moments as they are and let
  // the caller see the norm and decide (skip the batch, stop the run).
  if (!std::isfinite(norm)) return norm;
  float clip = 1.0f;
  if (o.max_grad_norm > 0) {
    double coef = o.max_grad_norm / (norm + 1e-6);
    if (coef < 1) clip = float(coef);
  }
  step_++;
  float lr = float(o.lr);
  for (Param* p : ps) {
    // An expert no token reached since zero_grad has no gradient: no update, no decay, no step.
    if (p->routed && !p->touched) continue;
    int64_t t = p->routed ? ++p->steps : step_;
    double bc1 = 1 - std::pow(o.beta1, double(t)), bc2 = 1 - std::pow(o.beta2, double(t));
    AdamW a{clip, float(o.beta1), float(o.beta2), 1.0f, float(o.lr / bc1), float(std::sqrt(bc2)), float(o.eps)};
    a.decay = p->decay ? 1.0f - lr * float(o.weight_decay) : 1.0f;
    be_->adamw(p->w.f32(), p->grad.f32(), p->m.f32(), p->v.f32(), p->w.size(), a);
  }
  train_state_valid_ = false;  // buffers stay for the next pass to reuse
  adapter_changed();
  return norm;
}

}  // namespace tb
