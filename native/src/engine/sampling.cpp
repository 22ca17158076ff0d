#include "sampling.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace tb {

static float log_softmax_at(const float* x, int V, float inv_t, int32_t token) {
  float mx = -INFINITY;
  for (int v = 0; v < V; v++) mx = std::max(mx, x[v] * inv_t);
  double sum = 0;
  for (int v = 0; v < V; v++) sum += std::exp(double(x[v] * inv_t - mx));
  return float(double(x[token] * inv_t - mx) - std::log(sum));
}

// The smallest prefix of `order` (sorted by z, descending) holding the top k entries, built by
// growing partial sorts: top-p sets are usually small, and a full sort of a 150k vocabulary
// per token would cost more than the layers.
static void sort_prefix(std::vector<int32_t>& order, const float* z, size_t k) {
  auto desc = [z](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
  k = std::min(k, order.size());
  std::partial_sort(order.begin(), order.begin() + long(k), order.end(), desc);
}

Sampled sample_token(const float* logits, int V, const SamplingOptions& o, const uint8_t* seen, float uniform,
                     SamplerScratch& s) {
  if (V <= 0) throw std::runtime_error("sampling: empty vocabulary");
  bool greedy = o.temperature <= 0;
  float inv_t = greedy ? 1.0f : float(1.0 / o.temperature);
  std::vector<float>& z = s.z;
  z.resize(size_t(V));
  for (int v = 0; v < V; v++) z[size_t(v)] = logits[v] * inv_t;
  if (o.repetition_penalty != 1.0 && seen) {
    float r = float(o.repetition_penalty);
    for (int v = 0; v < V; v++)
      if (seen[v]) z[size_t(v)] = z[size_t(v)] > 0 ? z[size_t(v)] / r : z[size_t(v)] * r;
  }
  int32_t token = 0;
  if (greedy) {
    for (int v = 1; v < V; v++)
      if (z[size_t(v)] > z[size_t(token)]) token = v;
    return {token, log_softmax_at(logits, V, 1.0f, token)};
  }
  float mx = *std::max_element(z.begin(), z.end());
  // Without a penalty z is logits / T itself, so its softmax sum serves the reported log-prob,
  // and top-p or the draw over the whole vocabulary, instead of each summing it again.
  bool plain = !(o.repetition_penalty != 1.0 && seen);
  double whole = 0;
  if (plain)
    for (int v = 0; v < V; v++) whole += std::exp(double(z[size_t(v)] - mx));
  // Candidates in draw order: all tokens by id when nothing truncates, else by z descending.
  std::vector<int32_t>& order = s.order;
  size_t n = size_t(V);
  bool truncate = (o.top_k > 0 && o.top_k < V) || o.top_p < 1.0;
  if (truncate) {
    order.resize(size_t(V));
    for (int v = 0; v < V; v++) order[size_t(v)] = v;
    if (o.top_k > 0 && o.top_k < V) {
      n = size_t(o.top_k);
      sort_prefix(order, z.data(), n);
    }
    if (o.top_p < 1.0) {
      // probabilities (after top-k) accumulated in descending order until they reach top_p;
      // a larger partial sort keeps the prefix already sorted, so the sum carries on
      double total = 0;
      if (n < size_t(V))
        for (size_t i = 0; i < n; i++) total += std::exp(double(z[size_t(order[i])] - mx));
      else if (plain)
        total = whole;
      else
        for (int v = 0; v < V; v++) total += std::exp(double(z[size_t(v)] - mx));
      size_t sorted = n < size_t(V) ? n : 0, kept = 0;
      double cum = 0;
      for (size_t want = std::min<size_t>(n, 64);; want = std::min(n, want * 8)) {
        if (want > sorted) {
          sort_prefix(order, z.data(), want);
          sorted = want;
        }
        while (kept < sorted && cum < o.top_p) cum += std::exp(double(z[size_t(order[kept++])] - mx)) / total;
        if (cum >= o.top_p || sorted == n) break;
      }
      n = std::max<size_t>(kept, 1);  // the top token is always kept
    }
  }
  auto at = [&](size_t i) { return truncate ? order[i] : int32_t(i); };
  if (o.min_p > 0) {
    // drop tokens below min_p * p_max: z < log(min_p) + max z
    float cut = float(std::log(o.min_p)) + mx;
    if (truncate) {
      size_t m = 0;
      while (m < n && z[size_t(order[m])] >= cut) m++;
      n = std::max<size_t>(m, 1);
    } else {
      for (int v = 0; v < V; v++)
        if (z[size_t(v)] < cut) z[size_t(v)] = -INFINITY;
    }
  }
  double total = 0;
  if (plain && n == size_t(V) && !(o.min_p > 0))
    total = whole;
  else
    for (size_t i = 0; i < n; i++) total += std::exp(double(z[size_t(at(i))] - mx));
  double target = double(uniform) * total, cum = 0;
  token = at(0);
  for (size_t i = 0; i < n; i++) {
    double p = std::exp(double(z[size_t(at(i))] - mx));
    if (p == 0) continue;
    token = at(i);
    cum += p;
    if (cum > target) break;
  }
  if (plain) return {token, float(double(z[size_t(token)] - mx) - std::log(whole))};
  return {token, log_softmax_at(logits, V, inv_t, token)};
}

}  // namespace tb
