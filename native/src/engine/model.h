// A causal LM (Llama / Qwen2 / Qwen3) with LoRA, its forward/backward and AdamW, after llm.c:
// a config struct, parameter structs with every shape in a comment, explicit activations.
// Every tensor is a Buffer of the model's Backend (backend.h); the model code calls only the
// backend. Sources by concern: config.cpp, weights.cpp (load, LoRA, packing), transformer.cpp
// (one layer forward/backward), head.cpp, passes.cpp (logps, backward, decode), optimizer.cpp,
// adapter.cpp (PEFT folders and training state on disk).
#pragma once
#include <atomic>
#include <cmath>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend.h"
#include "sampling.h"

namespace tb {

struct MoeStats;  // passes.h

struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("cancelled") {}
};

struct ModelConfig {
  std::string architecture;  // LlamaForCausalLM | Qwen2ForCausalLM | Qwen3ForCausalLM | Qwen3MoeForCausalLM
  int layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  double rope_theta = 10000;
  double rms_eps = 1e-6;  // as in config.json; the kernels add it in float32 like transformers
  bool tied_embeddings = false;
  bool qkv_bias = false, o_bias = false, mlp_bias = false, qk_norm = false;
  // llama3 rope scaling (rope_type "llama3"); factor 0 = none
  double rope_factor = 0, rope_low = 1, rope_high = 4, rope_orig_ctx = 8192;
  // Qwen3-MoE: on a sparse layer (sparse_layer(l)) a router picks experts_per_tok of `experts`
  // SwiGLU experts of width moe_intermediate per token; the other layers keep the dense MLP.
  int experts = 0, experts_per_tok = 0, moe_intermediate = 0, sparse_step = 1;
  std::vector<int> mlp_only_layers;
  bool norm_topk_prob = false;
  double router_aux_loss_coef = 0;  // config.json's; the trainer's moe_aux_loss_coef decides
  bool sparse_layer(int l) const;
  std::string dtype;
  int64_t parameters = 0;
  int64_t active_parameters = 0;  // per token: the router's choice of experts only (= parameters when dense)
};

// Parses config.json; errors name the file and the field.
ModelConfig parse_config(const std::string& path);

enum Target { Q = 0, K, V, O, GATE, UP, DOWN, NUM_TARGETS };
extern const char* const kTargetNames[NUM_TARGETS];    // "q", "k", ...
extern const char* const kModuleNames[NUM_TARGETS];    // "q_proj", ...
// The [in, out] of projection t (an expert's, of width moe_intermediate, when expert).
void target_dims(const ModelConfig& c, int t, int& in, int& out, bool expert = false);

// A trainable tensor: value, gradient and AdamW moments (grad/m/v allocated when trainable).
struct Param {
  std::string name;            // Hugging Face / PEFT name
  std::vector<int64_t> shape;
  Buffer w, grad, m, v;        // w may carry a prepared (packed) form while frozen
  bool decay = true;           // weight decay applies (not to norms and biases, as Trainer)
  // An expert's tensor (Qwen3-MoE): its gradient exists only when the router sent the expert a
  // token since zero_grad (touched), and AdamW skips it otherwise, as PyTorch skips a parameter
  // whose grad is None; steps counts its own updates for the bias correction.
  bool routed = false, touched = true;
  int64_t steps = 0;
  size_t size() const { return w.size(); }
  bool empty() const { return w.empty(); }
  int64_t numel() const;       // of the shape
};

// One expert of a sparse layer: a SwiGLU MLP of width moe_intermediate, indexed by GATE, UP,
// DOWN (the entries before GATE stay empty), with its LoRA branches.
struct ExpertWeights {
  Param W[NUM_TARGETS], A[NUM_TARGETS], B[NUM_TARGETS];
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
  Param M[NUM_TARGETS];     // DoRA magnitude [out] (use_dora)
  Buffer norm[NUM_TARGETS];             // DoRA: row norms of W + s B A [out], for lora_version
  uint64_t norm_version[NUM_TARGETS] = {};
  // A sparse (Qwen3-MoE) layer has no W[GATE..DOWN]: a router [E, C] and E experts instead.
  Param router;
  std::vector<ExpertWeights> experts;
  bool sparse() const { return !experts.empty(); }
};

