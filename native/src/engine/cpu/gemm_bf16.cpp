// The bf16 GEMM of the frozen weights (gemm.h: gemm_bf16), and oneDNN's matmul plumbing
// (matmul.h). The activations are rounded to bf16 once per product; the products of two bf16
// values are exact in f32, so every build computes the same sums up to their order: oneDNN's
// bf16 matmul (AVX512-BF16 / AMX where the CPU has them), elsewhere (other builds, and CPUs for
// which oneDNN has no bf16 matmul) the same bf16 values widened to f32 block by block and
// multiplied by gemm().
#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include "gemm.h"
#include "matmul.h"
#include "simd.h"

namespace tb {

#if defined(TUNEBENCH_ONEDNN)
namespace onednn {

dnnl::engine& engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

memory::desc plain(int rows, int cols, int ld, memory::data_type dt) {
  return memory::desc({rows, cols}, dt, memory::dims{ld, 1});
}

// Bounded: a run with many batch lengths starts over.
Product product(const std::string& key, const memory::desc& src, const memory::desc& wei, const memory::desc& dst,
                bool accumulate) {
  static std::mutex mu;
  static std::map<std::string, Product> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 1024) cache.clear();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
#if DNNL_VERSION_MAJOR >= 3
  dnnl::matmul::primitive_desc pd(engine(), src, wei, dst, attr);
#else
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src, wei, dst), attr, engine());
#endif
  return cache.emplace(key, Product{dnnl::matmul(pd), pd.scratchpad_desc()}).first->second;
}

void execute(const Product& p, const memory& src, const memory& wei, const memory& dst) {
  thread_local std::vector<char> scratch;
  if (scratch.size() < p.scratchpad.get_size()) scratch.resize(p.scratchpad.get_size());
  memory pad(p.scratchpad, engine(), scratch.data());
  dnnl::stream s(engine());
  p.mm.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}, {DNNL_ARG_SCRATCHPAD, pad}});
  s.wait();
}

}  // namespace onednn
#endif

