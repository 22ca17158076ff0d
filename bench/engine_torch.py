"""PyTorch + PEFT side of bench/engine.ts: LoRA forward+backward tokens/s and peak RSS on the CPU.

make DIR SIZE: writes a random LlamaForCausalLM checkpoint of the bench shape to DIR.
run DIR THREADS BATCH SEQ ITERS RANK: times per-token log-probs + backward through a PEFT LoRA
    on all seven projections (dropout 0), prints one JSON line.
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


def make(out, size):
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(**SIZES[size], max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False)
    model = tf.LlamaForCausalLM(cfg).float()
    model.save_pretrained(out, safe_serialization=True)


def run(model_dir, threads, batch, seq, iters, rank):
    import transformers as tf
    from peft import LoraConfig, get_peft_model

    torch.set_num_threads(threads)
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = get_peft_model(model, cfg)
    model.train()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
    mask = torch.ones(batch, seq)
    mask[:, 0] = 0

    def step():
        logits = model(input_ids=ids).logits
        lp = torch.gather(torch.log_softmax(logits[:, :-1].float(), -1), 2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        loss = -(lp * mask[:, 1:]).sum() / mask.sum()
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
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "run":
        run(sys.argv[2], *(int(x) for x in sys.argv[3:8]))
    else:
        sys.exit("usage: engine_torch.py make DIR SIZE | run DIR THREADS BATCH SEQ ITERS RANK")
