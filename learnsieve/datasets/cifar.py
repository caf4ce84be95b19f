"""CIFAR-10 with known noise, as WebDataset shards: the real-data benchmark for both tasks.

The archive (``../shared/data/cifar10-jpg.tar.gz``: ``train/<class>/NNNN.jpg`` and
``test/<class>/NNNN.jpg``, 32x32 JPEGs) is streamed in place; nothing is copied into the project.
Three disjoint splits are written under ``out_dir``:

- ``clean``: the reference's clean split (a share of train), every example correct;
- ``pool``: other train images with an exact share of noise;
- ``test``: the test split (always clean), with ``KEY.cls`` for zero-shot / top-1 evaluation.

``task="retrieval"`` writes image-text pairs whose captions come from class names through varied
templates and synonyms; noise: ``mismatch`` (the caption names a wrong class), ``junk`` (alt-text
such as ``DSC4821``) and ``corrupt`` (truncated JPEG bytes). ``task="classification"`` writes
image-label pairs (``KEY.cls``, the class index) for ClassAct; noise: ``flipped`` (a uniformly
drawn wrong label) and ``corrupt``. Ground truth ``{key: kind}`` is returned and saved as
``truth.json``, as ``learnsieve.datasets.flickr.build_flickr`` does.
"""
from __future__ import annotations

import json
import os
import random
import tarfile
from collections import defaultdict
from typing import Dict, List, Sequence, Tuple

from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.flickr import corrupt_bytes
from learnsieve.datasets.synthetic import JUNK
from learnsieve.datasets.writer import write_examples

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SYNONYMS = {
    "airplane": ["airplane", "plane", "aircraft", "jet", "airliner"],
    "automobile": ["car", "automobile", "sedan", "vehicle", "hatchback"],
    "bird": ["bird", "sparrow", "songbird", "finch", "small bird"],
    "cat": ["cat", "kitten", "house cat", "tabby", "kitty"],
    "deer": ["deer", "fawn", "stag", "doe", "elk"],
    "dog": ["dog", "puppy", "hound", "pet dog", "terrier"],
    "frog": ["frog", "toad", "tree frog", "bullfrog", "amphibian"],
    "horse": ["horse", "pony", "stallion", "mare", "foal"],
    "ship": ["ship", "boat", "vessel", "cargo ship", "ferry"],
    "truck": ["truck", "lorry", "pickup truck", "dump truck", "fire truck"],
}
TEMPLATES = ["a photo of a {}", "a blurry photo of a {}", "a {} in the picture", "my {}",
             "a close-up of the {}", "a low resolution photo of a {}", "there is a {} here",
             "a picture showing a {}", "{}", "an image of a small {}", "a cropped photo of the {}",
             "a bright photo of a {}"]
ZERO_SHOT_PROMPT = "a photo of a {}"
RETRIEVAL_KINDS = ("clean", "mismatch", "junk", "corrupt")
CLASSIFICATION_KINDS = ("clean", "flipped", "corrupt")

Item = Tuple[str, int, bytes]  # (archive name, class index, JPEG bytes)


def load_cifar(path: str) -> Dict[str, List[Item]]:
    """{"train": [...], "test": [...]}: every JPEG of the archive (or extracted folder), sorted."""
    splits: Dict[str, List[Item]] = defaultdict(list)

    def add(name: str, data: bytes) -> None:
        parts = name.replace("\\", "/").split("/")
        if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-2] in CLASSES \
                and parts[-1].lower().endswith(".jpg"):
            splits[parts[-3]].append((name, CLASSES.index(parts[-2]), data))

    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for f in files:
                full = os.path.join(root, f)
                with open(full, "rb") as fh:
                    add(os.path.relpath(full, path), fh.read())
    else:
        with tarfile.open(path, mode="r|*") as tar:  # streamed: no extraction, no temp files
            for member in tar:
                if member.isfile() and member.name.lower().endswith(".jpg"):
                    f = tar.extractfile(member)
                    if f is not None:
                        add(member.name, f.read())
    if not splits.get("train") or not splits.get("test"):
        raise ValueError(f"{path} holds no CIFAR-10 train/<class>/*.jpg and test/<class>/*.jpg")
    return {k: sorted(v) for k, v in splits.items()}


def caption(cls: int, rng: random.Random) -> str:
    return rng.choice(TEMPLATES).format(rng.choice(SYNONYMS[CLASSES[cls]]))


def stratified(items: Sequence[Item], n: int, rng: random.Random) -> List[Item]:
    """``n`` items with the classes as balanced as possible, in random order."""
    by_class: Dict[int, List[Item]] = defaultdict(list)
    for it in items:
        by_class[it[1]].append(it)
    for v in by_class.values():
        rng.shuffle(v)
    out: List[Item] = []
    rounds = 0
    while len(out) < n and any(len(v) > rounds for v in by_class.values()):
        out.extend(v[rounds] for v in by_class.values() if len(v) > rounds)
        rounds += 1
    out = out[:n]
    rng.shuffle(out)
    return out


