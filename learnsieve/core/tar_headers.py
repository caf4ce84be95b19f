"""Parsing tar headers by hand (ustar, GNU long names, pax records), as the streaming reader in
``tar.py`` needs: a damaged header is told apart from a valid one, so reading can resume at the
next valid header instead of stopping silently."""
from __future__ import annotations

import lzma
import tarfile
import zlib
from typing import Dict, Optional, Tuple

from learnsieve.core.keys import key_ext

TAR_BLOCK = 512
ZERO_BLOCK = bytes(TAR_BLOCK)
CHUNK = 1 << 20          # skips larger than this seek (plain tars) instead of reading
MAX_META = 1 << 20       # longest GNU long name / pax header read into memory
REGULAR = (b"0", b"\0", b"7")                     # regular file, old regular file, contiguous
NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")    # links, devices, directories, FIFOs: size ignored
COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
UNSUPPORTED = ((b"\x28\xb5\x2f\xfd", "zstd"),)
STREAM_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def nts(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def parse_header(buf: bytes) -> Optional[Tuple[str, int, bytes, bool]]:
    """(name, size, type, old-GNU-sparse extended) of a 512-byte header block, or None when it is
    not one (checksum mismatch, non-numeric fields). Names as ``tarfile`` derives them."""
    field = buf[148:156].split(b"\0", 1)[0]
    try:
        chksum = int(field, 8)
    except ValueError:
        return None
    if chksum != sum(buf) - sum(buf[148:156]) + 256 and chksum not in tarfile.calc_chksums(buf):
        return None
    if buf[124] & 0x80:  # base-256 size (GNU, > 8 GiB)
        try:
            size = tarfile.nti(buf[124:136])
        except tarfile.InvalidHeaderError:
            return None
    else:
        field = buf[124:136].split(b"\0", 1)[0].strip()
        try:
            size = int(field, 8) if field else 0
        except ValueError:
            return None
    if size < 0:
        return None
    kind = buf[156:157]
    name = nts(buf[0:100])
    if kind == b"\0" and name.endswith("/"):
        kind = b"5"
    prefix = buf[345:500]
    if prefix[0] and kind not in tarfile.GNU_TYPES:
        name = nts(prefix) + "/" + name
    return name, size, kind, kind == b"S" and bool(buf[482])


def why_not_header(buf: bytes) -> str:
    try:
        int(buf[148:156].split(b"\0", 1)[0], 8)
    except ValueError:
        return "not a tar header"
    return "header checksum mismatch" if parse_header(buf) is None else "invalid header fields"


def name_guess(buf: bytes) -> Optional[Tuple[str, str]]:
    """(key, ext) from the name field of a damaged header, if it reads as a plain member name."""
    try:
        name = buf[0:100].split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return key_ext(name) if name.isprintable() else None


def pax_records(data: bytes) -> Optional[Dict[str, bytes]]:
    """``"%d %s=%s\\n"`` records of a pax extended header; None when malformed."""
    out: Dict[str, bytes] = {}
    pos, n = 0, len(data)
    while pos < n:
        if data[pos] == 0:  # NUL padding after the last record
            break
        sp = data.find(b" ", pos, pos + 21)
        if sp < 0 or not data[pos:sp].isdigit():
            return None
        end = pos + int(data[pos:sp])
        if end <= sp + 2 or end > n or data[end - 1] != 0x0A:
            return None
        key, eq, value = data[sp + 1:end - 1].partition(b"=")
        if not eq or not key:
            return None
        out[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return out
