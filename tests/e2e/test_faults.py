"""Fault-injection suite: every kind of bad input in one run, each with its named outcome, and
read = kept + filtered + rejected still holds (docs/RELIABILITY.md lists the same cases)."""
import dataclasses
import io
import json
import os
import tarfile

import pyarrow.parquet as pq
import pytest
from PIL import Image

from learnsieve.config import load_config
from learnsieve.pipeline.run import run
from tests.conftest import good_example, write_tar
from tests.models.test_checkpoint_and_image import png_header

pytestmark = pytest.mark.slow

# (member key, expected (stage, reason)) for records that must be rejected
EXPECTED_REJECTED = {
    ("a.tar", "corrupt"): ("decode", "undecodable_image"),
    ("a.tar", "trunc"): ("decode", "undecodable_image"),
    ("a.tar", "zero"): ("decode", "empty_image"),
    ("a.tar", "bomb"): ("decode", "image_too_large"),
    ("a.tar", "ppm"): ("decode", "unsupported_format"),
    ("a.tar", "nocap"): ("decode", "missing_caption"),
    ("a.tar", "emptycap"): ("decode", "empty_caption"),
    ("a.tar", "latin1"): ("decode", "caption_not_utf8"),
    ("a.tar", "megacap"): ("decode", "caption_too_long"),
    ("a.tar", "../escape"): ("read", "unsafe_key"),
    ("a.tar", "dup"): ("read", "duplicate_key"),
    ("a.tar", "adj"): ("read", "duplicate_key"),       # the same key twice in a row
    ("a.tar", "..\\w"): ("read", "unsafe_key"),         # backslash traversal
    ("a.tar", "two"): ("read", "multiple_images"),      # two images of one key
    ("a.tar", "deep"): ("decode", "bad_json"),          # KEY.json nested 5000 levels
    ("a.tar", "zw"): ("decode", "empty_caption"),       # only zero-width characters
    ("e.tar", "e1"): ("read", "bad_header"),            # bad checksum mid-shard: e2 recovered
    ("f.tar", None): ("read", "missing_end_of_archive"),  # cut at a member boundary
    ("b.tar", "shared"): ("write", "duplicate_key"),  # same key as in a.tar, same output tar
    ("c.tar", None): ("read", "truncated_tar"),
    ("notatar.tar", None): ("read", "not_a_tar"),
}
EXPECTED_SCORED = {("a.tar", "ok"), ("a.tar", "dir/sub"), ("a.tar", "dup"), ("a.tar", "shared"),
                   ("a.tar", "adj"), ("b.tar", "ok2"), ("c.tar", "c0"), ("e.tar", "e0"), ("e.tar", "e2"),
                   ("f.tar", "f0"), ("f.tar", "f1")}


