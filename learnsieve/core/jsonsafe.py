"""JSON from untrusted shards, bounded: ``KEY.json`` is parsed by decode (captions) and by the
writer (``records.output_json``); a hostile one (deeply nested, huge) must be a named rejection, never
a RecursionError or a memory spike."""
from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np

MAX_JSON_BYTES = 1 << 20  # 1 MiB: sample metadata is a few hundred bytes
MAX_JSON_DEPTH = 64       # nesting levels of arrays and objects

_BRACKETS = b"[]{}"
_NOT_BRACKETS = bytes(c for c in range(256) if c not in _BRACKETS)
_STEPS = bytes.maketrans(_BRACKETS, b"\x01\xff\x01\xff")  # +1 / -1 as int8


def _depth_bound(raw: bytes) -> int:
    """An upper bound of the nesting of arrays/objects, exact when above MAX_JSON_DEPTH: the
    running count of brackets outside strings (linear time, all in C)."""
    opens = raw.count(b"[") + raw.count(b"{")
    if opens <= MAX_JSON_DEPTH:
        return opens
    raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")  # escaped backslashes, then quotes
    outside = b"".join(raw.split(b'"')[::2])           # drop the strings' contents
    steps = np.frombuffer(outside.translate(_STEPS, _NOT_BRACKETS), dtype=np.int8)
    return int(steps.cumsum(dtype=np.int64).max()) if steps.size else 0


def json_problem(raw: bytes) -> Optional[str]:
    """Why ``raw`` is too big or too deep to parse, else None."""
    if len(raw) > MAX_JSON_BYTES:
        return f"{len(raw)} bytes > {MAX_JSON_BYTES}"
    depth = _depth_bound(raw)
    if depth > MAX_JSON_DEPTH:
        return f"nested {depth} levels deep > {MAX_JSON_DEPTH}"
    return None


def loads_bounded(raw: bytes) -> Any:
    """``json.loads`` within the bounds above; ValueError (with the reason) for anything else,
    invalid JSON included."""
    problem = json_problem(raw)
    if problem:
        raise ValueError(problem)
    try:
        return json.loads(raw)
    except RecursionError as exc:  # not reached within the bounds; a last guard
        raise ValueError("nested too deep") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from exc
