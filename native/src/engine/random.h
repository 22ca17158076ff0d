// Counter-based random numbers (splitmix64): dropout masks regenerate from (seed, element) in
// backward and in checkpointed recomputation, and LoRA init and test weights are reproducible.
#pragma once
#include <cstdint>

namespace tb {

inline uint64_t mix_seed(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform [0, 1).
inline float hash_uniform(uint64_t seed, uint64_t counter) {
  return float(mix_seed(seed, counter) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace tb
