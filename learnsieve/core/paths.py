"""Input patterns and output paths (no Beam): brace patterns and globs -> shard URLs, literal
path joining for output folders, and the shard-name pattern of a folder of numbered tars."""
from __future__ import annotations

import os
import re
from typing import List
from urllib.parse import urlsplit

import braceexpand
import fsspec

from learnsieve.errors import LearnsieveError

_GLOB = re.compile(r"[*?\[]")
_HTTP_GLOB = re.compile(r"[*\[]")  # in the path of an http URL ("?" starts the query)


class InputError(LearnsieveError, ValueError):
    pass


def expand_pattern(pattern: str) -> List[str]:
    """Brace pattern(s) and globs -> sorted shard URLs; ``::`` joins several patterns.

    A shard named twice is listed once, at its first place: local paths are compared as files
    (``./``, ``//``, ``file://``, symlinks and hard links to one file are one shard; its first
    spelling is kept, with ``//`` and ``/./`` collapsed), remote URLs as written.

    Local shards come back as plain paths, remote ones as full URLs (``gs://b/x.tar``; an
    ``http(s)://`` URL as given: fsspec's http filesystem keeps the protocol in its paths).
    http cannot list a folder, so only brace patterns work there; ``?`` in an http URL starts
    its query string, not a glob."""
    if not pattern or not pattern.strip():
        raise InputError("no input given: pass --input 'path/{00000..00009}.tar' or a glob")
    urls: List[str] = []
    for part in pattern.split("::"):
        for expanded in braceexpand.braceexpand(part.strip()):
            fs, path = fsspec.core.url_to_fs(expanded)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            if protocol in ("http", "https"):
                urls.append(_http_shard(fs, expanded))
                continue
            local = protocol in ("file", "local")
            if _GLOB.search(path):
                found = sorted(p for p in fs.glob(path) if fs.isfile(p))
                if not found:
                    raise InputError(f"input pattern {expanded} matches no files")
                urls.extend(_clean_local(p) if local else fs.unstrip_protocol(p) for p in found)
            elif fs.isfile(path):
                urls.append(_clean_local(path) if local else fs.unstrip_protocol(path))
            elif fs.isdir(path):
                raise InputError(f"input {expanded} is a directory: give a pattern such as "
                                 f"{expanded.rstrip('/')}/*.tar")
            else:
                raise InputError(f"input shard {expanded} does not exist")
    seen = set()
    return [u for u in urls if not (_same_shard(u) in seen or seen.add(_same_shard(u)))]


def _clean_local(path: str) -> str:
    """A local shard path with ``//`` and ``/./`` collapsed (``..`` is kept: through a symlink
    it does not mean the lexical parent). ``file://`` is already gone: fsspec strips it."""
    path = re.sub(r"/{2,}", "/", path)
    while "/./" in path:
        path = path.replace("/./", "/")
    return path


def _same_shard(url: str) -> object:
    """What makes two spellings of an input one shard, read once: for a local file its device
    and inode (symlinks and hard links to one file, ``..`` spellings), for a remote URL the URL."""
    if "://" in url:
        return url
    try:
        st = os.stat(url)
    except OSError:
        return url
    return ("inode", st.st_dev, st.st_ino)


def _http_shard(fs, url: str) -> str:
    """``url`` itself once the server answers for it (one HEAD request)."""
    if _HTTP_GLOB.search(urlsplit(url).path):
        raise InputError(f"input pattern {url}: an http(s) server cannot list files, so globs do "
                         f"not work there; give a brace pattern such as "
                         f"{url.rsplit('/', 1)[0]}/{{00000..00009}}.tar")
    try:
        fs.info(url)
    except FileNotFoundError as exc:
        cause = exc.__cause__
        status = getattr(cause, "status", None)
        if cause is None or isinstance(cause, FileNotFoundError) or status in (404, 410):
            raise InputError(f"input shard {url} does not exist"
                             + (f" (HTTP {status})" if status else "")) from None
        detail = " ".join(str(cause).split())[:200]
        raise InputError(f"input shard {url} cannot be read: {type(cause).__name__}: {detail}") from None
    return url


def join(*parts: str) -> str:
    """``a/b/c`` from URL or path parts, literally (no globbing, no normalisation of ``gs://``)."""
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def shard_pattern(directory: str, shards: int) -> str:
    """The brace pattern of ``shards`` numbered tars ``00000.tar`` ... in ``directory``."""
    return os.path.join(directory, "{%05d..%05d}.tar" % (0, shards - 1)) if shards > 1 else \
        os.path.join(directory, "00000.tar")
