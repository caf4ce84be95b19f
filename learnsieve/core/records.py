"""The example record, and every way one is written down: the one owner (as datatrove's
``Document``). Everything else imports its fields, schemas and serialisations from here.

Records, in stage order: ``Sample`` (raw tar members) -> ``Decoded`` (image + caption) ->
``Scored`` (base quantities, every derived score, typed cluster fields, then a decision with the
stage and reason of whatever decided). A failure at any stage is a ``DeadLetter(stage, reason)``.

Fields of an example:

* identity: ``key``, ``source`` (input shard URL), ``shard_index``, ``index`` (in its shard);
* from the input: ``digest`` (sha1 of the image bytes), ``label`` (KEY.cls), ``spans`` (byte
  ranges of its members), ``uid`` / ``url`` (KEY.json's, img2dataset / DataComp);
* base quantities: ``learnsieve.models.scores.base_quantities()`` (``ref_loss``, ``ref_sim``,
  ``proxy_*``: a judge's outputs per role; models/ owns the names so that it stays a leaf);
* derived scores: every ``SCORERS`` entry, computed from the base quantities by ``from_score_rows``
  (the one place), for fresh and reloaded shards alike;
* clusters (record graph only): ``cluster`` (int, the nearest k-means centroid) and the
  ``CLUSTER_SCORES`` (``proto_dist``, ``proto_easy``, ``proto_hard``: Sorscher et al.);
* the decision: ``decision`` (kept / filtered), ``stage`` (``DECIDING_STAGES``: what decided)
  and ``reason`` (why, when a filter decided: ``exact_duplicate``, ``not_candidate``, ...).

Serialisations (each exactly once): the score-file row (``score_row``, ``SCORE_FILE_FORMAT``,
``score_file_schema``, ``encode_score_rows`` / ``decode_score_rows``), the manifest row
(``manifest_row``, ``manifest_schema``), the rejected line (``rejected_line``) and the output
shard's json (``output_json``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from learnsieve.models.scores import base_quantities

KEPT, FILTERED, REJECTED = "kept", "filtered", "rejected"
# stages that fail an example (a DeadLetter's ``stage``) and stages that decide one (a Scored's)
FAILING_STAGES = ("read", "decode", "score", "write")
DECIDING_STAGES = ("dedup", "candidates", "select")
CLUSTER_SCORES = ("proto_dist", "proto_easy", "proto_hard")


@dataclass(frozen=True)
class Sample:
    key: str
    source: str          # shard URL
    shard_index: int     # position of the shard in the sorted input list
    index: int           # position of the sample in its shard
    files: Dict[str, bytes]
    spans: Optional[Dict[str, Tuple[int, int]]] = None  # ext -> (byte offset, size) in an uncompressed tar


@dataclass(frozen=True)
class Decoded:
    key: str
    source: str
    shard_index: int
    index: int
    image: "np.ndarray"  # uint8 [3,H,W] (numpy: ~10x cheaper than a tensor for Beam to pickle)
    caption: str
    digest: str = ""     # sha1 of the image bytes, for exact deduplication
    label: Optional[str] = None  # KEY.cls when present (classification shards)
    spans: Optional[Dict[str, Tuple[int, int]]] = None
    uid: Optional[str] = None    # ``uid`` / ``url`` of KEY.json when present (img2dataset, DataComp)
    url: Optional[str] = None


@dataclass(frozen=True)
class Scored:
    key: str
    source: str
    shard_index: int
    index: int
    scores: Dict[str, float]          # base quantities, derived scores (and CLUSTER_SCORES)
    decision: Optional[str] = None    # KEPT / FILTERED once a stage decided
    reason: Optional[str] = None      # why a filter decided (exact_duplicate, not_candidate, ...)
    embedding: Optional[bytes] = None  # reference image embedding, float16, computed once
    digest: str = ""
    label: Optional[str] = None
    spans: Optional[Dict[str, Tuple[int, int]]] = None  # where the writer finds the original bytes
    uid: Optional[str] = None    # from KEY.json: joins with DataComp / img2dataset metadata
    url: Optional[str] = None
    stage: Optional[str] = None  # which of DECIDING_STAGES decided
    cluster: Optional[int] = None  # nearest k-means centroid (record graph with clusters)

    def vector(self):
        return np.frombuffer(self.embedding, dtype=np.float16).astype(np.float32)

    def order(self):
        """Stream order: input shard, then position within it."""
        return (self.shard_index, self.index)


@dataclass(frozen=True)
class DeadLetter:
    key: Optional[str]
    source: str
    stage: str
    reason: str
    detail: str = ""
    shard_index: int = -1
    index: int = -1
    uid: Optional[str] = None    # from KEY.json, when it could be read
    url: Optional[str] = None


Record = Union[Scored, DeadLetter]


def decide(s: Scored, decision: str, stage: str = "select", reason: Optional[str] = None) -> Scored:
    """``s`` decided by ``stage`` (one of ``DECIDING_STAGES``), its embedding dropped: nothing
    after a decision compares embeddings."""
    if stage not in DECIDING_STAGES:
        raise ValueError(f"unknown deciding stage {stage!r}")
    return dataclasses.replace(s, decision=decision, stage=stage, reason=reason, embedding=None)


def with_cluster(s: Scored, cluster: int, distance: float) -> Scored:
    """``s`` with its nearest centroid and the prototype scores (``CLUSTER_SCORES``)."""
    d = float(distance)
    return dataclasses.replace(s, cluster=int(cluster),
                               scores={**s.scores, "proto_dist": d, "proto_easy": -d, "proto_hard": d})


def duplicate_key(s: Scored, shard_name: str) -> DeadLetter:
    """A kept example whose key is already in its output shard (webdataset would merge the two)."""
    return DeadLetter(s.key, s.source, "write", "duplicate_key", f"key already in output shard {shard_name}",
                      s.shard_index, s.index, s.uid, s.url)


# ---- the score file (one parquet file per input shard, learnsieve/core/score_file.py) ------------

# v3: base quantities as float32 (what the models compute; v2 stored float64), named by
# models.scores.ROLE_OUTPUTS. A file of another format is stale: rescored, never misread.
SCORE_FILE_FORMAT = "learnsieve-scores-v3"
SCORE_ROW_FIELDS = ("key", "index", "stage", "reason", "detail", "digest", "embedding", "label", "spans",
                    "uid", "url")


def score_file_schema():
    import pyarrow as pa
    types = {"index": pa.int64(), "embedding": pa.binary()}
    return pa.schema([(n, types.get(n, pa.string())) for n in SCORE_ROW_FIELDS]
                     + [(n, pa.float32()) for n in base_quantities()])


def score_row(d: Union[Decoded, DeadLetter]) -> dict:
    """The model-independent part of an example's score-file row (scoring adds the base
    quantities and the embedding)."""
    if isinstance(d, DeadLetter):
        return {"key": d.key, "index": d.index, "uid": d.uid, "url": d.url,
                "stage": d.stage, "reason": d.reason, "detail": d.detail}
    return {"key": d.key, "index": d.index, "digest": d.digest, "label": d.label, "spans": d.spans,
            "uid": d.uid, "url": d.url}


def encode_score_rows(rows: Sequence[dict], metadata: Optional[dict] = None):
    """Score-file rows -> the file's arrow table (spans as sorted JSON)."""
    import pyarrow as pa
    schema = score_file_schema()
    out = []
    for r in rows:
        row = {n: r.get(n) for n in schema.names}
        if row["spans"] is not None:
            row["spans"] = json.dumps(r["spans"], sort_keys=True)
        out.append(row)
    return pa.Table.from_pylist(out, schema=schema.with_metadata(metadata) if metadata else schema)


