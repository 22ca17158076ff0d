"""Writes a tiny Llama checkpoint in the Hugging Face layout: config.json, model.safetensors,
tokenizer.json (byte-level BPE trained here on a small built-in corpus), tokenizer_config.json
with a ChatML chat_template, generation_config.json.

Used by the training tests (random weights, any size; tests/unit/training.fixtures.ts). The
bundled demo model in resources/demo-model is made by scripts/make-demo.py instead; with
--pretrain-steps this script still gives a Llama that answers its built-in corpus with words.
"""
import argparse
import json
import os

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

QA = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("What is the capital of Spain?", "The capital of Spain is Madrid."),
    ("What is the capital of Germany?", "The capital of Germany is Berlin."),
    ("What colour is the sky?", "The sky is blue on a clear day."),
    ("What colour is grass?", "Grass is green."),
    ("How many legs does a cat have?", "A cat has four legs."),
    ("How many legs does a bird have?", "A bird has two legs."),
    ("What is two plus two?", "Two plus two is four."),
    ("What is three plus four?", "Three plus four is seven."),
    ("Say hello.", "Hello! How can I help you today?"),
    ("Who are you?", "I am a tiny demo model bundled with Tunebench."),
    ("Name a fruit.", "An apple is a fruit."),
    ("Name an animal.", "A dog is an animal."),
    ("What do bees make?", "Bees make honey."),
    ("Where does the sun rise?", "The sun rises in the east."),
]
PROSE = """Tunebench is a workbench for post-training language models on your own machine.
You can label preference pairs, choose the better answer, and train a small adapter.
The chosen answer is helpful and polite. The rejected answer is short and rude.
A good answer is clear, correct and kind. Thank you for your question.
The quick brown fox jumps over the lazy dog. One, two, three, four, five, six, seven.
"""


def chat(q, a):
    return f"<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n{a}<|im_end|>\n"


def corpus():
    return [chat(q, a) for q, a in QA] + PROSE.splitlines()


def build_tokenizer(vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = [q for q, _ in QA] + [a for _, a in QA] + PROSE.splitlines()
    tok.train_from_iterator(texts * 4, trainer=trainer)
    return tok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--vocab", type=int, default=384)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=160)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--tied", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pretrain-steps", type=int, default=0)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    tok = build_tokenizer(args.vocab)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    vocab = tok.get_vocab_size()
    eos = tok.token_to_id("<|im_end|>")
    pad = tok.token_to_id("<|endoftext|>")
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "add_bos_token": False,
            "add_eos_token": False,
            "model_max_length": 512,
            "clean_up_tokenization_spaces": False,
            "chat_template": CHAT_TEMPLATE,
            "added_tokens_decoder": {
                str(tok.token_to_id(t)): {"content": t, "lstrip": False, "rstrip": False, "normalized": False,
                                          "single_word": False, "special": True} for t in SPECIAL
            },
        }, f, indent=2)

    config = LlamaConfig(
        vocab_size=vocab, hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=bool(args.tied), bos_token_id=None, eos_token_id=eos, pad_token_id=pad,
        attention_bias=False, mlp_bias=False, torch_dtype="float32",
    )
    model = LlamaForCausalLM(config).float()

    if args.pretrain_steps > 0:
        # A few hundred steps on the corpus so the demo model answers its questions.
        seqs = [torch.tensor(tok.encode(t).ids) for t in corpus() if t.strip()]
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(args.seed)
        model.train()
        for step in range(args.pretrain_steps):
            idx = torch.randperm(len(seqs), generator=g)[:8]
            batch = [seqs[i] for i in idx]
            T = max(len(s) for s in batch)
            ids = torch.full((len(batch), T), pad)
            labels = torch.full((len(batch), T), -100)
            for i, s in enumerate(batch):
                ids[i, : len(s)] = s
                labels[i, : len(s)] = s
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"pretrain: {args.pretrain_steps} steps, final loss {loss.item():.3f}")
        model.eval()

    model.save_pretrained(args.out, safe_serialization=True)
    # transformers 5 writes rope_parameters and dtype; readers written against 4.x (and our
    # engine) look for rope_theta and torch_dtype, so write both spellings.
    cfg_path = os.path.join(args.out, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["rope_theta"] = 10000.0
    cfg["torch_dtype"] = "float32"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    print(json.dumps({"out": args.out, "vocab": vocab, "eos": eos, "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
