"""Scoring a batch of decoded examples with the reference and the proxy (no Beam): both models'
per-example base quantities, every registered score, the reference image embedding; plus the
device and precision choice. What the pipeline's scoring step and the benchmarks run."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch

from learnsieve.core.records import DeadLetter, Decoded, Record, Sample, from_score_rows, score_row
from learnsieve.models.frozen import shared_inputs, uncached
from learnsieve.models.judge import check_outputs
from learnsieve.models.scores import ROLE_OUTPUTS


def pick_precision(precision: str, device: str) -> str:
    if precision == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return precision


def pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


@torch.no_grad()
def model_quantities(reference, proxy, batch: Sequence[Decoded], pad_to: int = 0, precision: str = "fp32",
                     with_reference: bool = True) -> List[dict]:
    """Per example of ``batch``: the reference's quantities (``ref_loss``, ``ref_sim``, the float16
    image ``embedding``; skipped without ``with_reference``, when a score file already holds them)
    and the proxy's (``models.scores.ROLE_OUTPUTS``: ``proxy_loss``, ...), as float32 values.
    Both models are judges (``models/judge.py``).

    Per-example values are batch-invariant up to float rounding (~1e-6); ``pad_to`` runs every
    batch at one fixed shape (repeating the last example), which makes them bit-identical whatever
    the batch, so reruns and resumed runs write byte-identical shards and manifests.
    """
    padded = list(batch) + [batch[-1]] * max(0, pad_to - len(batch))
    images = torch.from_numpy(np.stack([d.image for d in padded]))
    field = getattr(proxy, "target_field", "caption")  # "label" for classifiers (ClassAct)
    captions = [getattr(d, field) for d in padded]
    device = next(proxy.parameters()).device
    if device.type == "cuda":
        images = images.pin_memory().to(device, non_blocking=True)
    # a streamed pool is seen once: frozen towers' feature caches (for training epochs) would only
    # cost hashing, device round trips and up to ~0.5 GB per worker of features never read again;
    # shared_inputs: a reference and a proxy on the same frozen towers run each tower once per batch
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"), uncached(), \
            shared_inputs():
        ref = check_outputs(reference.score_batch(images, captions), len(padded)) if with_reference else None
        prx = check_outputs(proxy.score_batch(images, captions), len(padded))
    columns = {f"proxy_{n}": prx[n] for n in ROLE_OUTPUTS["proxy"]}
    if ref is not None:
        columns.update({f"ref_{n}": ref[n] for n in ROLE_OUTPUTS["ref"]})
    table = {k: v.float().cpu().tolist() for k, v in columns.items()}
    embeddings = ref["image_embedding"].float().to(torch.float16).cpu().numpy() if ref is not None else None
    out = []
    for i in range(len(batch)):
        row = {k: vals[i] for k, vals in table.items()}
        if embeddings is not None:
            row["embedding"] = embeddings[i].tobytes()
        out.append(row)
    return out


def score_decoded(reference, proxy, batch: Sequence[Decoded], pad_to: int = 0,
                  precision: str = "fp32") -> List[Record]:
    """Both models' quantities and every registered score, for a batch (``model_quantities`` then
    ``from_score_rows``, as the pipeline computes them)."""
    rows = [{**score_row(d), **q} for d, q in zip(batch, model_quantities(reference, proxy, batch, pad_to,
                                                                            precision))]
    return from_score_rows(rows, batch[0].source if batch else "", batch[0].shard_index if batch else -1)


def batched(items: Iterator, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _decode_chunk(decode: Callable, items: list) -> list:
    return [decode(item) if isinstance(item, Sample) else item for item in items]


def decoded_stream(items: Iterable, decode: Callable, pool=None, lookahead: int = 128,
                   chunk: int = 16) -> Iterator:
    """``items`` (samples and read-stage dead letters) with every sample decoded, in order. With a
    pool (threads: PIL releases the GIL; or processes), chunks of ``chunk`` items are decoded up to
    ``lookahead`` items ahead, so the next batch decodes while the current one is scored."""
    if pool is None:
        yield from _decode_chunk(decode, items) if isinstance(items, list) else \
            (decode(item) if isinstance(item, Sample) else item for item in items)
        return
    queue: deque = deque()
    part: list = []
    for item in items:
        part.append(item)
        if len(part) == chunk:
            queue.append(pool.submit(_decode_chunk, decode, part))
            part = []
            if len(queue) * chunk > lookahead:
                yield from queue.popleft().result()
    if part:
        queue.append(pool.submit(_decode_chunk, decode, part))
    while queue:
        yield from queue.popleft().result()


def quantities_isolated(reference, proxy, batch: Sequence[Decoded], pad_to: int, precision: str,
                        with_reference: bool = True) -> List[dict]:
    """``model_quantities``, and when a batch fails, each example alone: one bad example becomes a
    ``score:score_error`` dead-letter row instead of failing its batch."""
    try:
        return model_quantities(reference, proxy, batch, pad_to, precision, with_reference)
    except Exception as exc:
        if transient(exc):  # out of device memory, a CUDA fault: fail the bundle, Beam retries it
            raise
        out: List[dict] = []
        for d in batch:
            try:
                out.extend(model_quantities(reference, proxy, [d], pad_to, precision, with_reference))
            except Exception as exc:
                if transient(exc):
                    raise
                out.append({"stage": "score", "reason": "score_error", "detail": repr(exc)[:200]})
        return out


def transient(exc: BaseException) -> bool:
    """Errors of the device, not of the example: never turned into a dead letter."""
    if isinstance(exc, (MemoryError, getattr(torch.cuda, "OutOfMemoryError", MemoryError))):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("CUDA", "out of memory", "cuDNN"))


def score_shard_rows(reference, proxy, url: str, shard_index: int, decode: Callable, batch_size: int,
                     max_member_bytes: int = 64 << 20, precision: str = "fp32",
                     pool: Optional[ThreadPoolExecutor] = None,
                     reference_rows: Optional[Sequence[dict]] = None) -> List[dict]:
    """One input shard, the unit of work: read it member by member, decode, run both models in
    batches of ``batch_size`` (padded to that shape: bit-identical whatever the shard's size).
    Returns a score-file row per example: its fields and both models' quantities (scores, a small
    embedding, byte spans; no pixels), or a dead letter, in stream order.

    With ``reference_rows`` (a score file's rows whose reference part is still valid: the same
    input bytes, reference and decode settings, but another proxy) only the proxy runs: the
    reference's quantities, embeddings and dead letters are taken from those rows."""
    from learnsieve.core.tar import iter_shard
    items = iter_shard(url, shard_index, max_member_bytes)
    if reference_rows is not None:
        try:
            return _proxy_pass(reference, proxy, url, items, decode, batch_size, precision, pool, reference_rows)
        except ShardDrift:  # decodes differently now (e.g. a new Pillow): score both models afresh
            items.close()
            items = iter_shard(url, shard_index, max_member_bytes)
    rows: List[dict] = []
    pending: List[Decoded] = []
    slots: List[int] = []  # where each pending example's row goes

    def flush():
        for slot, d, q in zip(slots, pending, quantities_isolated(reference, proxy, pending, batch_size, precision)):
            rows[slot] = {**score_row(d), **q}
        pending.clear()
        slots.clear()

    for d in decoded_stream(items, decode, pool, 2 * batch_size):
        rows.append(score_row(d))
        if isinstance(d, DeadLetter):
            continue
        pending.append(d)
        slots.append(len(rows) - 1)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return rows


