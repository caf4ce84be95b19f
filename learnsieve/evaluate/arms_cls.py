"""The classification arm of ``learnsieve eval`` (task classification, ClassAct). No Beam.

The same learner classifier (architecture, optimizer, seed, step budget) is trained on an arm's
image-label shards and evaluated every ``eval_every`` steps by top-1 accuracy on labelled,
clean held-out shards. ``learnsieve.evaluate.arms.evaluate`` dispatches here when ``task: classification``.
"""
from __future__ import annotations

import logging
import time
from typing import Tuple

import torch

from learnsieve.config import TrainConfig
from learnsieve.models.classifier import create_classifier, top1_hits
from learnsieve.models.train_cls import label_batches, train_classifier
from learnsieve.train.classifier import load_labelled

_TEST_CACHE: dict = {}


def load_test(test_pattern: str, image_size: int, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The labelled test set, decoded once per process (every arm evaluates on it)."""
    key = (test_pattern, image_size, num_classes)
    if key not in _TEST_CACHE:
        images, labels, _ = load_labelled(test_pattern, image_size, num_classes)
        _TEST_CACHE.clear()
        _TEST_CACHE[key] = (images, labels)
    return _TEST_CACHE[key]

log = logging.getLogger(__name__)


def classification_arm(pattern: str, test_pattern: str, learner: str, steps: int, eval_every: int,
                       cfg: TrainConfig, image_size: int) -> dict:
    """Train ``learner`` (a registered classifier config, ``cfg.num_classes`` classes) for
    ``steps`` on the arm ``pattern``; returns {"examples", "rejected", "curve": [{"step",
    "top1"}, ...], "train_seconds", "seconds_per_step", "_hits": {"top1": each test example's
    hit at the last evaluation}}. Training time excludes decoding and
    evaluation."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    test_images, test_labels = load_test(test_pattern, image_size, cfg.num_classes)
    images, labels, rejected = load_labelled(pattern, image_size, cfg.num_classes)
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    model = create_classifier(learner, num_classes=cfg.num_classes)
    curve = []
    eval_seconds = 0.0
    hits: list = []  # per test example, at the last evaluation: for eval's bootstrap interval

    def on_eval(step, m):
        nonlocal eval_seconds
        t = time.perf_counter()
        correct = top1_hits(m, test_images, test_labels)
        hits[:] = correct.tolist()
        curve.append({"step": step, "top1": float(correct.mean()) if len(correct) else float("nan")})
        eval_seconds += time.perf_counter() - t

    t0 = time.perf_counter()
    train_classifier(model, label_batches(images, labels, cfg.batch_size, cfg.seed), steps, lr=cfg.lr,
                     seed=cfg.seed, do_augment=cfg.augment, eval_every=eval_every, on_eval=on_eval)
    seconds = time.perf_counter() - t0 - eval_seconds
    log.info(f"[eval] {pattern}: {len(labels)} examples, final top-1 {curve[-1]['top1']:.3f} "
            f"({seconds:.0f}s training)")
    return {"examples": len(labels), "rejected": rejected, "curve": curve,
            "train_seconds": seconds, "seconds_per_step": seconds / steps, "_hits": {"top1": list(hits)}}
