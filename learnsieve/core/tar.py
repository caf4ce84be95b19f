"""Tar I/O without Beam: stream samples out of tar shards, read members by byte range, write tars.

Reading parses the tar stream itself, one 512-byte header and one member at a time, so no shard
is ever held whole in memory and no byte range goes unaccounted for (``tarfile``'s ``r|*``
stops silently at a damaged header); files are opened through fsspec (local, ``gs://`` via
gcsfs, ...), gzip/bz2/xz-compressed or plain.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import tarfile
import zlib
from typing import Dict, Iterator, List, Optional, Tuple, Union

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


_DRIVE = re.compile(r"^[A-Za-z]:")


def _unsafe_why(key: str) -> str:
    if "\x00" in key:
        return "key contains NUL"
    if "\\" in key:
        return "key contains a backslash (a path separator on Windows)"
    if key.startswith("/"):
        return "key is an absolute path"
    if _DRIVE.match(key):
        return "key starts with a drive letter"
    if ".." in key.split("/"):
        return "key contains '..'"
    return ""


def unsafe_key(key: str) -> bool:
    """True for keys that could escape an output folder in any spelling: absolute paths, '..'
    components, backslashes, drive letters (``C:``), NUL."""
    return bool(_unsafe_why(key))


def _key_ext(name: str) -> Optional[Tuple[str, str]]:
    """(key, ext) of a member name; names with backslashes are split as if they were slashes
    (``..\\x.jpg`` -> key ``..\\x``) so that they are named unsafe instead of skipped."""
    parts = split_member(name)
    if parts is None and "\\" in name:
        alt = split_member(name.replace("\\", "/"))
        if alt is not None:
            parts = (name[:len(alt[0])], alt[1])
    return parts


Item = Union[Sample, DeadLetter]

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # decode reads the image from exactly one of these

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_CHUNK = 1 << 20          # skips larger than this seek (plain tars) instead of reading
_MAX_META = 1 << 20       # longest GNU long name / pax header read into memory
_REGULAR = (b"0", b"\0", b"7")                     # regular file, old regular file, contiguous
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")    # links, devices, directories, FIFOs: size ignored
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))
_UNSUPPORTED = ((b"\x28\xb5\x2f\xfd", "zstd"),)
_STREAM_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


def _nts(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _parse_header(buf: bytes) -> Optional[Tuple[str, int, bytes, bool]]:
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
    name = _nts(buf[0:100])
    if kind == b"\0" and name.endswith("/"):
        kind = b"5"
    prefix = buf[345:500]
    if prefix[0] and kind not in tarfile.GNU_TYPES:
        name = _nts(prefix) + "/" + name
    return name, size, kind, kind == b"S" and bool(buf[482])


def _why_not_header(buf: bytes) -> str:
    try:
        int(buf[148:156].split(b"\0", 1)[0], 8)
    except ValueError:
        return "not a tar header"
    return "header checksum mismatch" if _parse_header(buf) is None else "invalid header fields"


def _name_guess(buf: bytes) -> Optional[Tuple[str, str]]:
    """(key, ext) from the name field of a damaged header, if it reads as a plain member name."""
    try:
        name = buf[0:100].split(b"\0", 1)[0].decode("utf-8")
    except UnicodeDecodeError:
        return None
    return _key_ext(name) if name.isprintable() else None


def _pax_records(data: bytes) -> Optional[Dict[str, bytes]]:
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


class _Group:
    __slots__ = ("detail", "exts", "files", "key", "problem", "spans")

    def __init__(self, key: str):
        self.key = key
        self.files: Dict[str, bytes] = {}
        self.spans: Dict[str, Tuple[int, int]] = {}
        self.exts: List[str] = []
        self.problem: Optional[str] = None
        self.detail = ""


class _Samples:
    """Members -> samples (runs of consecutive members of one key), every problem named.

    A repeated extension inside a run ends the sample: ``a.jpg a.txt a.jpg a.txt`` is sample
    ``a`` then ``read:duplicate_key``. When the two parts do not have the same members
    (``a.jpg a.jpg a.txt``) they are one ``read:duplicate_member``: there is no telling which
    member belongs to the sample. At most two parts are held while this is decided."""

    def __init__(self, url: str, shard_index: int, with_spans: bool):
        self.url, self.shard_index, self.with_spans = url, shard_index, with_spans
        self.seen: set = set()
        self.count = 0
        self.cur: Optional[_Group] = None
        self.held: Optional[_Group] = None
        self.deferred: List[Tuple[str, str]] = []  # key-less damage inside the pending run

    def dead(self, key: Optional[str], reason: str, detail: str = "", index: Optional[int] = None) -> DeadLetter:
        if index is None:
            index = self.count
            self.count += 1
        return DeadLetter(key=key, source=self.url, stage="read", reason=reason, detail=detail[:300],
                          shard_index=self.shard_index, index=index)

    def member(self, key: str, ext: str, data: Optional[bytes], span: Optional[Tuple[int, int]],
               problem: Optional[str] = None, detail: str = "") -> List[Item]:
        out: List[Item] = []
        g = self.cur
        if g is not None and g.key == key:
            if ext in g.exts:  # a repeated extension ends this part of the run
                if self.held is None:
                    self.held = g
                else:
                    out += self._decide(self.held, g)
                    self.held = None
                g = self.cur = _Group(key)
        else:
            out += self.close()
            g = self.cur = _Group(key)
        g.exts.append(ext)
        if problem:
            if not g.problem:
                g.problem, g.detail = problem, detail
        elif data is not None:
            g.files[ext] = data
            if span is not None:
                g.spans[ext] = span
        return out

    def damage(self, reason: str, detail: str) -> List[Item]:
        """Damage that names no key: a dead letter after the pending run (which may go on)."""
        if self.cur is None:
            return [self.dead(None, reason, detail)]
        self.deferred.append((reason, detail))
        return []

    def close(self) -> List[Item]:
        """End of a run of one key (another key, an end-of-archive block, end of stream)."""
        out: List[Item] = []
        if self.held is not None:
            out = self._decide(self.held, self.cur)
        elif self.cur is not None:
            out = [self._flush(self.cur)]
        self.held = self.cur = None
        return out + self._deferred()

    def fold(self, reason: str, detail: str) -> List[Item]:
        """The pending run (possibly incomplete) and the damage after it: one dead letter."""
        key = self.cur.key if self.cur is not None else None
        self.held = self.cur = None
        if key is not None:
            self.seen.add(key)
        return [self.dead(key, reason, detail)] + self._deferred()

    def _deferred(self) -> List[Item]:
        out: List[Item] = [self.dead(None, r, d) for r, d in self.deferred]
        self.deferred = []
        return out

    def _decide(self, first: _Group, second: _Group) -> List[Item]:
        if first.key in self.seen or set(first.exts) == set(second.exts):
            return [self._flush(first), self._flush(second)]  # the second is a duplicate_key
        self.seen.add(first.key)
        return [self.dead(first.key, "duplicate_member",
                          f"one key, repeated member names: {','.join(first.exts + second.exts)}")]

    def _flush(self, g: _Group) -> Item:
        key = g.key
        images = [e for e in g.exts if e in IMAGE_EXTS]
        item: Item
        if key in self.seen:
            item = self.dead(key, "duplicate_key", "key appears twice in this shard")
        elif unsafe_key(key):
            item = self.dead(key, "unsafe_key", _unsafe_why(key))
        elif g.problem:
            item = self.dead(key, g.problem, g.detail)
        elif len(images) > 1:
            item = self.dead(key, "multiple_images", f"members: {','.join(g.exts)}")
        else:
            item = Sample(key=key, source=self.url, shard_index=self.shard_index, index=self.count,
                          files=g.files, spans=g.spans if self.with_spans else None)
            self.count += 1
        self.seen.add(key)
        return item


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


def iter_shard(url: str, shard_index: int, max_member_bytes: int = 64 << 20) -> Iterator[Item]:
    """Samples of one shard in stream order; every problem becomes a DeadLetter, never an
    exception, and every byte range of the shard is either in a sample or in a dead letter:

    * a damaged header: ``read:bad_header``, then reading resumes at the next valid
      512-byte-aligned header (GNU tar's "Skipping to next header"); when the damaged header's
      name is still legible the dead letter carries its key and takes in its sample's members;
    * a cut inside a header or inside member data: ``read:truncated_tar`` (the sample being read
      is part of it), after everything before the cut;
    * a clean end at a member boundary without the end-of-archive blocks:
      ``read:missing_end_of_archive`` (key None) after every sample, the last one included;
    * ``read:not_a_tar`` (no valid header anywhere), ``read:missing_shard``;
    * per sample: ``duplicate_key``, ``duplicate_member``, ``unsafe_key``, ``member_too_large``,
      ``multiple_images``, ``unsupported_member`` (sparse files).

    Reads ustar, GNU (long names, base-256 sizes) and pax (``path``, ``size``) members, plain or
    gzip/bz2/xz-compressed, 512 bytes of header at a time: no shard is held in memory. After an
    end-of-archive block, anything but zeros is read on (concatenated tars, as ``tar -i``)."""
    try:
        with fsspec.open(url, "rb") as raw:
            yield from _read(raw, url, shard_index, max_member_bytes)
    except FileNotFoundError as exc:
        yield DeadLetter(key=None, source=url, stage="read", reason="missing_shard", detail=str(exc),
                         shard_index=shard_index, index=-1)


def _read(raw, url: str, shard_index: int, max_member_bytes: int) -> Iterator[Item]:
    def not_a_tar(detail):
        return DeadLetter(key=None, source=url, stage="read", reason="not_a_tar", detail=detail[:300],
                          shard_index=shard_index, index=-1)

    try:
        f, compression, can_seek = _open(raw)
    except _NotATar as exc:
        yield not_a_tar(str(exc))
        return
    except _STREAM_ERRORS as exc:
        yield not_a_tar(f"{type(exc).__name__}: {exc}")
        return
    s = _Stream(f, can_seek)
    g = _Samples(url, shard_index, with_spans=compression is None)
    members = 0              # regular-file members read
    saw_header = False       # any valid header at all (else: not a tar)
    saw_end = False          # an end-of-archive block since the last header
    long_name: Optional[str] = None
    pax: Dict[str, bytes] = {}
    global_pax: Dict[str, bytes] = {}
    pushback: Optional[Tuple[int, bytes]] = None

    def cut(where: str, at: int, key: Optional[str] = None) -> Iterator[Item]:
        """A cut (or unreadable compressed data) inside ``where``, in a member of ``key`` when
        known: the pending sample, unless it is another key's, goes into one dead letter."""
        if not saw_header:
            yield not_a_tar(f"no tar header before byte {at} ({where})")
            return
        detail = f"cut inside {where} at byte {at}; {members} members read"
        if key is not None and (g.cur is None or g.cur.key != key):
            yield from g.close()
            yield g.dead(key, "truncated_tar", detail)
        else:
            pending = f"; the sample being read ({g.cur.key}) is part of this row" if g.cur else ""
            yield from g.fold("truncated_tar", detail + pending)

    try:
        while True:
            if pushback is not None:
                hpos, buf = pushback
                pushback = None
            else:
                hpos = s.pos
                buf = s.read(_BLOCK)
            if len(buf) < _BLOCK:
                if buf and not (saw_end and not buf.strip(b"\0")):
                    yield from cut("a header", hpos)
                    return
                if not saw_header:
                    if hpos == 0:
                        yield not_a_tar("empty file")
                    return  # only zero blocks: an empty tar
                if long_name is not None or pax:
                    yield from cut("an extended header's member", hpos)
                    return
                yield from g.close()
                if not saw_end:
                    yield g.dead(None, "missing_end_of_archive",
                                 f"shard ends at byte {hpos} after {members} members without the "
                                 "end-of-archive blocks (cut at a member boundary, or never closed)")
                return
            if buf == _ZERO_BLOCK:
                saw_end = True
                yield from g.close()
                long_name, pax = None, {}
                continue
            h = _parse_header(buf)
            if h is None:
                why = _why_not_header(buf)
                guess = _name_guess(buf)
                long_name, pax = None, {}
                while True:  # skip to the next valid header, as GNU tar does
                    p = s.pos
                    b = s.read(_BLOCK)
                    if len(b) < _BLOCK:
                        break
                    if b != _ZERO_BLOCK and _parse_header(b) is not None:
                        pushback = (p, b)
                        break
                if pushback is None and not saw_header:
                    yield not_a_tar(f"{why} at byte {hpos} and no tar header after it")
                    return
                end = pushback[0] if pushback else s.pos
                detail = (f"{why} at byte {hpos}; skipped {end - hpos} bytes to "
                          + (f"the next header at byte {end}" if pushback else "the end of the shard"))
                if guess is not None:
                    yield from g.member(guess[0], guess[1], None, None, "bad_header", detail)
                else:
                    yield from g.damage("bad_header", detail)
                if pushback is None:
                    yield from g.close()
                    return
                continue
            saw_header, saw_end = True, False
            name, size, kind, extended = h
            if kind in (b"L", b"K", b"x", b"g"):
                if size > _MAX_META:
                    if not s.skip(size + (-size % _BLOCK)):
                        yield from cut("an extended header", hpos)
                        return
                    yield from g.damage("bad_header", f"extended header of {size} bytes at byte {hpos}")
                    long_name, pax = None, {}
                    continue
                data = s.read(size + (-size % _BLOCK))
                if len(data) < size + (-size % _BLOCK):
                    yield from cut("an extended header", hpos)
                    return
                data = data[:size]
                if kind == b"L":
                    long_name = _nts(data)
                elif kind in (b"x", b"g"):
                    records = _pax_records(data)
                    if records is None or not records.get("size", b"0").isdigit():
                        yield from g.damage("bad_header", f"malformed pax header at byte {hpos}")
                        pax = {}
                    elif kind == b"x":
                        pax = records
                    else:
                        global_pax.update(records)
                continue
            if pax or global_pax:
                merged = {**global_pax, **pax} if global_pax else pax
                path = merged.get("GNU.sparse.name", merged.get("path"))  # as tarfile names them
                if path is not None:
                    name = path.decode("utf-8", "surrogateescape")
                elif long_name is not None:
                    name = long_name
                if "size" in merged:
                    size = int(merged["size"])
                sparse = any(k.startswith("GNU.sparse.") for k in merged)
            else:
                if long_name is not None:
                    name = long_name
                sparse = False
            long_name, pax = None, {}
            if extended:  # old GNU sparse: extension blocks of sparse structs before the data
                while True:
                    b = s.read(_BLOCK)
                    if len(b) < _BLOCK:
                        yield from cut("a sparse header", hpos)
                        return
                    if not b[504]:
                        break
            padded = size + (-size % _BLOCK)
            if kind in _NO_DATA:
                continue
            if not (kind in _REGULAR or kind == b"S") or name.endswith("/"):
                if not s.skip(padded):  # unknown member types carry data, as tarfile assumes
                    yield from cut("member data", hpos)
                    return
                continue
            members += 1
            parts = _key_ext(name)
            problem: Optional[Tuple[str, str]] = None
            if sparse or kind == b"S":
                problem = ("unsupported_member", f"{name}: sparse file")
            elif size > max_member_bytes:
                problem = ("member_too_large", f"{name}: {size} bytes > {max_member_bytes}")
            if parts is None or problem is not None:
                if not s.skip(padded):
                    yield from cut("member data", hpos, parts[0] if parts else None)
                    return
                if parts is not None:
                    yield from g.member(parts[0], parts[1], None, None, *problem)
                continue  # names without an extension (e.g. __len__) are not samples
            offset = s.pos
            data = s.read(size)
            if len(data) < size or (padded > size and len(s.read(padded - size)) < padded - size):
                yield from cut("member data", hpos, parts[0])
                return
            yield from g.member(parts[0], parts[1], data, (offset, size))
    except _STREAM_ERRORS as exc:
        if saw_header and saw_end:
            return  # the archive ended; e.g. zero padding after a gzip stream (gzip: "trailing garbage")
        yield from cut(f"the {compression or 'tar'} stream ({type(exc).__name__}: {exc})", s.pos)


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
