"""The choice: from a super-batch's per-example scores, the B examples to train on.

``select_indices`` is the whole rule (top-k, or seeded sampling without replacement in
proportion to softmax(score / T), by Gumbel-top-k); ``OnlineSelector`` applies it to
learnability = proxy loss - cached reference loss and keeps ``OnlineCounters``: how many
examples the proxy ran over (the forward cost selection adds), how many were picked, and what
(mean losses of the picked vs the super-batch, and counts by a caller's label, e.g. clean/noisy).
"""
from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Dict, Optional, Sequence

import torch

METHODS = ("topk", "gumbel")
SCORES = ("learnability", "easy", "hard", "ref_sim")


def select_indices(scores: torch.Tensor, k: int, method: str = "topk", temperature: float = 1.0,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Indices of the ``k`` examples to keep, highest score first.

    ``topk``: the k largest (ties: the lower index first, so the choice is deterministic).
    ``gumbel``: k draws without replacement with probability proportional to
    ``softmax(score / temperature)`` (Gumbel-top-k: argsort of score / T + Gumbel noise; the noise
    from ``generator``, so a seeded generator repeats the choice). NaN scores (no cached
    reference loss) rank below every finite score."""
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    n = scores.numel()
    if not 0 < k <= n:
        raise ValueError(f"cannot keep {k} of a super-batch of {n}")
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r}; known: {', '.join(METHODS)}")
    s = torch.where(torch.isnan(scores), torch.full_like(scores, -math.inf), scores)
    if method == "gumbel":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, not {temperature}")
        u = torch.rand(n, generator=generator, dtype=torch.float64).clamp_(1e-12, 1.0 - 1e-12)
        s = s / temperature - torch.log(-torch.log(u))
    # stable sort of -s: equal scores keep index order (torch.topk's tie order is unspecified)
    return torch.sort(-s, stable=True).indices[:k]


def score_of(name: str, proxy_loss: torch.Tensor, ref_loss: torch.Tensor,
             ref_sim: Optional[torch.Tensor] = None) -> torch.Tensor:
    """learnability (proxy - reference loss), easy (-reference), hard (proxy), ref_sim."""
    if name == "learnability":
        return proxy_loss - ref_loss
    if name == "easy":
        return -ref_loss
    if name == "hard":
        return proxy_loss
    if name == "ref_sim":
        if ref_sim is None:
            raise ValueError("score ref_sim needs the cached reference similarities")
        return ref_sim
    raise ValueError(f"unknown online score {name!r}; known: {', '.join(SCORES)}")


@dataclasses.dataclass
class OnlineCounters:
    """What selection cost and what it picked, summed over steps."""

    steps: int = 0
    scored: int = 0                # examples the proxy ran a forward on (every super-batch member)
    selected: int = 0              # examples handed to the learner
    proxy_forward_flops: float = 0.0    # scored x the proxy's forward FLOPs per example, when known
    online_model_train_examples: int = 0  # examples the small online model trained on
    bank_refreshes: int = 0        # times the proxy re-encoded its negative bank
    bank_examples: int = 0         # examples encoded for those refreshes
    missing_reference: int = 0     # super-batch members without a cached reference loss
    sum_proxy_loss_all: float = 0.0
    sum_proxy_loss_selected: float = 0.0
    sum_ref_loss_all: float = 0.0
    sum_ref_loss_selected: float = 0.0
    picked: Counter = dataclasses.field(default_factory=Counter)   # label -> selected count
    offered: Counter = dataclasses.field(default_factory=Counter)  # label -> super-batch count
    # every ``trace_every`` steps (OnlineSelector): the window's picked share and mean proxy /
    # reference loss of the offered examples, by label (why a proxy picks what it picks)
    trace: list = dataclasses.field(default_factory=list)

    def as_dict(self) -> Dict[str, object]:
        d = dataclasses.asdict(self)
        d["picked"], d["offered"] = dict(self.picked), dict(self.offered)
        for what in ("proxy_loss", "ref_loss"):
            d[f"mean_{what}_all"] = d[f"sum_{what}_all"] / max(1, self.scored - self.missing_reference)
            d[f"mean_{what}_selected"] = d[f"sum_{what}_selected"] / max(1, self.selected)
        d["picked_share"] = {k: v / max(1, self.selected) for k, v in sorted(self.picked.items())}
        return d


class OnlineSelector:
    """Keeps ``batch_size`` of each super-batch by ``score`` (default learnability).

    ``select(proxy_loss, ref_loss)`` returns the indices (highest first) and updates the
    counters; with ``method="gumbel"`` the noise comes from a generator seeded with ``seed``,
    so a run repeats its choices."""

    def __init__(self, batch_size: int, method: str = "topk", temperature: float = 1.0, seed: int = 0,
                 score: str = "learnability", proxy_flops_per_example: float = 0.0, trace_every: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if method not in METHODS:
            raise ValueError(f"unknown selection method {method!r}; known: {', '.join(METHODS)}")
        if score not in SCORES:
            raise ValueError(f"unknown online score {score!r}; known: {', '.join(SCORES)}")
        self.batch_size, self.method, self.temperature, self.score = batch_size, method, temperature, score
        self.proxy_flops_per_example = proxy_flops_per_example
        self.generator = torch.Generator().manual_seed(seed)
        self.counters = OnlineCounters()
        self.trace_every = trace_every
        self._window: dict = {}

    def select(self, proxy_loss: Optional[torch.Tensor], ref_loss: torch.Tensor,
               labels: Optional[Sequence[str]] = None, ref_sim: Optional[torch.Tensor] = None,
               scored: Optional[int] = None) -> torch.Tensor:
        """``proxy_loss`` may be None for the scores that do not use it (easy, ref_sim): then no
        proxy forward is counted (``scored`` overrides the count)."""
        ref_loss = torch.as_tensor(ref_loss, dtype=torch.float64).flatten()
        n = ref_loss.numel()
        if proxy_loss is None:
            if self.score in ("learnability", "hard"):
                raise ValueError(f"score {self.score} needs the proxy's losses")
            proxy = torch.full((n,), math.nan, dtype=torch.float64)
        else:
            proxy = torch.as_tensor(proxy_loss, dtype=torch.float64).flatten().detach().cpu()
            if proxy.numel() != n:
                raise ValueError(f"{proxy.numel()} proxy losses for {n} reference losses")
        sim = None if ref_sim is None else torch.as_tensor(ref_sim, dtype=torch.float64).flatten()
        idx = select_indices(score_of(self.score, proxy, ref_loss, sim), min(self.batch_size, n),
                             self.method, self.temperature, self.generator)
        c = self.counters
        c.steps += 1
        ran = (n if proxy_loss is not None else 0) if scored is None else scored
        c.scored += ran
        c.proxy_forward_flops += ran * self.proxy_flops_per_example
        c.selected += idx.numel()
        known = ~torch.isnan(ref_loss)
        c.missing_reference += int((~known).sum())
        c.sum_ref_loss_all += float(ref_loss[known].sum())
        c.sum_ref_loss_selected += float(torch.nan_to_num(ref_loss[idx]).sum())
        if proxy_loss is not None:
            c.sum_proxy_loss_all += float(proxy[known].sum())
            c.sum_proxy_loss_selected += float(proxy[idx].sum())
        if labels is not None:
            c.offered.update(labels)
            c.picked.update(labels[int(i)] for i in idx)
            if self.trace_every:
                self._trace(labels, idx, proxy if proxy_loss is not None else None, ref_loss)
        return idx

    def _trace(self, labels, idx, proxy, ref) -> None:
        w = self._window
        for i, label in enumerate(labels):
            row = w.setdefault(label, [0, 0, 0.0, 0.0])  # picked, offered, sum proxy, sum ref
            row[1] += 1
            row[2] += 0.0 if proxy is None else float(proxy[i])
            row[3] += float(torch.nan_to_num(ref[i]))
        for i in idx:
            w[labels[int(i)]][0] += 1
        if self.counters.steps % self.trace_every == 0:
            picked = sum(r[0] for r in w.values())
            self.counters.trace.append({
                "step": self.counters.steps,
                "picked_share": {k: r[0] / max(1, picked) for k, r in sorted(w.items())},
                "proxy_loss": {k: r[2] / r[1] for k, r in sorted(w.items())} if proxy is not None else None,
                "ref_loss": {k: r[3] / r[1] for k, r in sorted(w.items())}})
            self._window = {}
