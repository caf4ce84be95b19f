"""Reading tars without Beam: stream samples out of tar shards, read members by byte range
(headers: ``tar_headers.py``; the byte layer: ``tar_stream.py``; writing: ``tar_write.py``).

Reading parses the tar stream itself, one 512-byte header and one member at a time, so no shard
is ever held whole in memory and no byte range goes unaccounted for (``tarfile``'s ``r|*``
stops silently at a damaged header); local files are plain files, remote ones (``gs://`` via
gcsfs, ``http(s)://``, any fsspec protocol) are read in large buffered blocks with retries
(``tar_stream.open_input``); gzip/bz2/xz-compressed or plain.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple, Union

from learnsieve.core.keys import key_ext, split_member, unsafe_key, unsafe_why  # noqa: F401
from learnsieve.core.records import DeadLetter, Sample
from learnsieve.core.tar_headers import (
    MAX_META,
    NO_DATA,
    REGULAR,
    STREAM_ERRORS,
    TAR_BLOCK,
    ZERO_BLOCK,
    name_guess,
    nts,
    parse_header,
    pax_records,
    why_not_header,
)
from learnsieve.core.tar_stream import (  # noqa: F401 (read_spans: re-exported)
    NotATar,
    SourceReadError,
    SourceReads,
    Stream,
    open_input,
    open_stream,
    read_spans,
)

Item = Union[Sample, DeadLetter]


IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")  # decode reads the image from exactly one of these

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
            item = self.dead(key, "unsafe_key", unsafe_why(key))
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
        with open_input(url) as raw:
            yield from _read(SourceReads(raw), url, shard_index, max_member_bytes)
    except SourceReadError as exc:  # the storage failed, not the data: never a dead letter
        raise exc.__cause__ from None
    except FileNotFoundError as exc:
        yield DeadLetter(key=None, source=url, stage="read", reason="missing_shard", detail=str(exc),
                         shard_index=shard_index, index=-1)


def iter_file(raw, url: str, shard_index: int = 0, max_member_bytes: int = 64 << 20) -> Iterator[Item]:
    """The items of an already-open binary file of shard ``url`` (any reader: a benchmark's or
    a test's), as ``iter_shard`` yields them for the files it opens itself."""
    yield from _read(SourceReads(raw), url, shard_index, max_member_bytes)


def _read(raw, url: str, shard_index: int, max_member_bytes: int) -> Iterator[Item]:
    def not_a_tar(detail):
        return DeadLetter(key=None, source=url, stage="read", reason="not_a_tar", detail=detail[:300],
                          shard_index=shard_index, index=-1)

    try:
        f, compression, can_seek = open_stream(raw)
    except NotATar as exc:
        yield not_a_tar(str(exc))
        return
    except STREAM_ERRORS as exc:
        yield not_a_tar(f"{type(exc).__name__}: {exc}")
        return
    s = Stream(f, can_seek)
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
                buf = s.read(TAR_BLOCK)
            if len(buf) < TAR_BLOCK:
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
            if buf == ZERO_BLOCK:
                saw_end = True
                yield from g.close()
                long_name, pax = None, {}
                continue
            h = parse_header(buf)
            if h is None:
                why = why_not_header(buf)
                guess = name_guess(buf)
                long_name, pax = None, {}
                while True:  # skip to the next valid header, as GNU tar does
                    p = s.pos
                    b = s.read(TAR_BLOCK)
                    if len(b) < TAR_BLOCK:
                        break
                    if b != ZERO_BLOCK and parse_header(b) is not None:
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
                if size > MAX_META:
                    if not s.skip(size + (-size % TAR_BLOCK)):
                        yield from cut("an extended header", hpos)
                        return
                    yield from g.damage("bad_header", f"extended header of {size} bytes at byte {hpos}")
                    long_name, pax = None, {}
                    continue
                data = s.read(size + (-size % TAR_BLOCK))
                if len(data) < size + (-size % TAR_BLOCK):
                    yield from cut("an extended header", hpos)
                    return
                data = data[:size]
                if kind == b"L":
                    long_name = nts(data)
                elif kind in (b"x", b"g"):
                    records = pax_records(data)
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
                    b = s.read(TAR_BLOCK)
                    if len(b) < TAR_BLOCK:
                        yield from cut("a sparse header", hpos)
                        return
                    if not b[504]:
                        break
            padded = size + (-size % TAR_BLOCK)
            if kind in NO_DATA:
                continue
            if not (kind in REGULAR or kind == b"S") or name.endswith("/"):
                if not s.skip(padded):  # unknown member types carry data, as tarfile assumes
                    yield from cut("member data", hpos)
                    return
                continue
            members += 1
            parts = key_ext(name)
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
    except STREAM_ERRORS as exc:
        if saw_header and saw_end:
            return  # the archive ended; e.g. zero padding after a gzip stream (gzip: "trailing garbage")
        yield from cut(f"the {compression or 'tar'} stream ({type(exc).__name__}: {exc})", s.pos)
