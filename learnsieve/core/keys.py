"""Sample keys inside a tar (webdataset's ``KEY.ext`` convention) and the ones refused as unsafe
in any spelling (``..`` components, backslashes, absolute paths, drive letters, NUL)."""
from __future__ import annotations

import re
from typing import Optional, Tuple

_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]+)$")  # webdataset's key.ext convention


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
