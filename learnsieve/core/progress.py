"""Progress of a curate run, read from the score files on disk (no Beam): a line every N seconds
with shards done / total, examples scored, examples/s, ETA and rejections so far by reason.

Score files are written by whichever worker scored a shard, on any runner (in-process,
multi-processing, portable, Dataflow), so watching the output folder from the launching process
works everywhere; the ``_scores/`` folder is listed once per report, and each new file's footer and
reason column are read once."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Dict, Optional, Sequence

import fsspec

from learnsieve.core.paths import join
from learnsieve.core.score_file import CACHE_DIR, cache_path

log = logging.getLogger("learnsieve.progress")


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Watches ``OUTPUT/_scores/`` for the score files of ``to_score`` shards (files that exist
    at the start with the same size and time are not counted: a stale file of other models is
    only done once rewritten)."""

    def __init__(self, output: str, to_score: Sequence[str], reused: int = 0, interval: float = 10.0):
        self.fs, self.root = fsspec.core.url_to_fs(join(output, CACHE_DIR))
        self.names = {os.path.basename(cache_path(output, u)) for u in to_score}
        self.total, self.reused, self.interval = len(to_score), reused, interval
        self.start = time.monotonic()
        self.before = self._listing()
        self.done: Dict[str, tuple] = {}
        self.examples = 0
        self.rejected: Dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _listing(self) -> Dict[str, tuple]:
        try:
            entries = self.fs.ls(self.root, detail=True)
        except (FileNotFoundError, OSError):
            return {}
        out = {}
        for e in entries:
            name = os.path.basename(e["name"].rstrip("/"))
            out[name] = (e.get("size"), e.get("mtime") or e.get("updated") or e.get("LastModified"))
        return out

    def poll(self) -> None:
        import pyarrow.parquet as pq
        for name, sig in self._listing().items():
            if name not in self.names or name in self.done or self.before.get(name) == sig:
                continue
            try:
                with self.fs.open(join(self.root, name), "rb") as f:
                    table = pq.read_table(f, columns=["stage", "reason"])
            except Exception:  # being renamed into place, or unreadable: next time
                continue
            self.done[name] = sig
            self.examples += table.num_rows
            for stage, reason in zip(table.column("stage").to_pylist(), table.column("reason").to_pylist()):
                if stage is not None:
                    key = f"{stage}:{reason}"
                    self.rejected[key] = self.rejected.get(key, 0) + 1

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        n = len(self.done)
        rate = self.examples / elapsed if elapsed > 0 else 0.0
        eta = f"ETA {_duration(elapsed / n * (self.total - n))}" if n else "ETA -"
        rejected = sum(self.rejected.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items(), key=lambda kv: -kv[1])[:4])
        reused = f" (+{self.reused} from score files)" if self.reused else ""
        return (f"scored {n}/{self.total} shards{reused}, {self.examples:,} examples, {rate:.1f} ex/s, "
                f"{eta}, elapsed {_duration(elapsed)}, rejected {rejected}" + (f" ({reasons})" if reasons else ""))

    def report(self) -> None:
        self.poll()
        log.info(self.line())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception as exc:  # progress must never break the run
                log.debug("progress: %r", exc)

    def __enter__(self) -> "Progress":
        if self.interval > 0:
            self._thread = threading.Thread(target=self._loop, name="learnsieve-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
