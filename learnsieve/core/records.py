"""The records that flow through the pipeline, in stage order.

``Sample`` (raw tar members) -> ``Decoded`` (image tensor + caption) -> ``Scored`` (per-example
scores and, after selection, a decision). Failures at any stage become a ``DeadLetter``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

KEPT, FILTERED, REJECTED = "kept", "filtered", "rejected"


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
    scores: Dict[str, float]
    decision: Optional[str] = None
    reason: Optional[str] = None      # why a record was filtered before selection (dedup)
    embedding: Optional[bytes] = None  # reference image embedding, float16, computed once
    digest: str = ""
    label: Optional[str] = None
    spans: Optional[Dict[str, Tuple[int, int]]] = None  # where the writer finds the original bytes
    uid: Optional[str] = None    # from KEY.json: joins with DataComp / img2dataset metadata
    url: Optional[str] = None

    def vector(self):
        import numpy as np
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

    def to_json(self) -> str:
        known = {k: v for k, v in (("uid", self.uid), ("url", self.url)) if v is not None}
        return json.dumps({"key": self.key, "source": self.source, "stage": self.stage,
                           "reason": self.reason, "detail": self.detail, **known}, sort_keys=True)


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
