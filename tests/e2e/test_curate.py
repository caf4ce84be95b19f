"""End-to-end curation on tiny synthetic shards: the output contract users rely on."""
import dataclasses
import json
import os

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from learnsieve.config import ConfigError, load_config
from learnsieve.pipeline.run import BadInputError, run

pytestmark = pytest.mark.slow


def _cfg(data_root, checkpoints, out, *overrides):
    cfg = load_config(None, ["select.score=learnability", "score.image_size=32", "score.batch_size=16",
                             "write.samples_per_shard=20",
                             *overrides])
    return dataclasses.replace(cfg, input=data_root["pool_pattern"], output=str(out), **checkpoints)


def _read_output(out):
    sizes = json.load(open(os.path.join(out, "sizes.json")))
    samples = {}
    for name in sorted(sizes):
        got = list(wds.WebDataset(os.path.join(out, name), shardshuffle=False))
        assert len(got) == sizes[name]
        stats = json.load(open(os.path.join(out, name.replace(".tar", "_stats.json"))))
        assert stats["count"] == sizes[name]
        samples[name] = got
    return sizes, samples


@pytest.fixture(scope="module")
def curated(data_root, checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("curated")
    stats = run(_cfg(data_root, checkpoints, out, "select.fraction=0.5"))
    return out, stats


def test_counts_add_up_and_match_the_manifest(curated, data_root):
    out, stats = curated
    assert stats["read"] == 150 == len(data_root["truth"])
    assert stats["read"] == stats["kept"] + stats["filtered"] + stats["rejected"]
    rows = pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
    assert len(rows) == stats["read"]
    assert {r["key"] for r in rows} == set(data_root["truth"])
    by = lambda d: [r for r in rows if r["decision"] == d]  # noqa: E731
    assert (len(by("kept")), len(by("filtered")), len(by("rejected"))) == (
        stats["kept"], stats["filtered"], stats["rejected"])
    truth = data_root["truth"]
    # corrupt and empty-caption examples are rejected with their reason, nothing else is
    assert {r["key"] for r in by("rejected")} == {k for k, v in truth.items() if v in ("corrupt", "empty")}
    assert {r["reason"] for r in by("rejected")} <= {"undecodable_image", "empty_caption"}
    scored = by("kept") + by("filtered")
    assert all(abs(r["learnability"] - (r["proxy_loss"] - r["ref_loss"])) < 1e-5 for r in scored)
    assert min(r["learnability"] for r in by("kept")) >= max(r["learnability"] for r in by("filtered"))
    assert all(r["reference_sha256"] and r["proxy_sha256"] for r in rows)


def test_rejected_dead_letters_name_key_source_stage_reason(curated):
    out, stats = curated
    lines = [json.loads(ln) for ln in open(os.path.join(out, "rejected", "rejected.jsonl"))]
    assert len(lines) == stats["rejected"]
    assert all(set(ln) == {"key", "source", "stage", "reason", "detail"} for ln in lines)
    assert sum(stats["rejected_by_reason"].values()) == stats["rejected"]


def test_output_shards_are_open_clip_ready(curated):
    out, stats = curated
    sizes, samples = _read_output(out)
    assert sum(sizes.values()) == stats["kept"] == stats["kept"]
    assert list(sizes) == [f"{i:05d}.tar" for i in range(len(sizes))]
    assert max(sizes.values()) <= 20
    rows = {r["key"]: r for r in pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()}
    for name, got in samples.items():
        for s in got:
            assert {"jpg", "txt", "json"} <= set(s)
            meta = json.loads(s["json"])
            assert meta["learnsieve"]["scores"]["learnability"] == pytest.approx(rows[s["__key__"]]["learnability"])
            assert meta["caption"] == s["txt"].decode()  # original json fields kept
            assert rows[s["__key__"]]["output_shard"] == name
    assert not os.path.exists(os.path.join(out, "_tmp"))
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]


