"""Scoring a batch of decoded examples with the reference and the proxy (no Beam): both models'
per-example base quantities, every registered score, the reference image embedding; plus the
device and precision choice. What the pipeline's scoring step and the benchmarks run."""
from __future__ import annotations

from typing import Iterator, List, Sequence, Union

import numpy as np
import torch

from learnsieve.core.records import DeadLetter, Decoded, Scored
from learnsieve.models.frozen import uncached
from learnsieve.models.scores import compute_scores


def pick_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return precision


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@torch.no_grad()
def score_decoded(reference, proxy, batch: Sequence[Decoded], pad_to: int = 0,
                  precision: str = "fp32") -> List[Union[Scored, DeadLetter]]:
    """Both models' per-example quantities and every registered score, for a batch.

    Scores are batch-invariant up to float rounding (~1e-6); ``pad_to`` runs every batch at one
    fixed shape (repeating the last example), which makes them bit-identical however Beam
    batched the stream, so reruns write byte-identical shards and manifests.
    """
    padded = list(batch) + [batch[-1]] * max(0, pad_to - len(batch))
    images = torch.from_numpy(np.stack([d.image for d in padded]))
    field = getattr(reference, "target_field", "caption")  # "label" for classifiers (ClassAct)
    captions = [getattr(d, field) for d in padded]
    device = next(reference.parameters()).device
    if device.type == "cuda":
        images = images.pin_memory().to(device, non_blocking=True)
    # a streamed pool is seen once: frozen towers' feature caches (for training epochs) would only
    # cost hashing, device round trips and up to ~0.5 GB per worker of features never read again
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"), uncached():
        ref = reference.pair_scores(images, captions)
        prx = proxy.pair_scores(images, captions)
    q = {"ref_loss": ref["loss"], "proxy_loss": prx["loss"], "ref_sim": ref["sim"],
         "proxy_sim": prx["sim"], "proxy_entropy": prx["entropy"], "proxy_margin": prx["margin"],
         "proxy_least_confidence": prx["least_confidence"]}
    table = {k: v.float().cpu().tolist() for k, v in compute_scores(q).items()}
    embeddings = ref["image_embedding"].float().to(torch.float16).cpu().numpy()
    out: List[Union[Scored, DeadLetter]] = []
    for i, d in enumerate(batch):
        scores = {k: vals[i] for k, vals in table.items()}
        if any(v != v or v in (float("inf"), float("-inf")) for v in scores.values()):
            out.append(DeadLetter(key=d.key, source=d.source, stage="score", reason="non_finite_score",
                                  shard_index=d.shard_index, index=d.index))
        else:
            out.append(Scored(key=d.key, source=d.source, shard_index=d.shard_index, index=d.index,
                              scores=scores, embedding=embeddings[i].tobytes(), digest=d.digest,
                              label=d.label, spans=d.spans))
    return out


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
