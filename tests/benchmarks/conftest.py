"""Fixtures of the benchmark smoke tests: a datasets folder as ``benchmarks/common.shared_archive``
reads it (``--data``), with tiny fake CIFAR-10 and Flickr8k in their extracted layouts, so every
script runs end to end without ../shared/data and in seconds."""
from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

from learnsieve.datasets.cifar import CLASSES


def _jpeg(size, colour, seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(img)
    for _ in range(3):  # a few shapes: images differ, as the noise builders' digests expect
        x, y = rng.randrange(size[0] // 2), rng.randrange(size[1] // 2)
        draw.rectangle([x, y, x + size[0] // 3, y + size[1] // 3], fill=tuple(rng.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="session")
def bench_data(tmp_path_factory) -> str:
    """``DIR/cifar10-jpg/{train,test}/CLASS/*.jpg`` (12 / 4 per class) and
    ``DIR/flickr8k-1k/{images/*.jpg, captions.txt}`` (30 photos x 5 captions)."""
    root = tmp_path_factory.mktemp("bench_data")
    for split, n in (("train", 12), ("test", 4)):
        for ci, name in enumerate(CLASSES):
            d = root / "cifar10-jpg" / split / name
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i:04d}.jpg").write_bytes(_jpeg((32, 32), (ci * 25, 40, 200 - ci * 15), ci * 100 + i))
    images = root / "flickr8k-1k" / "images"
    images.mkdir(parents=True)
    rows = ["image,caption"]
    for i in range(30):
        (images / f"{i:04d}.jpg").write_bytes(_jpeg((120, 90), (i * 8, 60, 250 - i * 8), 5000 + i))
        rows += [f"{i:04d}.jpg,a photo of thing {i} seen the {c} way" for c in range(5)]
    (root / "flickr8k-1k" / "captions.txt").write_text("\n".join(rows) + "\n")
    return str(root)
