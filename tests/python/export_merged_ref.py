"""References for the merged export: transformers loads the merged folder as it is, and PEFT's
own merge_and_unload of the same base + adapter gives the same tensors.

stdin: {"merged": DIR, "ids": [[...], ...], "base": DIR?, "adapter": DIR?}
stdout: {"logps": [[lp(t) for t >= 1], ...], "dtypes": {name: dtype}, "merge": {"max_abs": x, "max_ulps": n},
         "peft_logps": [[...]]}
(merge only when base and adapter are given; ulps counted in the merged file's dtype; peft_logps:
the unmerged PeftModel's, for an f32 base)
"""
import json
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def logps(model, ids):
    out = []
    for row in ids:
        x = torch.tensor([row])
        with torch.no_grad():
            lp = torch.log_softmax(model(x).logits.float(), dim=-1)[0]
        out.append([lp[t - 1, row[t]].item() for t in range(1, len(row))])
    return out


def merged_tensors(folder):
    import glob
    import os
    tensors = {}
    for f in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        tensors.update(load_file(f))
    return tensors


def ulps(a, b):
    """Distance in units in the last place of a's dtype (bf16/f16/f32 bit patterns as integers)."""
    if a.dtype == torch.float32:
        ia, ib = a.view(torch.int32).long(), b.to(torch.float32).view(torch.int32).long()
    else:
        ia, ib = a.view(torch.int16).long(), b.to(a.dtype).view(torch.int16).long()
    # sign-magnitude to a monotonic integer line
    bits = 31 if a.dtype == torch.float32 else 15
    fix = lambda i: torch.where(i < 0, -(i & ((1 << bits) - 1)), i)
    return (fix(ia) - fix(ib)).abs().max().item()


def main():
    req = json.load(sys.stdin)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(req["merged"], dtype=torch.float32)
    model.eval()
    res = {"logps": logps(model, req["ids"])}
    ours = merged_tensors(req["merged"])
    res["dtypes"] = {k: str(v.dtype).replace("torch.", "") for k, v in ours.items()}
    if req.get("base") and req.get("adapter"):
        from peft import PeftModel
        base = AutoModelForCausalLM.from_pretrained(req["base"], dtype="auto")
        peft_model = PeftModel.from_pretrained(base, req["adapter"])
        peft_model.eval()
        # the adapter applied by PEFT itself, unmerged (DoRA included), in f32
        if base.dtype == torch.float32:
            res["peft_logps"] = logps(peft_model, req["ids"])
        ref = peft_model.merge_and_unload()
        sd = ref.state_dict()
        max_abs, max_ulps = 0.0, 0
        for name, t in ours.items():
            r = sd[name].detach()
            max_abs = max(max_abs, (t.float() - r.float()).abs().max().item())
            max_ulps = max(max_ulps, ulps(t, r))
        missing = [k for k in sd if k not in ours and not (k == "lm_head.weight" and ref.config.tie_word_embeddings)]
        res["merge"] = {"max_abs": max_abs, "max_ulps": max_ulps, "missing": missing}
    json.dump(res, sys.stdout)


if __name__ == "__main__":
    main()
