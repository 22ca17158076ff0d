"""Reference numbers for the native engine's Qwen3-MoE, from transformers' Qwen3MoeForCausalLM,
PEFT and torch autograd.

make OUT: for each variant writes OUT/<variant>/
    model/                  a tiny random Qwen3-MoE checkpoint (3 layers, the middle one dense via
                            mlp_only_layers), saved with the experts per expert
                            (mlp.experts.{e}.gate_proj.weight ...) or fused as transformers >= 5
                            holds them (mlp.experts.gate_up_proj [E, 2I, C], mlp.experts.down_proj)
    peft_adapter/           a PEFT LoRA on all seven projection names (attention, the dense MLP and
                            every expert's gate/up/down), B non-zero
    lora_grads.safetensors  d(sum_t gradLogps_t lp_t + AUX_WEIGHT aux)/d(lora A, B), PEFT's names
    full_grads.safetensors  the same objective without the adapter, d/d(every base weight), HF names
                            (experts per expert)
    expected.json           the batch, gradLogps, log-probs without / with the adapter, aux losses
check-adapters JOBS_JSON: [{model, adapter, batch, out}] loads each adapter with PeftModel on the
    per-expert model and writes its per-token log-probs.

transformers >= 5 holds a sparse layer's experts as two 3-D parameters, which PEFT's LoRA cannot
wrap as modules; LoRA on experts is defined on per-expert Linear modules, the structure of
transformers 4 (model.layers.L.mlp.experts.E.gate_proj, the names PEFT, vLLM and LLaMA-Factory
use). PerExpertMoe below is that block: the same routing as Qwen3MoeTopKRouter and the same sum
as Qwen3MoeExperts (checked here against the library's block before anything is written).
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_parity import flat, make_batch, saved_name, token_logps  # noqa: E402

AUX_WEIGHT = 0.5
VARIANTS = {
    # name: (fused checkpoint, norm_topk_prob)
    "fused_norm": (True, True),
    "experts_nonorm": (False, False),
}


class PerExpertMoe(torch.nn.Module):
    """Qwen3-MoE's sparse block with one Linear per expert projection (transformers 4's layout)."""

    def __init__(self, cfg, record):
        super().__init__()
        C, I, E = cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts
        self.k, self.E, self.norm = cfg.num_experts_per_tok, E, cfg.norm_topk_prob
        self.gate = torch.nn.Linear(C, E, bias=False)
        self.experts = torch.nn.ModuleList()
        for _ in range(E):
            m = torch.nn.Module()
            m.gate_proj = torch.nn.Linear(C, I, bias=False)
            m.up_proj = torch.nn.Linear(C, I, bias=False)
            m.down_proj = torch.nn.Linear(I, C, bias=False)
            self.experts.append(m)
        self.record = record  # router logits of each forward, for the aux loss

    def forward(self, h):
        B, T, C = h.shape
        x = h.reshape(-1, C)
        logits = self.gate(x)
        self.record.append(logits)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)
        w, idx = torch.topk(probs, self.k, dim=-1)
        if self.norm:
            w = w / w.sum(dim=-1, keepdim=True)
        w = w.to(x.dtype)
        out = torch.zeros_like(x)
        for e in range(self.E):
            pos, tok = torch.where(idx.t() == e)  # (choice slot, token) as transformers' expert_mask
            if tok.numel() == 0:
                continue
            ex = self.experts[e]
            xe = x[tok]
            ye = ex.down_proj(torch.nn.functional.silu(ex.gate_proj(xe)) * ex.up_proj(xe))
            out.index_add_(0, tok, ye * w[tok, pos, None])
        return out.reshape(B, T, C)


def tiny_config(norm, **overrides):
    """The tiny Qwen3-MoE config; overrides (vocab_size, token ids ...) replace its keys."""
    import transformers as tf

    cfg = tf.Qwen3MoeConfig(**{**dict(hidden_size=32, intermediate_size=48, moe_intermediate_size=24, num_experts=4,
                            num_experts_per_tok=2, norm_topk_prob=norm, decoder_sparse_step=1, mlp_only_layers=[1],
                            num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                            vocab_size=128, max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                            tie_word_embeddings=False, router_aux_loss_coef=0.01), **overrides})
    cfg._attn_implementation = "eager"
    return cfg


def library_model(norm, seed, **overrides):
    import transformers as tf

    torch.manual_seed(seed)
    model = tf.Qwen3MoeForCausalLM(tiny_config(norm, **overrides)).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("mlp.gate.weight"):
                p.copy_(0.5 * torch.randn_like(p))  # routing far from uniform
            else:
                p.copy_(0.15 * torch.randn_like(p))
    return model


def per_expert_state(model):
    """The library model's state dict with every fused expert tensor split per expert."""
    out = {}
    for n, t in model.state_dict().items():
        if n.endswith("mlp.experts.gate_up_proj"):
            pre = n[: -len("gate_up_proj")]
            I = t.shape[1] // 2
            for e in range(t.shape[0]):
                out[f"{pre}{e}.gate_proj.weight"] = t[e, :I].clone()
                out[f"{pre}{e}.up_proj.weight"] = t[e, I:].clone()
        elif n.endswith("mlp.experts.down_proj"):
            pre = n[: -len("down_proj")]
            for e in range(t.shape[0]):
                out[f"{pre}{e}.down_proj.weight"] = t[e].clone()
        else:
            out[n] = t.clone()
    return out


def per_expert_model(lib, record):
    """The library model with each sparse block replaced by PerExpertMoe holding the same weights.
    Its config's model_type is renamed: PEFT >= 0.18 rewrites a qwen3_moe model's expert targets
    for transformers 5's fused parameters, and here the experts are modules again."""
    state = per_expert_state(lib)
    for layer in lib.model.layers:
        if hasattr(layer.mlp, "experts"):
            layer.mlp = PerExpertMoe(lib.config, record)
    lib.load_state_dict(state, strict=True)
    lib.config.model_type = "qwen3_moe_per_expert"
    return lib.eval()


