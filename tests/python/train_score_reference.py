"""Reference for `tunebench score`: summed completion log-probs of each record under a model
(and optionally a PEFT adapter), tokenised as docs/algorithms.md says (train_reference.py's
tokenisation). Reads a list of {model, adapter, data} on stdin, writes a list of lists."""
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, os.path.dirname(__file__))
from train_reference import batch_logps, conversation, join, prompt_completion  # noqa: E402

torch.set_default_dtype(torch.float64)


def score(r):
    tok = AutoTokenizer.from_pretrained(r["model"])
    model = AutoModelForCausalLM.from_pretrained(r["model"], dtype=torch.float64)
    if r.get("adapter"):
        model = PeftModel.from_pretrained(model, r["adapter"])
    model.eval()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out = []
    with torch.no_grad():
        for line in open(r["data"]):
            if not line.strip():
                continue
            rec = json.loads(line)
            if "chosen" in rec:
                p, c = prompt_completion(tok, rec["prompt"], rec["chosen"])
                _, j = prompt_completion(tok, rec["prompt"], rec["rejected"])
                lp, n = batch_logps(model, [join(p, c), join(p, j)], pad)
                out.append({"chosen_logps": lp[0].item(), "rejected_logps": lp[1].item(),
                            "chosen_tokens": n[0].item(), "rejected_tokens": n[1].item()})
            else:
                seq = conversation(tok, rec["messages"]) if "messages" in rec else join(*prompt_completion(tok, rec["prompt"], rec["completion"]))
                lp, n = batch_logps(model, [seq], pad)
                out.append({"logps": lp[0].item(), "tokens": n[0].item()})
    return out


def main():
    json.dump([score(r) for r in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
