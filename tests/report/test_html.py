"""report.html and eval.html (learnsieve/report/html.py); the pieces that let other tools read
a curated output: uid/url in the manifest, `learnsieve export --uids` (DataComp's subset
format), the wids shard index and the HF dataset card."""
import dataclasses
import gzip
import hashlib
import html.parser
import io
import json
import os
import shutil
import subprocess
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learnsieve.cli import main
from learnsieve.config import ConfigError, load_config
from learnsieve.export import UID_DTYPE, array_to_uids, uids_to_array
from learnsieve.report.examples import _Extremes
from learnsieve.report.html import write_eval_page, write_report

CHROMIUM = "/usr/bin/chromium"
SCORES = ["learnability", "ref_sim"]
PER_GRID = 6


def uid_of(key: str) -> str:
    return hashlib.md5(key.encode()).hexdigest()


class _Imgs(html.parser.HTMLParser):
    """<img> tags by class, and every external reference a page could fetch."""

    def __init__(self):
        super().__init__()
        self.imgs, self.external = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a)
        for name in ("src", "href"):
            if a.get(name) and not a[name].startswith(("data:", "#")):
                self.external.append((tag, a[name]))
        if tag == "link":
            self.external.append((tag, a.get("href")))


def parse(path):
    p = _Imgs()
    p.feed(open(path, encoding="utf-8").read())
    return p


# --- unit tests ----------------------------------------------------------------------------

def test_extremes_do_not_depend_on_batching():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=500), 1)  # many ties
    sidx, idx = np.repeat(np.arange(5), 100), np.tile(np.arange(100), 5)
    want = None
    for batch in (500, 64, 7):
        e = _Extremes(10, largest=True)
        for lo in range(0, 500, batch):
            sl = slice(lo, lo + batch)
            pos = np.arange(len(values[sl]))
            e.offer(values[sl], sidx[sl], idx[sl], pos,
                    lambda p, lo=lo: [{"i": lo + int(x)} for x in p])
        got = [r["i"] for r in e.rows()]
        want = want or got
        assert got == want
    order = sorted(range(500), key=lambda i: (-values[i], sidx[i], idx[i]))[:10]
    assert want == order


def test_uids_round_trip_datacomp_representation():
    uids = ["139e4a9b22a614771f06c700a8ebe150", "6e356964a967af455c8016b75d691203"]
    arr = uids_to_array(uids)
    assert arr.dtype == np.dtype("u8,u8") == UID_DTYPE
    # DataComp's own recipe: (int(uid[:16], 16), int(uid[16:32], 16))
    assert [tuple(map(int, x)) for x in arr] == [(int(u[:16], 16), int(u[16:32], 16)) for u in uids]
    assert array_to_uids(arr) == uids


def test_report_scores_config_is_validated():
    cfg = load_config(None, ["write.report_scores=[learnability, ref_sim]"])
    assert cfg.write.report_scores == ("learnability", "ref_sim")
    with pytest.raises(ConfigError, match="write.report_scores: unknown score 'nope'"):
        load_config(None, ["write.report_scores=[nope]"])


def test_eval_page_is_self_contained(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.1, 0.4])
    png = str(tmp_path / "eval_curves.png")
    fig.savefig(png)
    plt.close(fig)
    curve = [{"step": 10, "mean_r@1": 0.1}, {"step": 20, "mean_r@1": 0.4}]
    results = {"task": "retrieval", "metric": "mean_r@1", "learner": "ls_clip_test", "steps": 20,
               "eval_every": 10, "seed": 0, "test": "t/*.tar", "curves_png": png,
               "arms": {"curated": {"examples": 50, "curve": curve, "final": curve[-1]},
                        "random": {"examples": 50, "curve": curve, "final": curve[-1]}},
               "speedup": {"reference_arm": "random", "target": 0.4,
                           "arms": {"curated": {"steps_to_target": 20, "speedup_vs_reference": 1.0},
                                    "random": {"steps_to_target": 20, "speedup_vs_reference": 1.0}}},
               "judges": {"pool_noise": 0.4, "kept_noise": 0.1, "auroc": {"learnability": 0.9}}}
    page = write_eval_page(results, str(tmp_path / "eval.html"))
    p = parse(page)
    assert len(p.imgs) == 1 and p.imgs[0]["src"].startswith("data:image/png;base64,")
    assert not p.external
    text = open(page).read()
    assert "curated" in text and "0.9" in text


# --- a curated output whose inputs carry DataComp-style uid/url -----------------------------

