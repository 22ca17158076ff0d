// Central finite differences shared by the native test runner's checks.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <functional>

// Every entry of a tensor up to this size is perturbed; larger ones get kFdSample entries spread
// evenly over them (the first and the last included).
const size_t kFdAllEntries = 2048;
const size_t kFdSample = 256;

struct FdResult {
  double rel;      // max over the checked entries of |fd - analytic| / (max(|fd|, |analytic|) + floor)
  double maxg;     // max |analytic| over the whole tensor
  bool finite;     // every analytic entry is finite
  size_t checked;  // entries perturbed
  size_t worst;    // index of the entry that gave rel
  double worst_fd, worst_grad;
  double floor;    // the absolute floor used
};

// Compares the analytic gradient `grad` of loss() wrt x with (loss(x + eps) - loss(x - eps)) / 2 eps
// entry by entry. Each entry's error is relative to its own scale, max(|fd|, |analytic|), plus an
// absolute floor below which float32 central differences are noise: an error in one row or one
// element is then as visible as an error in the largest entries.
inline FdResult fd_compare(float* x, size_t n, const float* grad, const std::function<double()>& loss, float eps,
                           double abs_floor, double floor_frac, size_t all_entries = kFdAllEntries,
                           size_t sample = kFdSample) {
  FdResult r{0, 0, true, n <= all_entries ? n : std::min(n, sample), 0, 0, 0, 0};
  for (size_t i = 0; i < n; i++) {
    r.maxg = std::max(r.maxg, double(std::fabs(grad[i])));
    r.finite = r.finite && std::isfinite(grad[i]);
  }
  // The difference quotient's float32 rounding noise grows with the magnitudes in the forward pass,
  // which the tensor's largest gradient tracks: the floor is the larger of abs_floor and
  // floor_frac * max |analytic|.
  double floor = std::max(abs_floor, floor_frac * r.maxg);
  r.floor = floor;
  r.rel = -1;
  for (size_t k = 0; k < r.checked; k++) {
    size_t i = r.checked == n ? k : r.checked == 1 ? 0 : k * (n - 1) / (r.checked - 1);
    float keep = x[i];
    x[i] = keep + eps;
    double lp = loss();
    x[i] = keep - eps;
    double lm = loss();
    x[i] = keep;
    double fd = (lp - lm) / (2 * double(eps)), g = grad[i];
    double e = std::fabs(fd - g) / (std::max(std::fabs(fd), std::fabs(g)) + floor);
    if (!std::isfinite(e)) e = INFINITY;
    if (e > r.rel) {
      r.rel = e;
      r.worst = i;
      r.worst_fd = fd;
      r.worst_grad = g;
    }
  }
  if (r.checked == 0) r.rel = 0;
  return r;
}
