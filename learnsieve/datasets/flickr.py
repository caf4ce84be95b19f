"""Real image-text data with known noise: Flickr8k photos turned into a clean reference split and a
noisy pool, written as img2dataset-style WebDataset shards (``KEY.jpg``, ``KEY.txt``, ``KEY.json``).

The archive (``../shared/data/flickr8k-1k.tar.gz``: ``flickr8k-1k/images/*.jpg`` and
``flickr8k-1k/captions.txt``, CSV ``image,caption``, 5 captions per image) is read in place,
streamed member by member; nothing is copied into the project. IMAGES are split into disjoint
parts, so no photo of the reference split is ever seen in the pool:

- reference split: every caption of each image as its own example (all clean);
- noisy pool: image-caption pairs of which an exact share is noised: ``mismatch`` (the caption
  is moved to another pool image: captions are permuted among the mismatched pairs, so the pool's
  caption distribution is unchanged and text alone cannot tell), ``junk`` (alt-text such as
  ``DSC4821``) and ``corrupt`` (truncated image bytes).

``build_flickr`` returns the shard patterns and the ground truth ``{key: kind}`` as
``learnsieve.datasets.synthetic.generate`` does, so the same quality report applies.
"""
from __future__ import annotations

import csv
import io
import json
import os
import random
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from PIL import Image

from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.synthetic import JUNK
from learnsieve.datasets.writer import write_examples

FLICKR_KINDS = ("clean", "mismatch", "junk", "corrupt")


@dataclass(frozen=True)
class Pair:
    image: str      # source file name, e.g. 1000268201_693b08cb0e.jpg
    caption: str
    kind: str = "clean"


def load_flickr(path: str) -> Tuple[Dict[str, bytes], Dict[str, List[str]]]:
    """({image name: JPEG bytes}, {image name: [captions]}) from the archive (or an extracted
    ``flickr8k-1k`` folder). Only images that have captions, and captions whose image exists."""
    images: Dict[str, bytes] = {}
    captions_csv: Optional[str] = None
    if os.path.isdir(path):
        root = os.path.join(path, "flickr8k-1k") if os.path.isdir(os.path.join(path, "flickr8k-1k")) else path
        with open(os.path.join(root, "captions.txt"), encoding="utf-8") as f:
            captions_csv = f.read()
        for name in os.listdir(os.path.join(root, "images")):
            if name.lower().endswith(".jpg"):
                with open(os.path.join(root, "images", name), "rb") as f:
                    images[name] = f.read()
    else:
        with tarfile.open(path, mode="r|*") as tar:  # streamed: no extraction, no temp files
            for member in tar:
                if not member.isfile():
                    continue
                base = os.path.basename(member.name)
                f = tar.extractfile(member)
                if f is None:
                    continue
                if base == "captions.txt":
                    captions_csv = f.read().decode("utf-8")
                elif base.lower().endswith(".jpg") and "/images/" in "/" + member.name:
                    images[base] = f.read()
    if captions_csv is None:
        raise ValueError(f"{path} holds no captions.txt")
    captions: Dict[str, List[str]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(captions_csv)):
        name, caption = (row.get("image") or "").strip(), " ".join((row.get("caption") or "").split())
        if name in images and caption:
            captions[name].append(caption)
    images = {k: v for k, v in images.items() if k in captions}
    if not images:
        raise ValueError(f"{path} holds no captioned images")
    return images, dict(captions)


def resize_jpeg(data: bytes, px: int, quality: int = 90) -> Tuple[bytes, Tuple[int, int], Tuple[int, int]]:
    """Re-encode with the short side at ``px`` (never upscaled): (bytes, new size, original size)."""
    img = Image.open(io.BytesIO(data))
    original = img.size
    img.draft("RGB", (px, px))
    img = img.convert("RGB")
    w, h = img.size
    scale = px / min(w, h)
    if scale < 1.0:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), img.size, original


def split_images(names: Sequence[str], seed: int, n_ref: int, n_pool: int) -> Tuple[List[str], List[str]]:
    """Disjoint (reference, pool) image lists, a seeded shuffle of ``names``."""
    names = sorted(names)
    if n_ref < 1 or n_pool < 1 or n_ref + n_pool > len(names):
        raise ValueError(f"need 1 <= n_ref, 1 <= n_pool and n_ref + n_pool <= {len(names)} images; "
                         f"got {n_ref} + {n_pool}")
    random.Random(seed).shuffle(names)
    return names[:n_ref], names[n_ref:n_ref + n_pool]


def noisy_pairs(images: Sequence[str], captions: Dict[str, List[str]], rng: random.Random,
                captions_per_image: int = 1, mismatch: float = 0.4, junk: float = 0.05,
                corrupt: float = 0.01) -> List[Pair]:
    """Pool pairs with exact noise shares (rounded), in random order."""
    if min(mismatch, junk, corrupt) < 0 or mismatch + junk + corrupt > 1:
        raise ValueError("noise shares must be >= 0 and sum to at most 1")
    pairs = [Pair(name, c) for name in images
             for c in rng.sample(captions[name], min(captions_per_image, len(captions[name])))]
    rng.shuffle(pairs)
    n = len(pairs)
    n_mis, n_junk, n_bad = round(mismatch * n), round(junk * n), round(corrupt * n)
    mis = pairs[:n_mis]
    if n_mis == 1 or (mis and len({p.image for p in mis}) < 2):
        raise ValueError("a mismatch needs at least two pairs from different images")
    moved = derange([p.image for p in mis], rng)
    out = [Pair(mis[moved[i]].image, mis[i].caption, "mismatch") for i in range(n_mis)]
    out += [Pair(p.image, rng.choice(JUNK).format(n=rng.randint(1000, 9999)), "junk")
            for p in pairs[n_mis:n_mis + n_junk]]
    out += [Pair(p.image, p.caption, "corrupt") for p in pairs[n_mis + n_junk:n_mis + n_junk + n_bad]]
    out += pairs[n_mis + n_junk + n_bad:]
    rng.shuffle(out)
    return out


