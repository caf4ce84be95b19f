"""The embedded default: a procedurally drawn noisy image-text dataset with known ground truth.

Images are coloured shapes of a size at a position on a textured background; clean captions
describe them with varied templates and synonyms. The noisy pool mixes in a known share of
mismatched captions (another example's description), junk alt-text, empty captions and corrupt
images, so curation quality can be read off the ground truth without any download.
"""
from __future__ import annotations

import io
import json
import os
import random
from dataclasses import dataclass
from typing import Dict, Tuple

from PIL import Image, ImageDraw

from learnsieve.datasets.writer import write_examples

COLORS = {
    "red": (220, 30, 30), "green": (30, 180, 40), "blue": (30, 60, 220), "yellow": (235, 220, 30),
    "purple": (140, 40, 190), "orange": (245, 140, 20), "white": (245, 245, 245), "black": (15, 15, 15),
}
SHAPES = ["circle", "square", "triangle", "star", "cross", "ring"]
SYNONYMS = {"circle": ["circle", "disc", "round dot"], "square": ["square", "box", "block"],
            "triangle": ["triangle", "wedge"], "star": ["star", "star shape"],
            "cross": ["cross", "plus sign"], "ring": ["ring", "hoop", "donut"]}
SIZES = {"small": 0.22, "large": 0.42}
TEMPLATES = ["a {size} {color} {shape}", "a photo of a {size} {color} {shape}",
             "{size} {color} {shape} on a plain background", "an image showing a {color} {shape}, {size}",
             "there is a {size} {shape} in {color}", "a {color} {shape}"]
JUNK = ["IMG_{n}.jpg", "click here for more", "stock photo {n}", "DSC{n}", "free shipping on orders",
        "untitled", "image", "best price guaranteed {n}", "thumbnail {n}", "logo"]
NOISE_KINDS = ("clean", "mismatch", "junk", "empty", "corrupt")


@dataclass(frozen=True)
class NoiseMix:
    mismatch: float = 0.30
    junk: float = 0.08
    empty: float = 0.02
    corrupt: float = 0.02


def concept(rng: random.Random) -> Dict[str, str]:
    return {"color": rng.choice(list(COLORS)), "shape": rng.choice(SHAPES), "size": rng.choice(list(SIZES))}


def caption_for(c: Dict[str, str], rng: random.Random) -> str:
    return rng.choice(TEMPLATES).format(color=c["color"], size=c["size"],
                                        shape=rng.choice(SYNONYMS[c["shape"]]))


def draw(c: Dict[str, str], rng: random.Random, px: int = 64) -> bytes:
    bg = tuple(rng.randint(90, 170) for _ in range(3))
    img = Image.new("RGB", (px, px), bg)
    d = ImageDraw.Draw(img)
    for _ in range(6):  # background clutter so colour alone is not the whole story
        x, y = rng.randint(0, px), rng.randint(0, px)
        d.line([(x, y), (x + rng.randint(-20, 20), y + rng.randint(-20, 20))],
               fill=tuple(min(255, v + rng.randint(-40, 40)) for v in bg), width=2)
    r = SIZES[c["size"]] * px * rng.uniform(0.85, 1.15)
    cx, cy = rng.uniform(r, px - r), rng.uniform(r, px - r)
    col = COLORS[c["color"]]
    shape = c["shape"]
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=col, width=max(2, int(r / 3)))
    elif shape == "square":
        d.rectangle([cx - r, cy - r, cx + r, cy + r], fill=col)
    elif shape == "triangle":
        d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=col)
    elif shape == "cross":
        w = r / 3
        d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=col)
        d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=col)
    else:  # star
        import math
        pts = [(cx + (r if i % 2 == 0 else r / 2.5) * math.sin(i * math.pi / 5),
                cy - (r if i % 2 == 0 else r / 2.5) * math.cos(i * math.pi / 5)) for i in range(10)]
        d.polygon(pts, fill=col)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=rng.randint(70, 92))
    return buf.getvalue()


def make_example(rng: random.Random, kind: str, px: int = 64) -> Tuple[bytes, bytes, Dict]:
    """(image bytes, caption bytes, meta) for one example of the given noise kind."""
    c = concept(rng)
    image = draw(c, rng, px)
    caption = caption_for(c, rng)
    if kind == "mismatch":
        other = c
        while other["color"] == c["color"] and other["shape"] == c["shape"]:
            other = concept(rng)
        caption = caption_for(other, rng)
    elif kind == "junk":
        caption = rng.choice(JUNK).format(n=rng.randint(1000, 9999))
    elif kind == "empty":
        caption = ""
    elif kind == "corrupt":
        cut = rng.randint(20, max(21, len(image) // 3))
        image = image[:cut] + bytes(rng.getrandbits(8) for _ in range(64))
    return image, caption.encode(), {"concept": c, "noise": kind}


def draw_kind(rng: random.Random, mix: NoiseMix) -> str:
    u = rng.random()
    for kind, share in (("mismatch", mix.mismatch), ("junk", mix.junk), ("empty", mix.empty),
                        ("corrupt", mix.corrupt)):
        if u < share:
            return kind
        u -= share
    return "clean"


def write_split(out_dir: str, n: int, shards: int, seed: int, mix: NoiseMix | None, px: int = 64,
                key_prefix: str = "") -> Dict[str, str]:
    """Write ``shards`` img2dataset-style tars holding ``n`` examples; returns {key: noise kind}.
    ``mix=None`` writes a clean split."""
    rng = random.Random(seed)

    def render(_, key):
        kind = "clean" if mix is None else draw_kind(rng, mix)
        image, caption, meta = make_example(rng, kind, px)
        meta.update(key=key, caption=caption.decode(), status="success", width=px, height=px)
        return {"jpg": image, "txt": caption, "json": json.dumps(meta).encode()}, kind

    return write_examples(out_dir, range(n), shards, render, key_prefix)


def generate(root: str, pool: int = 3000, clean: int = 1500, shards: int = 6, seed: int = 0,
             mix: NoiseMix = NoiseMix()) -> Dict[str, object]:
    """``root/clean`` (reference split) and ``root/pool`` (noisy pool); truth as JSON beside them."""
    clean_truth = write_split(os.path.join(root, "clean"), clean, max(1, shards // 2), seed + 1, None,
                              key_prefix="c")
    pool_truth = write_split(os.path.join(root, "pool"), pool, shards, seed, mix)
    with open(os.path.join(root, "truth.json"), "w") as f:
        json.dump(pool_truth, f)
    return {"clean": os.path.join(root, "clean"), "pool": os.path.join(root, "pool"),
            "clean_shards": max(1, shards // 2), "pool_shards": shards, "truth": pool_truth,
            "clean_count": len(clean_truth)}
