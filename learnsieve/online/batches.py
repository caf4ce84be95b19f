"""Online selection as a batch iterator: what any loop that takes batches can consume.

``OnlineBatches(pool, B, ratio, proxy, selector)`` yields, per step, the ``B`` examples the
selector picks from a super-batch of ``ratio x B`` drawn uniformly (consecutive chunks of a
seeded permutation of the pool, a new one each epoch, so every example is offered once an
epoch). The proxy scores the super-batch when the batch is asked for, i.e. with the learner as
it is after the previous step (``fit``/``train_clip``/``train_classifier`` call ``next`` right
before each step); an ``OnlineModelProxy`` then trains one step on the picked batch.
``ratio=1`` is plain IID training (nothing scored).
"""
from __future__ import annotations

import logging
from typing import Iterator, Optional, Sequence

import torch

from learnsieve.online.cached import CachedPool
from learnsieve.online.selector import OnlineSelector

log = logging.getLogger(__name__)


class OnlineBatches:
    def __init__(self, pool: CachedPool, batch_size: int, ratio: float, proxy, selector: OnlineSelector,
                 seed: int = 0, labels: Optional[Sequence[str]] = None):
        if ratio < 1:
            raise ValueError(f"ratio must be >= 1, not {ratio}")
        self.super_size = int(round(batch_size * ratio))
        if self.super_size > len(pool):
            raise ValueError(f"a super-batch of {self.super_size} is larger than the pool ({len(pool)})")
        self.pool, self.batch_size, self.ratio = pool, batch_size, ratio
        self.proxy, self.selector, self.seed = proxy, selector, seed
        self.labels = list(labels) if labels is not None else None
        self.picked: list = []  # pool indices of every selected example, in order

    def _targets(self, idx: torch.Tensor):
        t = self.pool.targets
        return t[idx] if isinstance(t, torch.Tensor) else [t[int(i)] for i in idx]

    def super_batches(self) -> Iterator[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.seed)
        n = len(self.pool)
        while True:
            order = torch.randperm(n, generator=gen)
            for s in range(0, n - self.super_size + 1, self.super_size):
                yield order[s:s + self.super_size]

    def __iter__(self):
        for sup in self.super_batches():
            images, targets = self.pool.images[sup], self._targets(sup)
            if self.super_size == self.batch_size:
                chosen = torch.arange(self.batch_size)  # nothing to choose: IID
                c = self.selector.counters
                c.steps, c.selected = c.steps + 1, c.selected + self.batch_size
                if self.labels is not None:
                    c.offered.update(self._labels(sup))
                    c.picked.update(self._labels(sup))
            else:
                needs_proxy = self.selector.score in ("learnability", "hard")
                proxy_loss = self.proxy.losses(images, targets) if needs_proxy else None
                chosen = self.selector.select(proxy_loss, self.pool.ref_loss[sup], self._labels(sup),
                                              ref_sim=self.pool.ref_sim[sup])
            picked = sup[chosen]
            self.picked.extend(int(i) for i in picked)
            b_images, b_targets = images[chosen], self._targets(picked)
            if self.proxy is not None:
                self.proxy.update(b_images, b_targets)
                self.selector.counters.online_model_train_examples = getattr(self.proxy, "train_examples", 0)
                bank = getattr(self.proxy, "bank", None)
                if bank is not None:
                    self.selector.counters.bank_refreshes = bank.refreshes
                    self.selector.counters.bank_examples = bank.refreshes * len(bank)
            yield b_images, b_targets

    def _labels(self, idx: torch.Tensor):
        return None if self.labels is None else [self.labels[int(i)] for i in idx]
