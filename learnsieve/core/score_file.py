"""Per-input-shard score cache (scores and float16 reference embeddings, computed once per
example and reused by every policy): the completion marker that makes resume and incremental runs
cheap. One parquet file per fully scored input shard under ``OUTPUT/_scores/``, stamped with the
sha256 of both models; a file whose models differ from the current ones is ignored (scores
depend on the proxy), so a new checkpoint re-scores everything. No Beam here."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Union

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

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
                       score_names: Sequence[str]) -> None:
    """Write atomically (temp name, then rename): a present file is always complete."""
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
    meta = {b"source": url.encode(), b"source_size": str(_size(url)).encode(),
            b"reference_sha256": models[0].encode(),
            b"proxy_sha256": models[1].encode(), b"scores": ",".join(score_names).encode()}
    table = pa.Table.from_pylist(rows, schema=_schema(score_names).with_metadata(meta))
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(os.path.dirname(p), exist_ok=True)
    with fs.open(p + ".partial", "wb") as f:
        pq.write_table(table, f)
    fs.mv(p + ".partial", p)


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
    """Whether a score file exists for ``url`` from these models (reads only the footer)."""
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
    """Whether a score file's footer says: this shard, these two models, these score columns."""
    want = {b"source": url, b"source_size": str(_size(url)), b"reference_sha256": models[0],
            b"proxy_sha256": models[1], b"scores": ",".join(score_names)}
    return all(meta.get(k, b"").decode() == v for k, v in want.items())


def _size(url: str) -> int:
    """The input shard's size: a score file of a shard that was rewritten since is not reused."""
    fs, p = fsspec.core.url_to_fs(url)
    return int(fs.size(p))
