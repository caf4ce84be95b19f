"""``learnsieve curate`` from ``gs://`` to ``gs://`` against a real GCS JSON API server on loopback
(the ``gcp-storage-emulator`` package, test extra): the CLI as a user runs it, in a subprocess.

Checked: the output exists in the bucket and reads back (stats.json accounting, a kept tar listed
in sizes.json), each input shard costs at most 4 media GETs (a streamed read of the shard, the
coalesced ranged read of its kept examples, the fingerprint), and a rerun reuses the score files
under ``gs://B/curated/_scores`` and writes byte-identical output.

The emulator answers the ``moveTo`` call (which real GCS serves and gcsfs tries first in
``fs.mv``) with 501, which gcsfs retries six times with backoff: about 33 s per move. The
launcher below serves ``moveTo`` as GCS does (copy, then delete the source); everything else is
the emulator's own. It logs one line per request on stderr
(``"GET /download/storage/v1/b/B/o/pool%2F00000.tar?alt=media HTTP/1.1" 206 -``).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
from typing import Dict, Iterator, List

import pytest

from tests.e2e.helpers import free_port, loopback_server

# found, not imported: gcsfs picks its filesystem class at import from GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT,
# which the clients here (and bench_remote's smoke test, later in the same process) set first;
# imported at collection without it, every new bucket costs a 60 s zonal probe
for _name in ("gcp_storage_emulator", "gcsfs"):
    if importlib.util.find_spec(_name) is None:
        pytest.skip(f"{_name} is not installed (the test extra)", allow_module_level=True)

BUCKET = "lsbucket"
SHARDS = 3

# python -c LAUNCHER start --host=... : the emulator's own CLI, with moveTo served (see above)
LAUNCHER = r"""
import sys
from gcp_storage_emulator import server
from gcp_storage_emulator.handlers import objects
from gcp_storage_emulator.__main__ import main
from gcp_storage_emulator.exceptions import NotFound
from http import HTTPStatus

def move(request, response, storage, *args, **kwargs):
    b, src, dst = (request.params[k] for k in ("bucket_name", "object_id", "dest_object_id"))
    try:
        obj = objects._copy(request.base_url, storage, b, src, b, dst)
        storage.delete_file(b, src)
        response.json(obj)
    except NotFound:
        response.status = HTTPStatus.NOT_FOUND

p = server.settings.API_ENDPOINT
route = (rf"^{p}/b/(?P<bucket_name>[-.\w]+)/o/(?P<object_id>.*[^/]+)/moveTo/o/(?P<dest_object_id>.*[^/]+)$",
         {server.POST: move})
