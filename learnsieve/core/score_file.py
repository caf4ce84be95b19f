"""Per-input-shard score files (both models' per-example base quantities and the reference's
float16 image embeddings, computed once per example and reused by every policy): the completion
marker that makes resume and incremental runs cheap. One parquet file per scored input shard
under ``OUTPUT/_scores/``. The reference's columns and the proxy's are stamped apart (their
sha256, plus the decode settings): with a new proxy (the learner's latest checkpoint) the
reference part stays valid, and re-curation runs only the proxy; a new reference re-scores all.
The rows, their schema and the format's version belong to the record module
(``learnsieve.core.records``: ``score_row``, ``score_file_schema``, ``SCORE_FILE_FORMAT``); a file of
another format (an older learnsieve's) is stale and rescored, never misread. Derived scores
(learnability, ...) are not stored: ``records.from_score_rows`` computes them from the base
quantities, for fresh and reloaded shards alike. No Beam; torch only to ask what device scoring
would use.

A score file is also stamped with a fingerprint of its input shard's content, and is reused only
while the shard still has that fingerprint (a reused score file carries the shard's keys,
captions and decisions into the output, so a stale one would ship captions that are no longer
the input's). The fingerprint is the shard's size, its modification time, and (``source_fingerprint``):

* local shards: a blake2b hash of its size plus its first and last MiB (the whole file when it
  is at most 2 MiB), and with ``score.fingerprint: full`` (the default) a blake2b hash of the
  whole file. A same-size edit that also restores the mtime is caught anywhere in the shard.
  Cost, measured (docs/RELIABILITY.md): 640-1030 MiB/s on one core, 2-5% of reading and
  decoding the same shard, paid once when a shard is scored and once per reused shard on a
  resume or ``--incremental`` run (instead of at most 2 MiB with ``head_tail``); within one
  process a file whose device, inode, size, mtime and ctime are unchanged is hashed once.
* object stores (``gs://``, ``s3://``, ...): the server's checksum of the whole object (GCS
  crc32c or md5, S3 ETag) from the metadata request that gives size and mtime: no extra read,
  and every content change is seen. An object cannot be edited in place there: any change is a
  new upload with a new mtime. Where the server gives no checksum, and for ``http(s)://`` (an
  ETag there may be a timestamp), the head/tail hash too.

``score.fingerprint: head_tail`` keeps the cheaper local check: it misses a same-size,
same-mtime edit confined to the middle of a shard larger than 2 MiB (re-run with
``--overwrite`` after such surgery). ``fingerprint`` is carried in ``score_settings`` but not
compared: switching it changes how a file is checked, not what is in it (a local file stamped
without the whole-file hash, e.g. by an older learnsieve, is rescored once under ``full``).
Copying a shard to a new mtime or ``touch``ing it only costs a re-score, never a stale result.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import threading
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from learnsieve.core.records import SCORE_FILE_FORMAT, decode_score_rows, encode_score_rows, score_file_schema

CACHE_DIR = "_scores"


def cache_path(output: str, url: str) -> str:
    digest = hashlib.sha1(url.encode()).hexdigest()[:16]
    stem = os.path.basename(url).split(".")[0][:40] or "shard"
    return f"{output.rstrip('/')}/{CACHE_DIR}/{stem}-{digest}.parquet"




def score_settings(score_cfg, num_classes: int = 0) -> str:
    """What besides the models and the input bytes decides a score file's contents: decoding
    limits, the image size and the padded batch shape (bit-identical scores need the same shape)."""
    keys = ("image_size", "max_pixels", "max_caption_bytes", "max_member_bytes", "batch_size")
    # "fingerprint" rides along for cache_state / source_fingerprint; it is not compared
    return json.dumps({**{k: getattr(score_cfg, k) for k in keys}, "num_classes": num_classes,
                       "precision": _precision(score_cfg),
                       "fingerprint": getattr(score_cfg, "fingerprint", "full")}, sort_keys=True)


def _precision(score_cfg) -> str:
    """The precision scoring runs at here (``auto``: bf16 where the device is a GPU, else fp32)."""
    if score_cfg.precision != "auto":
        return score_cfg.precision
    if score_cfg.device == "cpu":
        return "fp32"
    import torch  # only to ask whether the device would be a GPU
    return "bf16" if score_cfg.device == "cuda" or torch.cuda.is_available() else "fp32"


def write_score_file(path: str, url: str, rows: Sequence[Dict], models: Sequence[str], settings: str,
                     fingerprint: Optional[Dict[str, str]] = None) -> None:
    """One input shard's rows (``learnsieve.core.scoring``: an example's fields and both models'
    base quantities, or a dead letter), stamped with the two models' sha256 apart, the settings and
    the shard's fingerprint. Written atomically (temp name, then rename): a present file is always
    complete. ``fingerprint`` is the shard's as it was before it was read (default: now)."""
    stamp = fingerprint or source_fingerprint(url, settings)
    meta = {b"format": SCORE_FILE_FORMAT.encode(), b"source": url.encode(), b"reference_sha256": models[0].encode(),
            b"proxy_sha256": models[1].encode(), b"settings": settings.encode(),
            **{k.encode(): v.encode() for k, v in stamp.items()}}
    table = encode_score_rows(rows, meta)
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(os.path.dirname(p), exist_ok=True)
    tmp = f"{p}.partial-{uuid.uuid4().hex[:12]}"  # two attempts at one shard never share a temp file
    try:
        if isinstance(fs, LocalFileSystem):
            with fs.open(tmp, "wb") as f:
                pq.write_table(table, f)
            os.replace(tmp, p)
        else:  # one upload; literally: fs.mv would expand glob characters in the output path
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            fs.pipe_file(tmp, sink.getvalue().to_pybytes())
            fs.cp_file(tmp, p)
            fs.rm_file(tmp)
    except BaseException:  # a full disk, an interrupt: leave no temp file behind
        try:
            if fs.exists(tmp):
                fs.rm_file(tmp)
        except Exception:
            pass
        raise


