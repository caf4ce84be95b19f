"""learnsieve.datasets.flickr on a tiny fake Flickr8k folder (the real archive is not needed)."""
from __future__ import annotations

import collections
import io

from PIL import Image

from learnsieve.datasets.flickr import build_flickr


def _fake_flickr(root, n=40):
    images = root / "flickr8k-1k" / "images"
    images.mkdir(parents=True)
    rows = ["image,caption"]
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (120, 90), (i * 6, 50, 200 - i * 4)).save(buf, format="JPEG")
        (images / f"{i:04d}.jpg").write_bytes(buf.getvalue())
        rows += [f"{i:04d}.jpg,photo {i} caption {c}" for c in range(5)]
    (root / "flickr8k-1k" / "captions.txt").write_text("\n".join(rows) + "\n")
    return str(root)


def test_three_disjoint_splits_with_exact_noise(tmp_path):
    d = build_flickr(_fake_flickr(tmp_path / "src"), str(tmp_path / "out"), seed=1, n_ref_images=20,
                     n_pool_images=15, n_test_images=5, pool_captions_per_image=2, px=48, shards=2)
    ref, pool, test = set(d["ref_images"]), set(d["pool_images"]), set(d["test_images"])
    assert len(ref) == 20 and len(pool) == 15 and len(test) == 5
    assert not (ref & pool) and not (ref & test) and not (pool & test)
    assert d["clean_count"] == 100 and d["pool_count"] == 30 and d["test_count"] == 5
    assert collections.Counter(d["truth"].values()) == {"clean": 16, "mismatch": 12, "junk": 2}
    assert d["test_pattern"].endswith("test/00000.tar")


def test_no_test_split_by_default(tmp_path):
    d = build_flickr(_fake_flickr(tmp_path / "src"), str(tmp_path / "out"), n_ref_images=10,
                     n_pool_images=10, px=48)
    assert "test_pattern" not in d
