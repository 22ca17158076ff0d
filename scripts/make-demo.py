"""Makes the bundled demo: resources/demo-model (a tiny Qwen3 that solves small arithmetic word
problems, part of the time in the <think>/<answer> format) and the demo datasets in
resources/demo (SFT, DPO, KTO, candidates to label, GRPO prompts with solutions).

    .venv/bin/python scripts/make-demo.py            # writes resources/demo-model and resources/demo
    .venv/bin/python scripts/make-demo.py --quick    # a short smoke run into a temp folder

Steps (every one seeded, the engine on a fixed thread count, so a rerun writes the same files):
  1. synthetic task: word problems (+, -, x, two steps) with numeric answers;
  2. byte-level BPE tokenizer trained with `tokenizers` on the task's corpus (digits split one by
     one, <think>/</think>/<answer>/</answer> as added tokens), ChatML chat template;
  3. random-init Qwen3ForCausalLM (transformers, seed 0), written as safetensors;
  4. pretraining with Tunebench's own engine (`node bin/tunebench.js train`, stage sft, full
     fine-tuning) on chats whose answers are the working and "The answer is N." (15% of them in
     the <think>/<answer> format, so its tokens are not new to the model);
  5. a light SFT (the same engine, full fine-tuning) on chats of which only part answer in the
     <think>/<answer> format, so format and accuracy rewards both have room under GRPO;
  6. greedy accuracy on held-out problems with `node bin/tunebench.js generate`.
The weights of a full fine-tuning run are the parameter tensors of its training_state.bin (a
safetensors file tagged format=tunebench-training-state-1 whose tensors keep the checkpoint's
names, beside their AdamW moments `.exp_avg`/`.exp_avg_sq`); step 4 and 5 copy them out into
model.safetensors.
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# One engine thread: the same numbers on any machine, and no slowdown when other work shares the cores.
THREADS = 1
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import Qwen3Config, Qwen3ForCausalLM  # noqa: E402

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAGS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# ---------------------------------------------------------------------------------------------
# 1. The task
NAMES = ["Tom", "Anna", "Sam", "Lily", "Ben", "Mia", "Leo", "Emma", "Max", "Zoe", "Jack", "Nora",
         "Omar", "Ivy", "Ravi", "Lucy", "Finn", "Ella", "Hugo", "Sara"]
THINGS = ["apples", "pears", "books", "coins", "stickers", "marbles", "pencils", "cards", "shells",
          "stamps", "eggs", "cookies", "balloons", "stones", "flowers", "toys", "oranges", "cups"]
PLACES = ["box", "basket", "bag", "jar", "drawer", "shop"]


def problem(rng):
    """(question, working lines, answer): +, -, x of small numbers, or two steps."""
    n, m = rng.sample(NAMES, 2)
    t = rng.choice(THINGS)
    kind = rng.choices(["add", "sub", "mul", "two"], weights=[4, 4, 2, 2])[0]
    v = rng.randrange(3)
    if kind == "add":
        a, b = rng.randint(1, 60), rng.randint(1, 40)
        q = [f"{n} has {a} {t} and buys {b} more. How many {t} does {n} have now?",
             f"{n} picks {a} {t} in the morning and {b} {t} in the afternoon. How many {t} does {n} pick in total?",
             f"There are {a} {t} in a {rng.choice(PLACES)}. {n} puts in {b} more. How many {t} are in it now?"][v]
        return q, [f"{a} + {b} = {a + b}"], a + b
    if kind == "sub":
        a = rng.randint(5, 90)
        b = rng.randint(1, a - 1)
        q = [f"{n} has {a} {t} and gives {b} to {m}. How many {t} does {n} have left?",
             f"There are {a} {t} in a {rng.choice(PLACES)}. {n} takes out {b}. How many {t} are left?",
             f"{n} had {a} {t} and lost {b} of them. How many {t} does {n} have now?"][v]
        return q, [f"{a} - {b} = {a - b}"], a - b
    if kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q = [f"{n} has {a} bags with {b} {t} in each bag. How many {t} does {n} have?",
             f"{n} buys {a} packs of {t}. Each pack has {b} {t}. How many {t} does {n} buy?",
             f"There are {a} rows of {t} with {b} {t} in each row. How many {t} are there?"][v]
        return q, [f"{a} * {b} = {a * b}"], a * b
    a, b = rng.randint(2, 30), rng.randint(1, 20)
    c = rng.randint(1, a + b - 1)
    q = [f"{n} has {a} {t}, buys {b} more and then gives {c} to {m}. How many {t} does {n} have now?",
         f"There are {a} {t} in a {rng.choice(PLACES)}. {n} adds {b} and {m} takes out {c}. How many {t} are left?",
         f"{n} had {a} {t}, found {b} more and then lost {c}. How many {t} does {n} have now?"][v]
    return q, [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {a + b - c}"], a + b - c


def formatted(lines, ans):
    return "<think>\n" + "\n".join(lines) + "\n</think>\n<answer>\n" + str(ans) + "\n</answer>"


def plain(lines, ans):
    return "\n".join(lines) + f"\nThe answer is {ans}."


def problems(seed, count, exclude=()):
    rng = random.Random(seed)
    seen = set(exclude)
    out = []
    while len(out) < count:
        q, lines, ans = problem(rng)
        if q in seen:
            continue
        seen.add(q)
        out.append((q, lines, ans))
    return out


ANSWER_RE = re.compile(r"<answer>\s*(-?\d+)\s*</answer>")
FORMAT_RE = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.S)


def grade(text, ans):
    """(formatted, correct in <answer>, correct by the last number of the text)."""
    text = text.strip()
    m = ANSWER_RE.search(text)
    nums = re.findall(r"-?\d+", text)
    return (bool(FORMAT_RE.match(text)), bool(m) and int(m.group(1)) == ans, bool(nums) and int(nums[-1]) == ans)


# ---------------------------------------------------------------------------------------------
# 2. Tokenizer, 3. random init


def build_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(TAGS), special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAGS])
    assert [tok.token_to_id(t) for t in SPECIAL] == [0, 1, 2]
    return tok


def write_model_files(out, tok, args):
    os.makedirs(out, exist_ok=True)
    tok.save(os.path.join(out, "tokenizer.json"))
    added = {}
    for t in SPECIAL + TAGS:
        added[str(tok.token_to_id(t))] = {"content": t, "lstrip": False, "rstrip": False, "normalized": False,
                                          "single_word": False, "special": t in SPECIAL}
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({
            "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>", "unk_token": None, "add_bos_token": False, "add_eos_token": False,
            "model_max_length": 512, "clean_up_tokenization_spaces": False, "chat_template": CHAT_TEMPLATE,
            "added_tokens_decoder": added,
        }, f, indent=2)
    cfg = Qwen3Config(
        vocab_size=tok.get_vocab_size(), hidden_size=args.hidden, intermediate_size=args.intermediate,
        num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
        head_dim=args.hidden // args.heads, max_position_embeddings=512, rms_norm_eps=1e-6,
        tie_word_embeddings=True, bos_token_id=None, eos_token_id=2, pad_token_id=0, use_sliding_window=False,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, initializer_range=0.02,
    )
    cfg.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(args.seed)
    model = Qwen3ForCausalLM(cfg).float()
    model.save_pretrained(out, safe_serialization=True)
    # Old and new readers: rope_theta/torch_dtype beside rope_parameters/dtype.
    path = os.path.join(out, "config.json")
    with open(path) as f:
        c = json.load(f)
    c["rope_theta"] = c.get("rope_parameters", {}).get("rope_theta", 10000.0)
    c["torch_dtype"] = "float32"
    c["dtype"] = "float32"
    c.pop("layer_types", None) if all(x == "full_attention" for x in c.get("layer_types", [])) else None
    with open(path, "w") as f:
        json.dump(dict(sorted(c.items())), f, indent=2)
    with open(os.path.join(out, "generation_config.json"), "w") as f:
        json.dump({"eos_token_id": 2, "pad_token_id": 0, "do_sample": False}, f, indent=2)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# 4./5. Training with the engine


def node(*argv, log=None):
    cmd = ["node", os.path.join(ROOT, "bin", "tunebench.js"), *argv]
    t0 = time.time()
    with open(log, "w") if log else open(os.devnull, "w") as out:
        r = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return time.time() - t0


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")


def chat(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def train(model_dir, data, run_dir, log, **keys):
    cfg = {
        "model_name_or_path": model_dir, "stage": "sft", "finetuning_type": "full", "dataset": data,
        "output_dir": run_dir, "overwrite_output_dir": True, "cutoff_len": 128, "threads": THREADS,
        "seed": 0, "logging_steps": 10, "save_steps": 10**6, "sample_prompts": 0, "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.05, "weight_decay": 0.01, "max_grad_norm": 1.0, **keys,
    }
    path = run_dir + ".yaml"
    with open(path, "w") as f:
        json.dump(cfg, f, indent=1)  # JSON is YAML
    secs = node("train", path, log=log)
    losses = []
    with open(log) as f:
        for line in f:
            e = json.loads(line)
            if e.get("event") == "log" and isinstance(e["entry"].get("loss"), (int, float)):
                losses.append(e["entry"]["loss"])
    return secs, losses or [float("nan")]


def export_weights(run_dir, model_dir):
    """training_state.bin (full fine-tuning) -> model_dir/model.safetensors, checked by name and shape."""
    state = os.path.join(run_dir, "training_state.bin")
    with safe_open(os.path.join(model_dir, "model.safetensors"), "pt") as f:
        names = {k: f.get_slice(k).get_shape() for k in f.keys()}
    with safe_open(state, "pt") as f:
        md = f.metadata() or {}
        if md.get("format") != "tunebench-training-state-1" or md.get("mode") != "full":
            sys.exit(f"{state}: not a full fine-tuning training state of the known format ({md})")
        weights = {k: f.get_tensor(k).contiguous() for k in names}
    for k, shape in names.items():
        assert list(weights[k].shape) == list(shape), k
    save_file(weights, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})


def evaluate(model_dir, held, work, tag):
    data = os.path.join(work, f"{tag}-prompts.jsonl")
    write_jsonl(data, [{"prompt": q} for q, _, _ in held])
    out = os.path.join(work, f"{tag}-answers.jsonl")
    node("generate", "--model", model_dir, "--data", data, "--out", out, "--max-new-tokens", "48",
         "--temperature", "0", "--threads", str(THREADS), "--batch-size", "16")
    rows = [json.loads(l) for l in open(out)]
    texts = [r.get("text", r.get("completion")) for r in rows]
    g = [grade(t, a) for t, (_, _, a) in zip(texts, held)]
    n = len(g)
    res = {"formatted": sum(x[0] for x in g) / n, "correct_answer_tag": sum(x[1] for x in g) / n,
           "correct_any_format": sum(x[2] for x in g) / n}
    return res, texts


# ---------------------------------------------------------------------------------------------
# Demo datasets


def demo_datasets(out_dir, seed, taken, model_dir, work):
    """sft/preference/kto/candidates/grpo on fresh problems (none of the held-out, pretraining or
    SFT ones). Candidates pair the final model's own greedy answer with a reference answer."""
    rng = random.Random(seed + 3)
    pool = problems(seed + 3, 400 + 30 + 8 + 48 + 13, exclude=taken)
    grpo, pool = pool[:400], pool[400:]
    pref, pool = pool[:30], pool[30:]
    kto, pool = pool[:8], pool[8:]
    cand, sft = pool[:48], pool[48:]

    def wrong(lines, ans):
        """The working with a slip in its last result, and the wrong answer."""
        bad = ans + rng.choice([-10, -2, -1, 1, 2, 10])
        bad = bad if bad >= 0 else ans + 10
        return lines[:-1] + [re.sub(r"= -?\d+$", f"= {bad}", lines[-1])], bad

    write_jsonl(os.path.join(out_dir, "grpo.jsonl"),
                [{"prompt": [{"role": "user", "content": q}], "solution": str(a)} for q, _, a in grpo])
    rows = []
    for i, (q, lines, a) in enumerate(pref):
        wl, bad = wrong(lines, a)
        # wrong and unformatted, or wrong in the right format (the first pair: unformatted)
        rejected = plain(wl, bad) if i % 2 == 0 else formatted(wl, bad)
        rows.append({"prompt": q, "chosen": formatted(lines, a), "rejected": rejected})
    write_jsonl(os.path.join(out_dir, "preference.jsonl"), rows)
    rows = []
    for i, (q, lines, a) in enumerate(kto):
        wl, bad = wrong(lines, a)
        rows.append({"prompt": q, "completion": formatted(lines, a), "label": True})
        rows.append({"prompt": q, "completion": plain(wl, bad) if i % 2 == 0 else formatted(wl, bad), "label": False})
    write_jsonl(os.path.join(out_dir, "kto.jsonl"), rows)
    # Candidates: the model's answer where it differs from the reference, the two in either order.
    _, texts = evaluate(model_dir, cand, work, "candidates")
    rows = []
    for (q, lines, a), t in zip(cand, texts):
        ref = formatted(lines, a)
        if t.strip() == ref or len(rows) == 16:
            continue
        pair = [{"text": t.strip(), "model": "demo-model"}, {"text": ref, "model": "reference"}]
        rows.append({"prompt": q, "completions": pair if len(rows) % 2 == 0 else pair[::-1]})
    write_jsonl(os.path.join(out_dir, "candidates.jsonl"), rows)
    rows = []
    system = "You are a careful assistant. Think inside <think></think>, then answer inside <answer></answer>."
    for i, (q, lines, a) in enumerate(sft):
        msgs = ([{"role": "system", "content": system}] if i % 3 == 0 else []) + \
            [{"role": "user", "content": q}, {"role": "assistant", "content": formatted(lines, a)}]
        rows.append({"messages": msgs})
    write_jsonl(os.path.join(out_dir, "sft.jsonl"), rows)
    with open(os.path.join(out_dir, "datasets.json"), "w") as f:
        json.dump({
            "preference.jsonl": "Preference pairs (prompt, chosen, rejected) for DPO, ORPO and SimPO: the chosen answer is right, in the <think>/<answer> format; the rejected one has a slip",
            "kto.jsonl": "Single answers marked good or bad (prompt, completion, label) for KTO",
            "sft.jsonl": "Chats (system, user and assistant messages) for SFT, answers in the <think>/<answer> format",
            "candidates.jsonl": "Prompts with two unlabeled answers (the demo model's and a reference), to label on the Data page",
            "grpo.jsonl": "Word problems with their numeric solution (prompt, solution) for GRPO with the accuracy and format rewards",
        }, f, indent=2)
        f.write("\n")
    return len(rows)


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "resources", "demo-model"))
    ap.add_argument("--data-out", default=os.path.join(ROOT, "resources", "demo"))
    ap.add_argument("--work", default=None, help="keep the runs here (default: a temp folder, removed)")
    ap.add_argument("--quick", action="store_true", help="tiny step counts, output to a temp folder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--pretrain-records", type=int, default=36000)
    ap.add_argument("--pretrain-format-share", type=float, default=0.15)
    ap.add_argument("--pretrain-epochs", type=float, default=1)
    ap.add_argument("--pretrain-lr", type=float, default=3e-3)
    ap.add_argument("--sft-records", type=int, default=1500)
    ap.add_argument("--sft-format-share", type=float, default=0.5)
    ap.add_argument("--sft-lr", type=float, default=5e-4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--held-out", type=int, default=200)
    args = ap.parse_args()
    t_start = time.time()
    torch.set_num_threads(THREADS)
    work = args.work or tempfile.mkdtemp(prefix="tunebench-make-demo-")
    os.makedirs(work, exist_ok=True)
    if args.quick:
        args.pretrain_records, args.sft_records, args.held_out = 640, 160, 32
        args.out = os.path.join(work, "out", "demo-model")
        args.data_out = os.path.join(work, "out", "demo")

    held = problems(args.seed + 1000, args.held_out)
    held_q = {q for q, _, _ in held}
    pre = problems(args.seed + 1, args.pretrain_records, exclude=held_q)
    sft_rng = random.Random(args.seed + 2)
    sft = problems(args.seed + 2, args.sft_records, exclude=held_q)

    # 2. tokenizer on the task's corpus (questions, both answer formats) and a little chat text.
    corpus = [q for q, _, _ in pre[:4000]] + [plain(l, a) for _, l, a in pre[:2000]] + \
        [formatted(l, a) for _, l, a in pre[2000:4000]] + ["user", "assistant", "system"] * 50
    tok = build_tokenizer(corpus, args.vocab)
    stage0 = os.path.join(work, "init")
    n_params = write_model_files(stage0, tok, args)
    ex = formatted(*held[0][1:])
    print(f"tokenizer: {tok.get_vocab_size()} tokens; {held[0][0]!r} -> {len(tok.encode(held[0][0]).ids)} tokens, "
          f"its answer {len(tok.encode(ex).ids)} tokens: {tok.encode(ex).tokens}")
    print(f"model: Qwen3ForCausalLM, {n_params:,} parameters (random init, seed {args.seed})")

    # 4. pretraining (full fine-tuning with the engine): the working, then "The answer is N.".
    pre_data = os.path.join(work, "pretrain.jsonl")
    pre_rng = random.Random(args.seed + 4)
    write_jsonl(pre_data, [chat(q, formatted(l, a) if pre_rng.random() < args.pretrain_format_share else plain(l, a))
                           for q, l, a in pre])
    secs, losses = train(stage0, pre_data, os.path.join(work, "pretrain"), os.path.join(work, "pretrain.log"),
                         learning_rate=args.pretrain_lr, num_train_epochs=args.pretrain_epochs,
                         per_device_train_batch_size=args.batch)
    stage1 = os.path.join(work, "pretrained")
    shutil.copytree(stage0, stage1, dirs_exist_ok=True)
    export_weights(os.path.join(work, "pretrain"), stage1)
    print(f"pretraining: {len(pre)} chats, {len(losses)} logged steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}, {secs:.0f} s")
    acc_pre, _ = evaluate(stage1, held, work, "pretrained")
    print(f"  held-out greedy ({len(held)}): {acc_pre}")

    # 5. light SFT: part of the answers in the <think>/<answer> format.
    sft_rows = [chat(q, formatted(l, a) if sft_rng.random() < args.sft_format_share else plain(l, a)) for q, l, a in sft]
    sft_data = os.path.join(work, "sft.jsonl")
    write_jsonl(sft_data, sft_rows)
    secs, losses = train(stage1, sft_data, os.path.join(work, "sft"), os.path.join(work, "sft.log"),
                         learning_rate=args.sft_lr, num_train_epochs=1, per_device_train_batch_size=16, seed=1)
    stage2 = os.path.join(work, "final")
    shutil.copytree(stage1, stage2, dirs_exist_ok=True)
    export_weights(os.path.join(work, "sft"), stage2)
    print(f"light SFT: {len(sft)} chats ({args.sft_format_share:.0%} formatted), loss {losses[0]:.3f} -> {losses[-1]:.3f}, {secs:.0f} s")
    acc, texts = evaluate(stage2, held, work, "final")
    print(f"  held-out greedy ({len(held)}): {acc}")
    for (q, _, a), t in list(zip(held, texts))[:6]:
        print(f"  Q: {q}\n  A ({a}): {t!r}")

    # Output: the model folder and the datasets.
    os.makedirs(args.out, exist_ok=True)
    for name in ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]:
        shutil.copy(os.path.join(stage2, name), os.path.join(args.out, name))
        os.chmod(os.path.join(args.out, name), 0o644)
    taken = held_q | {q for q, _, _ in pre} | {q for q, _, _ in sft}
    os.makedirs(args.data_out, exist_ok=True)
    demo_datasets(args.data_out, args.seed, taken, stage2, work)
    with open(os.path.join(work, "summary.json"), "w") as f:
        json.dump({"parameters": n_params, "vocab": tok.get_vocab_size(), "pretrained": acc_pre, "final": acc}, f, indent=2)
    print(f"wrote {args.out} ({os.path.getsize(os.path.join(args.out, 'model.safetensors')) / 1e6:.1f} MB weights) "
          f"and {args.data_out}; {time.time() - t_start:.0f} s in all")
    if not args.work and not args.quick:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
