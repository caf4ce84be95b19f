"""Per-input-shard score cache (scores and float16 reference embeddings, computed once per
example and reused by every policy): the completion marker that makes resume and incremental runs
cheap. One parquet file per fully scored input shard under ``OUTPUT/_scores/``, stamped with the
sha256 of both models; a file whose models differ from the current ones is ignored (scores
depend on the proxy), so a new checkpoint re-scores everything. No Beam here.

A score file is also stamped with a fingerprint of its input shard's content, and is reused only
while the shard still has that fingerprint (a reused score file carries the shard's keys,
captions and decisions into the output, so a stale one would ship captions that are no longer
the input's). The fingerprint is the shard's size, its modification time, and a blake2b hash of
its size plus its first and last MiB (the whole file when it is at most 2 MiB).

Trade-off: a full content hash would read every input shard once more on every resume or
incremental run (terabytes over ``gs://``) just to decide what need not be read; the
fingerprint reads at most 2 MiB per shard, and only for shards whose size and mtime still
match. Any rewrite through a normal write changes the mtime; a same-size rewrite that also
restores the mtime is caught by the hash when the change touches the head or tail of the shard
(tar headers and the first and last samples). What it misses is a same-size, same-mtime edit
confined to the middle of a shard larger than 2 MiB; re-run with ``--overwrite`` after such
surgery. Copying a shard to a new mtime (``cp`` without ``-p``) or ``touch``ing it only costs a
re-score, never a stale result.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Union

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from learnsieve.core.records import DeadLetter, Scored

CACHE_DIR = "_scores"
Record = Union[Scored, DeadLetter]


def cache_path(output: str, url: str) -> str:
    digest = hashlib.sha1(url.encode()).hexdigest()[:16]
    stem = os.path.basename(url).split(".")[0][:40] or "shard"
    return f"{output.rstrip('/')}/{CACHE_DIR}/{stem}-{digest}.parquet"


def _schema(score_names: Sequence[str]) -> pa.Schema:
    fields = [("key", pa.string()), ("index", pa.int64()), ("stage", pa.string()),
              ("reason", pa.string()), ("detail", pa.string()), ("digest", pa.string()),
              ("embedding", pa.binary()), ("label", pa.string()), ("spans", pa.string())]
    return pa.schema(fields + [(n, pa.float64()) for n in score_names])


def write_shard_scores(path: str, url: str, records: Sequence[Record], models: Sequence[str],
                       score_names: Sequence[str], fingerprint: Optional[Dict[str, str]] = None) -> None:
    """Write atomically (temp name, then rename): a present file is always complete.

    ``fingerprint`` is the input shard's (``source_fingerprint(url)``) as it was when it was
    read; by default it is taken now, after scoring."""
    rows: List[Dict] = []
    for r in sorted(records, key=lambda r: (r.index, r.key or "")):
        row = {"key": r.key, "index": r.index, "stage": None, "reason": None, "detail": None,
               "digest": None, "embedding": None, "label": None, "spans": None}
        if isinstance(r, DeadLetter):
            row.update(stage=r.stage, reason=r.reason, detail=r.detail)
        else:
            row.update({n: r.scores.get(n) for n in score_names}, digest=r.digest, embedding=r.embedding,
                       label=r.label, spans=json.dumps(r.spans, sort_keys=True) if r.spans else None)
        rows.append(row)
    stamp = fingerprint or source_fingerprint(url)
    meta = {b"source": url.encode(), b"reference_sha256": models[0].encode(),
            b"proxy_sha256": models[1].encode(), b"scores": ",".join(score_names).encode(),
            **{k.encode(): v.encode() for k, v in stamp.items()}}
    table = pa.Table.from_pylist(rows, schema=_schema(score_names).with_metadata(meta))
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(os.path.dirname(p), exist_ok=True)
    with fs.open(p + ".partial", "wb") as f:
        pq.write_table(table, f)
    if isinstance(fs, LocalFileSystem):
        os.replace(p + ".partial", p)
    else:  # literally: fs.mv would expand glob characters in the output path
        fs.cp_file(p + ".partial", p)
        fs.rm_file(p + ".partial")


def read_shard_scores(path: str, url: str, shard_index: int, models: Sequence[str],
                      score_names: Sequence[str]) -> Optional[List[Record]]:
    """The cached records of one shard, or None when absent, unreadable or from other models."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return None
    try:
        with fs.open(p, "rb") as f:
            table = pq.read_table(f)
    except Exception:
        return None
    if not _matches(table.schema.metadata or {}, url, models, score_names):
        return None
    out: List[Record] = []
    for row in table.to_pylist():
        if row["stage"] is not None:
            out.append(DeadLetter(key=row["key"], source=url, stage=row["stage"], reason=row["reason"],
                                  detail=row["detail"] or "", shard_index=shard_index, index=row["index"]))
        else:
            out.append(Scored(key=row["key"], source=url, shard_index=shard_index, index=row["index"],
                              scores={n: row[n] for n in score_names}, embedding=row["embedding"],
                              digest=row["digest"] or "", label=row["label"],
                              spans={k: tuple(v) for k, v in json.loads(row["spans"]).items()}
                              if row["spans"] else None))
    return out


