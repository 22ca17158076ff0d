"""Reference training loop in PyTorch + PEFT + transformers for the trajectory tests.

Reads a JSON list of runs on stdin; each run names a model folder, an initial PEFT adapter,
a dataset (TRL JSONL) and the config keys the test sets. Tokenises the records itself with
transformers' tokenizer and chat template following docs/algorithms.md, trains with the
adapter's A and B, AdamW (torch), clip_grad_norm_, transformers.get_scheduler, and writes per
step: loss (as trainer_log.jsonl logs it), grad_norm (before clipping) and lr (after the step).
Computation in float64 so the reference's own rounding is negligible.

Qwen3-MoE models (config model_type qwen3_moe) train as engine_moe_parity.py's per-expert model
(PerExpertMoe blocks, which PEFT wraps per expert) with the adapter loaded by PEFT; with
moe_aux_loss_coef each micro-batch's loss gains coef * aux / micro-batches, aux being
transformers' load_balancing_loss_func over the router logits of that micro-batch's policy
forward (attention mask: its non-padding tokens), and aux_loss (their mean) is written per step.

    python3 train_reference.py make-moe TOKENIZER_DIR OUT   writes OUT/model (a tiny random
        Qwen3-MoE with TOKENIZER_DIR's tokenizer, experts fused as transformers 5 saves them)
        and OUT/adapter (PEFT LoRA on attention, the dense MLP and every expert, B non-zero)
"""
import contextlib
import copy
import json
import math
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from peft import PeftModel
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, get_scheduler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_moe_parity import aux_of, library_model, per_expert_model, write_checkpoint  # noqa: E402

torch.set_default_dtype(torch.float64)


# ---- sequences (docs/algorithms.md "Sequences and masks") ----

def tok_plain(tok, prompt, completion):
    return tok(prompt, add_special_tokens=True)["input_ids"], tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def tok_chat(tok, prompt, completion):
    p_text = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    f_text = tok.apply_chat_template(prompt + completion, tokenize=False)
    p_ids = tok(p_text, add_special_tokens=False)["input_ids"]
    f_ids = tok(f_text, add_special_tokens=False)["input_ids"]
    assert f_ids[: len(p_ids)] == p_ids, "prompt ids are not a prefix"
    return p_ids, f_ids[len(p_ids):]


def prompt_completion(tok, prompt, completion):
    return tok_plain(tok, prompt, completion) if isinstance(prompt, str) else tok_chat(tok, prompt, completion)


def conversation(tok, messages):
    """Assistant turns learn; each segment tokenised on its own (turn by turn)."""
    ids, mask, done = [], [], ""
    for k, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = tok.apply_chat_template(messages[:k], add_generation_prompt=True, tokenize=False) if k else ""
        after = tok.apply_chat_template(messages[: k + 1], tokenize=False)
        for text, learn in ((before[len(done):], 0), (after[len(before):], 1)):
            if text:
                t = tok(text, add_special_tokens=False)["input_ids"]
                ids += t
                mask += [learn] * len(t)
        done = after
    mask[0] = 0
    return ids, mask


def join(prompt, completion):
    ids = prompt + completion
    return ids, [0] * len(prompt) + [1] * len(completion)


# ---- log-probs ----

