// A causal LM (Llama / Qwen2 / Qwen3) with LoRA, its forward/backward and AdamW, after llm.c:
// a config struct, parameter structs with every shape in a comment, explicit activations.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace tb {

class PackedMatrix;  // gemm.h
struct PackedHead;   // ops.h

struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

struct ModelConfig {
  std::string architecture;  // LlamaForCausalLM | Qwen2ForCausalLM | Qwen3ForCausalLM
  int layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  double rope_theta = 10000;
  double rms_eps = 1e-6;  // as in config.json; the kernels add it in float32 like transformers
  bool tied_embeddings = false;
  bool qkv_bias = false, o_bias = false, mlp_bias = false, qk_norm = false;
  // llama3 rope scaling (rope_type "llama3"); factor 0 = none
  double rope_factor = 0, rope_low = 1, rope_high = 4, rope_orig_ctx = 8192;
  std::string dtype;
  int64_t parameters = 0;
};

// Parses config.json; errors name the file and the field.
ModelConfig parse_config(const std::string& path);

enum Target { Q = 0, K, V, O, GATE, UP, DOWN, NUM_TARGETS };
extern const char* const kTargetNames[NUM_TARGETS];    // "q", "k", ...
extern const char* const kModuleNames[NUM_TARGETS];    // "q_proj", ...

// A trainable tensor: value, gradient and AdamW moments (grad/m/v allocated when trainable).
struct Param {
  std::string name;            // Hugging Face / PEFT name
  std::vector<int64_t> shape;
  std::vector<float> w, grad, m, v;
  bool decay = true;           // weight decay applies (not to norms and biases, as Trainer)
  size_t size() const { return w.size(); }
  bool empty() const { return w.empty(); }
};

struct LayerWeights {
  Param in_norm;     // [C]
  Param post_norm;   // [C]
  Param q_norm;      // [D] (Qwen3)
  Param k_norm;      // [D] (Qwen3)
  Param W[NUM_TARGETS];     // q [Hq*D, C], k/v [Hk*D, C], o [C, Hq*D], gate/up [I, C], down [C, I]
  Param bias[NUM_TARGETS];  // optional, [out]
  Param A[NUM_TARGETS];     // LoRA A [r, in]
  Param B[NUM_TARGETS];     // LoRA B [out, r]
  // Frozen W packed for the GEMM library (Model::pack_weights), for backward's dy W.
  std::shared_ptr<const PackedMatrix> Wp[NUM_TARGETS];
};

struct LoraOptions {
  int rank = 8;
  double alpha = 16;
  double dropout = 0;  // as given (written back unchanged); kernels use it as float
  bool targets[NUM_TARGETS] = {false, false, false, false, false, false, false};
  bool rslora = false;
  uint64_t seed = 0;
};

struct BatchIn {
  std::vector<int32_t> ids;   // [B*T]
  int batch = 0, seq_len = 0;
  std::vector<int32_t> lengths;  // [B]
  std::vector<uint8_t> mask;     // [B*T]
};

struct OptimizerOptions {
  double lr = 1e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0, max_grad_norm = 1;
};

struct LayerGrads;  // backward scratch (model.cpp)

// Saved activations of one layer over the N packed tokens.
struct LayerActs {
  std::vector<float> x_in;            // [N,C] layer input
  std::vector<float> xn1, rstd1;      // [N,C], [N]
  std::vector<float> qraw, kraw, rstdq, rstdk;  // Qwen3 pre-norm q/k [N,Hq*D],[N,Hk*D]; [N*Hq],[N*Hk]
  std::vector<float> q, k, v;         // after rope: [N,Hq*D], [N,Hk*D], [N,Hk*D]
  std::vector<float> att, lse;        // [N,Hq*D], [N*Hq]
  std::vector<float> x_mid;           // [N,C] after the attention residual
  std::vector<float> xn2, rstd2;      // [N,C], [N]
  std::vector<float> g, u, h;         // [N,I]
  std::vector<float> ax[NUM_TARGETS]; // LoRA [N,r]
};

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& dir, int threads);
  // A model from a config and random weights (tests); seed fixes the weights.
  static std::unique_ptr<Model> random(const ModelConfig& cfg, uint64_t seed, float scale);

  const ModelConfig& config() const { return cfg_; }
  int threads() const { return threads_; }

  void add_lora(const LoraOptions& o);
  bool has_lora() const { return lora_on_; }
  const LoraOptions& lora() const { return lora_; }
  LoraOptions load_adapter(const std::string& dir);
  void save_adapter(const std::string& dir, const std::string& base_model) const;
  void set_trainable(bool full);
  bool full_trainable() const { return full_; }
  // A packed copy of the frozen weights (gemm.h PackedMatrix) makes a LoRA step 3-6% faster at
  // the cost of their memory once more. Auto packs when the copy needs at most an eighth of the
  // physical memory; it is made on the first pass and dropped for full fine-tuning.
  enum class Packing { Auto, On, Off };
  void set_weight_packing(Packing p);
  size_t packed_bytes() const;  // 0 when nothing is packed
  void set_checkpointing(bool on) {
    checkpointing_ = on;
    train_state_valid_ = false;
  }

  std::vector<float> logps(const BatchIn& b, bool adapters, bool train, uint64_t dropout_seed);
  void backward(const std::vector<float>& dlogps);
  void zero_grad();
  double grad_norm() const;
  double optimizer_step(const OptimizerOptions& o);
  void save_training_state(const std::string& path) const;
  void load_training_state(const std::string& path);

  // Trainable parameters in a fixed order (LoRA A/B, or every weight in full mode).
  std::vector<Param*> trainable();
  std::vector<const Param*> trainable() const;
  std::vector<Param*> all_base_params();

  std::atomic<bool> cancel_flag{false};
  std::mutex mu;  // one heavy call at a time per model

 private:
  Model() = default;
  void init_params(bool allocate);
  void check_cancel() const {
    if (cancel_flag.load()) throw Cancelled();
  }
  struct Pass;  // per-call context (packing, rope tables)
  void layer_forward(int l, const float* x_in, float* x_out, LayerActs& a, const Pass& p);
  void layer_backward(int l, float* dx, LayerActs& a, LayerGrads& g, const Pass& p);
  float lora_scale() const;
  bool lora_shared_target(int l, int t, const Pass& p) const;
  void alloc_grads();
  void pack_weights();
  void drop_packed_weights();

  ModelConfig cfg_;
  int threads_ = 1;
  Param embed_;       // [V, C]
  Param final_norm_;  // [C]
  Param lm_head_;     // [V, C], empty when tied
  std::vector<LayerWeights> L_;

  LoraOptions lora_;
  bool lora_on_ = false;
  bool full_ = false;
  bool checkpointing_ = false;
  int64_t step_ = 0;
  Packing packing_ = Packing::Auto;
  bool packed_ = false;                      // Wp and head_packed_ are set
  std::shared_ptr<PackedHead> head_packed_;  // null when not packed or the library cannot

  // What backward needs from the last train=true logps call.
  struct TrainState;
  std::shared_ptr<TrainState> ts_;
  std::shared_ptr<TrainState> infer_ts_;  // buffers of train=false passes
  bool train_state_valid_ = false;
  // Logits chunk of the head, shared by every pass (calls on one model never overlap).
  std::vector<float> head_scratch_;
};

}  // namespace tb
