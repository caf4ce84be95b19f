"""Training loop for classifiers (ClassAct reference, proxy and learner): cross-entropy, AdamW,
warmup + cosine, flip + translate augmentation, an ``on_eval(step, model)`` hook."""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, List, Tuple

import torch
import torch.nn.functional as F

from learnsieve.models.classifier import Classifier
from learnsieve.models.train import augment, fit

log = logging.getLogger(__name__)

LabelBatch = Tuple[torch.Tensor, torch.Tensor]  # uint8 images [B,3,H,W], int64 labels [B]


def train_classifier(model: Classifier, batches: Iterable[LabelBatch], steps: int, lr: float = 2e-3,
                     weight_decay: float = 0.05, warmup: int = 20, seed: int = 0,
                     do_augment: bool = True,
                     log_every: int = 50, eval_every: int = 0,
                     on_eval: Callable[[int, Classifier], None] | None = None, log_seconds: float = 10.0,
                     tag: str = "") -> List[float]:
    """Train for ``steps`` optimizer steps over ``batches`` (cycled if shorter); returns losses.
    With ``on_eval``, it is called as on_eval(step, model) in eval mode every ``eval_every``
    steps and after the last one."""
    device = model.device

    def step_loss(m, images, labels):
        return F.cross_entropy(m(images.to(device)), labels.to(device))

    return fit(model, batches, steps, step_loss, augment if do_augment else None, lr=lr,
               weight_decay=weight_decay, warmup=warmup, seed=seed, log_every=log_every,
               eval_every=eval_every, on_eval=on_eval, log_seconds=log_seconds, tag=tag)


def label_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int
                  ) -> Iterator[LabelBatch]:
    """Endless shuffled epochs of full batches (a new permutation each epoch, seeded)."""
    if len(labels) == 0:
        raise ValueError("no training examples")
    batch_size = max(1, min(batch_size, len(labels)))
    gen = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(labels), generator=gen)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size]
            yield images[idx], labels[idx]
