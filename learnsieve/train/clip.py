"""train-reference / train-proxy: load pairs from shards (plain Python, no Beam) and train."""
from __future__ import annotations

import logging
import time
from collections import deque
from typing import Hashable, Iterator, List, Optional, Sequence, Tuple

import torch

from learnsieve.config import TrainConfig
from learnsieve.core.decode import decode_sample
from learnsieve.core.loaders import decoded_examples
from learnsieve.models.checkpoint import save_checkpoint
from learnsieve.models.factory import create_model
from learnsieve.models.train import clip_loss, train_clip

log = logging.getLogger(__name__)


def load_pairs(pattern: str, image_size: int, sample: Optional[int] = None, seed: int = 0,
               max_pixels: int = 64_000_000, max_caption_bytes: int = 8192
               ) -> Tuple[torch.Tensor, List[str], int]:
    """Decoded (images uint8 [N,3,H,W], captions, rejected count). With ``sample``, a uniform
    reservoir sample of that many pairs from the stream (for the proxy's warm-up on the pool)."""
    images, captions, _, rejected = load_grouped_pairs(pattern, image_size, sample, seed, max_pixels,
                                                       max_caption_bytes)
    return images, captions, rejected


def load_grouped_pairs(pattern: str, image_size: int, sample: Optional[int] = None, seed: int = 0,
                       max_pixels: int = 64_000_000, max_caption_bytes: int = 8192
                       ) -> Tuple[torch.Tensor, List[str], List[str], int]:
    """``load_pairs`` plus each pair's group: the sha1 of its image bytes (the several captions of
    one photo, e.g. Flickr/COCO's five, share a group)."""
    kept, rejected = decoded_examples(
        pattern, lambda s: decode_sample(s, image_size, max_pixels, max_caption_bytes), sample, seed)
    if not kept:
        raise ValueError(f"no usable image-text pairs in {pattern} ({rejected} rejected)")
    if sample and len(kept) < sample:
        log.warning(f"--sample {sample:,} is more than {pattern} holds: all of its {len(kept):,} usable "
                    f"pairs are used ({rejected:,} rejected)")
    return (torch.stack([torch.from_numpy(d.image) for d in kept]), [d.caption for d in kept],
            [d.digest for d in kept], rejected)


def epoch_batches(images: torch.Tensor, captions: List[str], batch_size: int, seed: int,
                  groups: Optional[Sequence[Hashable]] = None) -> Iterator:
    """Endless shuffled epochs of ``(images, captions)`` batches (an incomplete last batch is
    dropped). With ``groups``, no batch holds two pairs of one group (one caption per image:
    in-batch CLIP loss would take the photo's other captions as negatives); without duplicate
    groups the batches are exactly those without ``groups``."""
    gen = torch.Generator().manual_seed(seed)
    if groups is not None:
        if len(groups) != len(captions):
            raise ValueError(f"{len(groups)} groups for {len(captions)} pairs")
        batch_size = min(batch_size, len(set(groups)))
    while True:
        order = torch.randperm(len(captions), generator=gen).tolist()
        chunks = (distinct_group_batches(order, groups, batch_size) if groups is not None else
                  (order[s:s + batch_size] for s in range(0, len(order) - batch_size + 1, batch_size)))
        for chunk in chunks:
            idx = torch.tensor(chunk)
            yield images[idx], [captions[i] for i in chunk]


def distinct_group_batches(order: Sequence[int], groups: Sequence[Hashable], batch_size: int
                           ) -> Iterator[List[int]]:
    """Full batches of ``order`` in which no group repeats: a pair whose group is already in the
    batch waits, in order, for the next batch. Each index is used at most once."""
    pending = deque(order)
    while len(pending) >= batch_size:
        batch: List[int] = []
        seen, waiting = set(), []
        while pending and len(batch) < batch_size:
            i = pending.popleft()
            if groups[i] in seen:
                waiting.append(i)
            else:
                batch.append(i)
                seen.add(groups[i])
        pending.extendleft(reversed(waiting))
        if len(batch) < batch_size:
            return
        yield batch


