// The model's per-call state, shared by transformer.cpp, head.cpp and passes.cpp (not part of
// the engine's API). Every tensor is a Buffer of the model's backend.
#pragma once
#include "model.h"

namespace tb {

// One call's packed batch: the valid tokens of every sequence, back to back.
struct Model::Pass {
  int B = 0, T = 0, N = 0;                        // sequences, padded length, packed rows
  std::vector<int32_t> start, len, pos;           // host: sequence b owns rows [start[b], +len[b])
  Buffer ids, pos_d, start_d, len_d;              // I32 copies for the backend: [N], [N], [B], [B]
  Buffer kvstart, kvlen, kvrows;                  // decoding: cache rows per sequence, and per new row
  Buffer cos, sin;                                // rope tables [rope_len, D/2], kept between calls
  int rope_len = 0;
  bool adapters = false, train = false;
  uint64_t dropout_seed = 0;
};

// A sparse layer's routing and experts over its N rows. The N*k (token, choice) slots are sorted
// by expert: expert e owns slots [offset[e], offset[e+1]) and runs one GEMM per projection.
struct Model::MoeActs {
  Buffer logits, probs;            // [N,E] router logits, softmax
  Buffer idx, w;                   // I32 [N,k] chosen experts, [N,k] their weights
  std::vector<int32_t> offset;     // host [E+1]
  std::vector<int32_t> tok_host;   // host [N*k] the token of each sorted slot
  Buffer tok, slot;                // I32 [N*k] the same; each slot's flat index n*k+j into idx / w
  Buffer sw;                       // [N*k] each sorted slot's weight
  Buffer xs;                       // [N*k,C] the experts' inputs
  Buffer g, u, h;                  // [N*k,Im]
  Buffer ys;                       // [N*k,C] the experts' outputs before weighting
  Buffer ax[NUM_TARGETS];          // LoRA [N*k,r] of the experts' gate, up, down
  explicit MoeActs(Backend& be);
};

// The load-balancing loss's sums over the sparse layers of one pass (transformers'
// load_balancing_loss_func): times each expert was chosen, its summed probability, the rows.
struct MoeStats {
  std::vector<double> count, psum;
  double rows = 0;
  void reset(int experts) {
    count.assign(size_t(experts), 0.0);
    psum.assign(size_t(experts), 0.0);
    rows = 0;
  }
};

// Activations of one layer over the N packed rows: saved for backward, or scratch.
struct Model::LayerActs {
  Buffer x_in;                      // [N,C] layer input (saved passes only)
  Buffer xn1, rstd1;                // [N,C], [N]
  Buffer qraw, kraw, rstdq, rstdk;  // Qwen3 pre-norm q/k [N,Hq*D],[N,Hk*D]; [N*Hq],[N*Hk]
  Buffer q, k, v;                   // after rope: [N,Hq*D], [N,Hk*D], [N,Hk*D]
  Buffer att, lse;                  // [N,Hq*D], [N*Hq]
  Buffer x_mid;                     // [N,C] after the attention residual
  Buffer xn2, rstd2;                // [N,C], [N]
  Buffer g, u, h;                   // [N,I]
  Buffer ax[NUM_TARGETS];           // LoRA [N,r] (stacked [N,n*r] in the first of a group)
  Buffer dz[NUM_TARGETS];           // DoRA [N,out]: what the magnitude multiplies (train passes)
  std::unique_ptr<MoeActs> moe;     // sparse layers
  explicit LayerActs(Backend& be);
};

// Backward scratch of one layer, reused across layers and calls.
struct Model::LayerGrads {
  Buffer dh, dg, du, dxn, datt, dq, dk, dv, dqr, dkr;
  // sparse layers: [N*k,C] slot gradients in and out of the experts, [N*k] d slot weight,
  // [N*k] d w, [N,E] d router logits, [E] the load-balancing loss's d probs
  Buffer dys, dxs, dsw, dw, dlogits, aux_g;
  explicit LayerGrads(Backend& be);
};

// DoRA's scratch, shared by every layer and call (one heavy call at a time per model).
struct Model::DoraScratch {
  Buffer u, v, xd;   // with dropout: W x_d, s B A x_d [N,out]; x_d [N,in]
  Buffer dyc[3];     // c dy per projection of a group [N,out]
  Buffer dyc1[3];    // with dropout: (c - 1) dy per projection [N,out]
  Buffer dxd;        // with dropout: the input gradient of W x_d before the mask [N,in]
  explicit DoraScratch(Backend& be) {
    for (int i = 0; i < 3; i++) {
      dyc[i].bind(be, DType::F32);
      dyc1[i].bind(be, DType::F32);
    }
    for (Buffer* b : {&u, &v, &xd, &dxd}) b->bind(be, DType::F32);
  }
};

// Everything one pass needs, kept between calls so that buffers are reused instead of being
// allocated (and page-faulted and zeroed) again on every step.
struct Model::TrainState {
  Pass pass;
  Buffer x, x2;                     // residual stream ping-pong [N,C]
  LayerGrads grads;
  Buffer dlp, dhead, dhx, dx;       // backward of the head and the residual stream
  std::vector<LayerActs> acts;      // one per layer, or one scratch
  std::vector<Buffer> inputs;       // layer inputs (checkpointing only)
  std::vector<int32_t> sel_pos;     // host: flat [B*T] index of each head row
  Buffer sel_rows, targets;         // I32 [M]: packed row predicting each masked-in token, the token
  Buffer hsel_x, hsel, rstd_f, lse; // head rows before / after the final norm [M,C]; [M]; [M]
  Buffer ew;                        // [M,C] expected head rows when the head is frozen
  Buffer lp, logits;                // [M] log-probs; decoding's [M,V] logits
  Buffer ent;                       // [M] entropies, when asked for
  MoeStats moe;                     // the pass's load-balancing sums (Qwen3-MoE)
  float inv_temp = 1.0f;            // the head read hsel / T; backward scales by 1 / T
  bool checkpointing = false;
  Backend& be;
  explicit TrainState(Backend& b);
  void resize_acts(size_t n);
};

// Host floats into a buffer of the same length.
inline void upload_floats(Buffer& dst, const float* src) {
  dst.prepared.reset();
  dst.backend()->upload(dst.raw(), src, dst.bytes());
}
inline void upload_ints(Buffer& dst, const std::vector<int32_t>& src) {
  dst.resize(src.size());
  if (!src.empty()) dst.backend()->upload(dst.raw(), src.data(), dst.bytes());
}

}  // namespace tb
