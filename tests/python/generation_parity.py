"""Greedy decoding by transformers' generate(do_sample=False), the reference of
tests/unit/generation.parity.test.ts.

make OUT: for each of llama, qwen2, qwen3 (engine_parity.py's tiny random checkpoints) writes
OUT/<arch>/
    model/                  the checkpoint, with generation_config.json's eos_token_id a list of two ids
    adapter/                a PEFT LoRA adapter on all seven projections with non-zero B
    expected.json           {prompts, eos, maxNewTokens, base, lora}: the new tokens of each prompt,
                            generated one prompt at a time (no padding), eos kept as the last token
The eos ids are tokens the greedy runs produce part-way, so that some rows end on them.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from engine_parity import ARCHS, lora_model, tiny_model  # noqa: E402

MAX_NEW = 16
LENGTHS = (5, 9, 3)


def greedy(model, prompts, eos):
    from transformers import GenerationConfig

    cfg = GenerationConfig(do_sample=False, max_new_tokens=MAX_NEW, eos_token_id=eos, pad_token_id=0,
                           bos_token_id=None)
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        with torch.no_grad():
            seq = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
        out.append([int(t) for t in seq[0, len(p):].tolist()])
    return out


def make(out_root):
    g = torch.Generator().manual_seed(23)
    prompts = [torch.randint(0, 128, (n,), generator=g).tolist() for n in LENGTHS]
    for arch in ARCHS:
        out = os.path.join(out_root, arch)
        os.makedirs(out, exist_ok=True)
        model = tiny_model(arch)
        model_dir = os.path.join(out, "model")
        model.save_pretrained(model_dir, safe_serialization=True)
        peft_model = lora_model(model, rslora=False, seed=7)
        peft_model.save_pretrained(os.path.join(out, "adapter"))

        # Pick eos ids from free runs: one the base model reaches in its first row, one the
        # adapter reaches in its second, each part-way.
        with peft_model.disable_adapter():
            free_base = greedy(peft_model, prompts, None)
        free_lora = greedy(peft_model, prompts, None)
        eos = [free_base[0][6], free_lora[1][4]]
        with open(os.path.join(model_dir, "generation_config.json"), "w") as f:
            json.dump({"eos_token_id": eos, "pad_token_id": 0}, f)
        with peft_model.disable_adapter():
            base = greedy(peft_model, prompts, eos)
        lora = greedy(peft_model, prompts, eos)
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump({"prompts": prompts, "eos": eos, "maxNewTokens": MAX_NEW, "base": base, "lora": lora}, f)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit("usage: generation_parity.py make OUT")
