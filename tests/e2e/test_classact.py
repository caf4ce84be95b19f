"""ClassAct (task: classification): image-label shards, classifier reference and proxy, per-example
cross-entropy learnability, end to end through Beam, and the classification eval arm."""
import dataclasses
import io
import json
import os
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from learnsieve.config import ConfigError, TrainConfig, load_config
from learnsieve.core.decode import decode_labelled
from learnsieve.core.records import DeadLetter, Decoded, Sample
from learnsieve.core.tar_write import TarSink
from learnsieve.models.metrics import auroc

COLOURS = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40)]  # the classes
K = len(COLOURS)
TC = TrainConfig(reference_model="ls_cls_test", proxy_model="ls_cls_test", batch_size=32, augment=False,
                 num_classes=K, lr=3e-3)


def colour_jpeg(cls: int, rng: np.random.Generator) -> bytes:
    arr = np.clip(np.array(COLOURS[cls], np.float32) + rng.normal(0, 30, (32, 32, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_split(folder: str, n: int, shards: int, seed: int, flip: float = 0.0, bad: bool = False) -> dict:
    """``n`` colour examples; a ``flip`` share with a wrong label; with ``bad``, also a corrupt
    JPEG, a missing / non-numeric / out-of-range label in each shard. Returns {key: kind}."""
    rng, prng = np.random.default_rng(seed), random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    truth = {}
    per = n // shards
    for s in range(shards):
        sink = TarSink(os.path.join(folder, f"{s:05d}.tar"))
        for i in range(per):
            key, cls = f"s{seed}x{s:02d}{i:04d}", prng.randrange(K)
            kind = "flipped" if prng.random() < flip else "clean"
            label = (cls + prng.randrange(1, K)) % K if kind == "flipped" else cls
            sink.write(key, {"jpg": colour_jpeg(cls, rng), "cls": str(label).encode()})
            truth[key] = kind
        if bad:
            good = colour_jpeg(0, rng)
            for suffix, files, kind in (
                    ("corrupt", {"jpg": b"\xff\xd8\xff\xe0 not a jpeg", "cls": b"0"}, "undecodable_image"),
                    ("nolabel", {"jpg": good}, "missing_label"),
                    ("badlabel", {"jpg": good, "cls": b"cat"}, "invalid_label"),
                    ("range", {"jpg": good, "cls": str(K + 3).encode()}, "label_out_of_range")):
                sink.write(f"s{seed}x{s:02d}{suffix}", files)
                truth[f"s{seed}x{s:02d}{suffix}"] = kind
        sink.close()
    return truth


def _pattern(folder, shards):
    return os.path.join(folder, "{00000..%05d}.tar" % (shards - 1)) if shards > 1 else os.path.join(folder, "00000.tar")


@pytest.fixture(scope="module")
def cls_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls")
    pool_truth = write_split(str(root / "pool"), 240, 3, seed=1, flip=0.3, bad=True)
    write_split(str(root / "clean"), 160, 1, seed=2)
    write_split(str(root / "test"), 80, 1, seed=3)
    return {"root": root, "truth": pool_truth, "pool": _pattern(str(root / "pool"), 3),
            "clean": _pattern(str(root / "clean"), 1), "test": _pattern(str(root / "test"), 1)}


@pytest.fixture(scope="module")
def cls_checkpoints(cls_data, tmp_path_factory):
    from learnsieve.train.clip import train_from_shards
    out = tmp_path_factory.mktemp("cls_ckpt")
    ref, proxy = str(out / "reference"), str(out / "proxy")
    train_from_shards(cls_data["clean"], ref, "ls_cls_test", 60, TC, 32)
    train_from_shards(cls_data["pool"], proxy, "ls_cls_test", 6, TC, 32, sample=100, role="proxy")
    return {"reference": ref, "proxy": proxy}


def _sample(files, key="k"):
    return Sample(key=key, source="x.tar", shard_index=0, index=0, files=files)


def test_decode_labelled_names_every_bad_label():
    jpg = colour_jpeg(1, np.random.default_rng(0))
    ok = decode_labelled(_sample({"jpg": jpg, "cls": b" 2\n"}), 32, 10**8, K)
    assert isinstance(ok, Decoded) and ok.label == "2" and ok.image.shape == (3, 32, 32)
    for files, reason in (({"jpg": jpg}, "missing_label"), ({"jpg": jpg, "cls": b"two"}, "invalid_label"),
                          ({"jpg": jpg, "cls": b"1.5"}, "invalid_label"), ({"jpg": jpg, "cls": b""}, "invalid_label"),
                          ({"jpg": jpg, "cls": b"\xff"}, "invalid_label"),
                          ({"jpg": jpg, "cls": b"4"}, "label_out_of_range"),
                          ({"jpg": jpg, "cls": b"-1"}, "label_out_of_range"),
                          ({"cls": b"1"}, "missing_image"), ({"jpg": b"junk", "cls": b"1"}, "undecodable_image")):
        out = decode_labelled(_sample(files), 32, 10**8, K)
        assert isinstance(out, DeadLetter) and out.reason == reason and out.stage == "decode", files


def test_task_config_checks_model_kinds():
    cfg = load_config(None, ["task=classification", "train.reference_model=ls_cls_small",
                             "train.proxy_model=ls_cls_tiny"])
    assert cfg.task == "classification" and cfg.train.num_classes == 10
    assert load_config(None).task == "retrieval"
    with pytest.raises(ConfigError, match="task classification needs an image classifier"):
        load_config(None, ["task=classification"])
    with pytest.raises(ConfigError, match="task retrieval needs an image-text model"):
        load_config(None, ["train.reference_model=ls_cls_small"])
    with pytest.raises(ConfigError, match="task: 'detection'"):
        load_config(None, ["task=detection"])


def test_shipped_classact_config_loads():
    cfg = load_config(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "classact.yaml"))
    assert cfg.task == "classification" and cfg.select.score == "ref_sim"


@pytest.mark.slow
def test_classifier_checkpoints_and_task_mismatch(cls_checkpoints, checkpoints, cls_data, tmp_path):
    from learnsieve.models.checkpoint import load_checkpoint, read_checkpoint_meta
    from learnsieve.pipeline.run import task_classes
    model, meta = load_checkpoint(cls_checkpoints["reference"])
    assert type(model).__name__ == "Classifier" and meta["task"] == "classification"
    assert read_checkpoint_meta(cls_checkpoints["proxy"])["role"] == "proxy"
    cfg = dataclasses.replace(load_config(None, ["task=classification", "train.reference_model=ls_cls_test",
                                                 "train.proxy_model=ls_cls_test"]), **cls_checkpoints)
    assert task_classes(cfg) == K
    with pytest.raises(ConfigError, match="is an image-text model"):
        task_classes(dataclasses.replace(cfg, **checkpoints))
    with pytest.raises(ConfigError, match="is an image classifier"):
        task_classes(dataclasses.replace(load_config(None), **cls_checkpoints))


@pytest.fixture(scope="module")
def cls_curated(cls_data, cls_checkpoints, tmp_path_factory):
    from learnsieve.pipeline.run import run
    out = tmp_path_factory.mktemp("cls_curated")
    cfg = load_config(None, ["task=classification", "train.reference_model=ls_cls_test",
                             "train.proxy_model=ls_cls_test", f"train.num_classes={K}",
                             "score.image_size=32", "score.batch_size=16", "select.fraction=0.5",
                             "write.samples_per_shard=50"])
    cfg = dataclasses.replace(cfg, input=cls_data["pool"], output=str(out), **cls_checkpoints)
    return out, run(cfg)


@pytest.mark.slow
def test_classact_curation_end_to_end(cls_curated, cls_data):
    out, stats = cls_curated
    truth = cls_data["truth"]
    assert stats["read"] == len(truth) == 240 + 3 * 4
    assert stats["read"] == stats["kept"] + stats["filtered"] + stats["rejected"]
    bad = {k: v for k, v in truth.items() if v not in ("clean", "flipped")}
    assert stats["rejected"] == len(bad) == 12
    assert stats["rejected_by_reason"] == {f"decode:{r}": 3 for r in
                                           ("undecodable_image", "missing_label", "invalid_label",
                                            "label_out_of_range")}
    rows = pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
    assert len(rows) == stats["read"]
    assert {r["key"]: r["reason"] for r in rows if r["decision"] == "rejected"} == bad
    scored = [r for r in rows if r["decision"] in ("kept", "filtered")]
    assert all(abs(r["learnability"] - (r["proxy_loss"] - r["ref_loss"])) < 1e-5 for r in scored)
    assert all(0.0 <= r["ref_sim"] <= 1.0 for r in scored)
    # flipped labels: high reference loss -> low learnability -> kept far less often
    flipped = [r for r in scored if truth[r["key"]] == "flipped"]
    clean = [r for r in scored if truth[r["key"]] == "clean"]
    keep = lambda rs: sum(r["decision"] == "kept" for r in rs) / len(rs)  # noqa: E731
    assert keep(flipped) < 0.5 * keep(clean), (keep(flipped), keep(clean))
    assert auroc([r["learnability"] for r in scored], [truth[r["key"]] == "clean" for r in scored]) > 0.8
    # output shards: original image and label bytes, plus the scores json
    got = [s for name in sorted(json.load(open(os.path.join(out, "sizes.json"))))
           for s in wds.WebDataset(os.path.join(out, name), shardshuffle=False)]
    assert len(got) == stats["kept"]
    assert all({"jpg", "cls", "json"} <= set(s) for s in got)
    rows_by_key = {r["key"]: r for r in rows}
    for s in got:
        meta = json.loads(s["json"])["learnsieve"]
        assert meta["scores"]["learnability"] == pytest.approx(rows_by_key[s["__key__"]]["learnability"])
        assert int(s["cls"]) == int(rows_by_key[s["__key__"]]["label"])
    originals = {s["__key__"]: s for i in range(3)
                 for s in wds.WebDataset(os.path.join(cls_data["root"], "pool", f"{i:05d}.tar"), shardshuffle=False)}
    assert all(s["jpg"] == originals[s["__key__"]]["jpg"] and s["cls"] == originals[s["__key__"]]["cls"]
               for s in got)


@pytest.mark.slow
def test_classification_arm_learns_colours(cls_data):
    from learnsieve.evaluate.arms_cls import classification_arm
    cfg = dataclasses.replace(TC, batch_size=16)
    res = classification_arm(cls_data["clean"], cls_data["test"], "ls_cls_test", 40, 20, cfg, 32)
    assert res["examples"] == 160 and res["rejected"] == 0
    assert [p["step"] for p in res["curve"]] == [20, 40]
    assert res["curve"][-1]["top1"] > 0.6  # 4 colour classes, chance 0.25
    hits = res["_hits"]["top1"]  # each test example's hit at the last evaluation: eval's bootstrap
    assert set(hits) <= {0.0, 1.0} and sum(hits) / len(hits) == pytest.approx(res["curve"][-1]["top1"])
    assert res["train_seconds"] > 0 and res["seconds_per_step"] == pytest.approx(res["train_seconds"] / 40, rel=0.01)
    noisy = classification_arm(cls_data["pool"], cls_data["test"], "ls_cls_test", 4, 2, cfg, 32)
    assert noisy["rejected"] == 12 and noisy["examples"] == 240


@pytest.mark.slow
def test_cli_trains_classifiers_and_curates(cls_data, tmp_path, capsys):
    from learnsieve.cli import main
    from learnsieve.models.checkpoint import read_checkpoint_meta
    sets = ["--config", os.path.join(os.path.dirname(__file__), "..", "..", "configs", "classact.yaml"),
            "--set", "train.reference_model=ls_cls_test", "--set", "train.proxy_model=ls_cls_test",
            "--set", f"train.num_classes={K}", "--set", "train.batch_size=16"]
    ref, proxy, out = str(tmp_path / "ref"), str(tmp_path / "proxy"), str(tmp_path / "out")
    assert main(["train-reference", "--data", cls_data["clean"], "--out", ref, "--steps", "3", *sets]) == 0
    assert main(["train-proxy", "--data", cls_data["pool"], "--out", proxy, "--steps", "2", "--sample", "40",
                 *sets]) == 0
    meta = read_checkpoint_meta(proxy)
    assert meta["format"] == "learnsieve-classifier-v1" and meta["examples"] == 40
    assert meta["config"]["num_classes"] == K
    assert main(["curate", "--input", cls_data["pool"], "--output", out, "--reference", ref, "--proxy", proxy,
                 *sets]) == 0
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["read"] == stats["kept"] + stats["filtered"] + stats["rejected"] == 252
    # the same checkpoints under the default task fail before any work, with one line
    assert main(["curate", "--input", cls_data["pool"], "--output", str(tmp_path / "o2"), "--reference", ref,
                 "--proxy", proxy]) == 2
    assert "is an image classifier, but task is retrieval" in capsys.readouterr().err
