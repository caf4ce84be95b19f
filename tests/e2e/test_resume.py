"""Crashes, resume, incremental re-curation and determinism (issue: reliability)."""
import dataclasses
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from learnsieve.config import load_config
from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.synthetic import NoiseMix, write_split
from learnsieve.pipeline.run import run
from tests.e2e.helpers import snapshot

pytestmark = pytest.mark.slow


def _cfg(pattern, checkpoints, out, *overrides):
    cfg = load_config(None, ["score.image_size=32", "score.batch_size=16", "write.samples_per_shard=30",
                             *overrides])
    return dataclasses.replace(cfg, input=pattern, output=str(out), **checkpoints)


@pytest.fixture(scope="module")
def pool8(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool8")
    write_split(str(root), 240, 8, seed=5, mix=NoiseMix(corrupt=0.03))
    return shard_pattern(str(root), 8), str(root)


@pytest.fixture(scope="module")
def reference_run(pool8, checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref_run")
    stats = run(_cfg(pool8[0], checkpoints, out))
    return str(out), stats


def test_reruns_are_byte_identical(pool8, checkpoints, reference_run, tmp_path):
    out, stats = reference_run
    again = run(_cfg(pool8[0], checkpoints, tmp_path), ["--direct_num_workers", "2",
                                                        "--direct_running_mode", "multi_threading"])
    assert snapshot(out) == snapshot(str(tmp_path))
    assert {k: again[k] for k in ("read", "kept", "filtered", "rejected")} == \
        {k: stats[k] for k in ("read", "kept", "filtered", "rejected")}


def test_interrupted_run_resumes_from_score_files(pool8, checkpoints, reference_run, tmp_path):
    """The on-disk state a kill leaves: score files for finished input shards, leftovers in
    _tmp, no stats.json. The rerun re-scores only the missing shards and ends identical."""
    out, _ = reference_run
    shutil.copytree(out, tmp_path / "o")
    o = str(tmp_path / "o")
    os.remove(os.path.join(o, "stats.json"))
    scores = sorted(glob.glob(os.path.join(o, "_scores", "*.parquet")))
    assert len(scores) == 8
    for f in scores[:3]:
        os.remove(f)
    os.makedirs(os.path.join(o, "_tmp"), exist_ok=True)
    open(os.path.join(o, "_tmp", "g000000-00000.tar.partial"), "wb").write(b"half a shard")
    os.remove(os.path.join(o, "00001.tar"))
    stats = run(_cfg(pool8[0], checkpoints, o))
    assert stats["rescored_shards"] == 3 and stats["input_shards"] == 8
    assert snapshot(o) == snapshot(out)


def test_incremental_scores_only_new_shards_and_new_models_rescore_all(pool8, checkpoints, reference_run, tmp_path):
    out, _ = reference_run
    o = str(tmp_path / "o")
    shutil.copytree(out, o)
    pattern, root = pool8
    new_root = tmp_path / "more"
    write_split(str(new_root), 60, 2, seed=9, mix=NoiseMix(), key_prefix="n")
    both = pattern + "::" + shard_pattern(str(new_root), 2)
    stats = run(_cfg(both, checkpoints, o), incremental=True)
    assert (stats["input_shards"], stats["rescored_shards"], stats["read"]) == (10, 2, 300)
    rows = pq.read_table(os.path.join(o, "manifest.parquet")).to_pylist()
    assert len(rows) == 300 and len({(r["source"], r["key"]) for r in rows}) == 300
    # a different proxy (the learner's newer checkpoint): every shard is scored again by the
    # proxy alone; the reference's quantities, embeddings and dead letters come from the score files
    swapped = {"reference": checkpoints["reference"], "proxy": checkpoints["reference"]}
    stats = run(_cfg(both, swapped, o), incremental=True)
    assert stats["rescored_shards"] == 10
    assert stats["counters"].get("score/shards_proxy_only") == 10
    assert "score/shards_scored" not in stats["counters"]  # no reference forward ran
    rows = pq.read_table(os.path.join(o, "manifest.parquet")).to_pylist()
    assert {r["proxy_sha256"] for r in rows} == {rows[0]["reference_sha256"]}
    fresh = str(tmp_path / "fresh")
    run(_cfg(both, swapped, fresh))
    assert snapshot(o) == snapshot(fresh)  # identical to scoring both models from scratch
    # back to the first proxy: again only the proxy runs (the file keeps one proxy's scores)
    stats = run(_cfg(both, checkpoints, o), incremental=True)
    assert stats["counters"].get("score/shards_proxy_only") == 10


def test_killed_process_restarts_to_identical_output(pool8, checkpoints, reference_run, tmp_path):
    out, _ = reference_run
    o = str(tmp_path / "o")
    argv = [sys.executable, "-m", "learnsieve.cli", "curate", "--input", pool8[0], "--output", o,
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "score.batch_size=16",
            "--set", "write.samples_per_shard=30"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if glob.glob(os.path.join(o, "_scores", "*.parquet")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(o, "stats.json")) or not killed
    assert subprocess.run(argv + ["--incremental"], capture_output=True).returncode == 0
    assert snapshot(o) == snapshot(out)


def test_shard_rewritten_after_preflight_is_scored_again_not_a_failed_run(pool8, checkpoints, reference_run,
                                                                         tmp_path, monkeypatch):
    """Its score file was valid when the run began; by the time the cached read comes the shard
    holds other examples: it is scored again (counted), and the output equals a fresh run's."""
    import learnsieve.pipeline.run as run_module
    pool = tmp_path / "pool"
    shutil.copytree(pool8[1], pool)
    pattern = shard_pattern(str(pool), 8)
    o = str(tmp_path / "o")
    run(_cfg(pattern, checkpoints, o))
    real = run_module.plan_run

    def then_rewrite(*a, **k):
        result = real(*a, **k)
        assert 0 in result.cached  # shard 0's score file was valid at preflight
        other = tmp_path / "other"
        write_split(str(other), 40, 1, seed=11, mix=NoiseMix(), key_prefix="z")
        shutil.copy(other / "00000.tar", pool / "00000.tar")
        return result
    monkeypatch.setattr(run_module, "plan_run", then_rewrite)
    stats = run(_cfg(pattern, checkpoints, o), incremental=True)
    assert stats["counters"]["score/shards_rescored_after_change"] == 1
    assert stats["read"] == 240 - 30 + 40
    monkeypatch.setattr(run_module, "plan_run", real)
    fresh = str(tmp_path / "fresh")
    run(_cfg(pattern, checkpoints, fresh))
    assert snapshot(o) == snapshot(fresh)
