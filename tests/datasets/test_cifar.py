"""learnsieve.datasets.cifar on a tiny fake CIFAR-10 folder (the real archive is not needed)."""
from __future__ import annotations

import collections
import io
import json
import tarfile

import pytest
from PIL import Image

from learnsieve.core.paths import expand_pattern
from learnsieve.datasets.cifar import CLASSES, SYNONYMS, build_cifar


@pytest.fixture()
def fake_cifar(tmp_path):
    root = tmp_path / "cifar"
    for split, n in (("train", 30), ("test", 6)):
        for ci, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(n):
                buf = io.BytesIO()
                Image.new("RGB", (32, 32), (ci * 25, i * 8, 100)).save(buf, format="JPEG")
                (d / f"{i:04d}.jpg").write_bytes(buf.getvalue())
    return str(root)


def _members(pattern):
    out = {}
    for url in expand_pattern(pattern):
        with tarfile.open(url) as tar:
            for m in tar.getmembers():
                out[m.name] = tar.extractfile(m).read()
    return out


def test_retrieval_splits_have_exact_noise_and_disjoint_images(fake_cifar, tmp_path):
    d = build_cifar(fake_cifar, str(tmp_path / "out"), seed=3, n_ref=50, n_pool=200, n_test=40,
                    noise=0.4, junk=0.05, corrupt=0.01, shards=3)
    kinds = collections.Counter(d["truth"].values())
    assert kinds == {"clean": 108, "mismatch": 80, "junk": 10, "corrupt": 2}
    pool = _members(d["pool_pattern"])
    for key, kind in d["truth"].items():
        text = pool[f"{key}.txt"].decode()
        label = CLASSES[int(pool[f"{key}.cls"])]
        names_true = any(s in text.split() or text.endswith(s) for s in SYNONYMS[label])
        if kind == "clean":
            assert names_true, (text, label)
        assert "class" not in json.loads(pool[f"{key}.json"])
    test = _members(d["test_pattern"])
    assert sum(n.endswith(".cls") for n in test) == 40
    assert d["clean_count"] == 50 and d["test_count"] == 40


def test_classification_flips_labels_only(fake_cifar, tmp_path):
    d = build_cifar(fake_cifar, str(tmp_path / "out"), task="classification", seed=0, n_ref=20,
                    n_pool=100, n_test=20, noise=0.4, corrupt=0.0, shards=2)
    assert collections.Counter(d["truth"].values()) == {"clean": 60, "flipped": 40}
    pool = _members(d["pool_pattern"])
    assert not [n for n in pool if n.endswith(".txt")]
    assert all(0 <= int(pool[f"{k}.cls"]) < 10 for k in d["truth"])


def test_too_many_images_is_a_clear_error(fake_cifar, tmp_path):
    with pytest.raises(ValueError, match="asked for"):
        build_cifar(fake_cifar, str(tmp_path / "out"), n_ref=200, n_pool=200, n_test=10)