// A projection that can carry a LoRA branch: layer l's target t, or expert e's (e >= 0).
struct LoraSite {
  int layer, target, expert;
  int in, out;
  std::string module;  // its module path, "model.layers.3.mlp.experts.5.up_proj"
  Param *W, *A, *B, *M;  // M: DoRA's magnitude (empty unless use_dora; never on experts)
};

struct LoraOptions {
  int rank = 8;
  double alpha = 16;
  double dropout = 0;  // as given (written back unchanged); kernels use it as float
  bool targets[NUM_TARGETS] = {false, false, false, false, false, false, false};
  bool rslora = false;
  bool dora = false;  // PEFT's use_dora: a trained magnitude per output row of each target
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

// A KV cache for decoding: per layer the keys and values (after RoPE) of `batch` sequences of
// up to `capacity` tokens each; sequence b owns rows [b*capacity, (b+1)*capacity).
struct KvCache {
  int batch = 0, capacity = 0;
  std::vector<int32_t> length;  // [batch] tokens cached per sequence
  std::vector<Buffer> k, v;     // per layer [batch*capacity, Hk*D]
  size_t bytes() const;
};

// A batch of prompts to continue. Row r draws its step-t token with the uniform
// hash(seeds[r], t), so a (prompt, seed) pair gives the same tokens in any batch.
struct GenerateRequest {
  std::vector<std::vector<int32_t>> prompts;  // at least one token each
  std::vector<uint64_t> seeds;                // one per prompt
  int max_new_tokens = 256;
  std::vector<int32_t> eos_ids;               // any of them ends a row (and is kept as its last token)
  SamplingOptions sampling;
  bool adapters = true;
};

enum class Finish : uint8_t { Running = 0, Eos, Length, Stopped };

struct GeneratedRow {
  std::vector<int32_t> tokens;
  std::vector<float> logps;  // per token: log_softmax(logits / T) at the token
  Finish finish = Finish::Running;
};

// What one decoding step produced: token[r] = -1 for rows that ended earlier.
struct GenerateStep {
  int step = 0;
  std::vector<int32_t> token;
  std::vector<float> logp;
};

// How the frozen matrices (projections, embedding, head) are held and multiplied: F32, or BF16
// (16-bit weights, bf16 products summed in f32; a BF16 checkpoint's tensors are used in place,
// memory-mapped). Auto = BF16 when the checkpoint's projections are BF16 or F16. Norms, biases,
// LoRA, activations, softmax and the loss are f32 either way.
enum class Precision { Auto, F32, BF16 };

class Model {
 public:
  static std::unique_ptr<Model> load(const std::string& dir, int threads, Precision precision = Precision::Auto);
  // A model from a config and random weights (tests); seed fixes the weights.
  static std::unique_ptr<Model> random(const ModelConfig& cfg, uint64_t seed, float scale, int threads = 1);

  const ModelConfig& config() const { return cfg_; }
  DType weight_dtype() const { return weight_dtype_; }  // of the frozen matrices: F32 or BF16
  // Converts the frozen matrices to F32 or BF16 (rounding to nearest even). Full fine-tuning
  // trains f32 weights, so set_trainable(true) converts to F32.
  void set_weight_dtype(DType dt);
  Backend& backend() const { return *be_; }

  void add_lora(const LoraOptions& o);
  bool has_lora() const { return lora_on_; }
  const LoraOptions& lora() const { return lora_; }
  LoraOptions load_adapter(const std::string& dir);
  void save_adapter(const std::string& dir, const std::string& base_model) const;
  void set_trainable(bool full);
  bool full_trainable() const { return full_; }
  // A prepared (packed) copy of the frozen weights (Backend::prepare, kept in Buffer::prepared)
  // makes a LoRA step 3-6% faster at
  // the cost of their memory once more. Auto packs when the copy needs at most an eighth of the
  // physical memory; it is made on the first pass and dropped for full fine-tuning.
  enum class Packing { Auto, On, Off };
  void set_weight_packing(Packing p);
  size_t packed_bytes() const;  // 0 when nothing is packed
  // Auto's rule: a packed copy of `frozen_weights` weights (4 bytes each) fits when it needs at
  // most an eighth of `physical_bytes`; unknown memory (0 or less) packs nothing.
  static bool packing_fits(int64_t frozen_weights, double physical_bytes);
  int64_t frozen_weights() const;  // the weights a packed copy holds (every layer's targets and the head)
  // Tests: the physical memory Auto compares against, in bytes (0, the default: the machine's).
  // Drops a packed copy, so the next pass decides again.
  void set_physical_memory_for_testing(double bytes);
  // Tests: from now on each sparse layer keeps the experts its next pass chooses for every pass
  // of the same size (the loss is then smooth for finite differences); off forgets them.
  void freeze_routing_for_testing(bool on) {
    frozen_routes_ = on ? std::make_unique<std::map<int, std::vector<int32_t>>>() : nullptr;
  }
  void set_checkpointing(bool on) {
    checkpointing_ = on;
    train_state_valid_ = false;
  }

