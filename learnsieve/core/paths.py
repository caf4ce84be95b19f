"""Input patterns and output paths (no Beam): brace patterns and globs -> shard URLs, literal
path joining for output folders, and the shard-name pattern of a folder of numbered tars."""
from __future__ import annotations

import os
import re
from typing import List

import braceexpand
import fsspec

_GLOB = re.compile(r"[*?\[]")


class InputError(ValueError):
    pass


def expand_pattern(pattern: str) -> List[str]:
    """Brace pattern(s) and globs -> sorted shard URLs; ``::`` joins several patterns."""
    if not pattern or not pattern.strip():
        raise InputError("no input given: pass --input 'path/{00000..00009}.tar' or a glob")
    urls: List[str] = []
    for part in pattern.split("::"):
        for expanded in braceexpand.braceexpand(part.strip()):
            fs, path = fsspec.core.url_to_fs(expanded)
            protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
            prefix = "" if protocol in ("file", "local") else protocol + "://"
            if _GLOB.search(path):
                found = sorted(p for p in fs.glob(path) if fs.isfile(p))
                if not found:
                    raise InputError(f"input pattern {expanded} matches no files")
                urls.extend(prefix + p for p in found)
            elif fs.isfile(path):
                urls.append(prefix + path if prefix else path)
            elif fs.isdir(path):
                raise InputError(f"input {expanded} is a directory: give a pattern such as "
                                 f"{expanded.rstrip('/')}/*.tar")
            else:
                raise InputError(f"input shard {expanded} does not exist")
    seen = set()
    return [u for u in urls if not (u in seen or seen.add(u))]


def join(*parts: str) -> str:
    """``a/b/c`` from URL or path parts, literally (no globbing, no normalisation of ``gs://``)."""
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def shard_pattern(directory: str, shards: int) -> str:
    """The brace pattern of ``shards`` numbered tars ``00000.tar`` ... in ``directory``."""
    return os.path.join(directory, "{%05d..%05d}.tar" % (0, shards - 1)) if shards > 1 else \
        os.path.join(directory, "00000.tar")
