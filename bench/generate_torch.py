"""transformers side of bench/generate.ts: greedy generate() timings on the CPU, and the
machine's memory bandwidth.

make-qwen3 DIR: writes a random Qwen3ForCausalLM checkpoint of Qwen3-0.6B's shape (f32) to DIR.
run DIR THREADS BATCH PROMPT DECODE REPEAT: best-of-REPEAT seconds of generate() with
    max_new_tokens 1 (prefill) and 1 + DECODE (prefill + decode), no eos; prints one JSON line.
bandwidth THREADS: GB/s of summing a 1 GiB float32 array, numpy (one thread) and torch (THREADS).
"""
import json
import sys
import time

import torch


def make_qwen3(out):
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                         num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960,
                         rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True)
    tf.Qwen3ForCausalLM(cfg).float().save_pretrained(out, safe_serialization=True)


def run(model_dir, threads, batch, prompt, decode, repeat, precision="f32"):
    import transformers as tf

    torch.set_num_threads(threads)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt), generator=g)
    attn = torch.ones_like(ids)

    def timed(new):
        cfg = tf.GenerationConfig(do_sample=False, max_new_tokens=new, min_new_tokens=new, eos_token_id=None,
                                  pad_token_id=0, bos_token_id=None)
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=attn, generation_config=cfg)
        assert out.shape[1] == prompt + new
        return time.perf_counter() - t0

    timed(2)  # warm-up
    prefill = min(timed(1) for _ in range(repeat))
    full = min(timed(1 + decode) for _ in range(repeat))
    print(json.dumps({"prefill_s": prefill, "total_s": full, "torch": torch.__version__, "threads": torch.get_num_threads()}))


def bandwidth(threads):
    import numpy as np

    a = np.ones(1 << 28, dtype=np.float32)
    a.sum()
    np_s = min(_time(a.sum) for _ in range(5))
    torch.set_num_threads(threads)
    t = torch.from_numpy(a)
    t.sum()
    torch_s = min(_time(t.sum) for _ in range(5))
    print(json.dumps({"numpy_gbs": a.nbytes / np_s / 1e9, "torch_gbs": a.nbytes / torch_s / 1e9}))


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    if sys.argv[1] == "make-qwen3":
        make_qwen3(sys.argv[2])
    elif sys.argv[1] == "run":
        run(sys.argv[2], *(int(x) for x in sys.argv[3:8]), *sys.argv[8:9])
    elif sys.argv[1] == "bandwidth":
        bandwidth(int(sys.argv[2]))
    else:
        sys.exit("usage: generate_torch.py make-qwen3 DIR | run DIR THREADS BATCH PROMPT DECODE REPEAT | bandwidth THREADS")
