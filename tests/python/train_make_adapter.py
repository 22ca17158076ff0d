"""Writes a PEFT LoRA adapter for a model folder with a NON-ZERO B (so the first step's
gradients reach A as well), for the trajectory tests.

    python3 train_make_adapter.py MODEL_DIR OUT_DIR --rank 4 --alpha 8 --seed 1 [--rslora] [--dora]
"""
import argparse

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--alpha", type=int, default=8)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--b-std", type=float, default=0.1)
    ap.add_argument("--rslora", action="store_true")
    ap.add_argument("--dora", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    cfg = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, target_modules=args.targets.split(","),
                     task_type="CAUSAL_LM", use_rslora=args.rslora, use_dora=args.dora)
    model = get_peft_model(base, cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, args.b_std)
    model.save_pretrained(args.out)


if __name__ == "__main__":
    main()