def _with_ids(src: str, dst: str, compress: bool) -> None:
    """Copy a tar shard, adding uid/url to each KEY.json (one shard gzip-compressed)."""
    buf = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=buf, mode="w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()
            key, ext = m.name.rsplit(".", 1)
            if ext == "json":
                meta = json.loads(data)
                meta.update(uid=uid_of(key), url=f"https://example.com/img/{key}.jpg")
                data = json.dumps(meta).encode()
            info = tarfile.TarInfo(m.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))
    with open(dst, "wb") as f:
        f.write(gzip.compress(buf.getvalue(), mtime=0) if compress else buf.getvalue())


@pytest.fixture(scope="module")
def curated_ids(data_root, checkpoints, tmp_path_factory):
    from learnsieve.pipeline.run import run
    root = tmp_path_factory.mktemp("ids")
    pool = root / "pool"
    pool.mkdir()
    names = []
    for i in range(3):
        name = f"{i:05d}.tar" + (".gz" if i == 2 else "")
        _with_ids(os.path.join(data_root["pool"], f"{i:05d}.tar"), str(pool / name), compress=i == 2)
        names.append(str(pool / name))
    out = root / "curated"
    cfg = load_config(None, ["score.image_size=32", "score.batch_size=16", "write.samples_per_shard=20",
                             "select.fraction=0.5"])
    cfg = dataclasses.replace(cfg, input="::".join(names), output=str(out), **checkpoints)
    stats = run(cfg, progress_every=0)
    report = write_report(str(out), "learnability", SCORES, PER_GRID)
    return str(out), stats, report


@pytest.mark.slow
def test_manifest_rejected_and_score_files_carry_uid_and_url(curated_ids):
    out, stats, _ = curated_ids
    rows = pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
    assert len(rows) == stats["read"] == 150
    assert all(r["uid"] == uid_of(r["key"]) and r["url"] == f"https://example.com/img/{r['key']}.jpg"
               for r in rows)
    assert {r["decision"] for r in rows} == {"kept", "filtered", "rejected"}
    lines = [json.loads(line) for line in open(os.path.join(out, "rejected", "rejected.jsonl"))]
    assert len(lines) == stats["rejected"] and all(line["uid"] == uid_of(line["key"]) for line in lines)
    for name in os.listdir(os.path.join(out, "_scores")):
        table = pq.read_table(os.path.join(out, "_scores", name), columns=["key", "uid", "url"])
        assert all(r["uid"] == uid_of(r["key"]) for r in table.to_pylist())


@pytest.mark.slow
def test_export_uids_writes_datacomps_subset_format(curated_ids, tmp_path, capsys):
    out, stats, _ = curated_ids
    path = str(tmp_path / "subset.npy")
    assert main(["export", "--output", out, "--uids", path]) == 0
    assert f"{stats['kept']} uids" in capsys.readouterr().out
    arr = np.load(path, allow_pickle=False)
    assert arr.dtype == np.dtype("u8,u8") and arr.shape == (stats["kept"],)
    assert arr.tolist() == sorted(arr.tolist())  # lexicographic, as DataComp's resharder wants
    kept = pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
    assert array_to_uids(arr) == sorted(r["uid"] for r in kept if r["decision"] == "kept")
    # DataComp's resharder tests membership with np.searchsorted on exactly this array
    probe = uids_to_array([uid_of(next(r["key"] for r in kept if r["decision"] == "kept"))])
    assert arr[np.searchsorted(arr, probe[0])] == probe[0]


