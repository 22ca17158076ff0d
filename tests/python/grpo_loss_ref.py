"""GRPO reference in PyTorch: group-relative advantages and the per-token policy loss of
docs ALGORITHMS.md "GRPO", written after TRL's GRPOTrainer (_generate_and_score_completions for
the advantages, _compute_loss for the loss and its metrics), with gradients by autograd.

Reads a JSON list of cases on stdin; each case is one generation batch:
  rewards       [K][n] reward of completion i from function k, or null (no reward from it)
  weights       [K], names [K], groupSize G (n = groups * G, row-major by group)
  scaleRewards  "group" | "batch" | "none"
  lp, mask      [n][len_i] per-token policy log-probs and the 0/1 loss mask
  oldLp, refLp, entropy   [n][len_i] or null (oldLp null: lp detached, num_iterations = 1)
  lossType, beta, epsilon, epsilonHigh, maxCompletionLength
  micro         [[i, ...], ...] the completion indices of each micro-batch of the optimiser step
A case without lp is scored only (advantages and reward metrics).

Writes, per case: total, advantage, metrics (reward metrics), trl (what TRL's current
GRPOTrainer computes where ALGORITHMS.md chose differently or says nothing; see below) and,
with lp, micro: [{loss, grad, metrics, trl}] and loss (the sum over the micro-batches).

Used by tests/unit/training.grpo-loss.test.ts.
"""
import json
import sys

import torch

torch.set_default_dtype(torch.float64)


def bessel_std(x):
    """Sample std (torch's default correction=1); 0 for fewer than two values."""
    return x.std() if x.numel() > 1 else torch.zeros(())


def nanstd(x):
    """TRL's trainer.utils.nanstd: Bessel's correction over the non-NaN values, NaN below two."""
    keep = x[~torch.isnan(x)]
    return keep.std() if keep.numel() > 1 else torch.tensor(float("nan"))


def scored(c):
    r = torch.tensor([[float("nan") if v is None else float(v) for v in f] for f in c["rewards"]]).T  # [n, K]
    w = torch.tensor(c["weights"], dtype=torch.float64)
    G = c["groupSize"]
    scale = c["scaleRewards"]
    n = r.shape[0]
    assert n % G == 0
    unscorable = torch.isnan(r).all(dim=1)
    # R_i = Σ_k w_k r_k(i) over the functions that gave one; the empty sum is 0.
    total = (r * w).nansum(dim=1)
    grouped = total.view(-1, G)
    group_std = torch.stack([bessel_std(g) for g in grouped])
    adv = total - grouped.mean(dim=1).repeat_interleave(G)
    if scale == "group":
        adv = adv / (group_std.repeat_interleave(G) + 1e-4)
    elif scale == "batch":
        adv = adv / (bessel_std(total) + 1e-4)
    elif scale != "none":
        raise ValueError(scale)
    adv = torch.where(unscorable, torch.zeros_like(adv), adv)
    metrics = {
        "reward": total.mean().item(),
        "reward_std": group_std.mean().item(),  # ALGORITHMS.md: the mean of the group stds
        # ALGORITHMS.md names it only; the share of groups whose rewards all agree, as TRL's
        # torch.isclose(std, 0) on the group stds (TRL ≤ 0.22 always, later for group and none)
        "frac_reward_zero_std": torch.isclose(group_std, torch.zeros_like(group_std)).double().mean().item(),
    }
    for k, name in enumerate(c["names"]):
        col = r[:, k]
        if torch.isnan(col).all():
            continue  # TRL logs NaN (nanmean of nothing); left out
        metrics[f"rewards/{name}/mean"] = torch.nanmean(col).item()
        metrics[f"rewards/{name}/std"] = nanstd(col).item()

    # TRL ≥ 1.6 (#5902) leaves an unscorable completion (R = NaN) out of its group's mean and std
    # and out of the reward metrics; TRL ≥ 1.0 logs reward_std as the std of the whole batch and,
    # under scale_rewards "batch", frac_reward_zero_std from the batch std.
    tn = torch.where(unscorable, torch.full_like(total, float("nan")), total)
    tg = tn.view(-1, G)
    t_group_std = torch.stack([nanstd(g) for g in tg])
    t_std = t_group_std.repeat_interleave(G) if scale in ("group", "none") else nanstd(tn).expand(n)
    t_adv = tn - torch.nanmean(tg, dim=1).repeat_interleave(G)
    if scale != "none":
        t_adv = t_adv / (t_std + 1e-4)
    t_adv = torch.nan_to_num(t_adv, nan=0.0)
    trl = {
        "advantage": t_adv.tolist(),
        "reward": torch.nanmean(tn).item(),
        "reward_std": nanstd(tn).item(),
        "frac_reward_zero_std": torch.isclose(t_std, torch.zeros_like(t_std)).double().mean().item(),
    }
    return total, adv, metrics, trl