  // Log-probs [B*T] of the masked-in tokens (0 elsewhere): pack the batch, run the layers, the head.
  // At a temperature T != 1 they are log_softmax(logits / T) (and backward differentiates that);
  // `entropy`, when given, receives [B*T] the entropy of softmax(logits / T) at the same tokens.
  std::vector<float> logps(const BatchIn& b, bool adapters, bool train, uint64_t dropout_seed,
                           float temperature = 1.0f, std::vector<float>* entropy = nullptr);
  // aux_weight: the weight of the Qwen3-MoE load-balancing loss of that pass in the objective
  // (its gradient joins the log-probs'); 0 leaves it out.
  void backward(const std::vector<float>& dlogps, double aux_weight = 0);
  // transformers' load_balancing_loss_func over the sparse layers and valid tokens of the last
  // logps call (NaN for a dense model).
  double aux_loss() const { return aux_loss_.load(); }
  // Decoding: a cache for `batch` sequences of up to `capacity` tokens, valid while this model
  // lives (throws with its size when the allocation fails); decode() appends lengths[b] new tokens to sequence b (0: the row
  // costs nothing) and returns the logits [B, V] of each row's last new token (zeros for rows
  // without new tokens). Prefill is a decode() of the prompts.
  static size_t kv_cache_bytes(const ModelConfig& c, int batch, int capacity);
  std::unique_ptr<KvCache> new_kv_cache(int batch, int capacity);
  std::vector<float> decode(KvCache& cache, const BatchIn& next, bool adapters);
  // The same into `logits`, whose memory is reused from step to step.
  void decode(KvCache& cache, const BatchIn& next, bool adapters, std::vector<float>& logits);
  // Prefill, then sample token by token until every row ends (an eos id, max_new_tokens, or
  // stop[r] set by the caller from another thread); on_step sees each step's tokens as they come.
  std::vector<GeneratedRow> generate(const GenerateRequest& req, const std::function<void(const GenerateStep&)>& on_step,
                                     const std::atomic<bool>* stop);
  void zero_grad();
  double grad_norm() const;
  // Host copies of the trainable gradients, by parameter name.
  std::vector<std::pair<std::string, std::vector<float>>> gradients() const;
  double optimizer_step(const OptimizerOptions& o);
  void save_training_state(const std::string& path) const;
  void load_training_state(const std::string& path);

  // Trainable parameters in a fixed order (LoRA A/B, or every weight in full mode).
  std::vector<Param*> trainable();
  std::vector<const Param*> trainable() const;
  std::vector<Param*> all_base_params();
  std::vector<Param*> matrices();  // the frozen matrices: embedding, every projection, routers, experts, a separate head
  // Every projection that can carry LoRA, in a fixed order (layers, then targets, then experts).
  std::vector<LoraSite> lora_sites();

  // The engine's own per-call state (passes.h, transformer.cpp), not for callers.
  struct Pass;        // one call's packed batch: rows, positions, rope tables
  struct LayerActs;   // one layer's activations
  struct LayerGrads;  // backward scratch of a layer
  struct TrainState;  // a pass's buffers: what backward needs from the last train=true logps call
  struct Group;       // projections reading one input
  struct LoraStack;   // the LoRA branches of a group that run stacked
  struct DoraScratch; // DoRA's scratch buffers
  struct MoeActs;     // a sparse layer's routing and expert activations

