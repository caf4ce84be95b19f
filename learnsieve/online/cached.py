"""Reference scores cached offline, read back for online selection (issue 23, point 1).

``learnsieve curate`` writes every kept example's scores into its ``KEY.json`` under
``learnsieve`` (``core.records.output_json``): ``{"score": NAME, "value": v, "scores": {...},
"source": SHARD}``; the reference's are ``scores.ref_loss`` and ``scores.ref_sim``. With
``--set select.mode=all`` every scored example is written (rejected records never are); with
``--set select.mode=top_fraction --set select.score=ref_sim --set select.fraction=0.8`` the
bottom 20% by CLIP score are dropped first (a noise pre-filter). The reference's loss is against
its fixed negative bank, so a cached value does not depend on how the job batched the stream
(tests/online/test_cached.py checks it against a re-scoring in another batching).

The fields read here are the whole contract with the curate side: ``KEY.json`` ->
``learnsieve`` -> ``scores`` -> ``ref_loss`` (required) and ``ref_sim`` (optional).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch

from learnsieve.core.decode import decode_labelled, decode_sample
from learnsieve.core.loaders import pattern_items
from learnsieve.core.records import DeadLetter, Sample

NAMESPACE = "learnsieve"
REF_LOSS, REF_SIM = "ref_loss", "ref_sim"


def cached_scores(files: Dict[str, bytes]) -> Optional[Dict[str, float]]:
    """The scores learnsieve wrote into a sample's ``KEY.json``, or None (no json, not ours)."""
    raw = files.get("json")
    if not raw:
        return None
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    ours = meta.get(NAMESPACE) if isinstance(meta, dict) else None
    scores = ours.get("scores") if isinstance(ours, dict) else None
    if not isinstance(scores, dict):
        return None
    return {k: float(v) for k, v in scores.items() if isinstance(v, (int, float)) and v is not None}


def read_cached_scores(pattern: str) -> Dict[str, Dict[str, float]]:
    """key -> cached scores, for every sample of ``pattern`` that carries them."""
    out = {}
    for item in pattern_items(pattern):
        if isinstance(item, Sample):
            scores = cached_scores(item.files)
            if scores is not None:
                out[item.key] = scores
    return out


@dataclass
class CachedPool:
    """Decoded examples with their cached reference scores, for ``batches.OnlineBatches``."""

    images: torch.Tensor                  # uint8 [N,3,H,W]
    targets: object                       # captions (list of str) or labels (int64 [N])
    keys: List[str]
    ref_loss: torch.Tensor                # float64 [N]; NaN where a sample carried none
    ref_sim: torch.Tensor                 # float64 [N]; NaN where absent
    rejected: int = 0                     # samples that did not decode
    missing: int = 0                      # decoded samples without a cached reference loss
    extra: Dict[str, torch.Tensor] = field(default_factory=dict)  # other cached scores, by name

    def __len__(self) -> int:
        return len(self.keys)

    def subset(self, idx) -> "CachedPool":
        idx = torch.as_tensor(idx, dtype=torch.long)
        targets = (self.targets[idx] if isinstance(self.targets, torch.Tensor)
                   else [self.targets[int(i)] for i in idx])
        return CachedPool(self.images[idx], targets, [self.keys[int(i)] for i in idx], self.ref_loss[idx],
                          self.ref_sim[idx], 0, int(torch.isnan(self.ref_loss[idx]).sum()),
                          {k: v[idx] for k, v in self.extra.items()})


def load_cached_pool(pattern: str, image_size: int, task: str = "retrieval", num_classes: int = 10,
                     max_pixels: int = 64_000_000, max_caption_bytes: int = 8192,
                     require_reference: bool = True) -> CachedPool:
    """Every decodable example of ``pattern`` with the scores in its ``KEY.json``.
    ``require_reference``: refuse shards where no example has a cached ``ref_loss`` (not
    written by ``learnsieve curate``)."""
    images, targets, keys, scores = [], [], [], []
    rejected = 0
    for item in pattern_items(pattern):
        if isinstance(item, DeadLetter):
            rejected += 1
            continue
        d = (decode_labelled(item, image_size, max_pixels, num_classes) if task == "classification"
             else decode_sample(item, image_size, max_pixels, max_caption_bytes))
        if isinstance(d, DeadLetter):
            rejected += 1
            continue
        images.append(torch.from_numpy(d.image))
        targets.append(int(d.label) if task == "classification" else d.caption)
        keys.append(d.key)
        scores.append(cached_scores(item.files) or {})
    if not keys:
        raise ValueError(f"no usable examples in {pattern} ({rejected} rejected)")
    names = sorted({k for s in scores for k in s})

    def column(name):
        return torch.tensor([s.get(name, math.nan) for s in scores], dtype=torch.float64)

    ref_loss = column(REF_LOSS)
    missing = int(torch.isnan(ref_loss).sum())
    if require_reference and missing == len(keys):
        raise ValueError(f"{pattern}: no example carries a cached {NAMESPACE}.scores.{REF_LOSS} in its "
                         f"KEY.json; curate the pool first (learnsieve curate --set select.mode=all)")
    tgt = torch.tensor(targets, dtype=torch.long) if task == "classification" else targets
    return CachedPool(torch.stack(images), tgt, keys, ref_loss, column(REF_SIM), rejected, missing,
                      {n: column(n) for n in names if n not in (REF_LOSS, REF_SIM)})
