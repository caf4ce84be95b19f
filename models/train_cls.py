"""Training loop for classifiers (ClassAct reference, proxy and learner): cross-entropy, AdamW,
warmup + cosine, flip + translate augmentation, an ``on_eval(step, model)`` hook."""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, List, Tuple

import torch
import torch.nn.functional as F

from models.classifier import Classifier
from models.train import augment, lr_at

LabelBatch = Tuple[torch.Tensor, torch.Tensor]  # uint8 images [B,3,H,W], int64 labels [B]


def train_classifier(model: Classifier, batches: Iterable[LabelBatch], steps: int, lr: float = 2e-3,
                     weight_decay: float = 0.05, warmup: int = 20, seed: int = 0,
                     do_augment: bool = True, log: Callable[[str], None] | None = None,
                     log_every: int = 50, eval_every: int = 0,
                     on_eval: Callable[[int, Classifier], None] | None = None) -> List[float]:
    """Train for ``steps`` optimizer steps over ``batches`` (cycled if shorter); returns losses.
    With ``on_eval``, it is called as on_eval(step, model) in eval mode every ``eval_every``
    steps and after the last one."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    device = model.device
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=lr)
    model.train()
    losses: List[float] = []
    it = _cycle(batches)
    start = time.perf_counter()
    for step in range(steps):
        images, labels = next(it)
        if do_augment:
            images = augment(images, gen)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        loss = F.cross_entropy(model(images.to(device)), labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if on_eval and ((eval_every and (step + 1) % eval_every == 0) or step + 1 == steps):
            model.eval()
            on_eval(step + 1, model)
            model.train()
        if log and (step + 1) % log_every == 0:
            recent = losses[-log_every:]
            log(f"step {step + 1}/{steps} loss {sum(recent) / len(recent):.3f} "
                f"({time.perf_counter() - start:.0f}s)")
    model.eval()
    return losses


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


def _cycle(batches: Iterable[LabelBatch]) -> Iterator[LabelBatch]:
    while True:
        empty = True
        for b in batches:
            empty = False
            yield b
        if empty:
            raise ValueError("no training batches")
