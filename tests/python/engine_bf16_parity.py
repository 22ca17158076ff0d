"""Reference numbers for the engine's bf16 precision, computed with transformers + PEFT.

make OUT: for each of llama, qwen2, qwen3 (engine_parity.py's tiny models) writes OUT/<arch>/
    model/          the checkpoint saved by transformers in bfloat16
    peft_adapter/   a PEFT LoRA adapter (f32, non-zero B), as engine_parity.py makes it
    expected.json   the batch, gradLogps, and the LoRA model's log-probs three ways:
        f32       the bf16 weights widened to f32, everything in f32 (the exact function)
        emulated  as f32, but every frozen product rounds its activation side to bf16 (nearest
                  even) and sums in f32, forward and backward (dx = bf16(dy) W), which is what
                  the engine's bf16 precision computes; the head's backward uses f32 softmax
        autocast  the bf16 weights under torch.autocast("cpu", dtype=torch.bfloat16): how
                  people run bf16 in PyTorch (bf16 products, bf16 outputs, LoRA in bf16 too)
    grads_<way>.safetensors   d(sum_t gradLogps_t * lp_t)/d(lora A, B) of each way, PEFT names
"""
import copy
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_parity import ARCHS, flat, lora_model, make_batch, tiny_model, token_logps  # noqa: E402


def bf(x):
    return x.to(torch.bfloat16).to(torch.float32)


class RoundedLinear(torch.autograd.Function):
    """y = bf16(x) W^T + b in f32 sums; backward dx = bf16(dy) W (W frozen)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(weight)
        y = bf(x) @ weight.t()
        return y if bias is None else y + bias

    @staticmethod
    def backward(ctx, dy):
        (weight,) = ctx.saved_tensors
        return bf(dy) @ weight, None, None


class RoundedHead(torch.autograd.Function):
    """logits = bf16(h) W^T in f32 sums; backward dh = dlogits W in f32 (the engine's frozen head
    takes dh = dlp (W[t] - E_p[W]) without rounding dlogits)."""

    @staticmethod
    def forward(ctx, h, weight):
        ctx.save_for_backward(weight)
        return bf(h) @ weight.t()

    @staticmethod
    def backward(ctx, dlogits):
        (weight,) = ctx.saved_tensors
        return dlogits @ weight, None


def emulate(peft_model):
    """Routes every frozen Linear of a PEFT model through the rounded products."""
    from peft.tuners.lora import LoraLayer

    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            base = module.base_layer
            base.forward = (lambda m: lambda x: RoundedLinear.apply(x, m.weight, m.bias))(base)
    head = peft_model.get_output_embeddings()
    head.forward = lambda x: RoundedHead.apply(x, head.weight)


def lora_grads(peft_model, lp, grad):
    (lp * grad).sum().backward()
    out = {}
    for n, p in peft_model.named_parameters():
        if "lora_" in n:
            out[n.replace(".default", "")] = p.grad.detach().float().clone().contiguous()
    return out


def make(out_root):
    import transformers as tf
    from peft import PeftModel

    torch.use_deterministic_algorithms(True)
    ids, lengths, mask, grad = make_batch()
    for arch in ARCHS:
        out = os.path.join(out_root, arch)
        os.makedirs(out, exist_ok=True)
        # The parameters rounded to bf16 in place; buffers (RoPE's inv_freq) stay f32 as
        # transformers computes them when it loads a bf16 checkpoint.
        widened = tiny_model(arch)
        with torch.no_grad():
            for p in widened.parameters():
                p.copy_(bf(p))
        copy.deepcopy(widened).to(torch.bfloat16).save_pretrained(os.path.join(out, "model"), safe_serialization=True)
        rslora = arch == "qwen3"
        f32_model = lora_model(widened, rslora=rslora, seed=5)
        f32_model.save_pretrained(os.path.join(out, "peft_adapter"))
        emu_model = copy.deepcopy(f32_model)
        emulate(emu_model)
        lp = {}
        grads = {}
        for way, m in (("f32", f32_model), ("emulated", emu_model)):
            lp[way] = token_logps(m, ids, lengths, mask)
            grads[way] = lora_grads(m, lp[way], grad)
        base = tf.AutoModelForCausalLM.from_pretrained(os.path.join(out, "model"), dtype=torch.bfloat16,
                                                       attn_implementation="eager")
        ac_model = PeftModel.from_pretrained(base, os.path.join(out, "peft_adapter"), is_trainable=True).eval()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lp["autocast"] = token_logps(ac_model, ids, lengths, mask)
        grads["autocast"] = lora_grads(ac_model, lp["autocast"], grad)
        for way, g in grads.items():
            save_file(g, os.path.join(out, f"grads_{way}.safetensors"))
        expected = {
            "arch": arch,
            "batch": {"ids": flat(ids), "batch": ids.shape[0], "seqLen": ids.shape[1], "lengths": lengths, "mask": flat(mask)},
            "gradLogps": flat(grad),
            "logps": {way: flat(v.detach().float()) for way, v in lp.items()},
        }
        with open(os.path.join(out, "expected.json"), "w") as f:
            json.dump(expected, f)
    print(json.dumps({"ok": True, "archs": ARCHS, "torch": torch.__version__}))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit("usage: engine_bf16_parity.py make OUT")
