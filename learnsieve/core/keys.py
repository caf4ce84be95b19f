"""Sample keys inside a tar (webdataset's ``KEY.ext`` convention) and the ones refused as unsafe
in any spelling (``..`` components, backslashes, absolute paths, drive letters, NUL)."""
from __future__ import annotations

import re
from typing import Optional, Tuple

_MEMBER = re.compile(r"^((?:.*/|)[^./]+)\.([^/]+)$")  # webdataset's key.ext convention


def split_member(name: str) -> Optional[Tuple[str, str]]:
    m = _MEMBER.match(name)
    return (m.group(1), m.group(2).lower()) if m else None


def multi_dot_why(key: str, exts, image_exts) -> str:
    """Why a sample without an image member has none, when its members were named with more than
    one dot (``a.b.jpg``): webdataset's convention, which this reader follows, splits a member
    name at the first dot, so ``a.b.jpg`` is key ``a`` with extension ``b.jpg``, not an image.
    Empty when no extension ends in an image extension."""
    dotted = sorted(e for e in exts if "." in e and e.rsplit(".", 1)[1] in image_exts)
    if not dotted:
        return ""
    example = f"{key}.{dotted[0]}"
    return (f"member {example[-120:]}: webdataset splits member names at the first dot, so this is "
            f"key {key[-80:]!r} with extension {dotted[0][-40:]!r}, not an image; members: "
            f"{','.join(sorted(exts))[:200]} (name them KEY.jpg, KEY.txt with no dot in KEY)")


_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_why(key: str) -> str:
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
    return bool(unsafe_why(key))


def key_ext(name: str) -> Optional[Tuple[str, str]]:
    """(key, ext) of a member name; names with backslashes are split as if they were slashes
    (``..\\x.jpg`` -> key ``..\\x``) so that they are named unsafe instead of skipped."""
    parts = split_member(name)
    if parts is None and "\\" in name:
        alt = split_member(name.replace("\\", "/"))
        if alt is not None:
            parts = (name[:len(alt[0])], alt[1])
    return parts