server.HANDLERS = (route,) + tuple(server.HANDLERS)
sys.exit(main(sys.argv[1:]))
"""


class Emulator:
    """A running emulator: its port, its request log, and the environment of a gcsfs client."""

    def __init__(self, port: int, log_path: str, proc: subprocess.Popen):
        self.port, self.log_path, self.proc = port, log_path, proc
        self.url = f"http://127.0.0.1:{port}"
        self.env = {"STORAGE_EMULATOR_HOST": self.url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                    "FSSPEC_GCS_TOKEN": "anon"}

    def requests(self) -> List[str]:
        """The request lines logged so far (``"METHOD /path HTTP/1.1" STATUS -``)."""
        with open(self.log_path, errors="replace") as f:
            return [line.strip() for line in f if line.startswith('"')]

    def media_gets(self, lines: List[str], obj: str) -> int:
        """Media downloads (GET /download/...) of object ``obj`` (its name in the bucket)."""
        quoted = obj.replace("/", "%2F")
        pat = re.compile(rf'^"GET /download/storage/v1/b/{BUCKET}/o/{re.escape(quoted)}[? ]')
        return sum(1 for line in lines if pat.match(line))

    def fs(self):
        """A gcsfs client of this emulator in this process (the plain GCSFileSystem: which class
        ``gcsfs.GCSFileSystem`` is depends on GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT at import)."""
        from gcsfs.core import GCSFileSystem
        return GCSFileSystem(token="anon", endpoint_url=self.url, skip_instance_cache=True)


@contextlib.contextmanager
def emulator(log_path: str, bucket: str = BUCKET) -> Iterator[Emulator]:
    """The emulator as a subprocess on a free loopback port; stopped by its pid at the end."""
    port = free_port()
    with loopback_server([sys.executable, "-c", LAUNCHER, "start", "--host=127.0.0.1", f"--port={port}",
                          "--in-memory", f"--default-bucket={bucket}"], port, log_path, "the GCS emulator") as proc:
        yield Emulator(port, log_path, proc)


@pytest.fixture(scope="module")
def gcs(tmp_path_factory, data_root):
    log_path = str(tmp_path_factory.mktemp("gcs") / "emulator.log")
    with emulator(log_path) as emu:
        fs = emu.fs()
        for i in range(SHARDS):
            fs.put_file(os.path.join(data_root["pool"], f"{i:05d}.tar"), f"{BUCKET}/pool/{i:05d}.tar")
        yield emu


def curate(gcs: Emulator, checkpoints, output: str, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "learnsieve", "curate", "--input",
            f"gs://{BUCKET}/pool/{{00000..{SHARDS - 1:05d}}}.tar", "--output", output,
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "write.samples_per_shard=40", *extra]
    env = {**os.environ, **gcs.env, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def snapshot(fs, root: str) -> Dict[str, bytes]:
    """What a rerun must reproduce byte for byte: output shards, their stats, sizes.json,
    manifest.parquet, rejected.jsonl."""
    names = [p for p in fs.ls(root, detail=False) if p.endswith((".tar", "_stats.json"))]
    names += [f"{root}/{n}" for n in ("sizes.json", "manifest.parquet", "rejected/rejected.jsonl")]
    return {p[len(root) + 1:]: fs.cat_file(p) for p in sorted(names)}


@pytest.fixture(scope="module")
def first_run(gcs, checkpoints):
    before = len(gcs.requests())
    done = curate(gcs, checkpoints, f"gs://{BUCKET}/curated")
    assert done.returncode == 0, done.stderr[-4000:]
    return done, gcs.requests()[before:]


def test_curate_from_gcs_to_gcs(gcs, first_run, data_root):
    done, _ = first_run
    fs = gcs.fs()
    root = f"{BUCKET}/curated"
    stats = json.loads(fs.cat_file(f"{root}/stats.json"))
    assert stats["read"] == 150 == stats["kept"] + stats["filtered"] + stats["rejected"]
    assert stats["kept"] > 0 and f"read {stats['read']}" in done.stdout
    sizes = json.loads(fs.cat_file(f"{root}/sizes.json"))
    assert sum(sizes.values()) == stats["kept"]
    name, count = next(iter(sizes.items()))
    with tarfile.open(fileobj=io.BytesIO(fs.cat_file(f"{root}/{name}")), mode="r:") as tar:
        members = [m.name for m in tar]
        assert all(tar.extractfile(m).read() for m in tar.getmembers() if m.name.endswith(".jpg"))
    keys = {m.rsplit(".", 1)[0] for m in members}
    assert len(keys) == count and any(m.endswith(".jpg") for m in members)
    assert len(fs.ls(f"{root}/_scores")) == SHARDS


def test_each_input_shard_costs_at_most_four_gets(gcs, first_run):
    _, lines = first_run
    for i in range(SHARDS):
        gets = gcs.media_gets(lines, f"pool/{i:05d}.tar")
        assert 1 <= gets <= 4, (i, gets, [ln for ln in lines if f"pool%2F{i:05d}" in ln])


@pytest.mark.slow
def test_interrupted_run_resumes_from_gcs_score_files(gcs, first_run, checkpoints):
    """The state a kill after scoring two shards leaves (score files, no stats.json): the rerun
    of the same command scores only the third shard and writes byte-identical output; then an
    --incremental run reuses every score file."""
    fs = gcs.fs()
    src, dst = f"{BUCKET}/curated", f"{BUCKET}/resumed"
    for p in fs.find(src):
        fs.cp_file(p, dst + p[len(src):])
    fs.rm_file(f"{dst}/stats.json")
    scores = sorted(fs.ls(f"{dst}/_scores", detail=False))
    assert len(scores) == SHARDS
    fs.rm_file(scores[0])
    before = len(gcs.requests())
    done = curate(gcs, checkpoints, f"gs://{dst}")
    assert done.returncode == 0, done.stderr[-4000:]
    stats = json.loads(fs.cat_file(f"{dst}/stats.json"))
    assert (stats["input_shards"], stats["rescored_shards"]) == (SHARDS, 1), stats
    assert snapshot(fs, dst) == snapshot(fs, src)
    lines = gcs.requests()[before:]
    assert all(gcs.media_gets(lines, f"pool/{i:05d}.tar") <= 4 for i in range(SHARDS))
    done = curate(gcs, checkpoints, f"gs://{dst}", "--incremental")
    assert done.returncode == 0, done.stderr[-4000:]
    stats = json.loads(fs.cat_file(f"{dst}/stats.json"))
    assert stats["rescored_shards"] == 0, stats
    assert snapshot(fs, dst) == snapshot(fs, src)



def test_output_shards_are_uploaded_in_large_parts(gcs):
    """A 40 MB output tar written member by member (4,000 members of 10 KB) goes up in parts of
    ``WRITE_BLOCK`` (16 MiB): the initiation, two full parts and the last one; its bytes read
    back whole."""
    code = ("import os, sys\n"
            "from learnsieve.core.tar_write import TarSink\n"
            "sink = TarSink(sys.argv[1])\n"
            "for i in range(4000):\n"
            "    sink.write(f'k{i:05d}', {'bin': bytes([i % 251]) * 10_000})\n"
            "sink.close()\n")
    before = len(gcs.requests())
    done = subprocess.run([sys.executable, "-c", code, f"gs://{BUCKET}/parts/big.tar"], capture_output=True,
                          text=True, env={**os.environ, **gcs.env}, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    uploads = [ln for ln in gcs.requests()[before:] if ln.startswith('"POST /upload/') and "parts/big.tar" in ln]
    assert 2 <= len(uploads) <= 4, uploads  # was a request per 5 MiB (gcsfs's default block)
    data = gcs.fs().cat_file(f"{BUCKET}/parts/big.tar")
    assert len(data) > 40_000_000
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = tar.getnames()
    assert len(names) == 4000 and names[0] == "k00000.bin"


@pytest.mark.slow
def test_killed_run_resumes_over_gcs(gcs, checkpoints, tmp_path):
    """SIGKILL a real ``learnsieve curate`` from gs:// to gs:// halfway through scoring, run the
    same command again: only the shards without a score file in the bucket are scored again and
    the output is byte-identical to an uninterrupted run's."""
    from learnsieve.datasets.synthetic import NoiseMix, write_split
    shards = 6
    write_split(str(tmp_path / "pool"), shards * 24, shards, seed=7, mix=NoiseMix(corrupt=0.05, mismatch=0.3))
    fs = gcs.fs()
    for i in range(shards):
        fs.put_file(str(tmp_path / "pool" / f"{i:05d}.tar"), f"{BUCKET}/killpool/{i:05d}.tar")

    def argv(out):  # batch 2: scoring slow enough to be killed between two score files
        return [sys.executable, "-m", "learnsieve", "curate", "--input",
                f"gs://{BUCKET}/killpool/{{00000..{shards - 1:05d}}}.tar", "--output", f"gs://{BUCKET}/{out}",
                "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
                "--set", "score.image_size=32", "--set", "score.batch_size=2", "--set", "score.torch_threads=1",
                "--set", "write.samples_per_shard=40"]

    env = {**os.environ, **gcs.env, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv("kill_ref"), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    def score_files():
        try:
            return [p for p in fs.ls(f"{BUCKET}/kill/_scores", detail=False, refresh=True)
                    if p.endswith(".parquet")]
        except FileNotFoundError:
            return []

    proc = subprocess.Popen(argv("kill"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(score_files()) >= 2:
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    left = len(score_files())
    assert 2 <= left < shards, f"killed with {left} of {shards} shards scored: not halfway"
    assert not fs.exists(f"{BUCKET}/kill/stats.json")
    again = subprocess.run(argv("kill"), capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    stats = json.loads(fs.cat_file(f"{BUCKET}/kill/stats.json"))
    assert stats["rescored_shards"] == shards - left, (stats["rescored_shards"], left)
    assert snapshot(fs, f"{BUCKET}/kill") == snapshot(fs, f"{BUCKET}/kill_ref")


def test_checkpoints_config_report_manifest_and_uids_over_gcs(gcs, checkpoints, tmp_path):
    """Everything a run touches in the bucket: shards with DataComp uids, both checkpoints and the
    config read from gs://; report.html, manifest.parquet and the uid subset file written there."""
    import numpy as np
    import pyarrow.parquet as pq

    from tests.conftest import good_example, write_tar
    fs = gcs.fs()
    uids = {}
    for shard in range(2):
        members = []
        for i in range(30):
            key = f"{shard:05d}{i:04d}"
            image, caption = good_example(shard * 100 + i)
            uids[key] = f"{shard * 100 + i:032x}"
            members += [(f"{key}.jpg", image), (f"{key}.txt", caption),
                        (f"{key}.json", json.dumps({"uid": uids[key]}).encode())]
        local = str(tmp_path / f"{shard:05d}.tar")
        write_tar(local, members)
        fs.put_file(local, f"{BUCKET}/uidpool/{shard:05d}.tar")
    for role in ("reference", "proxy"):
        fs.put(checkpoints[role], f"{BUCKET}/ckpt/{role}", recursive=True)
    fs.pipe_file(f"{BUCKET}/cfg/curate.yaml", b"score:\n  image_size: 32\nselect:\n  fraction: 0.5\n"
                                              b"write:\n  samples_per_shard: 40\n")
    env = {**os.environ, **gcs.env, "OMP_NUM_THREADS": "1"}
    out = f"gs://{BUCKET}/full"
    done = subprocess.run([sys.executable, "-m", "learnsieve", "curate", "--input",
                           f"gs://{BUCKET}/uidpool/{{00000..00001}}.tar", "--output", out,
                           "--config", f"gs://{BUCKET}/cfg/curate.yaml",
                           "--reference", f"gs://{BUCKET}/ckpt/reference", "--proxy", f"gs://{BUCKET}/ckpt/proxy"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    stats = json.loads(fs.cat_file(f"{BUCKET}/full/stats.json"))
    assert stats["read"] == 60 and stats["kept"] == 30  # exactly half of 60 clean examples
    rows = pq.read_table(io.BytesIO(fs.cat_file(f"{BUCKET}/full/manifest.parquet"))).to_pylist()
    assert len(rows) == 60 and {r["uid"] for r in rows} == set(uids.values())
    report = fs.cat_file(f"{BUCKET}/full/report.html").decode()
    assert report.startswith("<!DOCTYPE html>") and "ref_sim" in report  # the default select.score
    done = subprocess.run([sys.executable, "-m", "learnsieve", "export", "--output", out,
                           "--uids", f"gs://{BUCKET}/subset.npy"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    arr = np.load(io.BytesIO(fs.cat_file(f"{BUCKET}/subset.npy")))
    kept = sorted(r["uid"] for r in rows if r["decision"] == "kept")
    assert [f"{a:016x}{b:016x}" for a, b in arr.tolist()] == kept
