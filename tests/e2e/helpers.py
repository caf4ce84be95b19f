"""Helpers of the end-to-end tests."""
import contextlib
import glob
import os
import signal
import subprocess
import time
import urllib.request

OUTPUT_FILES = ("sizes.json", "manifest.parquet", "rejected/rejected.jsonl")


def snapshot(out: str) -> dict:
    """The bytes of everything a curate run's output must reproduce exactly: the shards, their
    ``_stats.json``, sizes.json, manifest.parquet and rejected.jsonl."""
    files = sorted(glob.glob(os.path.join(out, "*.tar")) + glob.glob(os.path.join(out, "*_stats.json")))
    files += [os.path.join(out, f) for f in OUTPUT_FILES]
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files}


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def loopback_server(argv, port: int, log_path: str, what: str, timeout: float = 30):
    """Start a server subprocess (``argv``, listening on 127.0.0.1:``port``), wait until it answers
    http, yield its process, and stop it by pid at the end."""
    log = open(log_path, "w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start: {open(log_path).read()[-2000:]}")
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
