"""A clean but redundant CIFAR-10 image-text pool: where noise is not the main story.

Web pools are redundant as well as noisy: the same picture re-posted many times (re-encoded,
re-cropped, with the same alt-text) and a few easy concepts far over-represented. Every caption
here is correct, so a noise filter has nothing to remove; what a curator can do is spend the
budget on what the learner has not learnt yet. The pool (``n_pool`` image-caption pairs from
CIFAR-10's train split, disjoint from the reference's clean split) holds:

- ``duplicate``: ``dup_share`` of the pool, near-duplicates of ``dup_sources`` images (each copy
  randomly cropped by up to 4 px, maybe flipped, re-encoded at JPEG quality 70-95; the source's
  caption, as re-posts keep their alt-text);
- ``frequent``: ``frequent_share`` of the rest, distinct images of one class
  (``frequent_class``);
- ``unique``: distinct images of the other nine classes, as balanced as possible.

The reference's ``clean`` split and the ``test`` split are balanced and clean, as in
``datasets.cifar``. ``truth.json`` says every pool pair is clean (there is no noise);
``composition.json`` maps each pool key to its kind above, for the shares each arm keeps.
"""
from __future__ import annotations

import io
import json
import os
import random
from typing import Dict

from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.cifar import CLASSES, caption, load_cifar, stratified
from learnsieve.datasets.writer import write_examples

KINDS = ("unique", "frequent", "duplicate")


def near_duplicate(jpg: bytes, rng: random.Random) -> bytes:
    """The picture re-posted: cropped by up to 4 px a side, maybe mirrored, resized back,
    re-encoded at JPEG quality 70-95."""
    from PIL import Image
    im = Image.open(io.BytesIO(jpg)).convert("RGB")
    w, h = im.size
    box = (rng.randint(0, 4), rng.randint(0, 4), w - rng.randint(0, 4), h - rng.randint(0, 4))
    im = im.crop(box).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=rng.randint(70, 95))
    return out.getvalue()


def build_redundant(archive: str, out_dir: str, seed: int = 0, n_ref: int = 2000, n_pool: int = 6000,
                    n_test: int = 1000, dup_share: float = 0.3, dup_sources: int = 60,
                    frequent_share: float = 0.5, frequent_class: str = "automobile", shards: int = 8,
                    ref_shards: int = 4, test_shards: int = 2) -> Dict[str, object]:
    """Write ``clean``/``pool``/``test`` (see the module doc); returns the shard patterns, counts,
    ``composition`` (pool key -> kind) and ``classes``, like ``datasets.cifar.build_cifar``."""
    if frequent_class not in CLASSES:
        raise ValueError(f"frequent_class must be one of {', '.join(CLASSES)}, not {frequent_class!r}")
    if not (0 <= dup_share < 1 and 0 <= frequent_share <= 1) or dup_sources < 1:
        raise ValueError("dup_share must be in [0, 1), frequent_share in [0, 1], dup_sources >= 1")
    data = load_cifar(archive)
    rng = random.Random(seed)
    freq = CLASSES.index(frequent_class)
    n_dup = round(dup_share * n_pool)
    n_freq = round(frequent_share * (n_pool - n_dup))
    n_unique = n_pool - n_dup - n_freq
    train = list(data["train"])
    ref_items = stratified(train, n_ref, rng)
    used = {it[0] for it in ref_items}
    rest = [it for it in train if it[0] not in used]
    sources = stratified(rest, min(dup_sources, n_dup) if n_dup else 0, rng)
    used |= {it[0] for it in sources}
    freq_items = [it for it in rest if it[1] == freq and it[0] not in used]
    other = [it for it in rest if it[1] != freq and it[0] not in used]
    if n_freq > len(freq_items) or n_unique > len(other) or n_test > len(data["test"]):
        raise ValueError(f"the archive has too few images for n_pool={n_pool} with these shares")
    rng.shuffle(freq_items)
    pool = ([(it, "frequent") for it in freq_items[:n_freq]]
            + [(it, "unique") for it in stratified(other, n_unique, rng)]
            + [(sources[i % len(sources)], "duplicate") for i in range(n_dup)])
    rng.shuffle(pool)
    source_caption = {it[0]: caption(it[1], rng) for it in sources}

    def render_pool(entry, key):
        (name, cls, jpg), kind = entry
        if kind == "duplicate":
            jpg, text = near_duplicate(jpg, rng), source_caption[name]
        else:
            text = caption(cls, rng)
        return {"jpg": jpg, "txt": text.encode(), "cls": str(cls).encode(),
                "json": json.dumps({"key": key}).encode()}, kind

    def render_clean(item, key):
        name, cls, jpg = item
        return {"jpg": jpg, "txt": caption(cls, rng).encode(), "cls": str(cls).encode(),
                "json": json.dumps({"key": key}).encode()}, "clean"

    dirs = {name: os.path.join(out_dir, name) for name in ("clean", "pool", "test")}
    write_examples(dirs["clean"], ref_items, ref_shards, render_clean, "c")
    composition = write_examples(dirs["pool"], pool, shards, render_pool, "p")
    test_items = stratified(data["test"], n_test, rng)
    write_examples(dirs["test"], test_items, test_shards, render_clean, "t")
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump({k: "clean" for k in composition}, f)
    with open(os.path.join(out_dir, "composition.json"), "w") as f:
        json.dump(composition, f)
    with open(os.path.join(out_dir, "classes.json"), "w") as f:
        json.dump(list(CLASSES), f)
    return {
        "task": "retrieval", "classes": list(CLASSES), "composition": composition,
        "truth": {k: "clean" for k in composition}, "classes_file": os.path.join(out_dir, "classes.json"),
        "clean_pattern": shard_pattern(dirs["clean"], max(1, min(ref_shards, n_ref))),
        "pool_pattern": shard_pattern(dirs["pool"], max(1, min(shards, n_pool))),
        "test_pattern": shard_pattern(dirs["test"], max(1, min(test_shards, n_test))),
        "clean_count": n_ref, "pool_count": len(composition), "test_count": n_test,
    }
