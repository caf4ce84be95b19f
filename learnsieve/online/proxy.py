"""Per-example losses of the online proxy: the learner itself, or a small model trained alongside.

Both score a super-batch under the same per-example loss as the reference's cached one:

- a dual encoder (``models.clip.DualEncoder``): InfoNCE of each pair against a fixed bank of
  negative *pairs* (``models.losses.bank_contrastive_loss``), the bank re-encoded by the current
  model every ``refresh_every`` calls (the model moves; the pairs do not). Row i depends only on
  example i and the bank, so the loss of an example never depends on its super-batch mates;
- a classifier (``models.classifier.Classifier``, ClassAct): cross-entropy of its label.

``LearnerProxy`` scores with the live learner (no_grad, eval mode, the training mode restored);
``OnlineModelProxy`` scores with a small model of its own, which ``update`` trains for one step
on every selected batch (in-batch CLIP loss or cross-entropy, AdamW): the design card's cheap
online proxy (Evans et al. 2023's "online model").
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learnsieve.models.losses import bank_contrastive_loss
from learnsieve.models.train import clip_loss


def is_classifier(model: nn.Module) -> bool:
    return getattr(model, "target_field", None) == "label"


class PairBank:
    """A fixed set of negative pairs (uint8 images [N,3,H,W], captions), re-encoded by a model
    at most every ``refresh_every`` calls (1: every call, exact for a model that moves)."""

    def __init__(self, images: torch.Tensor, captions: Sequence[str], refresh_every: int = 1,
                 batch_size: int = 256):
        if len(captions) != images.shape[0] or not len(captions):
            raise ValueError(f"a bank needs as many captions as images, got {len(captions)} and {images.shape[0]}")
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, not {refresh_every}")
        self.images, self.captions = images, list(captions)
        self.refresh_every, self.batch_size = refresh_every, batch_size
        self._calls, self._emb, self._for = 0, None, None
        self.refreshes = 0

    def __len__(self) -> int:
        return len(self.captions)

    @torch.no_grad()
    def embeddings(self, model: nn.Module):
        """(image, text) embeddings of the bank by ``model``, fresh when due or for another model."""
        due = self._emb is None or self._for is not model or self._calls % self.refresh_every == 0
        self._calls += 1
        if due:
            img, txt = [], []
            for s in range(0, len(self), self.batch_size):
                img.append(model.encode_image(self.images[s:s + self.batch_size]))
                txt.append(model.encode_text(self.captions[s:s + self.batch_size]))
            self._emb, self._for = (torch.cat(img), torch.cat(txt)), model
            self.refreshes += 1
        return self._emb


@torch.no_grad()
def per_example_loss(model: nn.Module, images: torch.Tensor, targets, bank: Optional[PairBank] = None,
                     num_classes: Optional[int] = None) -> torch.Tensor:
    """The model's loss of each example (float64, CPU), in eval mode (training mode restored).
    A dual encoder needs ``bank`` unless it carries a stored one (``set_bank``)."""
    was = model.training
    model.eval()
    try:
        if is_classifier(model):
            from learnsieve.models.classifier import as_targets
            logits = model(images).float()
            t = as_targets(targets, num_classes or model.cfg.num_classes, logits.device)
            loss = F.cross_entropy(logits, t, reduction="none")
        elif bank is not None:
            bi, bt = bank.embeddings(model)
            loss = bank_contrastive_loss(model.encode_image(images), model.encode_text(list(targets)), bi, bt,
                                         model.scale)
        else:
            loss = model.score_batch(images, list(targets))["loss"]
    finally:
        model.train(was)
    return loss.detach().double().cpu()


def train_loss(model: nn.Module, images: torch.Tensor, targets) -> torch.Tensor:
    """The training loss of a batch (what the learnsieve loops minimise)."""
    if is_classifier(model):
        from learnsieve.models.classifier import as_targets
        return F.cross_entropy(model(images), as_targets(targets, model.cfg.num_classes, model.device))
    return clip_loss(model.encode_image(images), model.encode_text(list(targets)), model.scale)


class LearnerProxy:
    """The learner is its own proxy: its current per-example loss (no extra training)."""

    kind = "learner"

    def __init__(self, learner: nn.Module, bank: Optional[PairBank] = None):
        self.model, self.bank = learner, bank
        self.train_examples = 0

    def losses(self, images: torch.Tensor, targets) -> torch.Tensor:
        return per_example_loss(self.model, images, targets, self.bank)

    def update(self, images: torch.Tensor, targets) -> None:
        """Nothing: the learner trains in the caller's loop."""


class OnlineModelProxy:
    """A small model trained alongside the learner, one AdamW step on each selected batch
    (linear warm-up over ``warmup`` steps, then constant ``lr``); scores with its own loss."""

    kind = "online_model"

    def __init__(self, model: nn.Module, bank: Optional[PairBank] = None, lr: float = 2e-3,
                 weight_decay: float = 0.05, warmup: int = 20, seed: int = 0,
                 augment_fn: Optional[Callable] = None):
        self.model, self.bank, self.lr, self.warmup = model, bank, lr, warmup
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
        plain = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                      {"params": plain, "weight_decay": 0.0}], lr=lr)
        self.augment_fn = augment_fn
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.steps = 0
        self.train_examples = 0
        self.last_loss = math.nan

    def losses(self, images: torch.Tensor, targets) -> torch.Tensor:
        return per_example_loss(self.model, images, targets, self.bank)

    def update(self, images: torch.Tensor, targets) -> None:
        for g in self.opt.param_groups:
            g["lr"] = self.lr * min(1.0, (self.steps + 1) / max(1, self.warmup))
        self.model.train()
        x = self.augment_fn(images, self.gen) if self.augment_fn is not None else images
        loss = train_loss(self.model, x, targets)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if hasattr(self.model, "logit_scale"):
            with torch.no_grad():
                self.model.logit_scale.clamp_(0, math.log(100))
        self.model.eval()
        self.steps += 1
        self.train_examples += int(images.shape[0])
        self.last_loss = float(loss.detach())