def split_holdout(groups: Sequence[Hashable], fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """(train, held-out) indices: ``fraction`` of the distinct groups (at least one, at most all
    but one) with all their pairs held out, so no image is on both sides."""
    distinct = sorted(set(groups), key=str)
    if len(distinct) < 2:
        raise ValueError("a held-out split needs at least 2 distinct images")
    n_val = min(len(distinct) - 1, max(1, round(fraction * len(distinct))))
    perm = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed + 7)).tolist()
    held = {distinct[i] for i in perm[:n_val]}
    train = [i for i, g in enumerate(groups) if g not in held]
    return train, [i for i, g in enumerate(groups) if g in held]


class EarlyStopping:
    """``on_eval`` hook for ``fit``: the in-batch CLIP loss on fixed held-out batches (one caption
    per image each); keeps a copy of the weights with the lowest one for ``restore``. With
    ``patience``, ``stop`` turns true after that many evaluations without a lower loss (``fit``
    ends there: the steps after would only be thrown away)."""

    def __init__(self, val: Tuple[torch.Tensor, List[str], List[Hashable]], batch_size: int, patience: int = 0):
        self.images, self.captions, groups = val
        size = max(2, min(batch_size, len(set(groups))))
        self.batches = list(distinct_group_batches(range(len(self.captions)), groups, size)) or \
            [list(range(len(self.captions)))]
        self.curve: List[Tuple[int, float]] = []
        self.best: Optional[Tuple[float, int, dict]] = None
        self.patience = patience
        self.stop = False
        self.since_best = 0

    @property
    def best_step(self) -> int:
        return self.best[1] if self.best else 0

    @torch.no_grad()
    def loss(self, model) -> float:
        total = 0.0
        for chunk in self.batches:
            idx = torch.tensor(chunk)
            total += clip_loss(model.encode_image(self.images[idx]),
                               model.encode_text([self.captions[i] for i in chunk]), model.scale).item()
        return total / len(self.batches)

    def __call__(self, step: int, model) -> float:
        loss = self.loss(model)
        self.curve.append((step, round(loss, 4)))
        if self.best is None or loss < self.best[0]:
            self.best = (loss, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
            self.since_best = 0
        else:
            self.since_best += 1
        self.stop = bool(self.patience) and self.since_best >= self.patience
        return loss

    def restore(self, model) -> dict:
        """Load the best weights into ``model``; checkpoint metadata of the choice."""
        if self.best is None:
            raise RuntimeError("no held-out evaluation ran")
        loss, step, state = self.best
        model.load_state_dict(state)
        return {"best_step": step, "best_val_loss": round(loss, 4), "val_pairs": len(self.captions),
                "val_curve": self.curve}


def train_from_shards(pattern: str, out: str, model_name: str, steps: int, cfg: TrainConfig,
                      image_size: int, sample: Optional[int] = None, role: str = "reference",
                      init: Optional[str] = None,
                      group_by_image: bool = True, extra: Optional[dict] = None) -> str:
    """Train a dual encoder on the pairs of ``pattern``, fill its negative bank, save it.
    ``init``: continue from this checkpoint instead of a fresh ``model_name`` (an online proxy).
    ``group_by_image``: batches hold one caption per image (identical image bytes). ``extra``:
    more keys for the checkpoint's config.json (e.g. the demo's ``train_fingerprint``)."""
    from learnsieve.train.classifier import (  # ClassAct
        is_classifier_job,
        train_classifier_from_shards,
    )
    if is_classifier_job(model_name, init):
        return train_classifier_from_shards(pattern, out, model_name, steps, cfg, image_size, sample, role, init=init)
    t0 = time.perf_counter()
    if cfg.torch_threads > 0:
        torch.set_num_threads(cfg.torch_threads)
    log.info(f"[{role}] reading and decoding {pattern}" + (f" (a random sample of {sample:,})" if sample else "")
             + f" at {image_size} px ...")
    images, captions, groups, rejected = load_grouped_pairs(pattern, image_size, sample, cfg.seed)
    log.info(f"[{role}] {len(captions)} pairs of {len(set(groups))} images loaded ({rejected} rejected) "
        f"in {time.perf_counter() - t0:.1f}s")
    val_meta: dict = {}
    early = None
    # early stopping: the reference on its clean split; the proxy's warm-up on its (noisy) pool
    # sample, whose held-out loss still has its minimum where the proxy stops generalising and starts
    # memorising (frozen-tower heads memorise a few thousand pairs in a few epochs). Not for an
    # online proxy continued from a checkpoint (``init``).
    val_fraction = {"reference": cfg.reference_val_fraction,
                    "proxy": cfg.proxy_val_fraction}.get(role, 0.0)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"train.{role}_val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction > 0 and not init:
        train_idx, val_idx = split_holdout(groups, val_fraction, cfg.seed)
        val = (images[val_idx], [captions[i] for i in val_idx], [groups[i] for i in val_idx])
        images, captions = images[train_idx], [captions[i] for i in train_idx]
        groups = [groups[i] for i in train_idx]
        early = EarlyStopping(val, min(cfg.batch_size, len(captions)), patience=cfg.patience)
        log.info(f"[{role}] {len(val_idx)} pairs of {len(set(val[2]))} images held out: the step with the "
            f"lowest held-out loss is kept (checked every {cfg.val_every} steps)")
    torch.manual_seed(cfg.seed)
    if init:
        from learnsieve.models.checkpoint import load_checkpoint
        model, _ = load_checkpoint(init)
        if model.cfg.bank_size > len(captions):
            raise ValueError(f"{len(captions)} pairs in {pattern} cannot refill a bank of {model.cfg.bank_size}")
    else:
        from learnsieve.models.registry import model_config
        mcfg = model_config(model_name)
        model = create_model(model_name, bank_size=min(mcfg.bank_size, len(captions)))
    batch = min(cfg.batch_size, len(captions))
    losses = train_clip(model, epoch_batches(images, captions, batch, cfg.seed,
                                                  groups if group_by_image else None), steps, lr=cfg.lr,
                        seed=cfg.seed, do_augment=cfg.augment, augment_kind=model.cfg.augment,
                        eval_every=cfg.val_every if early else 0,
                        on_eval=early, log_seconds=cfg.log_seconds, tag=f"[{role}]")
    if early is not None:
        val_meta = early.restore(model)
        val_meta["trained_steps"] = len(losses)
        log.info(f"[{role}] kept step {val_meta['best_step']} of {steps} (held-out loss "
            f"{val_meta['best_val_loss']:.3f}; last {val_meta['val_curve'][-1][1]:.3f})")
        wasted = len(losses) - val_meta["best_step"]
        if len(losses) == steps and wasted >= max(2 * cfg.val_every, steps // 4):
            log.info(f"[{role}] notice: the {wasted} steps after step {val_meta['best_step']} found no lower "
                     f"held-out loss and were thrown away; --steps {val_meta['best_step'] + 2 * cfg.val_every} "
                     f"or --set train.patience=4 saves that time")
    bank_idx = torch.randperm(len(captions), generator=torch.Generator().manual_seed(cfg.seed + 1))
    bank_idx = bank_idx[:model.cfg.bank_size]
    model.set_bank(images[bank_idx], [captions[i] for i in bank_idx.tolist()])
    digest = save_checkpoint(model, out, extra={
        "role": role, "trained_on": pattern, "pairs": len(captions), "steps": steps, "batch_size": batch,
        "final_loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        # the training curve as fit logs it: (step, mean loss of the last 50 steps) every 50 steps
        "loss_curve": [(s, round(sum(losses[s - 50:s]) / 50, 4)) for s in range(50, len(losses) + 1, 50)],
        "seconds": round(time.perf_counter() - t0, 1), **val_meta, **(extra or {})})
    log.info(f"[{role}] saved {out} (sha256 {digest[:12]}) in {time.perf_counter() - t0:.0f}s")
    return digest