def _read_table(fs, p: str, columns=None) -> pa.Table:
    """A score file's table: from local disk directly; from an object store in one GET."""
    if isinstance(fs, LocalFileSystem):
        with fs.open(p, "rb") as f:
            return pq.read_table(f, columns=columns)
    return pq.read_table(pa.BufferReader(fs.cat_file(p)), columns=columns)


def read_score_file(path: str, url: str, models: Sequence[str], settings: str) -> Optional[Tuple[List[Dict], bool]]:
    """(rows, proxy part valid) when the file's reference part is valid for this shard's bytes,
    the reference and the settings; None when absent, unreadable or stale. With a new proxy the
    rows' reference quantities, embeddings and dead letters can be reused: only the proxy runs."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return None
    try:
        table = _read_table(fs, p)
    except Exception:
        return None
    state = _state(table.schema.metadata or {}, url, models, settings)
    if state == "none":
        return None
    return decode_score_rows(table), state == "both"


def read_score_rows(path: str) -> List[Dict]:
    """The rows of a score file this run already checked or wrote (no validation: the streaming
    graph's later stages re-read each shard's file instead of carrying its records)."""
    fs, p = fsspec.core.url_to_fs(path)
    return decode_score_rows(_read_table(fs, p, columns=[n for n in score_file_schema().names
                                                           if n != "embedding"]))


def cache_state(path: str, url: str, models: Sequence[str], settings: str) -> str:
    """"both" (reuse the file), "reference" (only the proxy has to run) or "none", from the score
    file's footer (and at most 2 MiB of the shard when its size and mtime still match)."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return "none"
    try:
        if isinstance(fs, LocalFileSystem):
            with fs.open(p, "rb") as f:
                meta = pq.read_schema(f).metadata or {}
        else:  # a score file is small: one GET, where parquet's footer-then-columns reads cost 4-12
            meta = pq.read_schema(pa.BufferReader(fs.cat_file(p))).metadata or {}
    except Exception:
        return "none"
    return _state(meta, url, models, settings)