@pytest.fixture(scope="module")
def fault_run(checkpoints, tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    img, cap = good_example(3)
    ppm = io.BytesIO()
    Image.new("RGB", (8, 8)).save(ppm, format="PPM")
    write_tar(str(d / "a.tar"), [
        ("ok.jpg", img), ("ok.txt", cap),
        ("corrupt.jpg", b"\xff\xd8\xff\xe0" + b"\x13" * 300), ("corrupt.txt", cap),
        ("trunc.jpg", img[:200]), ("trunc.txt", cap),
        ("zero.jpg", b""), ("zero.txt", cap),
        ("bomb.png", png_header(30000, 30000)), ("bomb.txt", cap),
        ("ppm.jpg", ppm.getvalue()), ("ppm.txt", cap),
        ("nocap.jpg", img),
        ("emptycap.jpg", img), ("emptycap.txt", b""),
        ("latin1.jpg", img), ("latin1.txt", "\xe9t\xe9".encode("latin-1")),
        ("megacap.jpg", img), ("megacap.txt", b"word " * 200_000),
        ("../escape.jpg", img), ("../escape.txt", cap),
        ("dir/sub.jpg", img), ("dir/sub.txt", cap),
        ("dup.jpg", img), ("dup.txt", cap),
        ("shared.jpg", img), ("shared.txt", cap),
        ("dup.jpg", img), ("dup.txt", cap),
        ("adj.jpg", img), ("adj.txt", cap), ("adj.jpg", img), ("adj.txt", cap),
        ("..\\w.jpg", img), ("..\\w.txt", cap),
        ("two.jpg", img), ("two.png", img), ("two.txt", cap),
        ("deep.jpg", img), ("deep.txt", cap), ("deep.json", b"[" * 5000 + b"]" * 5000),
        ("zw.jpg", img), ("zw.txt", "\u200b\u200d\ufeff".encode()),
    ])
    write_tar(str(d / "b.tar"), [("shared.jpg", img), ("shared.txt", cap), ("ok2.jpg", img), ("ok2.txt", cap)])
    write_tar(str(d / "c.tar"), [(f"c{i}.jpg", img) if i % 2 == 0 else (f"c{i // 2}.txt", cap)
                                 for i in range(8)])
    raw = (d / "c.tar").read_bytes()
    (d / "c.tar").write_bytes(raw[: 512 * 2 + len(img) + 1500])  # cut inside the second sample
    write_tar(str(d / "e.tar"), [(f"e{i}.{ext}", img if ext == "jpg" else cap)
                                 for i in range(3) for ext in ("jpg", "txt")])
    with tarfile.open(d / "e.tar") as t:
        bad = t.getmembers()[2].offset  # header of e1.jpg
    raw = bytearray((d / "e.tar").read_bytes())
    raw[bad + 148] ^= 0x01  # its checksum no longer matches
    (d / "e.tar").write_bytes(bytes(raw))
    write_tar(str(d / "f.tar"), [(f"f{i}.{ext}", img if ext == "jpg" else cap)
                                 for i in range(3) for ext in ("jpg", "txt")])
    with tarfile.open(d / "f.tar") as t:
        cut = t.getmembers()[4].offset  # end of f1's members: no end-of-archive marker follows
    (d / "f.tar").write_bytes((d / "f.tar").read_bytes()[:cut])
    write_tar(str(d / "empty.tar"), [])
    (d / "notatar.tar").write_bytes(b"<html>404 not found</html>" * 50)
    cfg = load_config(None, ["score.image_size=32", "select.mode=all", "write.samples_per_shard=100",
                             "max_bad_fraction=1.0"])
    out = d / "out"
    stats = run(dataclasses.replace(cfg, input=str(d / "*.tar"), output=str(out), **checkpoints))
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    return stats, rows, out


def _name(row):
    return (os.path.basename(row["source"]), row["key"])


def test_each_fault_has_its_named_outcome(fault_run):
    stats, rows, _ = fault_run
    rejected = {}
    for r in rows:
        if r["decision"] == "rejected":
            whole_shard = ("truncated_tar", "not_a_tar", "missing_end_of_archive")
            name = _name(r) if r["reason"] not in whole_shard else (_name(r)[0], None)
            rejected[name] = (r["stage"], r["reason"])
    assert rejected == EXPECTED_REJECTED
    scored = {_name(r) for r in rows if r["decision"] != "rejected"}
    assert scored == EXPECTED_SCORED


def test_counts_hold_with_every_fault(fault_run):
    stats, rows, out = fault_run
    assert stats["read"] == len(rows) == stats["kept"] + stats["filtered"] + stats["rejected"]
    assert stats["rejected"] == len(EXPECTED_REJECTED)
    lines = open(out / "rejected" / "rejected.jsonl").read().splitlines()
    assert len(lines) == stats["rejected"] and all(json.loads(ln)["reason"] for ln in lines)
    sizes = json.load(open(out / "sizes.json"))
    assert sum(sizes.values()) == stats["kept"] == len(EXPECTED_SCORED)
    assert not any(f.startswith("..") for f in os.listdir(out))  # nothing escaped the output folder
