"""Reference numbers for the native engine, computed with transformers + PEFT + torch autograd.

make OUT: for each of llama, qwen2, qwen3 writes OUT/<arch>/
    model/               tiny random checkpoint saved by transformers' own classes (f32)
    peft_adapter/        a PEFT LoRA adapter (non-zero B so that grads of A are non-trivial)
    peft_dora_adapter/   a PEFT DoRA adapter (use_dora; B non-zero, magnitudes moved off ||W||)
    dora_grads.safetensors   d(sum_t gradLogps_t * lp_t)/d(lora A, B, magnitude), PEFT's saved names
    expected.json        the batch, per-token gradLogps, logps without and with the adapter
    lora_grads.safetensors   d(sum_t gradLogps_t * lp_t)/d(lora A, B), PEFT key names
    full_grads.safetensors   the same loss without the adapter, d/d(every base weight), HF names
check-adapter MODEL ADAPTER BATCH_JSON OUT_JSON: loads an adapter with PeftModel.from_pretrained
    and writes its per-token logps for the batch in BATCH_JSON.
check-adapters JOBS_JSON: the same for a list of {model, adapter, batch, out} in one process.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

ARCHS = ("llama", "qwen2", "qwen3")


def tiny_model(arch):
    import transformers as tf

    common = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=128, max_position_embeddings=128, rms_norm_eps=1e-6)
    if arch == "llama":
        # llama3 rope scaling with a short original context so that it changes the frequencies.
        cfg = tf.LlamaConfig(**common, rope_theta=10000.0, tie_word_embeddings=False,
                             rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                           "high_freq_factor": 4.0, "original_max_position_embeddings": 32})
        cls = tf.LlamaForCausalLM
    elif arch == "qwen2":
        cfg = tf.Qwen2Config(**common, rope_theta=10000.0, tie_word_embeddings=True)
        cls = tf.Qwen2ForCausalLM
    else:
        cfg = tf.Qwen3Config(**common, head_dim=32, rope_theta=1000000.0, tie_word_embeddings=False)
        cls = tf.Qwen3ForCausalLM
    cfg._attn_implementation = "eager"
    torch.manual_seed({"llama": 1, "qwen2": 2, "qwen3": 3}[arch])
    model = cls(cfg).float().eval()
    # Random init of transformers puts small values (std 0.02) and unit norms: widen them so
    # the log-probs and gradients are far from uniform and every op matters.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    return model


def lora_model(model, rslora, seed, dora=False):
    """A PEFT LoRA (r 4, alpha 8) on all seven projections, with B non-zero so that it matters
    (DoRA: the magnitudes scaled off their initial ||W|| as well)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, use_rslora=rslora, use_dora=dora, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, cfg)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.2 * torch.randn_like(p))
            if "lora_magnitude_vector" in n:
                p.mul_(1.0 + 0.3 * torch.randn_like(p))
    return peft_model.eval()


def saved_name(n):
    """A PEFT parameter's name as save_pretrained writes it (no adapter name; the magnitude
    without .weight)."""
    n = n.replace(".lora_magnitude_vector.default.weight", ".lora_magnitude_vector")
    return n.replace(".default", "")


def make_batch():
    g = torch.Generator().manual_seed(11)
    B, T = 3, 12
    lengths = [12, 7, 9]
    ids = torch.randint(0, 128, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.uint8)
    for b, L in enumerate(lengths):
        ids[b, L:] = 0
        mask[b, 2:L] = 1  # positions 0-1 play the prompt
    grad = torch.randn(B, T, generator=g) * mask
    return ids, lengths, mask, grad


