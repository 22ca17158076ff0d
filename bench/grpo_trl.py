"""TRL side of bench/grpo.ts: GRPOTrainer steps on the CPU, each step's wall time split into
generation (the model's generate() call) and training (compute_loss + backward).

make DIR SIZE PROMPT_TOKENS: writes to DIR a random LlamaForCausalLM checkpoint of bench/engine.ts's
    shape (engine_torch.py's SIZES), a byte-level BPE tokenizer of the model's vocabulary size
    (trained on random words, ChatML template, <|im_end|> its eos) and prompts.jsonl: 16 chat
    prompts whose templated text is exactly PROMPT_TOKENS tokens. The three special tokens (pad,
    <|im_start|>, eos) can never be sampled: residual dimension 0 is a constant 1 (embedding
    column 0 set to 1, row 0 of every o_proj and down_proj zeroed), so it is positive after the
    final RMSNorm at every position, and the special tokens' lm_head rows are -100 on it and 0
    elsewhere: a logit below -150 (quick shape: -450) where the others' stay within +-2.5. Every
    completion thus runs to max_completion_length on both sides with no change to the samplers.
run DIR THREADS STEPS MAX_LEN PATTERN SEED: STEPS GRPOTrainer steps (LoRA r 8, alpha 16, all seven
    projections; num_generations 4, per_device_train_batch_size 8, reward 1 when PATTERN is found
    in the completion); prints one JSON line with each step's seconds (between consecutive
    on_step_end callbacks, so the first step, which starts at the trainer's setup, is dropped by
    the caller), generation and training seconds and completion tokens.
"""
import json
import os
import random
import re
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_torch import SIZES  # noqa: E402

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QUESTIONS = [
    "What is the capital of France?", "Name three colours of the rainbow.", "How many legs does a spider have?",
    "Write a short poem about rain.", "Why is the sky blue?", "Give me a synonym for happy.",
    "What is seven times eight?", "Describe a cat in one sentence.", "Which planet is closest to the sun?",
    "Tell me a fun fact about octopuses.", "How do plants make food?", "What is the opposite of cold?",
    "Suggest a name for a small dog.", "Translate hello into Spanish.", "What do bees make?",
    "Explain what a noun is.", "List two uses of water.", "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?", "Count from one to five.",
]
FILLER = ["please", "briefly", "now", "thanks", "simply", "again", "today", "a", "in", "short", "words"]


def make(out, size, prompt_tokens):
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    shape = SIZES[size]
    V = shape["vocab_size"]
    rng = random.Random(0)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1.5, 1, 0.8, 0.2, 0.2, 0.1, 0.1]
    words = ["".join(rng.choices(letters, weights, k=rng.randint(2, 9))) for _ in range(20000)]
    corpus = [" ".join(rng.choices(words, k=30)) for _ in range(20000)] + QUESTIONS * 50
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=V, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    assert tok.get_vocab_size() == V, f"tokenizer has {tok.get_vocab_size()} tokens, the model {V}"
    assert [tok.token_to_id(t) for t in SPECIAL] == [0, 1, 2]
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    added = {str(i): {"content": t, "lstrip": False, "rstrip": False, "normalized": False, "single_word": False, "special": True}
             for i, t in enumerate(SPECIAL)}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "unk_token": None, "add_bos_token": False, "add_eos_token": False,
                   "model_max_length": 2048, "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
                   "added_tokens_decoder": added}, f, indent=2)

    torch.manual_seed(0)
    cfg = tf.LlamaConfig(**shape, max_position_embeddings=2048, rms_norm_eps=1e-6, tie_word_embeddings=False,
                         bos_token_id=None, eos_token_id=2, pad_token_id=0)
    model = tf.LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 1.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        for i in range(len(SPECIAL)):
            model.lm_head.weight[i, :] = 0.0
            model.lm_head.weight[i, 0] = -100.0
    model.save_pretrained(out, safe_serialization=True)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": 2, "pad_token_id": 0}, f, indent=2)

    hf = tf.AutoTokenizer.from_pretrained(out)
    def count(q):
        ids = hf.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False)
        return len(ids)
    prompts = []
    for q in QUESTIONS:  # filler words go in before the question mark until the prompt is PROMPT_TOKENS long
        while count(q) < prompt_tokens:
            longer = [q[:-1] + " " + w + q[-1] for w in rng.sample(FILLER, len(FILLER))]
            fits = [x for x in longer if count(x) <= prompt_tokens]
            if not fits:
                break
            q = fits[0]
        if count(q) == prompt_tokens and len(prompts) < 16:
            prompts.append(q)
    assert len(prompts) == 16, f"only {len(prompts)} prompts of {prompt_tokens} tokens"
    with open(os.path.join(out, "prompts.jsonl"), "w") as f:
        for q in prompts:
            f.write(json.dumps({"prompt": [{"role": "user", "content": q}]}) + "\n")