def decode_score_rows(table) -> List[dict]:
    """A score file's arrow table -> rows as ``score_row`` and scoring wrote them (``embedding``
    None when the column was not read)."""
    rows = table.to_pylist()
    for r in rows:
        r.setdefault("embedding", None)
        if r["spans"] is not None:
            r["spans"] = {k: tuple(v) for k, v in json.loads(r["spans"]).items()}
    return rows


def from_score_rows(rows: Sequence[dict], source: str, shard_index: int) -> List[Record]:
    """Score-file rows (an example's fields and base quantities, or a dead letter) -> records
    with every registered score. The one place scores are derived from the base quantities, for
    freshly scored and reloaded shards alike: a resumed run gives bit-identical scores, and a
    newly registered score needs no re-scoring."""
    import torch

    from learnsieve.models.scores import compute_scores
    alive = [r for r in rows if r.get("stage") is None]
    table: dict = {}
    if alive:
        q = {k: torch.tensor([r[k] for r in alive], dtype=torch.float32) for k in base_quantities()}
        table = {k: v.tolist() for k, v in compute_scores(q).items()}
    out: List[Record] = []
    i = 0
    for r in rows:
        ids = dict(key=r["key"], source=source, shard_index=shard_index, index=r["index"],
                   uid=r.get("uid"), url=r.get("url"))
        if r.get("stage") is not None:
            out.append(DeadLetter(stage=r["stage"], reason=r["reason"], detail=r.get("detail") or "", **ids))
            continue
        scores = {k: vals[i] for k, vals in table.items()}
        i += 1
        if any(v != v or v in (float("inf"), float("-inf")) for v in scores.values()):
            out.append(DeadLetter(stage="score", reason="non_finite_score", **ids))
        else:
            out.append(Scored(scores=scores, embedding=r.get("embedding"), digest=r.get("digest") or "",
                              label=r.get("label"), spans=r.get("spans"), **ids))
    return out