class ShardDrift(RuntimeError):
    """The shard no longer decodes as when its score file's reference part was written."""


def _proxy_pass(reference, proxy, url, items, decode, batch_size, precision, pool, reference_rows):
    """The proxy alone over the examples a score file's reference part scored."""
    rows = [dict(r) for r in reference_rows]
    alive = {r["index"]: i for i, r in enumerate(rows) if r.get("stage") is None}
    wanted = (item for item in items if isinstance(item, Sample) and item.index in alive)
    pending: List[Decoded] = []
    seen = 0

    def flush():
        for d, q in zip(pending, quantities_isolated(reference, proxy, pending, batch_size, precision, False)):
            row = rows[alive[d.index]]
            if q.get("stage") is not None:  # the proxy failed on it: a dead letter
                rows[alive[d.index]] = {**score_row(d), **q}
            else:
                row.update(q)
        pending.clear()

    for d in decoded_stream(wanted, decode, pool, 2 * batch_size):
        seen += 1
        if isinstance(d, DeadLetter) or d.index not in alive or d.digest != rows[alive[d.index]].get("digest"):
            raise ShardDrift(f"input shard {url} decodes differently than when its score file was written")
        pending.append(d)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if seen != len(alive):
        raise ShardDrift(f"input shard {url} changed since its score file was written")
    return rows


def score_shard(reference, proxy, url: str, shard_index: int, decode: Callable, batch_size: int,
                max_member_bytes: int = 64 << 20, precision: str = "fp32",
                pool: Optional[ThreadPoolExecutor] = None) -> List[Record]:
    """``score_shard_rows`` as records with every registered score."""
    return from_score_rows(score_shard_rows(reference, proxy, url, shard_index, decode, batch_size,
                                              max_member_bytes, precision, pool), url, shard_index)
