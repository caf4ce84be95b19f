"""``learnsieve shards`` (issue 22.1): img2dataset-layout shards from a folder of images with
NAME.txt captions, from a captions CSV (paths relative to --images, several captions per image,
a --clean-fraction split by image), and from URLs on a loopback http server, where a failed
download is a counted, named failure."""
import contextlib
import csv
import io
import json
import os
import sys

import pytest
from PIL import Image

from learnsieve.cli import main
from learnsieve.core.records import Sample
from learnsieve.core.tar import iter_shard
from learnsieve.datasets.shards import build_shards, uid_of
from tests.e2e.helpers import free_port, loopback_server


def _jpeg(color, size=(24, 16), fmt="JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def _members(path):
    return [s for s in iter_shard(str(path), 0) if isinstance(s, Sample)]


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / "b.jpg").write_bytes(_jpeg("red"))
    (root / "b.txt").write_text("a red square\n")
    (root / "a.png").write_bytes(_jpeg("blue", fmt="PNG"))
    (root / "a.txt").write_text("a  blue\tsquare")
    (root / "sub" / "c.jpg").write_bytes(_jpeg("green"))
    (root / "sub" / "c.txt").write_text("a green square")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "broken.txt").write_text("cannot be opened")
    (root / "nocap.jpg").write_bytes(_jpeg("white"))
    return root


def test_shards_from_a_folder_with_sidecar_captions(photos, tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["shards", "--images", str(photos), "--output", str(out), "--samples-per-shard", "2"]) == 0
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes == {"00000.tar": 2, "00001.tar": 0, "00002.tar": 1}
    samples = [s for name in sorted(sizes) for s in _members(out / name)]
    # sorted relative paths: a.png, b.jpg, broken.jpg (failed), nocap.jpg (failed), sub/c.jpg
    assert [s.key for s in samples] == ["000000000", "000000001", "000020000"]
    assert [sorted(s.files) for s in samples] == [["json", "png", "txt"], ["jpg", "json", "txt"],
                                                  ["jpg", "json", "txt"]]
    meta = json.loads(samples[0].files["json"])
    assert meta == {"uid": uid_of("a.png", "a blue square"), "url": "a.png", "caption": "a blue square",
                    "key": "000000000", "status": "success", "width": 24, "height": 16}
    assert len(meta["uid"]) == 32 and samples[1].files["jpg"] == (photos / "b.jpg").read_bytes()
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["successes"] == 3 and stats["failed_by_reason"] == {"empty_caption": 1, "undecodable_image": 1}
    assert {f["image"]: f["reason"] for f in stats["parts"][""]["failures"]} == {
        "broken.jpg": "undecodable_image", "nocap.jpg": "empty_caption"}
    assert json.loads((out / "00001_stats.json").read_text())["status_dict"] == {
        "success": 0, "undecodable_image": 1, "empty_caption": 1}
    assert "2 of 5 rows failed" in capsys.readouterr().out
    again = tmp_path / "again"
    assert main(["shards", "--images", str(photos), "--output", str(again), "--samples-per-shard", "2",
                 "--quiet"]) == 0
    assert all((out / n).read_bytes() == (again / n).read_bytes() for n in sizes)  # deterministic


def test_shards_from_a_captions_csv_with_a_clean_split(photos, tmp_path, capsys):
    table = tmp_path / "captions.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for name in ("b.jpg", "a.png", "sub/c.jpg"):
            for k in range(3):
                w.writerow([name, f"caption {k} of {name}"])
        w.writerow(["missing.jpg", "no such file"])
    out = tmp_path / "shards"
    assert main(["shards", "--images", str(photos), "--table", str(table), "--output", str(out),
                 "--clean-fraction", "0.34", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"learnsieve train-reference --data '{out}/clean/00000.tar'" in printed
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["rows"] == 10 and stats["successes"] == 9 and stats["failed_by_reason"] == {"missing_file": 1}
    clean, pool = _members(out / "clean" / "00000.tar"), _members(out / "pool" / "00000.tar")
    urls = lambda samples: {json.loads(s.files["json"])["url"] for s in samples}  # noqa: E731
    assert urls(clean) | urls(pool) == {"b.jpg", "a.png", "sub/c.jpg"} and not urls(clean) & urls(pool)
    assert len(clean) == 3 * len(urls(clean)) and len(clean) + len(pool) == 9  # all captions on one side
    parts = stats["parts"]
    assert parts["clean"]["distinct_images"] == 1 and parts["pool"]["distinct_images"] == 3  # 1 of 4 images
    assert json.loads((out / "clean" / "sizes.json").read_text()) == {"00000.tar": len(clean)}
    assert main(["shards", "--table", str(table), "--output", str(tmp_path / "x"), "--caption-column",
                 "captoin"]) == 2
    err = capsys.readouterr().err
    assert "no such column" in err and "did you mean caption?" in err
    assert not (tmp_path / "x").exists()  # a failed start leaves no folder behind


def test_shards_refuses_a_missing_column_in_one_line(tmp_path, capsys):
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"url": "x.jpg", "text": "hi"}) + "\n")
    assert main(["shards", "--table", str(table), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--caption-column caption: no such column" in err and len(err.splitlines()) == 1


@contextlib.contextmanager
def _served(directory, log_path):
    port = free_port()
    with loopback_server([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                          str(directory), str(port)], port, str(log_path), "http.server", timeout=20):
        yield f"http://127.0.0.1:{port}"


def test_shards_from_urls_count_a_failed_download(photos, tmp_path):
    with _served(photos, tmp_path / "http.log") as base:
        table = tmp_path / "urls.parquet"
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"url": [f"{base}/b.jpg", f"{base}/gone.jpg", f"{base}/sub/c.jpg"],
                                 "text": ["red", "gone", "green"]}), table)
        stats = build_shards(str(tmp_path / "out"), table=str(table), caption_column="text",
                             progress_every=0, timeout=10)
    assert stats["successes"] == 2 and stats["failed_by_reason"] == {"download_failed": 1}
    failure = stats["parts"][""]["failures"][0]
    assert failure["image"].endswith("/gone.jpg") and "404" in failure["detail"]
    got = _members(tmp_path / "out" / "00000.tar")
    assert got[0].files["jpg"] == (photos / "b.jpg").read_bytes()
    assert json.loads(got[1].files["json"])["url"] == f"{base}/sub/c.jpg"
    assert os.path.exists(tmp_path / "out" / "_stats.json")