def batch_logps(model, seqs, pad_id):
    """Summed log-probs over mask and masked token counts, one forward over a right-padded batch."""
    T = max(len(ids) for ids, _ in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T))
    attn = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, (s, m) in enumerate(seqs):
        ids[b, : len(s)] = torch.tensor(s)
        mask[b, : len(s)] = torch.tensor(m, dtype=torch.float64)
        attn[b, : len(s)] = 1
    mask[:, 0] = 0
    logits = model(input_ids=ids, attention_mask=attn).logits
    lp = torch.log_softmax(logits[:, :-1].double(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    m = mask[:, 1:]
    return (lp * m).sum(-1), m.sum(-1)


def run(r):
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(r["model"])
    base = AutoModelForCausalLM.from_pretrained(r["model"], dtype=torch.float64)
    c = r["config"]
    full = c.get("finetuning_type", "lora") == "full"
    moe = AutoConfig.from_pretrained(r["model"]).model_type == "qwen3_moe"
    router_logits = []  # of every forward of the per-expert model since the last clear
    if moe:
        assert not full, "the reference trains Qwen3-MoE with an adapter only"
        base = per_expert_model(base, router_logits)
    aux_coef = c.get("moe_aux_loss_coef") or 0.0
    if full:
        # Full fine-tuning: every weight trains; the reference is a frozen copy of the start.
        model = base
        frozen = copy.deepcopy(base).eval()
        for p in frozen.parameters():
            p.requires_grad_(False)
    else:
        model = PeftModel.from_pretrained(base, r["adapter"], is_trainable=True)
    model.train()

    @contextlib.contextmanager
    def reference():
        if full:
            yield frozen
        else:
            with model.disable_adapter():
                yield model

    stage, loss_kind = c["stage"], c.get("pref_loss", "sigmoid")
    beta = c.get("pref_beta", 0.1)
    records = [json.loads(l) for l in open(r["data"]) if l.strip()]

    examples = []
    for rec in records:
        if stage == "sft":
            if "messages" in rec:
                examples.append(conversation(tok, rec["messages"]))
            else:
                examples.append(join(*prompt_completion(tok, rec["prompt"], rec["completion"])))
        elif stage == "dpo":
            p, ch = prompt_completion(tok, rec["prompt"], rec["chosen"])
            _, rj = prompt_completion(tok, rec["prompt"], rec["rejected"])
            examples.append((p, ch, rj))
        else:
            p, co = prompt_completion(tok, rec["prompt"], rec["completion"])
            examples.append((p, co, bool(rec["label"])))

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c["learning_rate"], betas=(c.get("adam_beta1", 0.9), c.get("adam_beta2", 0.999)),
                            eps=c.get("adam_epsilon", 1e-8), weight_decay=c.get("weight_decay", 0.0))
    B, GA = c["per_device_train_batch_size"], c.get("gradient_accumulation_steps", 1)
    micro_per_epoch = math.ceil(len(examples) / B)
    per_epoch = max(1, math.ceil(micro_per_epoch / GA))
    total = c["max_steps"]
    warmup = c.get("warmup_steps", 0) or math.ceil(c.get("warmup_ratio", 0.0) * total)
    sched = get_scheduler(c.get("lr_scheduler_type", "linear"), opt, num_warmup_steps=warmup, num_training_steps=total)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def policy_logps(seqs):
        """batch_logps of the policy's train forward, and its load-balancing loss when the
        objective has one (router logits of this forward only, mask = non-padding tokens)."""
        router_logits.clear()
        lp, n = batch_logps(model, seqs, pad)
        aux = None
        if moe and aux_coef > 0:
            lengths = [len(ids) for ids, _ in seqs]
            shape = torch.zeros((len(seqs), max(lengths)), dtype=torch.long)
            aux = aux_of(router_logits, base.config, shape, lengths)
        router_logits.clear()
        return lp, n, aux

    out = []
    for step in range(total):
        first = (step % per_epoch) * GA
        last = min(first + GA, micro_per_epoch)
        micros = [list(range(m * B, min((m + 1) * B, len(examples)))) for m in range(first, last)]
        n_tokens = sum(sum(examples[i][1][1:]) for m in micros for i in m) if stage == "sft" else 0
        step_loss, step_aux = 0.0, []
        for idx in micros:
            ex = [examples[i] for i in idx]
            if stage == "sft":
                lp, n, aux = policy_logps(ex)
                loss = -lp.sum() / n_tokens
            elif stage == "dpo":
                seqs = [join(p, ch) for p, ch, _ in ex] + [join(p, rj) for p, _, rj in ex]
                lp, n, aux = policy_logps(seqs)
                k = len(ex)
                pc, pr, nc, nr = lp[:k], lp[k:], n[:k], n[k:]
                if loss_kind in ("orpo", "simpo"):
                    lc, lr_ = pc / nc, pr / nr
                    if loss_kind == "orpo":
                        log_odds = (lc - lr_) - (torch.log1p(-torch.exp(lc)) - torch.log1p(-torch.exp(lr_)))
                        losses = -lc - beta * F.logsigmoid(log_odds)
                    else:
                        losses = -F.logsigmoid(beta * (lc - lr_) - c.get("simpo_gamma", 0.5))
                else:
                    with torch.no_grad(), reference() as ref_model:
                        ref, _ = batch_logps(ref_model, seqs, pad)
                    rc, rr = ref[:k], ref[k:]
                    delta = (pc - rc) - (pr - rr)
                    if loss_kind == "sigmoid":
                        eps = c.get("dpo_label_smoothing", 0.0)
                        losses = -F.logsigmoid(beta * delta) * (1 - eps) - F.logsigmoid(-beta * delta) * eps
                    elif loss_kind == "hinge":
                        losses = torch.relu(1 - beta * delta)
                    else:
                        h = (pc - rc) / nc - (pr - rr) / nr
                        losses = (h - 1 / (2 * beta)) ** 2 if loss_kind == "ipo" else -F.logsigmoid(beta * h)
                if c.get("pref_ftx", 0.0) > 0 and loss_kind != "orpo":
                    losses = losses + c["pref_ftx"] * (-pc / nc)
                loss = losses.mean() / len(micros)
            else:  # kto
                k = len(ex)
                seqs = [join(p, co) for p, co, _ in ex]
                kl_seqs = [join(ex[i][0], ex[(i - 1) % k][1]) for i in range(k)]
                with torch.no_grad():
                    kl_policy, _ = batch_logps(model, kl_seqs, pad)
                    with reference() as ref_model:
                        ref, _ = batch_logps(ref_model, seqs, pad)
                        kl_ref, _ = batch_logps(ref_model, kl_seqs, pad)
                z0 = (kl_policy - kl_ref).mean().clamp(min=0)
                lp, _, aux = policy_logps(seqs)
                r_ = lp - ref
                des = torch.tensor([d for _, _, d in ex])
                losses = torch.where(des,
                                     c.get("kto_chosen_weight", 1.0) * (1 - torch.sigmoid(beta * (r_ - z0))),
                                     c.get("kto_rejected_weight", 1.0) * (1 - torch.sigmoid(beta * (z0 - r_))))
                loss = losses.mean() / len(micros)
            if aux is not None:
                loss = loss + aux_coef * aux / len(micros)
                step_aux.append(aux.item())
            loss.backward()
            step_loss += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, c.get("max_grad_norm", 1.0)).item()
        opt.step()
        sched.step()
        opt.zero_grad()
        out.append({"loss": step_loss, "grad_norm": grad_norm, "lr": sched.get_last_lr()[0]})
        if step_aux:
            out[-1]["aux_loss"] = sum(step_aux) / len(step_aux)
    return out


def make_moe(tokenizer_dir, out):
    """A tiny random Qwen3-MoE (engine_moe_parity's: 3 layers, the middle one dense, 4 experts,
    2 per token, norm_topk_prob, router weights std 0.5) with the tokenizer of tokenizer_dir,
    and a PEFT LoRA on the per-expert model with B non-zero."""
    from peft import LoraConfig, get_peft_model

    torch.set_default_dtype(torch.float32)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model_dir = os.path.join(out, "model")
    os.makedirs(model_dir, exist_ok=True)
    lib = library_model(True, seed=5, vocab_size=len(tok), max_position_embeddings=512, bos_token_id=None,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    write_checkpoint(lib, model_dir, fused=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer_dir, f), os.path.join(model_dir, f))
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, task_type="CAUSAL_LM",
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    peft_model = get_peft_model(per_expert_model(lib, []), cfg)
    torch.manual_seed(6)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.1)
    names = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert any(".experts.3.down_proj.lora_A" in n for n in names), "PEFT did not wrap the experts"
    peft_model.save_pretrained(os.path.join(out, "adapter"))


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "make-moe":
        make_moe(sys.argv[2], sys.argv[3])
        return
    json.dump([run(r) for r in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