def cache_valid(path: str, url: str, models: Sequence[str], score_names: Sequence[str]) -> bool:
    """Whether a score file exists for ``url`` as it is now, from these models (reads the score
    file's footer, and at most 2 MiB of the shard when its size and mtime still match)."""
    fs, p = fsspec.core.url_to_fs(path)
    if not fs.exists(p):
        return False
    try:
        with fs.open(p, "rb") as f:
            meta = pq.read_schema(f).metadata or {}
    except Exception:
        return False
    return _matches(meta, url, models, score_names)


def _matches(meta: dict, url: str, models: Sequence[str], score_names: Sequence[str]) -> bool:
    """Whether a score file's footer says: this shard with this content, these two models, these
    score columns. The cheap fields are compared first; the shard is hashed only if they match."""
    want = {b"source": url, b"reference_sha256": models[0], b"proxy_sha256": models[1],
            b"scores": ",".join(score_names)}
    if not all(meta.get(k, b"").decode() == v for k, v in want.items()):
        return False
    try:
        stat = _stat(url)
        if any(meta.get(k.encode(), b"").decode() != v for k, v in stat.items()):
            return False
        return meta.get(b"source_blake2b", b"").decode() == _head_tail_hash(url, int(stat["source_size"]))
    except (OSError, ValueError):  # the shard vanished or is unreadable: nothing to reuse
        return False


HASH_SPAN = 1 << 20  # bytes hashed at each end of an input shard


def source_fingerprint(url: str) -> Dict[str, str]:
    """The input shard's size, mtime and head/tail hash, as stamped into its score file."""
    stat = _stat(url)
    return {**stat, "source_blake2b": _head_tail_hash(url, int(stat["source_size"]))}


def _stat(url: str) -> Dict[str, str]:
    """Size and modification time (ns where the filesystem has them) of the input shard."""
    fs, p = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        st = os.stat(p)
        return {"source_size": str(st.st_size), "source_mtime": str(st.st_mtime_ns)}
    info = fs.info(p)
    mtime = next((info[k] for k in ("mtime", "updated", "LastModified", "last_modified", "modified")
                  if info.get(k) is not None), "")
    return {"source_size": str(int(info["size"])), "source_mtime": str(mtime)}


def _head_tail_hash(url: str, size: int) -> str:
    """blake2b of the size and the first and last ``HASH_SPAN`` bytes (all of a small file)."""
    h = hashlib.blake2b(str(size).encode() + b"\0", digest_size=16)
    fs, p = fsspec.core.url_to_fs(url)
    with fs.open(p, "rb") as f:
        if size <= 2 * HASH_SPAN:
            h.update(f.read())
        else:
            h.update(f.read(HASH_SPAN))
            f.seek(size - HASH_SPAN)
            h.update(f.read(HASH_SPAN))
    return h.hexdigest()


def _size(url: str) -> int:
    """The input shard's size in bytes."""
    return int(_stat(url)["source_size"])
