"""Decoding one sample (no Beam): image bytes -> uint8 array, caption bytes -> text (task
retrieval) or ``KEY.cls`` -> class index (task classification); every failure a named
``DeadLetter(stage="decode", reason)``. Shared by the pipeline, training, eval and benchmarks."""
from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from typing import Dict, Optional, Tuple, Union

from learnsieve.core.jsonsafe import json_problem, loads_bounded
from learnsieve.core.keys import multi_dot_why
from learnsieve.core.records import DeadLetter, Decoded, Sample
from learnsieve.core.tar import IMAGE_EXTS
from learnsieve.models.image import ImageError, decode_image

# Characters that render as nothing: controls, format characters (zero-width space/joiners,
# word joiner, BOM, bidi marks...), separators, combining marks on their own, and the blank
# letters/symbols used to fake a non-empty caption (Hangul fillers, braille blank).
_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Zs", "Zl", "Zp", "Mn", "Me"}
_BLANK_CHARS = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800", "\u180e"}
_VISIBLE_ASCII = re.compile(r"[!-~]")


def visible(text: str) -> bool:
    """Whether ``text`` has at least one character that renders as something."""
    if _VISIBLE_ASCII.search(text):
        return True
    return any(c not in _BLANK_CHARS and unicodedata.category(c) not in _INVISIBLE_CATEGORIES
               for c in text if not c.isascii())


def _caption(files: Dict[str, bytes]) -> Tuple[Optional[bytes], str]:
    """(caption bytes or None, why KEY.json could not give one, when it was the source)."""
    if "txt" in files:
        return files["txt"], ""
    if "json" in files:
        try:
            meta = loads_bounded(files["json"])
        except ValueError as exc:
            return None, str(exc)[:200]
        if isinstance(meta, dict) and isinstance(meta.get("caption"), str):
            return meta["caption"].encode("utf-8", "surrogatepass"), ""
    return None, ""


def caption_bytes(files: Dict[str, bytes]) -> Optional[bytes]:
    """The caption: ``KEY.txt``, else ``caption`` in ``KEY.json`` (None when neither gives one)."""
    return _caption(files)[0]


def _bad_json(s: Sample) -> Optional[DeadLetter]:
    """KEY.json too big or too deep to parse safely (the writer parses it again): rejected even
    when the caption comes from KEY.txt."""
    raw = s.files.get("json")
    problem = json_problem(raw) if raw is not None else None
    return _dead(s, "bad_json", problem) if problem else None


def _label(files: Dict[str, bytes]) -> Optional[str]:
    raw = files.get("cls")
    if raw is None:
        return None
    return raw.decode("utf-8", "replace").strip() or None


MAX_ID_CHARS = 8192  # a longer uid / url in KEY.json is not carried (the manifest stays small)


def sample_ids(files: Dict[str, bytes]) -> Tuple[Optional[str], Optional[str]]:
    """``uid`` and ``url`` of KEY.json (img2dataset / DataComp metadata) when it has them, as
    text; (None, None) when there is no readable KEY.json. Never raises."""
    raw = files.get("json")
    if raw is None or json_problem(raw):
        return None, None
    try:
        meta = loads_bounded(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(meta, dict):
        return None, None

    def text(v):
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        return v if isinstance(v, str) and 0 < len(v) <= MAX_ID_CHARS else None

    return text(meta.get("uid")), text(meta.get("url"))


def _dead(s: Sample, reason: str, detail: str = "") -> DeadLetter:
    uid, url = sample_ids(s.files)
    return DeadLetter(key=s.key, source=s.source, stage="decode", reason=reason, detail=detail,
                      shard_index=s.shard_index, index=s.index, uid=uid, url=url)


def _decoded(s: Sample, ext: str, image_size: int, max_pixels: int, caption: str,
             label: Optional[str]) -> Union[Decoded, DeadLetter]:
    try:
        image = decode_image(s.files[ext], image_size, max_pixels)
    except ImageError as exc:
        return _dead(s, exc.reason, str(exc)[:200])
    uid, url = sample_ids(s.files)
    return Decoded(key=s.key, source=s.source, shard_index=s.shard_index, index=s.index,
                   image=image.numpy(), caption=caption, digest=hashlib.sha1(s.files[ext]).hexdigest(),
                   label=label, spans=s.spans, uid=uid, url=url)


def _image_ext(s: Sample) -> Union[str, DeadLetter]:
    """The sample's image member, or the dead letter of a sample without one or with a hostile
    json (checked for both tasks: the writer parses the json again)."""
    ext = next((e for e in IMAGE_EXTS if e in s.files), None)
    if ext is None:
        why = multi_dot_why(s.key, s.files, IMAGE_EXTS)
        if why:  # a.b.jpg: key "a", extension "b.jpg" (webdataset splits at the first dot)
            return _dead(s, "multi_dot_name", why)
        return _dead(s, "missing_image", f"members: {','.join(sorted(s.files))}")
    bad = _bad_json(s)
    return ext if bad is None else bad


def decode_sample(s: Sample, image_size: int, max_pixels: int,
                  max_caption_bytes: int) -> Union[Decoded, DeadLetter]:
    dead = functools.partial(_dead, s)
    ext = _image_ext(s)
    if isinstance(ext, DeadLetter):
        return ext
    raw_caption, json_error = _caption(s.files)
    if raw_caption is None:
        return dead("bad_json", json_error) if json_error else dead("missing_caption")
    if len(raw_caption) > max_caption_bytes:
        return dead("caption_too_long", f"{len(raw_caption)} bytes > {max_caption_bytes}")
    try:
        caption = raw_caption.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead("caption_not_utf8", str(exc)[:120])
    caption = " ".join(caption.split())
    if not visible(caption):
        return dead("empty_caption", "no visible character" if caption else "")
    return _decoded(s, ext, image_size, max_pixels, caption, _label(s.files))


def decode_labelled(s: Sample, image_size: int, max_pixels: int,
                    num_classes: int) -> Union[Decoded, DeadLetter]:
    """Task classification: ``KEY.jpg`` + ``KEY.cls`` (the class index as text); no caption.
    The label is normalised to its decimal form (``" 07\n"`` -> ``"7"``)."""
    dead = functools.partial(_dead, s)
    ext = _image_ext(s)
    if isinstance(ext, DeadLetter):
        return ext
    raw = s.files.get("cls")
    if raw is None:
        return dead("missing_label", f"members: {','.join(sorted(s.files))}")
    try:
        text = raw.decode("ascii").strip()
        label = int(text)
        if not text.lstrip("+-").isdigit():
            raise ValueError(text)
    except (UnicodeDecodeError, ValueError):
        return dead("invalid_label", repr(raw[:40]))
    if not 0 <= label < num_classes:
        return dead("label_out_of_range", f"{label} not in [0, {num_classes})")
    return _decoded(s, ext, image_size, max_pixels, "", str(label))