namespace {

bool in_parallel() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

// A thin product (decoding's few rows) against many output columns runs in column blocks of
// about this many, spread over the team (as gemm() does for f32): one product over all of
// them reads the weights at half the speed.
constexpr int kThinRows = 16, kThinColumns = 2048;

// Without thin.cpp's kernel (no AVX2, other architectures), up to this many rows times W^T
// (decoding a few sequences) run as dot products over the weights' rows, widened four at a time
// into a per-thread block, so that the weights stream from memory once at the memory's speed:
// oneDNN's bf16 matmul reads them at half of it for so few rows. The rows are rounded to bf16
// first, so the products are those of every other path.
constexpr int kDotRows = 4;

// a = A [M, K] rounded to bf16 and widened back to f32, contiguous (the team's threads share
// the rows of a large A).
void bf16_values(std::vector<float>& a, int M, int K, const float* A, int lda) {
  a.resize(size_t(M) * K);
  float* out = a.data();
  int nt = in_parallel() ? 1 : max_threads();
#pragma omp parallel for schedule(static) if (nt > 1 && size_t(M) * K > 65536)
  for (int i = 0; i < M; i++) row_round_bf16(out + size_t(i) * K, A + size_t(i) * lda, K);
}

std::vector<float> bf16_values(int M, int K, const float* A, int lda) {
  std::vector<float> a;
  bf16_values(a, M, K, A, lda);
  return a;
}

void rows_times_wt(int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb, bool accumulate, float* C,
                   int ldc, int nt) {
  std::vector<float> a = bf16_values(M, K, A, lda);
  std::vector<float> blocks(size_t(std::max(nt, 1)) * 4 * K);
  int nb = (N + 3) / 4;
#pragma omp parallel num_threads(nt) if (nt > 1)
  {
    float* w = blocks.data() + size_t(thread_index()) * 4 * K;
#pragma omp for schedule(static)
    for (int b = 0; b < nb; b++) {
      int o0 = b * 4, rows = std::min(4, N - o0);
      for (int r = 0; r < 4; r++) {
        if (r < rows) row_from_bf16(w + size_t(r) * K, B + size_t(o0 + r) * ldb, K);
        else std::fill(w + size_t(r) * K, w + size_t(r + 1) * K, 0.0f);
      }
      float out[4];
      for (int m = 0; m < M; m++) {
        row_dot4(a.data() + size_t(m) * K, w, K, out);
        float* c = C + size_t(m) * ldc + o0;
        for (int r = 0; r < rows; r++) c[r] = accumulate ? c[r] + out[r] : out[r];
      }
    }
  }
}

// The same bf16 values widened to f32: A rounded once, B in blocks of rows (512 rows ran the
// f32 GEMM fastest on the engine's shapes, 1-6 MB a block; 128 rows ran 10-20% slower).
void widened_gemm_bf16(bool tb, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb,
                       bool accumulate, float* C, int ldc, int nt) {
  // The calling thread's buffers (the team writes into them through plain pointers).
  thread_local std::vector<float> a, block;
  bf16_values(a, M, K, A, lda);
  const int rows = 512;
  block.resize(size_t(std::min(rows, tb ? N : K)) * (tb ? K : N));
  float* blk = block.data();
  if (tb) {  // B [N, K]: blocks of output columns
    for (int j0 = 0; j0 < N; j0 += rows) {
      int nb = std::min(rows, N - j0);
#pragma omp parallel for schedule(static) if (nt > 1)
      for (int j = 0; j < nb; j++) row_from_bf16(blk + size_t(j) * K, B + size_t(j0 + j) * ldb, K);
      gemm(false, true, M, nb, K, 1.0f, a.data(), K, blk, K, accumulate ? 1.0f : 0.0f, C + j0, ldc);
    }
  } else {  // B [K, N]: blocks of the inner dimension
    for (int k0 = 0; k0 < K; k0 += rows) {
      int kb = std::min(rows, K - k0);
#pragma omp parallel for schedule(static) if (nt > 1)
      for (int k = 0; k < kb; k++) row_from_bf16(blk + size_t(k) * N, B + size_t(k0 + k) * ldb, N);
      gemm(false, false, M, N, kb, 1.0f, a.data() + k0, K, blk, N, accumulate || k0 > 0 ? 1.0f : 0.0f, C, ldc);
    }
  }
}

#if defined(TUNEBENCH_ONEDNN)
using onednn::memory;

// oneDNN builds a bf16 matmul only where the CPU can run one (AVX512 or AVX2-VNNI-2 and up):
// asked once with a small product; elsewhere the widened path serves every product.
bool onednn_has_bf16() {
  static const bool has = [] {
    try {
      memory::desc src = onednn::plain(2, 8, 8, memory::data_type::bf16);
      memory::desc wei({8, 8}, memory::data_type::bf16, memory::dims{8, 1});
      memory::desc dst = onednn::plain(2, 8, 8, memory::data_type::f32);
      onednn::product("bf16 probe", src, wei, dst, false);
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return has;
}

// Products of at least this many rows may take the widened path although oneDNN has a bf16
// matmul (fewer rows: widening B costs more than it gains; measured at 32 and 64 rows).
constexpr int kWidenRows = 128;

// oneDNN's bf16 matmul runs on VDPBF16PS, or on AMX tiles where the CPU has them. An Intel core
// issues VDPBF16PS on one port where it issues f32 FMAs on two, so without AMX (absent, or
// hidden by a hypervisor) oneDNN's bf16 product ran at 95-140 GFLOP/s against 200-245 for the
// f32 GEMM of the same values widened in 512-row blocks (2 threads, Xeon family 6 model 207, the
// 0.6B shapes' products at 1024 rows). AMD's Zen 4 runs VDPBF16PS at twice the f32 FMA's
// FLOPs, so oneDNN keeps those. TUNEBENCH_BF16_GEMM=onednn|widened overrides the choice.
bool cpu_prefers_widened() {
#if defined(__x86_64__) && defined(__GNUC__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  bool intel = b == 0x756e6547u && d == 0x49656e69u && c == 0x6c65746eu;  // "GenuineIntel"
  if (!intel || a < 7) return false;
  __cpuid_count(7, 0, a, b, c, d);
  bool amx_bf16 = (d >> 22) & 1u;
  return !amx_bf16;
#else
  return false;
#endif
}

int g_widening = -1;  // set_bf16_widening: -1 as the CPU prefers, 0 oneDNN, 1 widened

bool widen_many_rows() {
  if (g_widening >= 0) return g_widening == 1;
  static const bool widen = [] {
    const char* env = std::getenv("TUNEBENCH_BF16_GEMM");
    if (env && std::string(env) == "onednn") return false;
    if (env && std::string(env) == "widened") return true;
    return cpu_prefers_widened();
  }();
  return widen;
}

// C (+)= a16 op(B) for columns [n0, n0+n) of C, one primitive (threads: the caller's).
void product_bf16(bool tb, int M, int n0, int n, int K, const uint16_t* a16, const uint16_t* B, int ldb, bool accumulate,
                  float* C, int ldc) {
  memory::desc src = onednn::plain(M, K, K, memory::data_type::bf16);
  // weights [K, n]: B [N, K] read transposed, or B [K, N] as it is
  memory::desc wei({K, n}, memory::data_type::bf16, tb ? memory::dims{1, ldb} : memory::dims{ldb, 1});
  memory::desc dst = onednn::plain(M, n, ldc, memory::data_type::f32);
  std::string key = std::string(tb ? "bf16t " : "bf16 ") + std::to_string(M) + " " + std::to_string(n) + " " +
                    std::to_string(K) + " " + std::to_string(ldb) + " " + std::to_string(ldc) + (accumulate ? " +" : "");
  const uint16_t* b = tb ? B + size_t(n0) * ldb : B + n0;
  try {
    auto p = onednn::product(key, src, wei, dst, accumulate);
    onednn::execute(p, memory(src, onednn::engine(), const_cast<uint16_t*>(a16)),
                    memory(wei, onednn::engine(), const_cast<uint16_t*>(b)), memory(dst, onednn::engine(), C + n0));
  } catch (const dnnl::error& e) {
    throw std::runtime_error("oneDNN bf16 matmul (" + std::to_string(M) + "x" + std::to_string(K) + " by " +
                             std::to_string(K) + "x" + std::to_string(n) + "): " + e.what());
  }
}
#endif

}  // namespace

void gemm_bf16(bool tb, int M, int N, int K, const float* A, int lda, const uint16_t* B, int ldb, bool accumulate,
               float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int i = 0; i < M; i++) std::fill(C + size_t(i) * ldc, C + size_t(i) * ldc + N, 0.0f);
    return;
  }
  int nt = in_parallel() ? 1 : max_threads();
  if (tb && M <= kThinMaxRows && has_thin_kernels()) {
    // The calling thread's copy of A rounded to bf16 (thin.cpp's kernel, where the CPU has it).
    thread_local std::vector<float> a;
    bf16_values(a, M, K, A, lda);
    if (thin_product_bf16(M, N, K, a.data(), K, B, ldb, accumulate, C, ldc)) return;
  }
  if (tb && M <= kDotRows) {
    rows_times_wt(M, N, K, A, lda, B, ldb, accumulate, C, ldc, nt);
    return;
  }
#if defined(TUNEBENCH_ONEDNN)
  if (!onednn_has_bf16() || (widen_many_rows() && (M >= kWidenRows || g_widening == 1))) {
    widened_gemm_bf16(tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc, nt);
    return;
  }
  // The calling thread's copy (the team's threads write into it through a plain pointer).
  thread_local std::vector<uint16_t> a16;
  a16.resize(size_t(M) * K);
  uint16_t* a = a16.data();
#pragma omp parallel for schedule(static) if (nt > 1 && size_t(M) * K > 65536)
  for (int i = 0; i < M; i++) row_to_bf16(a + size_t(i) * K, A + size_t(i) * lda, K);
  if (nt > 1 && M <= kThinRows && N > kThinColumns) {
    int parts = ((N + kThinColumns - 1) / kThinColumns + nt - 1) / nt * nt;
    int block = ((N + parts - 1) / parts + 15) / 16 * 16;
    // A primitive run inside the team uses one thread; an error leaves the region as a flag.
    bool failed = false;
    std::string what;
#pragma omp parallel for schedule(static, 1) num_threads(nt)
    for (int p = 0; p < parts; p++) {
      int s = p * block, e = std::min(N, s + block);
      if (s >= e) continue;
      try {
        product_bf16(tb, M, s, e - s, K, a, B, ldb, accumulate, C, ldc);
      } catch (const std::exception& ex) {
#pragma omp critical
        {
          failed = true;
          what = ex.what();
        }
      }
    }
    if (failed) throw std::runtime_error(what);
    return;
  }
  product_bf16(tb, M, 0, N, K, a, B, ldb, accumulate, C, ldc);
#else
  widened_gemm_bf16(tb, M, N, K, A, lda, B, ldb, accumulate, C, ldc, nt);
#endif
}

#if defined(TUNEBENCH_ONEDNN)
void set_bf16_widening(int mode) { g_widening = mode; }
#else
void set_bf16_widening(int) {}
#endif

}  // namespace tb