# ---- the manifest (a row per input example) and rejected/rejected.jsonl --------------------------

MANIFEST_FIELDS = ("key", "source", "shard_index", "index", "uid", "url", "label", "decision", "stage",
                   "reason", "detail", "output_shard", "cluster")
REJECTED_FIELDS = ("key", "source", "stage", "reason", "detail")


def manifest_schema(score_names: Sequence[str]):
    """manifest.parquet's schema: the example's fields, one float64 column per score, and the
    two models' sha256."""
    import pyarrow as pa
    types = {"shard_index": pa.int64(), "index": pa.int64(), "cluster": pa.int64()}
    fields = [(n, types.get(n, pa.string())) for n in MANIFEST_FIELDS]
    fields += [(name, pa.float64()) for name in score_names]
    fields += [("reference_sha256", pa.string()), ("proxy_sha256", pa.string())]
    return pa.schema(fields)


def manifest_row(s: Record, output_shard: Optional[str] = None, models: Tuple[str, str] = ("", "")) -> dict:
    """A record's manifest row: a dead letter as rejected (with its stage and reason), a scored
    example with its decision, the stage and reason that decided, and its scores."""
    row = {"key": s.key, "source": s.source, "shard_index": s.shard_index, "index": s.index,
           "uid": s.uid, "url": s.url}
    if isinstance(s, DeadLetter):
        row.update(label=None, decision=REJECTED, stage=s.stage, reason=s.reason, detail=s.detail,
                   output_shard=None, cluster=None)
    else:
        row.update(label=s.label, decision=s.decision, stage=s.stage, reason=s.reason, detail=None,
                   output_shard=output_shard, cluster=s.cluster)
        row.update(s.scores)
    row["reference_sha256"], row["proxy_sha256"] = models
    return row


def rejected_line(row: dict) -> str:
    """A rejected manifest row as its line in rejected/rejected.jsonl (uid / url when known)."""
    line = {k: row.get(k) for k in REJECTED_FIELDS}
    line.update({k: row[k] for k in ("uid", "url") if row.get(k) is not None})
    return json.dumps(line, sort_keys=True)


# ---- the output shard's KEY.json -------------------------------------------------------------------

def output_json(original: Optional[bytes], s: Scored, score_name: str) -> bytes:
    """The sample's json with learnsieve's part under ``learnsieve``: the selection score's name
    and value, every score (the reference's ``ref_loss`` / ``ref_sim`` included: what an online
    selector reads, learnsieve/online), the input shard and, when clustered, the cluster. Never
    raises on the original: invalid, too deep or too big (``core.jsonsafe`` bounds) ->
    ``original_json_invalid``."""
    from learnsieve.core.jsonsafe import loads_bounded

    meta: dict = {}
    if original:
        try:
            parsed = loads_bounded(original)
            meta = parsed if isinstance(parsed, dict) else {"original": parsed}
        except (ValueError, UnicodeDecodeError, RecursionError):
            meta = {"original_json_invalid": True}
    part = {"score": score_name, "value": s.scores[score_name], "scores": s.scores, "source": s.source}
    if s.cluster is not None:
        part["cluster"] = s.cluster
    meta["learnsieve"] = part
    return json.dumps(meta, sort_keys=True).encode()


# ---- what crosses the streaming graph's and the writer's stages -------------------------------------

@dataclass(frozen=True)
class ShardScores:
    """What crosses the streaming graph's stages for one scored input shard, instead of its
    records: where its rows are (its score file, or the rows themselves when no file could be
    written: a vanished shard, a score error), how many examples it has, and the sparse
    histogram of its selection values (learnsieve/core/shard_select.py). A few hundred bytes."""
    shard_index: int
    source: str
    score_file: Optional[str]
    examples: int
    candidates: int                  # scored examples selection decides on
    histogram: Dict[int, int]
    rows: Optional[tuple] = None     # only when ``score_file`` is None


@dataclass(frozen=True)
class WrittenShard:
    provisional: str     # name under _tmp/, sorts in output order
    count: int
    sources: tuple = field(default_factory=tuple)
