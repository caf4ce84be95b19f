"""The byte layer under the tar reader: shards opened through fsspec (gzip/bz2/xz or plain),
exact counted reads, storage errors kept apart from damage, and ranged reads of members.

``core/tar.py`` parses headers and groups members into samples on top of this.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
from typing import Dict, Iterator, Optional, Tuple

import fsspec

from learnsieve.core.tar_headers import _CHUNK, _COMPRESSED, _UNSUPPORTED


def read_spans(url: str, records: list) -> Iterator[Tuple[object, Dict[str, bytes]]]:
    """(record, files) for records carrying ``spans``: ranged reads of exactly their members'
    bytes, in file order (local files and gs:// alike, through fsspec)."""
    with fsspec.open(url, "rb") as f:
        for r in sorted(records, key=lambda r: min(o for o, _ in r.spans.values())):
            files = {}
            for ext, (offset, size) in r.spans.items():
                f.seek(offset)
                data = f.read(size)
                if len(data) != size:
                    raise RuntimeError(f"input shard {url} changed during the run: short read at {offset}")
                files[ext] = data
            yield r, files


class _Stream:
    """Exact reads from a byte stream, counting the position (the file offset for plain tars)."""
    __slots__ = ("can_seek", "f", "pos")

    def __init__(self, f, can_seek: bool):
        self.f, self.pos, self.can_seek = f, 0, can_seek

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n and data:
            parts = [data]
            got = len(data)
            while got < n:
                more = self.f.read(n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self.pos += len(data)
        return data

    def skip(self, n: int) -> bool:
        """Skip n bytes; False when the stream ends first."""
        if self.can_seek and n > _CHUNK:
            self.f.seek(self.pos + n - 1)
            if len(self.f.read(1)) != 1:
                return False
            self.pos += n
            return True
        while n > 0:
            got = len(self.read(min(n, _CHUNK)))
            if got == 0:
                return False
            n -= got
        return True


class _Prefixed:
    """A non-seekable stream with its first bytes (read to sniff the compression) put back."""

    def __init__(self, head: bytes, f):
        self.head, self.f = head, f

    def read(self, n: int = -1) -> bytes:
        if not self.head:
            return self.f.read(n)
        if n < 0:
            out, self.head = self.head + self.f.read(), b""
        else:
            out, self.head = self.head[:n], self.head[n:]
        return out


def _open(raw) -> Tuple[object, Optional[str], bool]:
    """(decompressed stream, compression or None, seekable) of a shard opened through fsspec."""
    can_seek = bool(getattr(raw, "seekable", lambda: False)())
    head = raw.read(6)
    if can_seek:
        raw.seek(0)
    else:
        raw = _Prefixed(head, raw)
    for magic, name in _UNSUPPORTED:
        if head.startswith(magic):
            raise _NotATar(f"{name}-compressed tars are not supported")
    for magic, name in _COMPRESSED:
        if head.startswith(magic):
            if name == "gzip":
                return gzip.GzipFile(fileobj=raw, mode="rb"), name, False
            if name == "bz2":
                return bz2.BZ2File(raw), name, False
            return lzma.LZMAFile(raw), name, False
    return raw, None, can_seek


class _NotATar(Exception):
    pass


class SourceReadError(Exception):
    """An I/O error of the input file itself (a timeout, a dropped connection, EIO): not an
    OSError, so the decompressors and the damage handling below let it through, and iter_shard
    re-raises the original error. A transient failure must fail the bundle (Beam retries it),
    never become a ``truncated_tar`` that a score file would keep for good."""


class _SourceReads:
    """The input file, with its read errors turned into ``SourceReadError``."""

    def __init__(self, raw):
        self._raw = raw

    def read(self, *a):
        try:
            return self._raw.read(*a)
        except OSError as exc:
            raise SourceReadError(str(exc)) from exc

    def __getattr__(self, name):
        return getattr(self._raw, name)
