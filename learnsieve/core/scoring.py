"""Scoring a batch of decoded examples with the reference and the proxy (no Beam): both models'
per-example base quantities, every registered score, the reference image embedding; plus the
device and precision choice. What the pipeline's scoring step and the benchmarks run."""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

from learnsieve.core.records import DeadLetter, Decoded, Sample, Scored
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


def _resolved(x):
    return x.result() if isinstance(x, Future) else x


def decoded_stream(items: Iterable, decode: Callable, pool: Optional[ThreadPoolExecutor],
                   lookahead: int) -> Iterator:
    """``items`` (samples and read-stage dead letters) with every sample decoded, in order. With a
    thread pool, up to ``lookahead`` samples are decoded ahead (PIL releases the GIL), so the
    next batch decodes while the current one is scored."""
    if pool is None:
        for item in items:
            yield decode(item) if isinstance(item, Sample) else item
        return
    queue: deque = deque()
    for item in items:
        queue.append(pool.submit(decode, item) if isinstance(item, Sample) else item)
        if len(queue) > lookahead:
            yield _resolved(queue.popleft())
    while queue:
        yield _resolved(queue.popleft())


def score_batch_isolated(reference, proxy, batch: Sequence[Decoded], pad_to: int,
                         precision: str) -> List[Union[Scored, DeadLetter]]:
    """``score_decoded``, and when a batch fails, each example alone: one bad example becomes a
    ``score:score_error`` dead letter instead of failing its batch."""
    try:
        return score_decoded(reference, proxy, batch, pad_to=pad_to, precision=precision)
    except Exception:
        out: List[Union[Scored, DeadLetter]] = []
        for d in batch:
            try:
                out.extend(score_decoded(reference, proxy, [d], pad_to=pad_to, precision=precision))
            except Exception as exc:
                out.append(DeadLetter(key=d.key, source=d.source, stage="score", reason="score_error",
                                      detail=repr(exc)[:200], shard_index=d.shard_index, index=d.index))
        return out


def score_shard(reference, proxy, url: str, shard_index: int, decode: Callable, batch_size: int,
                max_member_bytes: int = 64 << 20, precision: str = "fp32",
                pool: Optional[ThreadPoolExecutor] = None) -> List[Union[Scored, DeadLetter]]:
    """One input shard, the unit of work: read it member by member, decode, score in batches of
    ``batch_size`` (padded to that shape: bit-identical scores whatever the shard's size). Returns
    a compact record per example (scores, small embedding, byte spans; no pixels) and a dead
    letter per failure, in no particular order."""
    from learnsieve.core.tar import iter_shard
    out: List[Union[Scored, DeadLetter]] = []
    pending: List[Decoded] = []
    items = iter_shard(url, shard_index, max_member_bytes)
    for d in decoded_stream(items, decode, pool, 2 * batch_size):
        if isinstance(d, DeadLetter):
            out.append(d)
            continue
        pending.append(d)
        if len(pending) == batch_size:
            out.extend(score_batch_isolated(reference, proxy, pending, batch_size, precision))
            pending = []
    if pending:
        out.extend(score_batch_isolated(reference, proxy, pending, batch_size, precision))
    return out