def _noise_kinds(n: int, shares: Dict[str, float], rng: random.Random) -> List[str]:
    if min(shares.values(), default=0) < 0 or sum(shares.values()) > 1:
        raise ValueError("noise shares must be >= 0 and sum to at most 1")
    kinds: List[str] = []
    for kind, share in shares.items():
        kinds += [kind] * round(share * n)
    kinds = kinds[:n] + ["clean"] * max(0, n - len(kinds))
    rng.shuffle(kinds)
    return kinds


def _wrong(cls: int, rng: random.Random) -> int:
    return (cls + rng.randint(1, len(CLASSES) - 1)) % len(CLASSES)


def write_split(out_dir: str, items: Sequence[Item], kinds: Sequence[str], task: str, shards: int,
                rng: random.Random, prefix: str) -> Dict[str, str]:
    """Write ``items`` with their noise ``kinds`` into ``shards`` tars; returns {key: kind}."""
    def render(item, key):
        (name, cls, jpg), kind = item
        files: Dict[str, bytes] = {}
        label, text = cls, caption(cls, rng)
        if kind == "mismatch":
            text = caption(_wrong(cls, rng), rng)
        elif kind == "junk":
            text = rng.choice(JUNK).format(n=rng.randint(1000, 9999))
        elif kind == "flipped":
            label = _wrong(cls, rng)
        elif kind == "corrupt":
            jpg = corrupt_bytes(jpg, rng)
        files["jpg"] = jpg
        if task == "retrieval":
            files["txt"] = text.encode()
        files["cls"] = str(label).encode()
        files["json"] = json.dumps({"key": key}).encode()  # no source path: it names the class
        return files, kind

    return write_examples(out_dir, list(zip(items, kinds)), shards, render, prefix)


def build_cifar(archive: str, out_dir: str, task: str = "retrieval", seed: int = 0,
                n_ref: int = 5000, n_pool: int = 10000, n_test: int = 2000, noise: float = 0.4,
                junk: float = 0.05, corrupt: float = 0.01, shards: int = 8, ref_shards: int = 4,
                test_shards: int = 2) -> Dict[str, object]:
    """Write ``clean``/``pool``/``test`` splits (see the module doc); returns their shard
    patterns (``clean_pattern``, ``pool_pattern``, ``test_pattern``), counts, ``truth`` (pool key ->
    kind) and ``classes``. ``noise`` is the mismatch (retrieval) or flipped-label share; ``junk``
    applies to retrieval only. The reference and pool images are disjoint parts of train."""
    if task not in ("retrieval", "classification"):
        raise ValueError(f"task must be retrieval or classification, not {task!r}")
    data = load_cifar(archive)
    rng = random.Random(seed)
    train = list(data["train"])
    if n_ref + n_pool > len(train) or n_test > len(data["test"]):
        raise ValueError(f"asked for {n_ref}+{n_pool} train and {n_test} test images; the archive "
                         f"has {len(train)} and {len(data['test'])}")
    chosen = stratified(train, n_ref + n_pool, rng)
    ref_items, pool_items = chosen[:n_ref], chosen[n_ref:]
    test_items = stratified(data["test"], n_test, rng)
    shares = {"mismatch": noise, "junk": junk} if task == "retrieval" else {"flipped": noise}
    shares["corrupt"] = corrupt
    dirs = {name: os.path.join(out_dir, name) for name in ("clean", "pool", "test")}
    clean_truth = write_split(dirs["clean"], ref_items, ["clean"] * len(ref_items), task, ref_shards,
                              rng, "c")
    truth = write_split(dirs["pool"], pool_items, _noise_kinds(len(pool_items), shares, rng), task,
                        shards, rng, "p")
    test_truth = write_split(dirs["test"], test_items, ["clean"] * len(test_items), task, test_shards,
                             rng, "t")
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(truth, f)
    with open(os.path.join(out_dir, "classes.json"), "w") as f:
        json.dump(list(CLASSES), f)
    return {
        "task": task, "classes": list(CLASSES), "truth": truth, "classes_file": os.path.join(out_dir, "classes.json"),
        "clean_pattern": shard_pattern(dirs["clean"], max(1, min(ref_shards, len(ref_items)))),
        "pool_pattern": shard_pattern(dirs["pool"], max(1, min(shards, len(pool_items)))),
        "test_pattern": shard_pattern(dirs["test"], max(1, min(test_shards, len(test_items)))),
        "clean_count": len(clean_truth), "pool_count": len(truth), "test_count": len(test_truth),
    }