def test_original_bytes_are_preserved(curated, data_root):
    out, _ = curated
    originals = {}
    for i in range(data_root["pool_shards"]):
        for s in wds.WebDataset(os.path.join(data_root["pool"], f"{i:05d}.tar"), shardshuffle=False):
            originals[s["__key__"]] = s
    for got in _read_output(out)[1].values():
        for s in got:
            assert s["jpg"] == originals[s["__key__"]]["jpg"]
            assert s["txt"] == originals[s["__key__"]]["txt"]


def test_rerun_into_finished_output_needs_a_flag(curated, data_root, checkpoints):
    out, _ = curated
    with pytest.raises(ConfigError, match="--incremental"):
        run(_cfg(data_root, checkpoints, out))


def test_ranked_output_puts_highest_scores_first(data_root, checkpoints, tmp_path):
    stats = run(_cfg(data_root, checkpoints, tmp_path, "select.fraction=0.8", "select.ranked=true",
                     "write.samples_per_shard=25"))
    sizes, samples = _read_output(str(tmp_path))
    assert sum(sizes.values()) == stats["kept"] and len(sizes) >= 3
    values = [json.loads(s["json"])["learnsieve"]["value"] for name in sorted(samples) for s in samples[name]]
    assert values == sorted(values, reverse=True)


def test_same_output_with_two_worker_threads(data_root, checkpoints, tmp_path, curated):
    out1, stats1 = curated
    stats2 = run(_cfg(data_root, checkpoints, tmp_path / "mt", "select.fraction=0.5"),
                 ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"])
    assert {k: stats1[k] for k in ("read", "kept", "filtered", "rejected")} == \
        {k: stats2[k] for k in ("read", "kept", "filtered", "rejected")}
    s1, s2 = _read_output(str(out1))[0], _read_output(str(tmp_path / "mt"))[0]
    assert s1 == s2
    for name in s1:
        assert open(os.path.join(out1, name), "rb").read() == open(os.path.join(tmp_path / "mt", name), "rb").read()


def test_mostly_bad_input_fails_with_counts(data_root, checkpoints, tmp_path, bad_shard):
    cfg = dataclasses.replace(_cfg(data_root, checkpoints, tmp_path / "o", "max_bad_fraction=0.2"),
                              input=bad_shard)
    with pytest.raises(BadInputError, match=r"rejected .*max_bad_fraction"):
        run(cfg)


@pytest.mark.parametrize("overrides", [
    ["select.score=prototype", "select.fraction=0.3", "select.clusters=4", "select.dedup=semantic"],
    ["select.mode=coreset", "select.clusters=3", "select.fraction=0.4"],
    ["select.mode=per_batch", "select.batch=16", "select.score=entropy", "select.sampling=gumbel"],
])
def test_literature_policies_run_end_to_end(data_root, checkpoints, tmp_path, overrides):
    stats = run(_cfg(data_root, checkpoints, tmp_path, *overrides))
    assert stats["read"] == stats["kept"] + stats["filtered"] + stats["rejected"] == 150
    assert 0 < stats["kept"] < stats["read"] - stats["rejected"]
    rows = pq.read_table(os.path.join(tmp_path, "manifest.parquet")).to_pylist()
    scored = [r for r in rows if r["decision"] != "rejected"]
    if "select.clusters=4" in overrides or "select.mode=coreset" in overrides:
        assert all(r["cluster"] is not None and r["proto_dist"] is not None for r in scored)
    assert sum(_read_output(str(tmp_path))[0].values()) == stats["kept"]


def test_seals_seed_captions_end_to_end(data_root, checkpoints, tmp_path):
    stats = run(_cfg(data_root, checkpoints, tmp_path, "select.mode=all", "select.seeds=[a red circle]",
                     "select.seeds_k=10", "select.seeds_rounds=2"))
    assert stats["filtered_by_reason"]["not_candidate"] > 0
    assert 10 <= stats["kept"] <= 10 + 10 * 10  # k per seed, then k per new member
    assert stats["read"] == stats["kept"] + stats["filtered"] + stats["rejected"]