  // Cancellation by ticket: each call the caller issues takes the next ticket, and cancel()
  // cancels every call issued so far (the running one and any queued behind it) but none issued
  // after it. A call checks its ticket against cancelled_upto between layers.
  uint64_t issue_ticket() { return ++issued_; }
  void cancel_issued() { cancelled_upto_.store(issued_.load()); }
  void cancel_all() { cancelled_upto_.store(UINT64_MAX); }
  bool cancelled(uint64_t ticket) const {
    uint64_t upto = cancelled_upto_.load();
    return ticket ? ticket <= upto : upto == UINT64_MAX;
  }
  uint64_t running_ticket = 0;  // set by whoever runs a call, under mu; 0: a direct call (tests)
  std::mutex mu;  // one heavy call at a time per model

 private:
  Model() = default;
  void init_params(bool allocate);
  void check_cancel() const {
    if (cancelled(running_ticket)) throw Cancelled();
  }
  Pass& pack_batch(TrainState& ts, const BatchIn& b, bool adapters, bool train, uint64_t seed, const KvCache* cache);
  // stats: where a sparse layer adds its routing counts (the pass's first forward; null otherwise)
  void layer_forward(int l, const float* x_in, float* x_out, LayerActs& a, const Pass& p, bool save, KvCache* cache,
                     MoeStats* stats);
  void layer_backward(int l, float* dx, LayerActs& a, LayerGrads& g, const Pass& p);
  void moe_forward(int l, const float* x, float* y, LayerActs& a, const Pass& p, MoeStats* stats);
  void moe_backward(int l, const float* dy, float* dx, LayerActs& a, LayerGrads& g, const Pass& p);
  void expert_forward(int l, int e, int t, const float* x, float* y, MoeActs& m, int first, int n, const Pass& p);
  void expert_backward(int l, int e, int t, const float* x, const float* dy, float* dx, bool dx_accumulate,
                       const MoeActs& m, int first, int n, const Pass& p);
  void group_forward(int l, const Group& g, const float* x, float* const* y, LayerActs& a, const Pass& p);
  void group_backward(int l, const Group& g, const float* x, const float* const* dy, float* dx, LayerActs& a,
                      const Pass& p);
  DoraScratch& dora_scratch();
  void head_logps(TrainState& ts, const float* x, bool train, float temperature, std::vector<float>& lp,
                  std::vector<float>* entropy);
  void head_backward(TrainState& ts, float* dx);
  void head_logits(TrainState& ts, const float* x);  // into ts.logits [M, V]
  const Param& head() const { return cfg_.tied_embeddings ? embed_ : lm_head_; }
  Param& head() { return cfg_.tied_embeddings ? embed_ : lm_head_; }
  float lora_scale() const;
  bool has_adapter(int l, int t, const Pass& p) const;
  bool has_dora(int l, int t, const Pass& p) const { return lora_.dora && has_adapter(l, t, p); }
  const float* dora_norm(int l, int t);  // ||W + s B A|| rows, computed again when the adapter changed
  void adapter_changed() { lora_version_++; }
  bool lora_shared_target(int l, int t, const Pass& p) const;
  LoraStack lora_stack(int l, const Group& g, const Pass& p) const;
  void alloc_grads();
  void pack_weights();
  void drop_packed_weights();
  void upload(Buffer& dst, const std::vector<float>& src);

  ModelConfig cfg_;
  std::unique_ptr<Backend> be_;
  DType weight_dtype_ = DType::F32;
  Param embed_;       // [V, C]
  Param final_norm_;  // [C]
  Param lm_head_;     // [V, C], empty when tied
  std::vector<LayerWeights> L_;

  LoraOptions lora_;
  bool lora_on_ = false;
  uint64_t lora_version_ = 1;  // moves whenever A, B or M change (DoRA norms follow it)
  std::shared_ptr<DoraScratch> dora_scratch_;
  bool full_ = false;
  bool checkpointing_ = false;
  int64_t step_ = 0;
  Packing packing_ = Packing::Auto;
  bool packed_ = false;  // the packing decision was taken for the current weights
  double physical_memory_override_ = 0;  // set_physical_memory_for_testing

  std::atomic<double> aux_loss_{NAN};
  std::unique_ptr<std::map<int, std::vector<int32_t>>> frozen_routes_;  // freeze_routing_for_testing  // read from the JavaScript thread (ModelBinding::AuxLoss)

  std::shared_ptr<TrainState> ts_;
  std::shared_ptr<TrainState> infer_ts_;  // buffers of train=false passes and decoding
  bool train_state_valid_ = false;
  std::atomic<uint64_t> issued_{0}, cancelled_upto_{0};
};

}  // namespace tb