def run(model_dir, threads, steps, max_len, pattern, seed):
    torch.set_num_threads(threads)
    import tempfile

    import transformers as tf
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    with open(os.path.join(model_dir, "prompts.jsonl")) as f:
        dataset = Dataset.from_list([json.loads(line) for line in f])
    rx = re.compile(pattern)

    def regex_reward(completions, **kwargs):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [1.0 if rx.search(t) else 0.0 for t in texts]

    cur = {"gen": 0.0, "prep": 0.0, "train_step": 0.0, "tokens": 0}
    steps_out = []

    class Timed(GRPOTrainer):
        def _generate_single_turn(self, *args, **kwargs):
            t0 = time.perf_counter()
            ids, logprobs = super()._generate_single_turn(*args, **kwargs)
            cur["gen"] += time.perf_counter() - t0
            cur["tokens"] += sum(len(c) for c in ids)
            return ids, logprobs

        def _prepare_inputs(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super()._prepare_inputs(*args, **kwargs)
            cur["prep"] += time.perf_counter() - t0
            return out

        def training_step(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super().training_step(*args, **kwargs)
            cur["train_step"] += time.perf_counter() - t0
            return out

    last = [None]

    class StepClock(tf.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            steps_out.append({"step_s": None if last[0] is None else now - last[0], "generation_s": cur["gen"],
                              "training_s": cur["train_step"] - cur["prep"], "tokens": cur["tokens"]})
            last[0] = now
            cur.update(gen=0.0, prep=0.0, train_step=0.0, tokens=0)

    model = tf.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    tok = tf.AutoTokenizer.from_pretrained(model_dir)
    out_dir = tempfile.mkdtemp(prefix="tunebench-bench-grpo-trl-")
    args = GRPOConfig(
        output_dir=out_dir, max_completion_length=max_len, num_generations=4, per_device_train_batch_size=8,
        gradient_accumulation_steps=1, temperature=1.0, beta=0.0, loss_type="dapo", use_vllm=False, bf16=False,
        fp16=False, use_cpu=True, logging_steps=1, report_to="none", max_steps=steps, save_strategy="no",
        learning_rate=1e-5, seed=seed, disable_tqdm=True, dataloader_num_workers=0,
    )
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    trainer = Timed(model=model, reward_funcs=regex_reward, args=args, train_dataset=dataset, processing_class=tok,
                    peft_config=lora, callbacks=[StepClock()])
    trainer.train()
    shutil.rmtree(out_dir, ignore_errors=True)
    rewards = trainer.state.log_history
    print(json.dumps({
        "steps": steps_out,
        "mean_length": [h.get("completions/mean_length") for h in rewards if "completions/mean_length" in h],
        "reward": [h.get("reward") for h in rewards if "reward" in h],
        "trl": trl.__version__, "transformers": tf.__version__, "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "run":
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
    else:
        sys.exit("usage: grpo_trl.py make DIR SIZE PROMPT_TOKENS | run DIR THREADS STEPS MAX_LEN PATTERN SEED")
