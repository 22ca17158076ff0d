// Choosing the next token from a row of logits, as docs/algorithms.md "Sampling" defines it:
// logits / T (T = 0: greedy) -> repetition penalty -> top-k -> top-p -> min-p -> renormalise
// -> draw with a counter-based uniform, so that (seed, step) fixes the draw whatever else runs.
#pragma once
#include <cstdint>
#include <vector>

namespace tb {

struct SamplingOptions {
  double temperature = 1.0;         // 0: greedy (argmax)
  int top_k = 0;                    // 0: off
  double top_p = 1.0;               // 1: off
  double min_p = 0.0;               // 0: off
  double repetition_penalty = 1.0;  // 1: off; HF's: logit / r when positive, logit * r otherwise
};

// Scratch of one row, reused across steps.
struct SamplerScratch {
  std::vector<float> z;
  std::vector<int32_t> order;
};

struct Sampled {
  int32_t token;
  float logp;  // log_softmax(logits / T)[token] (T = 1 when greedy), before any penalty or filter
};

// seen[v] != 0 for tokens already in the prompt or the completion (repetition penalty).
Sampled sample_token(const float* logits, int V, const SamplingOptions& o, const uint8_t* seen, float uniform,
                     SamplerScratch& s);

}  // namespace tb