def test_export_without_uids_fails_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", "--output", str(out), "--uids", str(tmp_path / "x.npy")]) == 2
    assert "no manifest.parquet" in capsys.readouterr().err
    pq.write_table(pa.table({"key": ["a", "b"], "decision": ["kept", "kept"], "uid": [None, "zz"]}),
                   str(out / "manifest.parquet"))
    assert main(["export", "--output", str(out), "--uids", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not DataComp's 32 hex digits" in err[0], err
    pq.write_table(pa.table({"key": ["a", "b"], "decision": ["kept", "filtered"], "uid": [None, None]}),
                   str(out / "manifest.parquet"))
    assert main(["export", "--output", str(out), "--uids", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1 of 1 kept examples have no uid" in err[0], err
    assert not (tmp_path / "x.npy").exists()


@pytest.mark.slow
def test_folder_loaders_read_the_shards_not_the_side_outputs(curated_ids, tmp_path, monkeypatch):
    """HF datasets' folder loader (through the dataset card), webdataset over the tars, and
    wids through shardindex.json all see exactly the kept examples."""
    import webdataset as wds
    import wids
    out, stats, _ = curated_ids
    sizes = json.load(open(os.path.join(out, "sizes.json")))
    kept = {r["key"] for r in pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
            if r["decision"] == "kept"}
    pattern = os.path.join(out, "{00000..%05d}.tar" % (len(sizes) - 1))
    assert {s["__key__"] for s in wds.WebDataset(pattern, shardshuffle=False)} == kept

    index = json.load(open(os.path.join(out, "shardindex.json")))
    assert index["__kind__"] == "wids-shard-index-v1" and index["wids_version"] == 1
    assert [(s["url"], s["nsamples"]) for s in index["shardlist"]] == sorted(sizes.items())
    monkeypatch.setenv("WIDS_CACHE", str(tmp_path / "wids_cache"))
    ds = wids.ShardListDataset(os.path.join(out, "shardindex.json"))
    assert len(ds) == stats["kept"]
    assert {ds[i]["__key__"] for i in range(len(ds))} == kept

    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hf = datasets.load_dataset(out, split="train", cache_dir=str(tmp_path / "hf_cache"))  # not the user's
    assert hf.num_rows == stats["kept"] and set(hf["__key__"]) == kept
    assert {"jpg", "txt", "json"} <= set(hf.column_names)


@pytest.mark.slow
def test_dataset_card_of_the_user_is_left_alone(curated_ids, tmp_path):
    import fsspec

    from learnsieve.core.finalize import write_loader_files
    from learnsieve.core.layout import CARD_MARK
    out, _, _ = curated_ids
    assert CARD_MARK in open(os.path.join(out, "README.md")).read()
    mine = tmp_path / "copy"
    shutil.copytree(out, mine)
    (mine / "README.md").write_text("my own notes\n")
    sizes = json.load(open(mine / "sizes.json"))
    write_loader_files(fsspec.filesystem("file"), str(mine), sizes)
    assert (mine / "README.md").read_text() == "my own notes\n"


@pytest.mark.slow
def test_report_is_self_contained_with_the_expected_thumbnails(curated_ids, tmp_path):
    out, stats, report = curated_ids
    assert report == os.path.join(out, "report.html")
    p = parse(report)
    thumbs = [i for i in p.imgs if i.get("class") == "thumb"]
    plots = [i for i in p.imgs if i.get("class") == "plot"]
    # per score column: top, bottom, just above and just below the threshold; the compressed
    # shard's examples too (read back by a streaming pass)
    assert len(thumbs) == len(SCORES) * 4 * PER_GRID
    assert len(plots) == len(SCORES)
    assert all(i["src"].startswith("data:image/jpeg;base64,") for i in thumbs)
    assert not p.external
    text = open(report, encoding="utf-8").read()
    assert "decode:undecodable_image" in text and "Just above the threshold" in text
    again = write_report(out, "learnability", SCORES, PER_GRID, path=str(tmp_path / "again.html"))
    assert open(again, "rb").read() == open(report, "rb").read()  # deterministic


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(curated_ids, tmp_path):
    from PIL import Image
    _, _, report = curated_ids
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1280,2000", f"--screenshot={shot}", f"file://{report}"],
                   check=True, timeout=120, capture_output=True)
    img = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert img.shape == (2000, 1280)
    assert img.var() > 300  # not blank
    assert (img < 200).mean() > 0.05  # text, plots and thumbnails drawn, not a white page
    # the thumbnails rendered: the thumbnail rows hold many distinct grey levels
    assert len(np.unique(img[1000:].astype(np.uint8))) > 64


def test_two_outputs_of_the_same_name_do_not_share_hf_datasets_cache(tmp_path, monkeypatch):
    """HF caches a local folder dataset by folder name + config: each output's card names its own."""
    datasets = pytest.importorskip("datasets")
    import fsspec

    from learnsieve.core.finalize import write_loader_files
    from learnsieve.core.tar_write import TarSink
    from tests.conftest import good_example
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    img, cap = good_example(0)
    counts = {}
    for parent, n in (("a", 2), ("b", 3)):
        root = tmp_path / parent / "curated"
        root.mkdir(parents=True)
        sink = TarSink(str(root / "00000.tar"))
        for i in range(n):
            sink.write(f"{parent}{i}", {"jpg": img, "txt": cap})
        sink.close()
        write_loader_files(fsspec.filesystem("file"), str(root), {"00000.tar": n})
        monkeypatch.chdir(tmp_path / parent)
        # one shared cache for both folders, as a user's ~/.cache/huggingface is
        counts[parent] = len(datasets.load_dataset("curated", split="train", cache_dir=str(tmp_path / "hf")))
    assert counts == {"a": 2, "b": 3}
