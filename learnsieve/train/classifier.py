"""train-reference / train-proxy for ``task: classification`` (ClassAct): load image-label
examples (``KEY.jpg`` + ``KEY.cls``) from shards, train a classifier with cross-entropy, save it.
Plain Python, no Beam; ``learnsieve.train.clip.train_from_shards`` dispatches here for classifiers."""
from __future__ import annotations

import logging
import time
from typing import Optional, Tuple

import torch

from learnsieve.config import TrainConfig
from learnsieve.core.decode import decode_labelled
from learnsieve.core.loaders import decoded_examples
from learnsieve.models.checkpoint import read_checkpoint_meta, save_checkpoint
from learnsieve.models.classifier import FORMAT as CLASSIFIER_FORMAT
from learnsieve.models.classifier import create_classifier, is_classifier_config
from learnsieve.models.train_cls import label_batches, train_classifier

log = logging.getLogger(__name__)


def load_labelled(pattern: str, image_size: int, num_classes: int, sample: Optional[int] = None,
                  seed: int = 0, max_pixels: int = 64_000_000,
                  with_keys: bool = False) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Decoded (images uint8 [N,3,H,W], labels int64 [N], rejected count). With ``sample``, a
    uniform reservoir sample of that many examples (the proxy's warm-up on the pool). With
    ``with_keys``, a fourth element: the examples' keys."""
    kept, rejected = decoded_examples(
        pattern, lambda s: decode_labelled(s, image_size, max_pixels, num_classes), sample, seed)
    if not kept:
        raise ValueError(f"no usable image-label examples in {pattern} ({rejected} rejected)")
    out = (torch.stack([torch.from_numpy(d.image) for d in kept]),
           torch.tensor([int(d.label) for d in kept], dtype=torch.long), rejected)
    return (*out, [d.key for d in kept]) if with_keys else out


def is_classifier_job(model_name: str, init: Optional[str]) -> bool:
    """Whether train_from_shards should train a classifier: an ``init`` checkpoint that is one,
    or (without init) a registered classifier config."""
    if init:
        return read_checkpoint_meta(init).get("format") == CLASSIFIER_FORMAT
    from learnsieve.models.registry import MODELS, list_models
    return model_name in list_models() and is_classifier_config(MODELS.get(model_name)())


def train_classifier_from_shards(pattern: str, out: str, model_name: str, steps: int, cfg: TrainConfig,
                                 image_size: int, sample: Optional[int] = None, role: str = "reference",
                                 init: Optional[str] = None) -> str:
    """Train a classifier on the image-label examples of ``pattern`` and save it; returns its
    sha256. ``init``: continue from this classifier checkpoint (an online proxy)."""
    t0 = time.perf_counter()
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    if init:
        from learnsieve.models.checkpoint import load_checkpoint
        model, _ = load_checkpoint(init)
    else:
        model = create_classifier(model_name, num_classes=cfg.num_classes)
    classes = model.cfg.num_classes
    images, labels, rejected = load_labelled(pattern, image_size, classes, sample, cfg.seed)
    log.info(f"[{role}] {len(labels)} labelled examples loaded ({rejected} rejected) "
        f"in {time.perf_counter() - t0:.1f}s")
    losses = train_classifier(model, label_batches(images, labels, cfg.batch_size, cfg.seed), steps,
                              lr=cfg.lr, seed=cfg.seed, do_augment=cfg.augment, log_seconds=cfg.log_seconds,
                              tag=f"[{role}]")
    digest = save_checkpoint(model, out, extra={
        "role": role, "task": "classification", "trained_on": pattern, "examples": len(labels),
        "steps": steps, "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "seconds": round(time.perf_counter() - t0, 1)})
    log.info(f"[{role}] saved {out} (sha256 {digest[:12]}) in {time.perf_counter() - t0:.0f}s")
    return digest