def derange(owners: Sequence[str], rng: random.Random) -> List[int]:
    """A permutation ``perm`` with ``owners[perm[i]] != owners[i]`` for every i (the caption of
    pair i goes to the image of pair perm[i], always a different image)."""
    n = len(owners)
    perm = list(range(n))
    for _ in range(100):
        rng.shuffle(perm)
        bad = [i for i in range(n) if owners[perm[i]] == owners[i]]
        for i in bad:  # repair collisions by swapping with a pair where the swap is safe
            for j in rng.sample(range(n), n):
                if owners[perm[j]] != owners[i] and owners[perm[i]] != owners[j]:
                    perm[i], perm[j] = perm[j], perm[i]
                    break
        if all(owners[perm[i]] != owners[i] for i in range(n)):
            return perm
    raise ValueError("could not move every mismatched caption to another image")


def corrupt_bytes(data: bytes, rng: random.Random) -> bytes:
    cut = rng.randint(20, max(21, len(data) // 3))
    return data[:cut] + bytes(rng.getrandbits(8) for _ in range(64))


def write_pairs(out_dir: str, pairs: Sequence[Pair], images: Dict[str, bytes], shards: int,
                rng: random.Random, px: int, key_prefix: str = "") -> Dict[str, str]:
    """``shards`` img2dataset-style tars (+ ``_stats.json``) holding ``pairs``; {key: kind}."""
    resized: Dict[str, Tuple[bytes, Tuple[int, int], Tuple[int, int]]] = {}

    def render(pair, key):
        if pair.image not in resized:
            resized[pair.image] = resize_jpeg(images[pair.image], px)
        jpg, (w, h), (ow, oh) = resized[pair.image]
        if pair.kind == "corrupt":
            jpg = corrupt_bytes(jpg, rng)
        meta = {"url": f"flickr8k/{pair.image}", "caption": pair.caption, "key": key,
                "status": "success", "width": w, "height": h, "original_width": ow,
                "original_height": oh}
        return {"jpg": jpg, "txt": pair.caption.encode(), "json": json.dumps(meta).encode()}, pair.kind

    return write_examples(out_dir, pairs, shards, render, key_prefix)


def build_flickr(tar_path: str, out_dir: str, seed: int = 0, n_ref_images: int = 700,
                 n_pool_images: int = 300, mismatch: float = 0.4, junk: float = 0.05,
                 corrupt: float = 0.01, shards: int = 4, ref_shards: int = 2,
                 pool_captions_per_image: int = 1, px: int = 80, n_test_images: int = 0
                 ) -> Dict[str, object]:
    """``out_dir/clean`` (reference split: all captions of ``n_ref_images`` photos) and
    ``out_dir/pool`` (``pool_captions_per_image`` pairs for each of ``n_pool_images`` other photos,
    noised), images re-encoded with the short side at ``px``; ground truth in ``truth.json``.
    With ``n_test_images``, also ``out_dir/test``: one clean caption for each of that many photos
    seen in neither split (the held-out set of ``learnsieve eval``; ``test_pattern``).

    Returns ``clean``/``pool`` folders and shard patterns (``clean_pattern``, ``pool_pattern``),
    shard and example counts, and ``truth`` ({pool key: clean|mismatch|junk|corrupt})."""
    images, captions = load_flickr(tar_path)
    ref_names, rest = split_images(list(images), seed, n_ref_images, n_pool_images + n_test_images)
    pool_names, test_names = rest[:n_pool_images], rest[n_pool_images:]
    rng = random.Random(seed + 1)
    ref_pairs = [Pair(name, c) for name in ref_names for c in captions[name]]
    rng.shuffle(ref_pairs)
    pool_pairs = noisy_pairs(pool_names, captions, rng, pool_captions_per_image, mismatch, junk, corrupt)
    clean_dir, pool_dir = os.path.join(out_dir, "clean"), os.path.join(out_dir, "pool")
    ref_shards = max(1, min(ref_shards, len(ref_pairs)))
    shards = max(1, min(shards, len(pool_pairs)))
    clean_truth = write_pairs(clean_dir, ref_pairs, images, ref_shards, rng, px, key_prefix="c")
    truth = write_pairs(pool_dir, pool_pairs, images, shards, rng, px)
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(truth, f)
    extra: Dict[str, object] = {}
    if test_names:
        test_pairs = [Pair(name, rng.choice(captions[name])) for name in sorted(test_names)]
        test_dir = os.path.join(out_dir, "test")
        write_pairs(test_dir, test_pairs, images, 1, rng, px, key_prefix="t")
        extra = {"test": test_dir, "test_pattern": shard_pattern(test_dir, 1), "test_count": len(test_pairs),
                 "test_images": test_names}
    return {**extra, "clean": clean_dir, "pool": pool_dir, "clean_shards": ref_shards, "pool_shards": shards,
            "clean_pattern": shard_pattern(clean_dir, ref_shards),
            "pool_pattern": shard_pattern(pool_dir, shards),
            "clean_count": len(clean_truth), "pool_count": len(truth), "truth": truth,
            "ref_images": ref_names, "pool_images": pool_names}
