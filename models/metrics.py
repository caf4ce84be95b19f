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
