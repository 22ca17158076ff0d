// The output head: the final norm and the vocabulary projection, on the chosen rows only
// (the rows that predict a masked-in token, or decoding's last rows).
#include "passes.h"

namespace tb {

static float* grad_of(Param& p, bool on) { return on && !p.grad.empty() ? p.grad.f32() : nullptr; }

// ts.sel_rows and ts.targets set; lp[m] = log p(targets[m] | row sel_rows[m]) at the temperature: the
// normed rows are divided by T, since logits / T = (h / T) W^T.
void Model::head_logps(TrainState& ts, const float* x, bool train, float temperature, std::vector<float>& lp,
                       std::vector<float>* entropy) {
  const ModelConfig& c = cfg_;
  Backend& be = *be_;
  int C = c.hidden, M = int(ts.sel_rows.size());
  ts.hsel_x.resize(size_t(M) * C);
  ts.hsel.resize(size_t(M) * C);
  ts.rstd_f.resize(M);
  ts.lse.resize(M);
  ts.lp.resize(M);
  be.gather_rows(ts.hsel_x.f32(), x, ts.sel_rows.i32(), M, C);
  be.rmsnorm_forward(ts.hsel.f32(), ts.rstd_f.f32(), ts.hsel_x.f32(), final_norm_.w.f32(), M, C, float(c.rms_eps));
  ts.inv_temp = 1.0f / temperature;
  if (temperature != 1.0f) be.scale(ts.hsel.f32(), ts.inv_temp, size_t(M) * C);
  check_cancel();
  // A frozen head (LoRA training) gets the expected head row now, so backward never
  // recomputes logits; a trained head needs dlogits for its own gradient and recomputes them.
  bool frozen_head = train && !full_;
  ts.ew.resize(frozen_head ? size_t(M) * C : 0);
  ts.ent.resize(entropy ? size_t(M) : 0);
  be.logprob_forward(ts.lp.f32(), ts.lse.f32(), frozen_head ? ts.ew.f32() : nullptr, entropy ? ts.ent.f32() : nullptr,
                     ts.hsel.f32(), head().w, ts.targets.i32(), M, C, c.vocab);
  lp.resize(M);
  if (M) be.download(lp.data(), ts.lp.f32(), sizeof(float) * M);
  if (entropy) {
    entropy->resize(M);
    if (M) be.download(entropy->data(), ts.ent.f32(), sizeof(float) * M);
  }
}

// dx [N,C] += the head's gradient on the rows it read; ts.dlp holds d loss / d lp.
void Model::head_backward(TrainState& ts, float* dx) {
  const ModelConfig& c = cfg_;
  Backend& be = *be_;
  int C = c.hidden, M = int(ts.sel_rows.size());
  ts.dhead.resize(size_t(M) * C);
  ts.dhx.resize(size_t(M) * C);
  be.fill_zero(ts.dhead.f32(), size_t(M) * C);
  be.fill_zero(ts.dhx.f32(), size_t(M) * C);
  Param& h = head();
  if (!ts.ew.empty())
    be.logprob_backward_expected(ts.dhead.f32(), ts.dlp.f32(), ts.ew.f32(), h.w, ts.targets.i32(), M, C);
  else
    be.logprob_backward(ts.dhead.f32(), grad_of(h, full_), ts.dlp.f32(), ts.hsel.f32(), h.w, ts.targets.i32(),
                        ts.lse.f32(), M, C, c.vocab);
  // dhead is the gradient for hsel / T.
  if (ts.inv_temp != 1.0f) be.scale(ts.dhead.f32(), ts.inv_temp, size_t(M) * C);
  be.rmsnorm_backward(ts.dhx.f32(), grad_of(final_norm_, full_), ts.dhead.f32(), ts.hsel_x.f32(), final_norm_.w.f32(),
                      ts.rstd_f.f32(), M, C);
  // Each selected row is a distinct position, so rows can be added in parallel.
  be.scatter_add_rows(dx, ts.dhx.f32(), ts.sel_rows.i32(), M, C);
}

// logits [M,V] of the rows ts.sel_rows.
void Model::head_logits(TrainState& ts, const float* x) {
  const ModelConfig& c = cfg_;
  Backend& be = *be_;
  int C = c.hidden, V = c.vocab, M = int(ts.sel_rows.size());
  ts.hsel_x.resize(size_t(M) * C);
  ts.hsel.resize(size_t(M) * C);
  ts.rstd_f.resize(M);
  ts.logits.resize(size_t(M) * V);
  be.gather_rows(ts.hsel_x.f32(), x, ts.sel_rows.i32(), M, C);
  be.rmsnorm_forward(ts.hsel.f32(), ts.rstd_f.f32(), ts.hsel_x.f32(), final_norm_.w.f32(), M, C, float(c.rms_eps));
  be.logits(ts.logits.f32(), ts.hsel.f32(), head().w, M, C, V);
}

}  // namespace tb
