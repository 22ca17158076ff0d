// Generation: prefill the prompts into a KV cache, then one decode step per token, sampling each
// row's next token from its logits. The layers are the training passes' own (passes.cpp).
#include <algorithm>
#include <stdexcept>

#include "passes.h"
#include "random.h"

namespace tb {

static std::string s(int64_t v) { return std::to_string(v); }

std::vector<GeneratedRow> Model::generate(const GenerateRequest& req,
                                          const std::function<void(const GenerateStep&)>& on_step,
                                          const std::atomic<bool>* stop) {
  const ModelConfig& c = cfg_;
  const int B = int(req.prompts.size()), V = c.vocab;
  if (B == 0) throw std::runtime_error("generate: no prompts");
  if (req.seeds.size() != size_t(B))
    throw std::runtime_error("generate: " + s(req.seeds.size()) + " seeds for " + s(B) + " prompts");
  if (req.max_new_tokens < 1) throw std::runtime_error("generate: maxNewTokens must be at least 1");
  const SamplingOptions& so = req.sampling;
  if (!(so.temperature >= 0) || !(so.top_p > 0 && so.top_p <= 1) || !(so.min_p >= 0 && so.min_p < 1) ||
      so.top_k < 0 || !(so.repetition_penalty > 0))
    throw std::runtime_error("generate: sampling needs temperature >= 0, 0 < topP <= 1, 0 <= minP < 1, topK >= 0, repetitionPenalty > 0");
  for (int32_t e : req.eos_ids)
    if (e < 0 || e >= V) throw std::runtime_error("generate: eos id " + s(e) + " is outside the vocabulary [0, " + s(V) + ")");
  int longest = 0;
  for (int r = 0; r < B; r++) {
    if (req.prompts[size_t(r)].empty()) throw std::runtime_error("generate: prompt " + s(r) + " is empty");
    longest = std::max(longest, int(req.prompts[size_t(r)].size()));
  }
  auto cache = new_kv_cache(B, longest + req.max_new_tokens);

  std::vector<GeneratedRow> rows(static_cast<size_t>(B));
  std::vector<std::vector<uint8_t>> seen;
  if (so.repetition_penalty != 1.0) {
    seen.assign(size_t(B), std::vector<uint8_t>(size_t(V), 0));
    for (int r = 0; r < B; r++)
      for (int32_t id : req.prompts[size_t(r)])
        if (id >= 0 && id < V) seen[size_t(r)][size_t(id)] = 1;
  }
  std::vector<SamplerScratch> scratch(static_cast<size_t>(B));
  BatchIn next;
  next.batch = B;
  next.seq_len = longest;
  next.ids.assign(size_t(B) * longest, 0);
  next.lengths.resize(size_t(B));
  for (int r = 0; r < B; r++) {
    const auto& p = req.prompts[size_t(r)];
    std::copy(p.begin(), p.end(), next.ids.begin() + size_t(r) * longest);
    next.lengths[size_t(r)] = int32_t(p.size());
  }
  GenerateStep st;
  st.token.resize(size_t(B));
  st.logp.resize(size_t(B));
  int running = B;
  std::vector<float> logits;
  for (int step = 0; running > 0; step++) {
    decode(*cache, next, req.adapters, logits);  // checks ids and cancel
    st.step = step;
#pragma omp parallel for schedule(dynamic) if (B > 1)
    for (int r = 0; r < B; r++) {
      GeneratedRow& row = rows[size_t(r)];
      st.token[size_t(r)] = -1;
      st.logp[size_t(r)] = 0;
      if (row.finish != Finish::Running) continue;
      float u = hash_uniform(req.seeds[size_t(r)], uint64_t(step));
      Sampled t = sample_token(logits.data() + size_t(r) * V, V, so, seen.empty() ? nullptr : seen[size_t(r)].data(), u,
                               scratch[size_t(r)]);
      row.tokens.push_back(t.token);
      row.logps.push_back(t.logp);
      if (!seen.empty()) seen[size_t(r)][size_t(t.token)] = 1;
      st.token[size_t(r)] = t.token;
      st.logp[size_t(r)] = t.logp;
      if (std::find(req.eos_ids.begin(), req.eos_ids.end(), t.token) != req.eos_ids.end()) row.finish = Finish::Eos;
      else if (int(row.tokens.size()) >= req.max_new_tokens) row.finish = Finish::Length;
    }
    if (on_step) on_step(st);
    next.seq_len = 1;
    next.ids.assign(size_t(B), 0);
    running = 0;
    for (int r = 0; r < B; r++) {
      GeneratedRow& row = rows[size_t(r)];
      if (row.finish == Finish::Running && stop && stop[r].load()) row.finish = Finish::Stopped;
      bool on = row.finish == Finish::Running;
      next.lengths[size_t(r)] = on ? 1 : 0;  // a finished row costs nothing from now on
      if (on) next.ids[size_t(r)] = row.tokens.back();
      running += on;
    }
  }
  return rows;
}

}  // namespace tb
