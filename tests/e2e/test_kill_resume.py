"""Kill a real ``learnsieve curate`` at any moment (SIGKILL to its whole process group, halfway
through scoring or during writing), run the same command again: only the shards without a score
file are scored again and the output is byte-identical to an uninterrupted run, on each local
runner (in-process, DirectRunner multi_processing, PortableRunner LOOPBACK)."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.synthetic import NoiseMix, write_split
from tests.e2e.helpers import snapshot

pytestmark = pytest.mark.slow
SHARDS = 12
RUNNERS = {
    "in_process": [],
    "multi_processing": ["--runner", "DirectRunner", "--direct_running_mode", "multi_processing",
                         "--direct_num_workers", "2"],
    "portable_loopback": ["--runner", "PortableRunner", "--job_endpoint", "embed",
                          "--environment_type", "LOOPBACK"],
}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool_kill")
    write_split(str(root), SHARDS * 24, SHARDS, seed=7, mix=NoiseMix(corrupt=0.05, mismatch=0.3))
    return shard_pattern(str(root), SHARDS)


def _argv(pool, checkpoints, out, runner):
    # batch 2 makes scoring slow enough (many small forwards) to kill between two score files
    return [sys.executable, "-m", "learnsieve", "curate", "--input", pool, "--output", out,
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "score.batch_size=2", "--set", "score.torch_threads=1",
            "--set", "write.samples_per_shard=40", "--progress-every", "0.5", *RUNNERS[runner]]


@pytest.fixture(scope="module")
def uninterrupted(pool, checkpoints, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("uninterrupted") / "o")
    done = subprocess.run(_argv(pool, checkpoints, out, "in_process"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out, done.stderr


def _score_files(out):
    return glob.glob(os.path.join(out, "_scores", "*.parquet"))


def _kill_when(argv, ready, timeout=240):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # workers of the multi-process runners too
        except ProcessLookupError:
            pass
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


def test_progress_lines_and_counters(uninterrupted):
    _, stderr = uninterrupted
    lines = [ln for ln in stderr.splitlines() if ln.startswith("learnsieve: scored ")]
    assert lines and f"/{SHARDS} shards" in lines[-1] and "ex/s" in lines[-1] and "ETA" in lines[-1]
    assert f"scored {SHARDS}/{SHARDS} shards" in lines[-1]


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_kill_halfway_through_scoring_then_resume(pool, checkpoints, uninterrupted, tmp_path, runner):
    out = str(tmp_path / "o")
    argv = _argv(pool, checkpoints, out, runner)
    _kill_when(argv, lambda: len(_score_files(out)) >= 2)
    left = len(_score_files(out))
    assert 2 <= left < SHARDS, f"killed with {left} of {SHARDS} shards scored: not halfway"
    assert not os.path.exists(os.path.join(out, "stats.json"))
    again = subprocess.run(argv, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    stats = json.load(open(os.path.join(out, "stats.json")))
    assert stats["rescored_shards"] == SHARDS - left
    # progress comes from the score files on disk, so it works on the multi-process runners too
    last = [ln for ln in again.stderr.splitlines() if ln.startswith("learnsieve: scored ")][-1]
    assert f"scored {SHARDS - left}/{SHARDS - left} shards (+{left} from score files)" in last, last
    assert snapshot(out) == snapshot(uninterrupted[0])


def test_kill_during_writing_then_resume(pool, checkpoints, uninterrupted, tmp_path):
    out = str(tmp_path / "o")
    argv = _argv(pool, checkpoints, out, "in_process")
    _kill_when(argv, lambda: (glob.glob(os.path.join(out, "_tmp", "*"))
                              or glob.glob(os.path.join(out, "_manifest", "*"))))
    assert len(_score_files(out)) == SHARDS and not os.path.exists(os.path.join(out, "stats.json"))
    again = subprocess.run(argv, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.load(open(os.path.join(out, "stats.json")))["rescored_shards"] == 0
    assert snapshot(out) == snapshot(uninterrupted[0])