def padded(rows, idx, T, fill=0.0):
    out = torch.full((len(idx), T), fill)
    for j, i in enumerate(idx):
        out[j, : len(rows[i])] = torch.tensor(rows[i], dtype=torch.float64)
    return out


def micro_loss(c, idx, adv, generation_tokens):
    lens = [len(c["lp"][i]) for i in idx]
    T = max(max(lens), 1)
    lp = padded(c["lp"], idx, T).requires_grad_(True)
    mask = padded(c["mask"], idx, T)
    old = padded(c["oldLp"], idx, T) if c.get("oldLp") is not None else lp.detach()
    A = adv[idx].unsqueeze(1)
    eps_lo, eps_hi, beta, kind = c["epsilon"], c["epsilonHigh"], c["beta"], c["lossType"]
    M = len(c["micro"])
    B = len(idx)

    coef_1 = torch.exp(lp - old)
    if kind == "cispo":
        per_token = -torch.clamp(coef_1, max=eps_hi).detach() * A * lp
    else:
        coef_2 = torch.clamp(coef_1, 1 - eps_lo, 1 + eps_hi)
        per_token = -torch.min(coef_1 * A, coef_2 * A)
    if beta != 0.0:
        ref = padded(c["refLp"], idx, T)
        per_token_kl = torch.exp(ref - lp) - (ref - lp) - 1
        per_token = per_token + beta * per_token_kl

    if kind == "grpo":
        loss = ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean() / M
    elif kind == "bnpo":
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1.0) / M
    elif kind == "dr_grpo":
        loss = (per_token * mask).sum() / (B * c["maxCompletionLength"]) / M
    elif kind in ("dapo", "cispo"):
        loss = (per_token * mask).sum() / generation_tokens.clamp(min=1.0)
    else:
        raise ValueError(kind)
    loss.backward()

    def masked_mean(x):
        return ((x * mask).sum() / mask.sum().clamp(min=1.0)).item()

    metrics = {}
    trl = {}
    if beta != 0.0:
        metrics["kl"] = masked_mean(per_token_kl.detach())
    if c.get("entropy") is not None:
        metrics["entropy"] = masked_mean(padded(c["entropy"], idx, T))
    c1 = coef_1.detach()
    is_low = (c1 < 1 - eps_lo) & (A < 0)
    is_high = (c1 > 1 + eps_hi) & (A > 0)
    # ALGORITHMS.md lists the three for every loss_type; TRL logs them for the clipped losses
    # only and cispo_clip_ratio for cispo.
    metrics["clip_ratio/low_mean"] = masked_mean(is_low.double())
    metrics["clip_ratio/high_mean"] = masked_mean(is_high.double())
    metrics["clip_ratio/region_mean"] = masked_mean((is_low | is_high).double())
    if kind == "cispo":
        trl["cispo_clip_ratio"] = masked_mean(((c1 > eps_hi) & (A > 0)).double())
    grad = [lp.grad[j, : lens[j]].tolist() for j in range(B)]
    return {"loss": loss.item(), "grad": grad, "metrics": metrics, "trl": trl}


def case(c):
    total, adv, metrics, trl = scored(c)
    out = {"total": total.tolist(), "advantage": adv.tolist(), "metrics": metrics, "trl": trl}
    if c.get("lp") is not None:
        generation_tokens = torch.tensor(float(sum(sum(m) for m in c["mask"])))
        out["micro"] = [micro_loss(c, idx, adv, generation_tokens) for idx in c["micro"]]
        out["loss"] = sum(m["loss"] for m in out["micro"])
    return out


def finite(x):
    """NaN (TRL's value for a std of fewer than two rewards) as null: JSON has no NaN."""
    if isinstance(x, float):
        return None if x != x else x
    if isinstance(x, list):
        return [finite(v) for v in x]
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    return x


def main():
    json.dump(finite([case(c) for c in json.load(sys.stdin)]), sys.stdout, allow_nan=False)


if __name__ == "__main__":
    main()
