"""Pure per-sample logic shared by the Beam stages, the training loaders and the benchmarks."""
from __future__ import annotations

import functools
import hashlib
import json
import random
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from models.frozen import uncached
from models.image import ImageError, decode_image
from models.scores import compute_scores
from pipeline.example import Decoded, DeadLetter, Sample, Scored
from pipeline.shards import expand_pattern, iter_shard

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def caption_bytes(files: Dict[str, bytes]) -> Optional[bytes]:
    if "txt" in files:
        return files["txt"]
    if "json" in files:
        try:
            meta = json.loads(files["json"])
            if isinstance(meta, dict) and isinstance(meta.get("caption"), str):
                return meta["caption"].encode()
        except (ValueError, UnicodeDecodeError):
            pass
    return None


def _label(files: Dict[str, bytes]) -> Optional[str]:
    raw = files.get("cls")
    if raw is None:
        return None
    return raw.decode("utf-8", "replace").strip() or None


def _dead(s: Sample, reason: str, detail: str = "") -> DeadLetter:
    return DeadLetter(key=s.key, source=s.source, stage="decode", reason=reason, detail=detail,
                      shard_index=s.shard_index, index=s.index)


def _decoded(s: Sample, ext: str, image_size: int, max_pixels: int, caption: str,
             label: Optional[str]) -> Union[Decoded, DeadLetter]:
    try:
        image = decode_image(s.files[ext], image_size, max_pixels)
    except ImageError as exc:
        return _dead(s, exc.reason, str(exc)[:200])
    return Decoded(key=s.key, source=s.source, shard_index=s.shard_index, index=s.index,
                   image=image.numpy(), caption=caption, digest=hashlib.sha1(s.files[ext]).hexdigest(),
                   label=label, spans=s.spans)


def decode_sample(s: Sample, image_size: int, max_pixels: int,
                  max_caption_bytes: int) -> Union[Decoded, DeadLetter]:
    dead = functools.partial(_dead, s)
    ext = next((e for e in IMAGE_EXTS if e in s.files), None)
    if ext is None:
        return dead("missing_image", f"members: {','.join(sorted(s.files))}")
    raw_caption = caption_bytes(s.files)
    if raw_caption is None:
        return dead("missing_caption")
    if len(raw_caption) > max_caption_bytes:
        return dead("caption_too_long", f"{len(raw_caption)} bytes > {max_caption_bytes}")
    try:
        caption = raw_caption.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead("caption_not_utf8", str(exc)[:120])
    caption = " ".join(caption.split())
    if not caption:
        return dead("empty_caption")
    return _decoded(s, ext, image_size, max_pixels, caption, _label(s.files))


def decode_labelled(s: Sample, image_size: int, max_pixels: int,
                    num_classes: int) -> Union[Decoded, DeadLetter]:
    """Task classification: ``KEY.jpg`` + ``KEY.cls`` (the class index as text); no caption.
    The label is normalised to its decimal form (``" 07\n"`` -> ``"7"``)."""
    dead = functools.partial(_dead, s)
    ext = next((e for e in IMAGE_EXTS if e in s.files), None)
    if ext is None:
        return dead("missing_image", f"members: {','.join(sorted(s.files))}")
    raw = s.files.get("cls")
    if raw is None:
        return dead("missing_label", f"members: {','.join(sorted(s.files))}")
    try:
        text = raw.decode("ascii").strip()
        label = int(text)
        if not text.lstrip("+-").isdigit():
            raise ValueError(text)
    except (UnicodeDecodeError, ValueError):
        return dead("invalid_label", repr(raw[:40]))
    if not 0 <= label < num_classes:
        return dead("label_out_of_range", f"{label} not in [0, {num_classes})")
    return _decoded(s, ext, image_size, max_pixels, "", str(label))


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


def decoded_examples(pattern: str, decode: Callable[[Sample], Union[Decoded, DeadLetter]],
                     sample: Optional[int] = None, seed: int = 0) -> Tuple[List[Decoded], int]:
    """(decoded examples, rejected count) of every shard of ``pattern``, for training and
    evaluation outside Beam. With ``sample``, a uniform reservoir sample of that many (seeded)."""
    rng = random.Random(seed)
    kept: List[Decoded] = []
    seen = rejected = 0
    for shard_index, url in enumerate(expand_pattern(pattern)):
        for item in iter_shard(url, shard_index):
            d = item if isinstance(item, DeadLetter) else decode(item)
            if isinstance(d, DeadLetter):
                rejected += 1
                continue
            seen += 1
            if sample is None or len(kept) < sample:
                kept.append(d)
            elif (j := rng.randrange(seen)) < sample:
                kept[j] = d
    return kept, rejected
