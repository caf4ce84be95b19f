"""Remote paths are checked before any work: one line, rc 2, within seconds, without network.

gcsfs honours STORAGE_EMULATOR_HOST: pointed at a closed local port it stands for "no network";
pointed at a small local HTTP server that answers like the GCS JSON API it gives every other
answer (no such bucket, no credentials, permission denied, no write permission).
"""
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import fsspec
import pytest

from learnsieve.cli import main
from learnsieve.core.remote import RemoteError, check_remote, remote_targets


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once closed


@pytest.fixture
def anon(monkeypatch):
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": "anon"})


@pytest.fixture
def no_network(monkeypatch, anon):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{closed_port()}")


class FakeGCS(BaseHTTPRequestHandler):
    # bucket -> (status for listing objects, permissions testIamPermissions grants)
    buckets = {"ok": (200, ["storage.objects.create", "storage.objects.list"]),
               "readonly": (200, ["storage.objects.list"]),
               "private": (403, []), "expired": (401, [])}
    seen = []

    def do_GET(self):
        parts = unquote(urlsplit(self.path).path).split("/")  # /storage/v1/b/BUCKET/o
        bucket = parts[4] if len(parts) > 4 else ""
        FakeGCS.seen.append((self.path, self.headers.get("Authorization")))
        status, granted = self.buckets.get(bucket, (404, []))
        if parts[-1] == "testPermissions":
            body = {"kind": "storage#testIamPermissionsResponse", "permissions": granted}
            status = 200 if status == 200 else status
        elif status == 200:
            body = {"kind": "storage#objects"}
        else:
            msg = {404: "The specified bucket does not exist.",
                   403: "caller does not have storage.objects.list access to the bucket.",
                   401: "Invalid Credentials"}[status]
            body = {"error": {"code": status, "message": msg}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_gcs(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGCS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
    FakeGCS.seen = []
    yield FakeGCS
    server.shutdown()
    server.server_close()


@pytest.fixture
def token(monkeypatch):
    """A raw OAuth token that gcsfs sends as is (no refresh, no token-info lookup)."""
    monkeypatch.setenv("FETCH_RAW_TOKEN_EXPIRY", "false")
    monkeypatch.setitem(fsspec.config.conf, "gcs", {"token": "fake-token"})


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unreachable_input_fails_in_one_line_within_seconds(no_network, capsys, tmp_path):
    t0 = time.monotonic()
    rc = main(["curate", "--input", "gs://pool-bucket/shards/{00000..00009}.tar", "--output",
               str(tmp_path / "o"), "--reference", "r", "--proxy", "p"])
    elapsed = time.monotonic() - t0
    err = one_line(capsys.readouterr().err)
    assert rc == 2 and elapsed < 15, (rc, elapsed)
    assert "--input gs://pool-bucket/shards/{00000..00009}.tar" in err and "no network" in err
    assert not (tmp_path / "o").exists()


def test_unreachable_output_fails_in_one_line_within_seconds(no_network, data_root, capsys):
    t0 = time.monotonic()
    rc = main(["curate", "--input", data_root["pool_pattern"], "--output", "gs://out-bucket/run1",
               "--reference", "r", "--proxy", "p"])
    elapsed = time.monotonic() - t0
    err = one_line(capsys.readouterr().err)
    assert rc == 2 and elapsed < 15, (rc, elapsed)
    assert "--output gs://out-bucket/run1" in err and "connection to 127.0.0.1" in err


def test_console_script_without_network_prints_one_line(tmp_path):
    """The whole command as a user runs it: no retry tracebacks, on stderr or at exit."""
    env = {**os.environ, "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{closed_port()}",
           "FSSPEC_GCS_TOKEN": "anon"}
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "learnsieve", "train-reference", "--data",
                          "gs://b/clean/*.tar", "--out", str(tmp_path / "ref")],
                         capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stderr
    assert "--data gs://b/clean/*.tar: no network" in one_line(out.stderr)
    assert elapsed < 15, elapsed  # interpreter start-up included; was 92 s of retries


def test_checkpoints_and_eval_paths_are_checked(no_network, data_root, tmp_path, capsys):
    rc = main(["curate", "--input", data_root["pool_pattern"], "--output", str(tmp_path / "o"),
               "--reference", "gs://ckpt/reference", "--proxy", "gs://ckpt/proxy"])
    assert rc == 2 and "--reference gs://ckpt/reference" in one_line(capsys.readouterr().err)
    rc = main(["eval", "--arm", f"curated={data_root['pool_pattern']}", "--test", "gs://t/test/*.tar"])
    assert rc == 2 and "--test gs://t/test/*.tar: no network" in one_line(capsys.readouterr().err)


def test_answers_of_the_storage_endpoint(fake_gcs, anon):
    check_remote([("--input", "gs://ok/pool/*.tar", False)])  # reachable: nothing
    path, auth = fake_gcs.seen[-1]
    assert path.startswith("/storage/v1/b/ok/o?") and "prefix=pool%2F" in path and auth is None
    with pytest.raises(RemoteError, match=r"^--input gs://gone/x\.tar: no such bucket gs://gone$"):
        check_remote([("--input", "gs://gone/x.tar", False)])
    with pytest.raises(RemoteError, match="no credentials: anonymous access to gs://private"):
        check_remote([("--proxy", "gs://private/ckpt", False)])


def test_credentials_and_permissions(fake_gcs, token):
    check_remote([("--output", "gs://ok/out", True)])
    assert all(auth == "Bearer fake-token" for _, auth in fake_gcs.seen)
    with pytest.raises(RemoteError, match=r"--input gs://private/x\.tar: permission denied \(HTTP 403"):
        check_remote([("--input", "gs://private/x.tar", False)])
    with pytest.raises(RemoteError, match=r"credentials rejected \(HTTP 401: Invalid Credentials\)"):
        check_remote([("--input", "gs://expired/x.tar", False)])
    check_remote([("--input", "gs://readonly/x.tar", False)])  # reading needs no create
    with pytest.raises(RemoteError, match="cannot create objects in gs://readonly"):
        check_remote([("--output", "gs://readonly/out", True)])


def test_an_endpoint_that_never_answers_is_given_up_at_the_deadline(anon, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections are queued, never answered
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{silent.getsockname()[1]}")
    t0 = time.monotonic()
    try:
        with pytest.raises(RemoteError, match=r"--input gs://b/x\.tar: .*(did not answer|no answer)"):
            check_remote([("--input", "gs://b/x.tar", False)], timeout=1.0)
    finally:
        silent.close()
    assert time.monotonic() - t0 < 5


def test_other_protocols(capfd):
    if importlib.util.find_spec("s3fs") is None:
        with pytest.raises(RemoteError, match=r"^--input s3://b/x\.tar: Install s3fs"):
            check_remote([("--input", "s3://b/x.tar", False)])
    with pytest.raises(RemoteError, match="unknown protocol nosuch://"):
        check_remote([("--output", "nosuch://b/out", True)])
    check_remote([("--input", "memory://x/y.tar", False), ("--output", "/tmp/local", True)])
    assert capfd.readouterr().err == ""  # no log noise


def test_one_probe_per_bucket():
    targets = remote_targets([("--input", "gs://a/{0..999}.tar::gs://b/x.tar::/local/*.tar", False),
                              ("--output", "gs://a/out", True), ("--reference", None, False)])
    assert [(w, p) for w, _, p, _ in targets] == [("--input", "gs://a/0.tar"), ("--input", "gs://b/x.tar"),
                                                  ("--output", "gs://a/out")]