def cache_valid(path: str, url: str, models: Sequence[str], settings: str) -> bool:
    """Whether the score file of ``url`` holds both models' scores for the shard as it is now."""
    return cache_state(path, url, models, settings) == "both"


def _state(meta: dict, url: str, models: Sequence[str], settings: str) -> str:
    """Which parts of a score file are valid: the reference part needs this shard with this
    content, this reference and these settings; the proxy part also this proxy. The cheap fields
    are compared first; the shard is hashed only if they match."""
    want = {b"format": SCORE_FILE_FORMAT, b"source": url, b"reference_sha256": models[0]}
    if not all(meta.get(k, b"").decode() == v for k, v in want.items()):
        return "none"
    if not _same_settings(meta.get(b"settings", b"").decode(), settings):
        return "none"
    try:
        if not _same_source(meta, url, fingerprint_mode(settings)):
            return "none"
    except (OSError, ValueError):  # the shard vanished or is unreadable: nothing to reuse
        return "none"
    return "both" if meta.get(b"proxy_sha256", b"").decode() == models[1] else "reference"


def fingerprint_mode(settings: Optional[str]) -> str:
    """``score.fingerprint`` as ``score_settings`` recorded it: "full" (the default) or
    "head_tail"."""
    try:
        mode = json.loads(settings).get("fingerprint", "full") if settings else "full"
    except (ValueError, AttributeError):
        return "full"
    return mode if mode in ("full", "head_tail") else "full"


def _same_settings(stored: str, settings: str) -> bool:
    """Settings equal but for ``fingerprint``, which says how the file is matched to its shard,
    not what is in it (a file written before the key existed matches too)."""
    if stored == settings:
        return True
    try:
        a, b = json.loads(stored), json.loads(settings)
    except ValueError:
        return False
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False
    a.pop("fingerprint", None)
    b.pop("fingerprint", None)
    return a == b


def _same_source(meta: dict, url: str, mode: str) -> bool:
    """Whether the shard is still the one the file was stamped from: size and mtime first, then
    the content checks the stamp holds and ``mode`` asks for (``source_fingerprint``)."""
    def stamped(key: str) -> Optional[str]:
        value = meta.get(key.encode())
        return value.decode() if value is not None else None

    info = _info(url)
    stat = _stat_of(info)
    if any(stamped(k) != v for k, v in stat.items()):
        return False
    size = int(stat["source_size"])
    if info["local"]:
        if mode == "full":  # a file stamped without the whole-file hash (older, or head_tail) fails
            if stamped("source_blake2b_full") != _full_hash(url, info):
                return False
        return stamped("source_blake2b") == _head_tail_hash(url, size)
    checksum = _checksum(info)
    if stamped("source_checksum") is not None and stamped("source_checksum") != checksum:
        return False
    if stamped("source_blake2b") is not None:
        return stamped("source_blake2b") == _head_tail_hash(url, size)
    return stamped("source_checksum") is not None


HASH_SPAN = 1 << 20  # bytes hashed at each end of an input shard
HASH_BLOCK = 8 << 20  # bytes per read of a whole-file hash


def source_fingerprint(url: str, settings: Optional[str] = None) -> Dict[str, str]:
    """The input shard's fingerprint, as stamped into its score file: size and mtime, and

    * local: blake2b of the size and the first and last MiB (``source_blake2b``), and with
      ``score.fingerprint: full`` (the default; read from ``settings``) of the whole file
      (``source_blake2b_full``);
    * object stores: the server's checksum of the whole object (``source_checksum``: GCS
      crc32c / md5, S3 ETag, ...) from the same metadata request, no read; where the server
      gives none, and for http(s) (an ETag there may be a timestamp), the head/tail hash too."""
    info = _info(url)
    stamp = _stat_of(info)
    size = int(stamp["source_size"])
    if info["local"]:
        stamp["source_blake2b"] = _head_tail_hash(url, size)
        if fingerprint_mode(settings) == "full":
            stamp["source_blake2b_full"] = _full_hash(url, info)
        return stamp
    checksum = _checksum(info)
    if checksum:
        stamp["source_checksum"] = checksum
    if not checksum or info["protocol"] in ("http", "https"):
        stamp["source_blake2b"] = _head_tail_hash(url, size)
    return stamp


