"""Tar I/O without Beam: stream samples out of tar shards, read members by byte range, write tars.

Reading streams members one at a time (``tarfile`` mode ``r|*``), so no shard is ever held whole
in memory; files are opened through fsspec (local, ``gs://`` via gcsfs, ...).
"""
from __future__ import annotations

import io
import re
import tarfile
import zlib
from typing import Dict, Iterator, Optional, Tuple, Union

import fsspec

from learnsieve.core.records import DeadLetter, Sample

_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]+)$")  # webdataset's key.ext convention


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


def split_member(name: str) -> Optional[Tuple[str, str]]:
    m = _MEMBER.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def unsafe_key(key: str) -> bool:
    return key.startswith("/") or ".." in key.split("/") or "\\" in key or "\x00" in key


Item = Union[Sample, DeadLetter]


def iter_shard(url: str, shard_index: int, max_member_bytes: int = 64 << 20) -> Iterator[Item]:
    """Samples of one shard in stream order; every problem becomes a DeadLetter, never an
    exception. A truncated tar yields what came before the damage, then one dead letter."""
    def dead(key, reason, detail="", index=-1):
        return DeadLetter(key=key, source=url, stage="read", reason=reason, detail=detail,
                          shard_index=shard_index, index=index)

    seen = set()
    count = 0
    key: Optional[str] = None
    files: Dict[str, bytes] = {}
    spans: Dict[str, Tuple[int, int]] = {}
    seekable = False  # offsets are byte positions in the file only for uncompressed tars
    problem: Optional[str] = None

    def flush():
        nonlocal count
        item: Item
        if key in seen:
            item = dead(key, "duplicate_key", "key appears twice in this shard", count)
        elif unsafe_key(key):
            item = dead(key, "unsafe_key", "key is an absolute path or contains '..'", count)
        elif problem:
            item = dead(key, problem, index=count)
        else:
            item = Sample(key=key, source=url, shard_index=shard_index, index=count, files=files,
                          spans=spans if seekable else None)
        seen.add(key)
        count += 1
        return item

    try:
        with fsspec.open(url, "rb") as raw:
            try:
                tar = tarfile.open(fileobj=raw, mode="r|*")
            except (tarfile.TarError, EOFError, OSError) as exc:
                yield dead(None, "not_a_tar", f"{type(exc).__name__}: {exc}")
                return
            seekable = getattr(tar.fileobj, "comptype", None) == "tar"
            try:
                for member in tar:
                    if not member.isfile():
                        continue
                    parts = split_member(member.name)
                    if parts is None:
                        continue  # e.g. __len__ files or names without an extension
                    mkey, ext = parts
                    if mkey != key:
                        if key is not None:
                            yield flush()
                        key, files, spans, problem = mkey, {}, {}, None
                    if member.size > max_member_bytes:
                        problem = "member_too_large"
                        continue
                    f = tar.extractfile(member)
                    files[ext] = f.read() if f is not None else b""
                    spans[ext] = (member.offset_data, member.size)
                if key is not None:
                    yield flush()
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                yield dead(key, "truncated_tar", f"{type(exc).__name__}: {exc}"[:200], count)
    except FileNotFoundError as exc:
        yield dead(None, "missing_shard", str(exc))


def tar_bytes_member(name: str, data: bytes) -> Tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0       # deterministic bytes: same inputs, same shards
    info.mode = 0o444
    info.uname = info.gname = "learnsieve"
    return info, io.BytesIO(data)


def _ustar_template() -> Tuple[bytes, int]:
    """A POSIX ustar header with every field but name, size and checksum filled in."""
    info, _ = tar_bytes_member("x", b"")
    info.name = ""
    h = bytearray(info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "surrogateescape"))
    h[148:156] = b" " * 8  # checksum counts as spaces
    h[124:136] = b"\0" * 12
    return bytes(h), sum(h)


_USTAR, _USTAR_SUM = _ustar_template()


def tar_header(name: str, size: int) -> bytes:
    """The 512-byte header of a regular file member: tarfile's own bytes for long names, else a
    template filled by hand (tarfile's header code is most of the cost of writing small members)."""
    raw = name.encode("utf-8")
    if len(raw) > 100 or size >= 8 ** 11:
        info, _ = tar_bytes_member(name, b"")
        info.size = size
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    size_field = b"%011o\0" % size
    h = bytearray(_USTAR)
    h[0:len(raw)] = raw
    h[124:136] = size_field
    h[148:156] = b"%06o\0 " % (_USTAR_SUM + sum(raw) + sum(size_field))
    return bytes(h)


class TarSink:
    """Writes samples to one tar through fsspec; deterministic headers (no timestamps)."""

    def __init__(self, url: str):
        self.url = url
        self._file = fsspec.open(url, "wb").open()
        self._written = 0
        self.count = 0

    def write(self, key: str, files: Dict[str, bytes]) -> None:
        for ext in sorted(files):
            data = files[ext]
            header = tar_header(f"{key}.{ext}", len(data))
            pad = -len(data) % 512
            self._file.write(header + data + b"\0" * pad)
            self._written += len(header) + len(data) + pad
        self.count += 1

    def close(self) -> None:
        end = self._written + 1024  # two zero blocks, then pad to tarfile's 10 KiB records
        self._file.write(b"\0" * (1024 + (-end % tarfile.RECORDSIZE)))
        self._file.close()
