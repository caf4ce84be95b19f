"""``http(s)://`` input (issue 21): shards served by ``python -m http.server`` (no Range support)
curate exactly as the same shards from local paths, and a connection dropped mid-shard is
retried with nothing lost or counted twice, with or without Range support on the server."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyarrow.parquet as pq
import pytest

from learnsieve.cli import main
from learnsieve.core.paths import InputError, expand_pattern
from learnsieve.core.tar import Sample, iter_shard, read_spans
from tests.e2e.helpers import free_port, loopback_server

SHARDS = 3


@contextlib.contextmanager
def http_server(directory: str, log_path: str):
    """``python -m http.server`` on a free loopback port, serving ``directory``; stopped by pid."""
    port = free_port()
    with loopback_server([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", directory,
                          str(port)], port, log_path, "http.server", timeout=20):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def served(data_root, tmp_path_factory):
    log_path = str(tmp_path_factory.mktemp("http") / "http.log")
    with http_server(data_root["pool"], log_path) as base:
        yield base, log_path


def _curate(pattern, checkpoints, out, *extra):
    argv = [sys.executable, "-m", "learnsieve", "curate", "--input", pattern, "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "write.samples_per_shard=40", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads((out / "stats.json").read_text())


def _rows(out):
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    for r in rows:
        r.pop("source")
    return sorted(rows, key=lambda r: (r["shard_index"], r["index"], r["key"] or ""))


def _tars(out):
    sizes = json.loads((out / "sizes.json").read_text())
    return sizes, {name: (out / name).read_bytes() for name in sizes}


@pytest.mark.slow  # three curate runs: about 40 s on 2 cores
def test_http_input_curates_as_local_input(served, data_root, checkpoints, tmp_path):
    base, _ = served
    pattern = f"{base}/{{00000..{SHARDS - 1:05d}}}.tar"
    assert expand_pattern(pattern) == [f"{base}/{i:05d}.tar" for i in range(SHARDS)]  # was http://http://
    via_http = _curate(pattern, checkpoints, tmp_path / "http")
    local = _curate(data_root["pool_pattern"], checkpoints, tmp_path / "local")
    counts = ("read", "kept", "filtered", "rejected")
    assert {k: via_http[k] for k in counts} == {k: local[k] for k in counts}
    assert via_http["read"] == 150 == via_http["kept"] + via_http["filtered"] + via_http["rejected"]
    assert "missing_shard" not in json.dumps(via_http["rejected_by_reason"])
    assert _rows(tmp_path / "http") == _rows(tmp_path / "local")
    sizes, tars = _tars(tmp_path / "http")
    assert sizes == _tars(tmp_path / "local")[0] and sum(sizes.values()) == local["kept"]
    assert {n: len(b) for n, b in tars.items()} == {n: len(b) for n, b in _tars(tmp_path / "local")[1].items()}
    sources = {r["source"] for r in pq.read_table(tmp_path / "http" / "manifest.parquet").to_pylist()}
    assert sources == {f"{base}/{i:05d}.tar" for i in range(SHARDS)}
    # a rerun of the finished run reuses its score files (resume keys on the URL and the bytes)
    again = _curate(pattern, checkpoints, tmp_path / "http", "--incremental")
    assert again["rescored_shards"] == 0 and again["kept"] == via_http["kept"]
    assert _rows(tmp_path / "http") == _rows(tmp_path / "local")


def test_globs_on_http_fail_in_one_line_and_missing_shards_are_named(served, capsys, tmp_path):
    base, _ = served
    with pytest.raises(InputError, match=r"cannot list files, so globs do not work there; give a brace "
                                         r"pattern such as http://127\.0\.0\.1:\d+/\{00000\.\.00009\}\.tar"):
        expand_pattern(f"{base}/*.tar")
    missing = r"^input shard http://127\.0\.0\.1:\d+/00003\.tar does not exist \(HTTP 404\)$"
    with pytest.raises(InputError, match=missing):
        expand_pattern(f"{base}/{{00000..00009}}.tar")
    rc = main(["curate", "--input", f"{base}/*.tar", "--output", str(tmp_path / "o"), "--reference", "r",
               "--proxy", "p"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "globs do not work" in err, err
    (item,) = list(iter_shard(f"{base}/00042.tar", 0))  # vanished after listing: a dead letter
    assert item.reason == "missing_shard"


# --- a connection dropped mid-shard ------------------------------------------------------------


class _Flaky(BaseHTTPRequestHandler):
    """Serves one shard; the first ``drops`` GETs send part of their body (half, or ``keep``
    bytes) and close the socket. With ``ranges`` it answers Range requests with 206, else always
    the whole object (200)."""
    protocol_version = "HTTP/1.1"
    data = b""
    ranges = False
    drops = 1
    keep = None
    gets: list = []

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()

    def do_GET(self):
        cls = type(self)
        asked = self.headers.get("Range")
        cls.gets.append(asked)
        start = 0
        if asked and cls.ranges:
            start = int(asked.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(self.data) - 1}/{len(self.data)}")
        else:
            self.send_response(200)
        body = self.data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cls.drops > 0:
            cls.drops -= 1
            self.wfile.write(body[: len(body) // 2 if cls.keep is None else cls.keep])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def flaky_server(data: bytes, ranges: bool, drops: int = 1, keep=None):
    handler = type("Handler", (_Flaky,), {"data": data, "ranges": ranges, "drops": drops, "keep": keep,
                                          "gets": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/shard.tar", handler
    finally:
        server.shutdown()
        server.server_close()
        t.join(5)


@pytest.fixture
def big_shard(tmp_path):
    """A ~3 MB shard of 30 samples (100 KB images): the drop comes after a megabyte or more."""
    import random

    from learnsieve.datasets.synthetic import make_example
    from tests.conftest import write_tar
    members = []
    for i in range(30):
        img, cap, _ = make_example(random.Random(i), "clean")
        members += [(f"k{i:03d}.jpg", img + bytes(100_000)), (f"k{i:03d}.txt", cap)]
    path = str(tmp_path / "shard.tar")
    write_tar(path, members)
    return path


def _summary(items):
    return [(i.key, i.files) if isinstance(i, Sample) else (i.key, i.reason) for i in items]


@pytest.mark.parametrize("ranges", [True, False], ids=["with_range_support", "without_range_support"])
def test_a_connection_dropped_mid_shard_is_retried_without_loss_or_double_counting(big_shard, ranges, monkeypatch):
    import learnsieve.core.tar_stream as ts
    monkeypatch.setattr(ts, "BACKOFF", 0.01)
    data = open(big_shard, "rb").read()
    expected = list(iter_shard(big_shard, 0))
    with flaky_server(data, ranges) as (url, handler):
        items = list(iter_shard(url, 0))
        assert _summary(items) == _summary(expected) and len(items) == 30
        assert [i.index for i in items] == list(range(30))
        assert len(handler.gets) == 2 and handler.gets[0] is None
        # re-asked from what had been handed out before the drop, or from byte 0 when
        # aiohttp saw the cut before the first read (it then raises without returning the bytes
        # it holds: timing, seen on a loaded CI machine); never past the drop
        resumed_at = int(handler.gets[1].split("=")[1].rstrip("-")) if handler.gets[1] else 0
        assert 0 <= resumed_at <= len(data) // 2
        # the ranged read-back of kept examples survives a drop as well
        handler.drops, handler.gets[:] = 1, []
        kept = [s for s in expected if int(s.key[1:]) % 3 == 0]
        got = list(read_spans(url, kept))
        assert [(r.key, f) for r, f in got] == [(s.key, s.files) for s in kept]
        assert len(handler.gets) == 2


def test_a_connection_that_keeps_dropping_fails_the_read(big_shard, monkeypatch):
    """After the retries the storage's error is raised (Beam retries the bundle): never a
    truncated_tar dead letter that a score file would keep."""
    import learnsieve.core.tar_stream as ts
    monkeypatch.setattr(ts, "BACKOFF", 0.01)
    # each response dies after 1,000 bytes: no read ever completes (one that made progress would
    # start its retries afresh)
    with flaky_server(open(big_shard, "rb").read(), ranges=True, drops=100, keep=1000) as (url, handler):
        with pytest.raises(Exception) as info:
            list(iter_shard(url, 0))
        assert "Payload" in type(info.value).__name__ or isinstance(info.value, ConnectionError), info.value
        assert len(handler.gets) == ts.RETRIES + 1


@pytest.mark.parametrize("ranges", [True, False], ids=["with_range_support", "without_range_support"])
def test_head_and_tail_of_a_large_shard_over_http(big_shard, ranges):
    """What a fingerprint hashes (``tar_stream.read_ends``) also where the server has no Range
    support: fsspec's own http file raises there for any read past its first block (5 MiB)."""
    from learnsieve.core.tar_stream import read_ends
    data = open(big_shard, "rb").read() * 4  # ~12 MB, past fsspec's block
    span = 1 << 20
    with flaky_server(data, ranges, drops=0) as (url, handler):
        assert read_ends(url, len(data), span) == data[:span] + data[-span:]
        assert len(handler.gets) <= 2
        if ranges:
            assert handler.gets[-1] == f"bytes={len(data) - span}-"
