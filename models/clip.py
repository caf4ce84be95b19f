"""A small CLIP-style dual encoder whose per-example loss is batch-invariant.

Beam decides how examples are batched, so an example's score must not depend on its batch
mates. Each image-text pair is scored against a fixed bank of negatives (embeddings of held-back
training pairs stored in the checkpoint), never against the rest of its batch.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, Sequence

import timm
import torch
import torch.nn.functional as F
from torch import nn

from learnsieve.models.judge import Judge
from learnsieve.models.losses import (
    bank_contrastive_loss,
    bank_logits,
    entropy,
    least_confidence,
    margin,
    pair_similarity,
)
from learnsieve.models.text import HashedTextTower

TEXT_TOWERS = ("hashed-ngrams", "minilm")


@dataclass(frozen=True)
class ClipConfig:
    name: str = "ls-clip-small"
    image_tower: str = "mobilenetv3_small_100"  # any timm architecture, built with pretrained=False
    image_size: int = 64
    text_tower: str = "hashed-ngrams"   # or "minilm": frozen all-MiniLM-L6-v2 + trainable head
    text_buckets: int = 1 << 16
    text_width: int = 256
    text_max_words: int = 64
    embed_dim: int = 128
    bank_size: int = 512
    init_temperature: float = 0.07
    text_head_hidden: int = 0           # minilm: 0 = linear head, else a 2-layer MLP this wide
    text_weights_sha256: str = ""       # minilm: sha256 of the frozen weights (set when built)
    augment: str = "shift"              # training augmentation: shift (drawn shapes) | photo | none
    image_pretrained: str = ""          # frozen pretrained image tower (models/image_pretrained.py
                                        # PRETRAINED_IMAGE) + trainable linear head; overrides image_tower
    image_weights_sha256: str = ""      # image_pretrained: sha256 of the frozen weights (set when built)
    feature_dropout: float = 0.0        # image_pretrained: dropout on the frozen features in training
                                        # (linear heads on a few thousand pairs overfit fast)


def _feature_width(backbone: nn.Module, size: int) -> int:
    """Width of the pooled features (timm's ``num_features`` is pre-head for some families)."""
    width = getattr(backbone, "head_hidden_size", None)
    if width:
        return int(width)
    backbone.eval()
    with torch.no_grad():
        width = backbone(torch.zeros(1, 3, size, size)).shape[-1]
    backbone.train()
    return int(width)


class DualEncoder(nn.Module, Judge):
    def __init__(self, cfg: ClipConfig):
        super().__init__()
        if cfg.text_tower not in TEXT_TOWERS:
            raise ValueError(f"unknown text tower {cfg.text_tower!r}; known: {', '.join(TEXT_TOWERS)}")
        if cfg.image_pretrained:
            from learnsieve.models.image_pretrained import (
                PretrainedImageError,
                shared_image_tower,
            )
            self.image_frozen = shared_image_tower(cfg.image_pretrained)  # plain object: not saved
            if cfg.image_weights_sha256 and cfg.image_weights_sha256 != self.image_frozen.sha256:
                raise PretrainedImageError(
                    f"{cfg.image_pretrained} weights {self.image_frozen.path} have sha256 "
                    f"{self.image_frozen.sha256[:12]}, the model was trained with "
                    f"{cfg.image_weights_sha256[:12]}: install the release it was trained with, or retrain")
            cfg = dataclasses.replace(cfg, image_weights_sha256=self.image_frozen.sha256)
            self.image_proj = nn.Linear(self.image_frozen.width, cfg.embed_dim)
        else:
            self.image_frozen = None
            self.image_backbone = timm.create_model(cfg.image_tower, pretrained=False, num_classes=0)
            self.image_proj = nn.Linear(_feature_width(self.image_backbone, cfg.image_size), cfg.embed_dim)
        if cfg.text_tower == "minilm":
            from learnsieve.models.text_minilm import MiniLMTextTower
            self.text = MiniLMTextTower(cfg.embed_dim, cfg.text_head_hidden, cfg.text_weights_sha256)
            cfg = dataclasses.replace(cfg, text_weights_sha256=self.text.sha256)
        else:
            self.text = HashedTextTower(cfg.text_buckets, cfg.text_width, cfg.embed_dim, cfg.text_max_words)
        self.cfg = cfg
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.register_buffer("bank_image", torch.zeros(cfg.bank_size, cfg.embed_dim))
        self.register_buffer("bank_text", torch.zeros(cfg.bank_size, cfg.embed_dim))
        self.register_buffer("bank_filled", torch.zeros((), dtype=torch.bool))

    @property
    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=100.0)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,3,H,W] -> normalised float at the tower's resolution."""
        x = images.to(self.image_proj.weight.device, non_blocking=True).float().div_(255.0)
        if x.shape[-1] != self.cfg.image_size or x.shape[-2] != self.cfg.image_size:
            x = F.interpolate(x, size=(self.cfg.image_size, self.cfg.image_size), mode="bilinear",
                              antialias=True, align_corners=False)
        return (x - 0.5) / 0.5

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        if self.image_frozen is not None:
            feats = self.image_frozen.features(images, self.cfg.image_size, self.image_proj.weight.device)
            feats = F.dropout(feats, self.cfg.feature_dropout, self.training)
            return F.normalize(self.image_proj(feats), dim=-1)
        return F.normalize(self.image_proj(self.image_backbone(self.preprocess(images))), dim=-1)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        return F.normalize(self.text(captions), dim=-1)

    @torch.no_grad()
    def score_batch(self, images: torch.Tensor, captions: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Per example: loss against the negative bank, image-text cosine similarity, uncertainty
        of the image-to-caption distribution, and the image embedding."""
        if not bool(self.bank_filled):
            raise RuntimeError("model has no negative bank; train it (or call set_bank) first")
        img = self.encode_image(images)
        txt = self.encode_text(captions)
        logits = bank_logits(img, txt, self.bank_text, self.scale)
        return {
            "loss": bank_contrastive_loss(img, txt, self.bank_image, self.bank_text, self.scale),
            "sim": pair_similarity(img, txt),
            "entropy": entropy(logits),
            "margin": margin(logits),
            "least_confidence": least_confidence(logits),
            "image_embedding": img,
        }

    @torch.no_grad()
    def set_bank(self, images: torch.Tensor, captions: Sequence[str], batch_size: int = 256) -> None:
        """Encode held-back pairs into the fixed negative bank (eval mode, stored with the model)."""
        n = self.cfg.bank_size
        if images.shape[0] < n or len(captions) < n:
            raise ValueError(f"bank needs {n} pairs, got {images.shape[0]}")
        was_training = self.training
        self.eval()
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            self.bank_image[start:stop] = self.encode_image(images[start:stop])
            self.bank_text[start:stop] = self.encode_text(list(captions[start:stop]))
        self.bank_filled.fill_(True)
        self.train(was_training)
