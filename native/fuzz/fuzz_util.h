// Shared by the libFuzzer targets (native/fuzz/*.cpp): a private temporary folder for the files
// the engine's readers open, the tiny model the adapter and training-state targets load into,
// and the property checks' failure (abort: libFuzzer records it as a crash with the input).
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "model.h"

namespace fuzz {

// A violated property of the engine (not a sanitizer report): print and abort.
[[noreturn]] inline void fail(const char* what, const std::string& detail = "") {
  fprintf(stderr, "\n==fuzz== property violated: %s %s\n", what, detail.c_str());
  fflush(stderr);
  abort();
}
#define FUZZ_CHECK(cond, detail) \
  do {                           \
    if (!(cond)) ::fuzz::fail(#cond, detail); \
  } while (0)

// One folder per process (libFuzzer -jobs/-fork run several), on tmpfs when there is one,
// removed at exit.
inline const std::string& scratch_dir() {
  static std::string dir = [] {
    std::string base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/tunebench-fuzz-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back(0);
    if (!mkdtemp(buf.data())) fail("mkdtemp", tmpl);
    std::string d(buf.data());
    static std::string remove_me;
    remove_me = d;
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(remove_me, ec);
    });
    return d;
  }();
  return dir;
}

inline void write_file(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = fopen(path.c_str(), "wb");
  if (!f) fail("cannot write", path);
  if (size && fwrite(data, 1, size, f) != size) fail("short write", path);
  fclose(f);
}

inline void remove_file(const std::string& path) { unlink(path.c_str()); }

// The bytes of a .safetensors file from a target's input. Raw: the input is the file. Framed:
// the input is the header JSON, a NUL, then the data section, and the 8-byte header length is
// written here, so that mutations which grow or shrink the header keep a header the reader
// parses (in a raw file nearly all of them break the length and end at its first check).
inline std::string safetensors_bytes(const uint8_t* data, size_t size, bool framed) {
  if (!framed) return std::string(reinterpret_cast<const char*>(data), size);
  const uint8_t* nul = static_cast<const uint8_t*>(memchr(data, 0, size));
  size_t hlen = nul ? size_t(nul - data) : size;
  std::string out(8, '\0');
  for (int k = 0; k < 8; k++) out[size_t(k)] = char(uint64_t(hlen) >> (8 * k));
  out.append(reinterpret_cast<const char*>(data), hlen);
  if (nul) out.append(reinterpret_cast<const char*>(nul + 1), size - hlen - 1);
  return out;
}
inline void write_file(const std::string& path, const std::string& bytes) {
  write_file(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// The model of the adapter and training-state targets (and of make_seeds, which writes their
// valid seeds): a Llama of one layer, small enough to make per input.
inline tb::ModelConfig tiny_config() {
  tb::ModelConfig c;
  c.architecture = "LlamaForCausalLM";
  c.layers = 1;
  c.hidden = 8;
  c.intermediate = 12;
  c.heads = 2;
  c.kv_heads = 1;
  c.head_dim = 4;
  c.vocab = 11;
  return c;
}

inline std::unique_ptr<tb::Model> tiny_model() { return tb::Model::random(tiny_config(), 1, 0.5f, 1); }

// The LoRA the targets attach before loading (so that a rejected file must leave it intact).
inline tb::LoraOptions tiny_lora(int rank = 2) {
  tb::LoraOptions o;
  o.rank = rank;
  o.alpha = 4;
  o.targets[tb::Q] = o.targets[tb::V] = true;
  o.seed = 3;
  return o;
}

inline std::vector<float> host(const tb::Buffer& b) {
  if (b.empty()) return {};
  tb::HostFloats h(b);
  return std::vector<float>(h.data(), h.data() + h.size());
}

// Everything of a trainable parameter that a load may change, to compare before and after.
struct ParamState {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> w, m, v;
  bool operator==(const ParamState& o) const {
    // bitwise, so that NaN payloads and -0 count too
    auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && (a.empty() || memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
    };
    return name == o.name && shape == o.shape && same(w, o.w) && same(m, o.m) && same(v, o.v);
  }
};
inline std::vector<ParamState> trainable_state(tb::Model& m) {
  std::vector<ParamState> out;
  for (tb::Param* p : m.trainable()) out.push_back({p->name, p->shape, host(p->w), host(p->m), host(p->v)});
  return out;
}

}  // namespace fuzz
