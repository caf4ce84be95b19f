"""Fixtures: tiny synthetic shards (with corrupt samples) and tiny trained checkpoints."""
from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

import pytest

from learnsieve.config import TrainConfig
from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.synthetic import NoiseMix, generate, make_example

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def write_tar(path: str, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def good_example(seed: int = 0):
    image, caption, _ = make_example(random.Random(seed), "clean")
    return image, caption


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    mix = NoiseMix(mismatch=0.3, junk=0.1, empty=0.05, corrupt=0.05)
    data = generate(str(root), pool=150, clean=120, shards=3, seed=0, mix=mix)
    data["clean_pattern"] = shard_pattern(data["clean"], data["clean_shards"])
    data["pool_pattern"] = shard_pattern(data["pool"], data["pool_shards"])
    return data


@pytest.fixture(scope="session")
def checkpoints(data_root, tmp_path_factory) -> dict:
    from learnsieve.train.clip import train_from_shards
    out = tmp_path_factory.mktemp("ckpt")
    tc = TrainConfig(reference_model="ls_clip_test", proxy_model="ls_clip_test", batch_size=16,
                     augment=False, reference_val_fraction=0.0, proxy_val_fraction=0.0)
    ref, proxy = str(out / "reference"), str(out / "proxy")
    train_from_shards(data_root["clean_pattern"], ref, "ls_clip_test", 8, tc, 32)
    train_from_shards(data_root["pool_pattern"], proxy, "ls_clip_test", 4, tc, 32, sample=60,
                      role="proxy")
    return {"reference": ref, "proxy": proxy}


@pytest.fixture()
def bad_shard(tmp_path) -> str:
    """One shard with a sample of each kind of bad record between good ones."""
    img, cap = good_example(1)
    img2, cap2 = good_example(2)
    path = str(tmp_path / "bad.tar")
    write_tar(path, [
        ("ok1.jpg", img), ("ok1.txt", cap),
        ("nocap.jpg", img),
        ("noimg.txt", cap),
        ("empty.jpg", img), ("empty.txt", b"   "),
        ("latin.jpg", img), ("latin.txt", "caf\xe9".encode("latin-1")),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0not a jpeg at all"), ("corrupt.txt", cap),
        ("trunc.jpg", img[: len(img) // 2]), ("trunc.txt", cap),
        ("zero.jpg", b""), ("zero.txt", cap),
        ("long.jpg", img), ("long.txt", b"x" * 20000),
        ("jsoncap.jpg", img2), ("jsoncap.json", json.dumps({"caption": cap2.decode()}).encode()),
        ("ok1.jpg", img), ("ok1.txt", cap),  # duplicate key later in the shard
        ("ok2.jpg", img2), ("ok2.txt", cap2),
    ])
    return path
