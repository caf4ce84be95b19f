"""Evaluation metrics over tensors (no Beam)."""
from __future__ import annotations

from typing import Sequence

import torch


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative),
    ties counting one half (Mann-Whitney U)."""
    s = torch.as_tensor(list(scores), dtype=torch.float64)
    y = torch.as_tensor(list(positives), dtype=torch.bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    ranks = (ends - (counts.to(torch.float64) - 1) / 2.0)[inverse]  # average rank of ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def retrieval_recall(img: torch.Tensor, txt: torch.Tensor, ks=(1, 5)) -> dict:
    """Image-to-text and text-to-image recall@k for matched rows of two L2-normalised embedding
    matrices (row i of each is the same pair)."""
    sims = img @ txt.T
    target = torch.arange(len(img))
    out = {}
    for name, s in (("i2t", sims), ("t2i", sims.T)):
        ranks = (s > s[target, target][:, None]).sum(dim=1)  # how many beat the true match
        for k in ks:
            out[f"{name}_r@{k}"] = float((ranks < k).float().mean())
    for k in ks:
        out[f"mean_r@{k}"] = 0.5 * (out[f"i2t_r@{k}"] + out[f"t2i_r@{k}"])
    return out


def steps_to_reach(curve, target: float):
    """First step at which a [(step, metric)] curve reaches ``target``, or None."""
    for step, value in curve:
        if value >= target:
            return step
    return None
