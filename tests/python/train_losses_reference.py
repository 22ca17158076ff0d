"""Reference losses on fixed log-probs, written from TRL's / LLaMA-Factory's definitions in
PyTorch, with gradients by autograd. Reads a JSON list of cases on stdin, writes results.

Used by tests/unit/training.losses.test.ts.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def pair_case(c):
    pc = torch.tensor(c["policyChosen"], requires_grad=True)
    pr = torch.tensor(c["policyRejected"], requires_grad=True)
    nc = torch.tensor(c["chosenTokens"]).clamp(min=1)
    nr = torch.tensor(c["rejectedTokens"]).clamp(min=1)
    beta, kind = c["beta"], c["kind"]
    metrics = {}
    if kind in ("orpo", "simpo"):
        lc, lr = pc / nc, pr / nr
        if kind == "orpo":
            # TRL ORPOTrainer.odds_ratio_loss
            log_odds = (lc - lr) - (torch.log1p(-torch.exp(lc)) - torch.log1p(-torch.exp(lr)))
            ratio = F.logsigmoid(log_odds)
            nll = -lc
            losses = nll - beta * ratio
            metrics.update(nll_loss=nll.mean().item(), log_odds_ratio=ratio.mean().item(),
                           log_odds_chosen=log_odds.mean().item())
        else:
            # LLaMA-Factory CustomDPOTrainer.simpo_loss
            logits = (lc - lr) - c["simpoGamma"] / beta
            losses = -F.logsigmoid(beta * logits)
        chosen_rewards, rejected_rewards = beta * lc.detach(), beta * lr.detach()
        logps_c, logps_r = lc.detach(), lr.detach()
    else:
        rc = torch.tensor(c["refChosen"])
        rr = torch.tensor(c["refRejected"])
        logits = (pc - pr) - (rc - rr)
        if kind == "sigmoid":  # TRL DPOTrainer.dpo_loss
            eps = c["labelSmoothing"]
            losses = -F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps
        elif kind == "hinge":
            losses = torch.relu(1 - beta * logits)
        else:
            h = (pc - rc) / nc - (pr - rr) / nr
            if kind == "ipo":
                losses = (h - 1 / (2 * beta)) ** 2
            else:  # sigmoid_norm
                losses = -F.logsigmoid(beta * h)
        chosen_rewards, rejected_rewards = beta * (pc - rc).detach(), beta * (pr - rr).detach()
        logps_c, logps_r = pc.detach(), pr.detach()
    if c["ftx"] > 0 and kind != "orpo":
        losses = losses + c["ftx"] * (-pc / nc)
    loss = losses.mean()
    loss.backward()
    metrics.update({
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).double().mean().item(),
        "logps/chosen": logps_c.mean().item(),
        "logps/rejected": logps_r.mean().item(),
    })
    return {"loss": loss.item(), "metrics": metrics, "gradChosen": pc.grad.tolist(), "gradRejected": pr.grad.tolist()}


def kto_case(c):
    # TRL KTOTrainer.kto_loss: KL detached and clamped at 0; losses of both kinds concatenated.
    p = torch.tensor(c["policy"], requires_grad=True)
    ref = torch.tensor(c["ref"])
    kl = (torch.tensor(c["policyKl"]) - torch.tensor(c["refKl"])).mean().clamp(min=0)
    beta = c["beta"]
    des = torch.tensor(c["desirable"])
    logratios = p - ref
    chosen_losses = 1 - F.sigmoid(beta * (logratios[des] - kl))
    rejected_losses = 1 - F.sigmoid(beta * (kl - logratios[~des]))
    losses = torch.cat((c["desirableWeight"] * chosen_losses, c["undesirableWeight"] * rejected_losses))
    loss = losses.mean()
    loss.backward()
    metrics = {"kl": kl.item()}
    if des.any():
        metrics["rewards/chosen"] = (beta * logratios[des]).mean().item()
    if (~des).any():
        metrics["rewards/rejected"] = (beta * logratios[~des]).mean().item()
    if des.any() and (~des).any():
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return {"loss": loss.item(), "metrics": metrics, "grad": p.grad.tolist()}


def main():
    cases = json.load(sys.stdin)
    out = [kto_case(c) if c["kind"] == "kto" else pair_case(c) for c in cases]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
