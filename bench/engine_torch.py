"""PyTorch + PEFT side of bench/engine.ts: LoRA forward+backward tokens/s and peak RSS on the CPU.

make DIR SIZE: writes a random checkpoint of the bench shape to DIR: SIZE full/quick is a small
    LlamaForCausalLM in f32; qwen3-0.6b/qwen3-1.7b is a Qwen3ForCausalLM of that model's shape
    (tied embeddings) in bfloat16, weights normal(0, 0.02) (transformers' init), config.json
    torch_dtype "bfloat16".
run DIR THREADS BATCH SEQ ITERS RANK [MODE [checkpointing]]: times per-token log-probs + backward through a PEFT
    LoRA on all seven projections (dropout 0), prints one JSON line. MODE f32 (default): weights
    loaded as float32, everything in f32. MODE bf16-autocast: the way bf16 LoRA is usually run on
    a CPU: base weights loaded as bfloat16 (torch_dtype=torch.bfloat16), LoRA A/B kept in float32
    (PEFT's autocast_adapter_dtype, checked below), the forward under
    torch.autocast("cpu", dtype=torch.bfloat16) (log-softmax and loss in f32) and backward()
    just outside it, as torch's AMP docs recommend (its ops run in the dtypes the forward chose).
    `checkpointing`: gradient checkpointing on (non-reentrant), as Trainer does when asked.
"""
import json
import resource
import sys
import time

import torch

SIZES = {
    "full": dict(hidden_size=512, intermediate_size=1408, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=4, vocab_size=32000),
    "quick": dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=4, vocab_size=8000),
}

# Qwen3-0.6B and Qwen3-1.7B's shapes (their config.json), random weights.
QWEN3 = {
    "qwen3-0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936),
    "qwen3-1.7b": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128, vocab_size=151936),
}


# A Qwen3-MoE of Qwen3-30B-A3B's proportions scaled down to train on a laptop CPU: 8 layers,
# all sparse, 32 experts of which 4 per token (30B-A3B: 48 layers, 128 and 8), expert MLP 384.
QWEN3_MOE = {
    "qwen3-moe": dict(hidden_size=1024, intermediate_size=3072, moe_intermediate_size=384, num_experts=32,
                      num_experts_per_tok=4, norm_topk_prob=True, num_hidden_layers=8, num_attention_heads=16,
                      num_key_value_heads=4, head_dim=64, vocab_size=32000),
}


def make(out, size):
    import transformers as tf

    torch.manual_seed(0)
    if size in QWEN3 or size in QWEN3_MOE:
        return make_qwen3(out, size)
    cfg = tf.LlamaConfig(**SIZES[size], max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(cfg).float()
    model.save_pretrained(out, safe_serialization=True)


def make_qwen3(out, size):
    import os

    import transformers as tf

    if size in QWEN3_MOE:
        cfg = tf.Qwen3MoeConfig(**QWEN3_MOE[size], max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
                                tie_word_embeddings=False, initializer_range=0.02)
        cls = tf.Qwen3MoeForCausalLM
    else:
        cfg = tf.Qwen3Config(**QWEN3[size], max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0,
                             tie_word_embeddings=True, initializer_range=0.02)
        cls = tf.Qwen3ForCausalLM
    # Built directly in bfloat16 (the init draws normal(0, 0.02) for linears and the embedding,
    # ones for the norms), so the 1.7B shape never holds an f32 copy.
    model = cls._from_config(cfg, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    model.save_pretrained(out, safe_serialization=True)
    path = os.path.join(out, "config.json")
    with open(path) as f:
        c = json.load(f)
    c["torch_dtype"] = "bfloat16"  # the spelling of released checkpoints; transformers 5 writes "dtype"
    c["dtype"] = "bfloat16"
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def run(model_dir, threads, batch, seq, iters, rank, mode="f32", checkpointing="no", adapter="lora"):
    import transformers as tf
    from peft import LoraConfig, get_peft_model

    if mode not in ("f32", "bf16-autocast"):
        sys.exit(f"unknown mode {mode} (f32, bf16-autocast)")
    bf16 = mode == "bf16-autocast"
    torch.set_num_threads(threads)
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32,
                                                    attn_implementation="sdpa")
    if checkpointing == "checkpointing":
        # as Trainer with gradient_checkpointing=True (LLaMA-Factory's default)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    # A MoE model's experts are 3-D parameters in transformers 5, not modules: LoRA on attention
    # (bench/engine.ts does the same on its side).
    moe = getattr(model.config, "model_type", "") == "qwen3_moe"
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"] + ([] if moe else ["gate_proj", "up_proj", "down_proj"])
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM", use_dora=adapter == "dora",
                     target_modules=targets)
    model = get_peft_model(model, cfg)  # autocast_adapter_dtype=True (default): bf16 adapters become f32
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable), "LoRA weights should be float32"
    if bf16:
        assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones(batch, seq)
    mask[:, 0] = 0

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids).logits
            lp = torch.gather(torch.log_softmax(logits[:, :-1].float(), -1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
            loss = -(lp * mask[:, 1:]).sum() / mask.sum()
        assert torch.isfinite(loss), f"loss is {loss.item()}"
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(iters):
        step()
    dt = (time.perf_counter() - t0) / iters
    cpu = (time.process_time() - c0) / iters
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds_per_step": dt, "cpu_seconds_per_step": cpu, "tokens_per_s": batch * seq / dt, "peak_rss_mb": peak_mb,
                      "torch": torch.__version__, "threads": torch.get_num_threads(), "mode": mode}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(sys.argv[2], *(int(x) for x in sys.argv[3:8]), *sys.argv[8:11])
    else:
        sys.exit("usage: engine_torch.py make DIR SIZE | run DIR THREADS BATCH SEQ ITERS RANK [f32|bf16-autocast [checkpointing]]")
