"""An image classifier for ClassAct (the classification variant of learnability, Evans et al.).

The reference and proxy are timm backbones (``pretrained=False``) with a linear head over
``num_classes``. Per-example losses are plain cross-entropy for the example's own label, which
depends only on that example (eval mode), so scores never depend on how Beam batched the stream.

A judge (``models/judge.py``) like ``DualEncoder``, so the pipeline's scoring
(``learnsieve.core.scoring.score_decoded``) runs unchanged; ``score_batch(images, targets)``
gives ``loss`` (cross-entropy of the given label), ``sim`` (probability of the given label), ``entropy`` / ``margin`` /
``least_confidence`` of the softmax over classes, and ``image_embedding`` (pooled, L2-normalised
backbone features, for clustering, dedup and coreset selection).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Union

import timm
import torch
import torch.nn.functional as F
from torch import nn

from learnsieve.models.judge import Judge
from learnsieve.models.losses import entropy, least_confidence, margin

FORMAT = "learnsieve-classifier-v1"  # checkpoint format (models/checkpoint.py)

Targets = Union[torch.Tensor, Sequence[Union[int, str]]]


@dataclass(frozen=True)
class ClassifierConfig:
    name: str = "ls-cls-small"
    backbone: str = "mobilenetv3_small_100"  # any timm architecture, built with pretrained=False
    image_size: int = 64
    num_classes: int = 10
    drop_rate: float = 0.0


def _feature_width(backbone: nn.Module, size: int) -> int:
    """Width of the pooled features (timm's ``num_features`` is pre-head for some families)."""
    width = getattr(backbone, "head_hidden_size", None)
    if width:
        return int(width)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        width = backbone(torch.zeros(1, 3, size, size)).shape[-1]
    backbone.train(was_training)
    return int(width)


def as_targets(targets: Targets, num_classes: int, device: torch.device) -> torch.Tensor:
    """Class indexes (ints, or their text as in ``KEY.cls``) -> int64 tensor; refuses labels
    outside ``[0, num_classes)``."""
    if isinstance(targets, torch.Tensor):
        t = targets.to(device=device, dtype=torch.long)
    else:
        t = torch.tensor([int(v) for v in targets], dtype=torch.long, device=device)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"label outside [0, {num_classes}): {t.min().item()}..{t.max().item()}")
    return t


class Classifier(nn.Module, Judge):
    """timm backbone -> pooled features -> linear head over ``num_classes``."""

    checkpoint_format = FORMAT
    target_field = "label"  # which field of a decoded example its scoring targets are

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        if cfg.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {cfg.num_classes}")
        self.cfg = cfg
        self.backbone = timm.create_model(cfg.backbone, pretrained=False, num_classes=0,
                                          drop_rate=cfg.drop_rate)
        self.head = nn.Linear(_feature_width(self.backbone, cfg.image_size), cfg.num_classes)

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,3,H,W] -> normalised float at the backbone's resolution."""
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        if x.shape[-1] != self.cfg.image_size or x.shape[-2] != self.cfg.image_size:
            x = F.interpolate(x, size=(self.cfg.image_size, self.cfg.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return (x - 0.5) / 0.5

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (before the head), unnormalised."""
        return self.backbone(self.preprocess(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes]."""
        return self.head(self.features(images))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.features(images), dim=-1)

    @torch.no_grad()
    def score_batch(self, images: torch.Tensor, targets: Targets) -> Dict[str, torch.Tensor]:
        """Per example: cross-entropy for its label, the probability of that label, uncertainty of
        the softmax over classes, and the normalised pooled image features."""
        feats = self.features(images)
        logits = self.head(feats).float()
        t = as_targets(targets, self.cfg.num_classes, logits.device)
        logp = torch.log_softmax(logits, dim=-1)
        own = logp.gather(1, t[:, None])[:, 0]
        return {
            "loss": -own,
            "sim": own.exp(),
            "entropy": entropy(logits),
            "margin": margin(logits),
            "least_confidence": least_confidence(logits),
            "image_embedding": F.normalize(feats.float(), dim=-1),
        }

    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Predicted class per image (eval mode, in chunks)."""
        was_training = self.training
        self.eval()
        out = [self(images[i:i + batch_size]).argmax(dim=-1).cpu()
               for i in range(0, len(images), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def top1_hits(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example of a labelled set: 1.0 where ``model``'s top-1 class is its label, else 0.0."""
    return (model.predict(images) == labels.cpu()).float()


def top1(model: Classifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on a labelled set."""
    if len(labels) == 0:
        return float("nan")
    return float(top1_hits(model, images, labels).mean())


def is_classifier_config(cfg) -> bool:
    return isinstance(cfg, ClassifierConfig)


def create_classifier(name: str, **overrides) -> Classifier:
    """A freshly initialised ``Classifier`` from a registered config name."""
    from learnsieve.models.registry import model_config
    cfg = model_config(name, **overrides)  # the registry imports no model: no import circle
    if not isinstance(cfg, ClassifierConfig):
        raise ValueError(f"model {name!r} is not a classifier config (task classification needs one)")
    return Classifier(cfg)