def _info(url: str) -> dict:
    """``fs.info`` of the shard (for a local file its ``os.stat``), with ``local`` and
    ``protocol``."""
    fs, p = fsspec.core.url_to_fs(url)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if isinstance(fs, LocalFileSystem):
        st = os.stat(p)
        return {"local": True, "protocol": "file", "path": p, "size": st.st_size,
                "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "dev": st.st_dev, "ino": st.st_ino}
    return {**fs.info(p), "local": False, "protocol": protocol}


def _stat_of(info: dict) -> Dict[str, str]:
    """Size and modification time (ns where the filesystem has them) of the input shard."""
    if info["local"]:
        return {"source_size": str(info["size"]), "source_mtime": str(info["mtime_ns"])}
    mtime = next((info[k] for k in ("mtime", "updated", "LastModified", "last_modified", "modified", "Last-Modified")
                  if info.get(k) is not None), "")
    return {"source_size": str(int(info["size"])), "source_mtime": str(mtime)}


def _stat(url: str) -> Dict[str, str]:
    return _stat_of(_info(url))


# The content checksums object stores compute over a whole object, first found wins: GCS
# (crc32c, md5Hash; md5Hash is absent for composite objects), S3 (ETag: the md5, or for a
# multipart upload the md5 of the parts' md5s), http (Content-MD5, Digest, ETag).
CHECKSUM_FIELDS = ("crc32c", "md5Hash", "ContentMD5", "Content-MD5", "content_md5", "Digest", "ETag", "etag")


def _checksum(info: dict) -> str:
    for key in CHECKSUM_FIELDS:
        value = info.get(key)
        if value:
            return f"{key}={value}"
    return ""


def _head_tail_hash(url: str, size: int) -> str:
    """blake2b of the size and the first and last ``HASH_SPAN`` bytes (all of a small file)."""
    from learnsieve.core.tar_stream import read_ends  # two ranged reads remote; http without Range: one stream
    h = hashlib.blake2b(str(size).encode() + b"\0", digest_size=16)
    h.update(read_ends(url, size, HASH_SPAN))
    return h.hexdigest()


_FULL_MEMO: "collections.OrderedDict[tuple, str]" = collections.OrderedDict()
_FULL_MEMO_SIZE = 4096
_FULL_LOCK = threading.Lock()


def _full_hash(url: str, info: dict) -> str:
    """blake2b of a local shard's size and all its bytes. Remembered in this process per file
    state (device, inode, size, mtime and ctime: ctime changes with any write and cannot be set
    back), so the preflight check and the pipeline's own check of a reused shard read it once."""
    key = (info["path"], info["dev"], info["ino"], info["size"], info["mtime_ns"], info["ctime_ns"])
    with _FULL_LOCK:
        if key in _FULL_MEMO:
            _FULL_MEMO.move_to_end(key)
            return _FULL_MEMO[key]
    h = hashlib.blake2b(str(info["size"]).encode() + b"\0", digest_size=16)
    with open(info["path"], "rb") as f:
        block = bytearray(HASH_BLOCK)
        view = memoryview(block)
        while True:
            n = f.readinto(block)
            if not n:
                break
            h.update(view[:n])  # hashlib releases the GIL on large buffers
    digest = h.hexdigest()
    with _FULL_LOCK:
        _FULL_MEMO[key] = digest
        while len(_FULL_MEMO) > _FULL_MEMO_SIZE:
            _FULL_MEMO.popitem(last=False)
    return digest