def aux_of(record, cfg, ids, lengths):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    attn = torch.zeros_like(ids)
    for b, L in enumerate(lengths):
        attn[b, :L] = 1
    return load_balancing_loss_func(tuple(record), cfg.num_experts, cfg.num_experts_per_tok, attn)


def attention_mask(ids, lengths):
    attn = torch.zeros_like(ids)
    for b, L in enumerate(lengths):
        attn[b, :L] = 1
    return attn


def write_checkpoint(lib, out_dir, fused):
    lib.config.architectures = ["Qwen3MoeForCausalLM"]
    lib.config.save_pretrained(out_dir)
    state = {n: t.contiguous() for n, t in lib.state_dict().items()} if fused else per_expert_state(lib)
    state = {n: t.contiguous() for n, t in state.items()}
    if fused:
        assert any(n.endswith("mlp.experts.gate_up_proj") for n in state), "expected fused experts in transformers' state"
    save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


def make(out_root):
    from peft import LoraConfig, get_peft_model

    torch.use_deterministic_algorithms(True)
    ids, lengths, mask, grad = make_batch()
    attn = attention_mask(ids, lengths)
    for i, (variant, (fused, norm)) in enumerate(VARIANTS.items()):
        out = os.path.join(out_root, variant)
        os.makedirs(os.path.join(out, "model"), exist_ok=True)
        lib = library_model(norm, seed=20 + i)
        write_checkpoint(lib, os.path.join(out, "model"), fused)
        with torch.no_grad():
            res = lib(input_ids=ids, attention_mask=attn, output_router_logits=True)
            lib_logits = res.logits.float()
            lib_aux = float(res.aux_loss)
            lp_lib = token_logps(lib, ids, lengths, mask)

        # The same weights as per-expert modules: identical numbers, then full-FT gradients.
        record = []
        model = per_expert_model(lib, record)
        lp_base = token_logps(model, ids, lengths, mask)
        aux_base = aux_of(record, model.config, ids, lengths)
        assert torch.allclose(lp_base, lp_lib, atol=1e-6), "PerExpertMoe differs from transformers' sparse block"
        assert abs(float(aux_base) - lib_aux) < 1e-6, (float(aux_base), lib_aux)
        del lib_logits
        model.zero_grad()
        ((lp_base * grad).sum() + AUX_WEIGHT * aux_base).backward()
        full = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
        save_file(full, os.path.join(out, "full_grads.safetensors"))
        model.zero_grad()

        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                         target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
        torch.manual_seed(30 + i)
        peft_model = get_peft_model(model, cfg)
        with torch.no_grad():
            for n, p in peft_model.named_parameters():
                if "lora_B" in n:
                    p.copy_(0.2 * torch.randn_like(p))
        peft_model.eval()
        record.clear()
        lp_lora = token_logps(peft_model, ids, lengths, mask)
        aux_lora = aux_of(record, model.config, ids, lengths)
        ((lp_lora * grad).sum() + AUX_WEIGHT * aux_lora).backward()
        grads = {saved_name(n): p.grad.detach().clone().contiguous() for n, p in peft_model.named_parameters() if "lora_" in n}
        assert any(".experts.3.down_proj." in n for n in grads), "PEFT did not wrap the experts"
        save_file(grads, os.path.join(out, "lora_grads.safetensors"))
        peft_model.save_pretrained(os.path.join(out, "peft_adapter"))
        expected = {
            "variant": variant,
            "fused": fused,
            "normTopkProb": norm,
            "auxWeight": AUX_WEIGHT,
            "batch": {"ids": flat(ids), "batch": ids.shape[0], "seqLen": ids.shape[1], "lengths": lengths, "mask": flat(mask)},
            "gradLogps": flat(grad),
            "logpsBase": flat(lp_base.detach()),
            "auxBase": float(aux_base),
            "logpsLora": flat(lp_lora.detach()),
            "auxLora": float(aux_lora),
        }
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f)
    print(json.dumps({"ok": True, "variants": list(VARIANTS), "torch": torch.__version__}))


def check_adapters(jobs_json):
    import transformers as tf
    from peft import PeftModel

    with open(jobs_json) as f:
        jobs = json.load(f)
    for j in jobs:
        with open(j["batch"]) as f:
            b = json.load(f)
        B, T = b["batch"], b["seqLen"]
        ids = torch.tensor([int(x) for x in b["ids"]]).reshape(B, T)
        mask = torch.tensor([int(x) for x in b["mask"]], dtype=torch.uint8).reshape(B, T)
        cfg = tf.AutoConfig.from_pretrained(j["model"])
        cfg._attn_implementation = "eager"
        lib = tf.Qwen3MoeForCausalLM(cfg).float()
        model = per_expert_model(lib, [])
        state = load_file(os.path.join(j["model"], "model.safetensors"))
        model.load_state_dict(state if any(".experts.0.gate_proj." in n for n in state) else per_expert_state_of(state), strict=True)
        model = PeftModel.from_pretrained(model, j["adapter"]).eval()
        with torch.no_grad():
            lp = token_logps(model, ids, b["lengths"], mask)
        with open(j["out"], "w") as f:
            json.dump({"logps": flat(lp)}, f)


def per_expert_state_of(state):
    class Holder:
        def state_dict(self):
            return state

    return per_expert_state(Holder())


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "check-adapters":
        check_adapters(sys.argv[2])
    else:
        sys.exit("usage: engine_moe_parity.py make OUT | check-adapters JOBS_JSON")
