// Central finite differences shared by the native test runner's checks.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>

struct FdResult {
  double rel;   // max |fd - analytic| / max(max |analytic|, 1e-3) over the checked entries
  double maxg;  // max |analytic|
  bool finite;  // every analytic entry is finite
  size_t checked;
};

// Perturbs `entries` entries of x spread evenly over it (the first and the last included) by
// +-eps and compares (loss(+) - loss(-)) / 2 eps with grad.
inline FdResult fd_compare(float* x, size_t n, const float* grad, const std::function<double()>& loss, float eps,
                           size_t entries) {
  FdResult r{0, 0, true, std::min(n, entries)};
  for (size_t i = 0; i < n; i++) {
    r.maxg = std::max(r.maxg, double(std::fabs(grad[i])));
    r.finite = r.finite && std::isfinite(grad[i]);
  }
  double worst = 0;
  for (size_t k = 0; k < r.checked; k++) {
    size_t i = r.checked == 1 ? 0 : k * (n - 1) / (r.checked - 1);
    float keep = x[i];
    x[i] = keep + eps;
    double lp = loss();
    x[i] = keep - eps;
    double lm = loss();
    x[i] = keep;
    worst = std::max(worst, std::fabs((lp - lm) / (2 * double(eps)) - grad[i]));
  }
  r.rel = worst / std::max(r.maxg, 1e-3);
  return r;
}