def token_logps(model, ids, lengths, mask):
    attn = torch.zeros_like(ids)
    for b, L in enumerate(lengths):
        attn[b, :L] = 1
    logits = model(input_ids=ids, attention_mask=attn).logits.float()
    lsm = torch.log_softmax(logits[:, :-1], dim=-1)
    lp = torch.gather(lsm, 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    out = torch.zeros(ids.shape, dtype=torch.float32)
    out[:, 1:] = lp
    return out * mask.float()


def flat(t):
    return [float(x) for x in t.reshape(-1).tolist()]


def make(out_root):
    torch.use_deterministic_algorithms(True)
    ids, lengths, mask, grad = make_batch()
    for arch in ARCHS:
        out = os.path.join(out_root, arch)
        os.makedirs(out, exist_ok=True)
        model = tiny_model(arch)
        model.save_pretrained(os.path.join(out, "model"), safe_serialization=True)

        # Full fine-tuning gradients of the base model.
        model.zero_grad()
        lp_base = token_logps(model, ids, lengths, mask)
        (lp_base * grad).sum().backward()
        full = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
        if model.config.tie_word_embeddings:
            full.pop("lm_head.weight", None)
        save_file(full, os.path.join(out, "full_grads.safetensors"))
        model.zero_grad()

        rslora = arch == "qwen3"
        peft_model = lora_model(model, rslora=rslora, seed=5)
        lp_lora = token_logps(peft_model, ids, lengths, mask)
        (lp_lora * grad).sum().backward()
        grads = {}
        for n, p in peft_model.named_parameters():
            if "lora_" in n:
                grads[saved_name(n)] = p.grad.detach().clone().contiguous()
        save_file(grads, os.path.join(out, "lora_grads.safetensors"))
        peft_model.save_pretrained(os.path.join(out, "peft_adapter"))
        with torch.no_grad():
            with peft_model.disable_adapter():
                lp_off = token_logps(peft_model, ids, lengths, mask)

        # DoRA on a fresh copy of the same base (tiny_model is seeded).
        dora_model = lora_model(tiny_model(arch), rslora=rslora, seed=6, dora=True)
        lp_dora = token_logps(dora_model, ids, lengths, mask)
        (lp_dora * grad).sum().backward()
        dgrads = {saved_name(n): p.grad.detach().clone().contiguous() for n, p in dora_model.named_parameters() if "lora_" in n}
        save_file(dgrads, os.path.join(out, "dora_grads.safetensors"))
        dora_model.save_pretrained(os.path.join(out, "peft_dora_adapter"))
        expected = {
            "arch": arch,
            "batch": {"ids": flat(ids), "batch": ids.shape[0], "seqLen": ids.shape[1], "lengths": lengths, "mask": flat(mask)},
            "gradLogps": flat(grad),
            "logpsBase": flat(lp_base.detach()),
            "logpsBaseWithAdapterOff": flat(lp_off),
            "logpsLora": flat(lp_lora.detach()),
            "logpsDora": flat(lp_dora.detach()),
            "rslora": rslora,
        }
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f)
    print(json.dumps({"ok": True, "archs": ARCHS, "torch": torch.__version__}))


def check_adapter(model_dir, adapter_dir, batch_json, out_json):
    import transformers as tf
    from peft import PeftModel

    with open(batch_json) as f:
        b = json.load(f)
    B, T = b["batch"], b["seqLen"]
    ids = torch.tensor([int(x) for x in b["ids"]]).reshape(B, T)
    mask = torch.tensor([int(x) for x in b["mask"]], dtype=torch.uint8).reshape(B, T)
    base = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        lp = token_logps(model, ids, b["lengths"], mask)
    with open(out_json, "w") as f:
        json.dump({"logps": flat(lp)}, f)


def check_adapters(jobs_json):
    """One process for several adapters: [{model, adapter, batch, out}, ...] (torch loads once)."""
    with open(jobs_json) as f:
        jobs = json.load(f)
    for j in jobs:
        check_adapter(j["model"], j["adapter"], j["batch"], j["out"])


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 6 and sys.argv[1] == "check-adapter":
        check_adapter(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "check-adapters":
        check_adapters(sys.argv[2])
    else:
        sys.exit("usage: engine_parity.py make OUT | check-adapter MODEL ADAPTER BATCH_JSON OUT_JSON | check-adapters JOBS_JSON")
