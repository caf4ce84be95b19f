"""Writing tars without Beam: deterministic headers (no timestamps, fixed owner and mode), so the
same inputs give byte-identical shards; through fsspec (local, ``gs://``). Remote files are
written in parts of ``WRITE_BLOCK`` bytes (one upload request each: gcsfs's resumable-upload
chunks, s3fs's multipart parts), never one request per member."""
from __future__ import annotations

import io
import tarfile
from typing import Dict, Tuple

import fsspec

WRITE_BLOCK = 16 << 20  # bytes per upload request of a remote output shard (a multiple of 256 KiB)


def open_output_file(url: str):
    """A binary file for writing ``url``: a local file as fsspec opens it, a remote one buffered
    in ``WRITE_BLOCK``-byte parts."""
    protocol = fsspec.core.split_protocol(url)[0] or "file"
    if protocol in ("file", "local"):
        return fsspec.open(url, "wb").open()
    return fsspec.open(url, "wb", block_size=WRITE_BLOCK).open()


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
        self._file = open_output_file(url)
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
