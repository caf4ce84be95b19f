"""Pure helpers that decide where kept examples go: shard packing, ranked buckets, names."""
from __future__ import annotations

import bisect
import json
from typing import Dict, List, Optional, Sequence

from learnsieve.core.records import Scored

# Names inside an output folder that learnsieve writes (besides NNNNN.tar and NNNNN_stats.json)
TMP = "_tmp"                  # shards being written, renamed when complete
MANIFEST_PARTS = "_manifest"  # per-input-shard manifest parts, merged into manifest.parquet


def plan_groups(kept_per_shard: Dict[int, int], samples_per_shard: int) -> Dict[int, int]:
    """Pack consecutive input shards into write groups of about ``samples_per_shard`` kept
    examples, so output shards are full-sized and stream order is preserved. Deterministic."""
    plan: Dict[int, int] = {}
    group, filled = 0, 0
    for shard in sorted(kept_per_shard):
        if kept_per_shard[shard] <= 0:
            continue
        if filled >= samples_per_shard:
            group, filled = group + 1, 0
        plan[shard] = group
        filled += kept_per_shard[shard]
    return plan


def rank_bucket(score: float, quantiles: Sequence[float], kept_total: int, samples_per_shard: int) -> int:
    """Output shard (0 = highest scores) of a kept example in ranked mode, from the global
    quantiles of kept scores: its approximate rank from the top, divided by the shard size."""
    if kept_total <= samples_per_shard or len(quantiles) < 2:
        return 0
    below = bisect.bisect_left(quantiles, score) / (len(quantiles) - 1)
    rank = (1.0 - below) * kept_total
    buckets = -(-kept_total // samples_per_shard)
    return min(buckets - 1, max(0, int(rank // samples_per_shard)))


def group_shard_name(group: int, chunk: int) -> str:
    return f"g{group:06d}-{chunk:05d}.tar"


def final_names(provisional: Sequence[str]) -> Dict[str, str]:
    """Provisional names (which sort in output order) -> ``00000.tar``, ``00001.tar``, ..."""
    width = max(5, len(str(max(0, len(provisional) - 1))))
    return {p: f"{i:0{width}d}.tar" for i, p in enumerate(sorted(provisional))}


def annotate_json(original: Optional[bytes], s: Scored, score_name: str) -> bytes:
    """The sample's json with learnsieve's scores added under ``learnsieve``. Never raises on the
    original: invalid, too deep or too big (``core.jsonsafe`` bounds) -> ``original_json_invalid``."""
    from learnsieve.core.jsonsafe import loads_bounded

    meta: dict = {}
    if original:
        try:
            parsed = loads_bounded(original)
            meta = parsed if isinstance(parsed, dict) else {"original": parsed}
        except (ValueError, UnicodeDecodeError, RecursionError):
            meta = {"original_json_invalid": True}
    meta["learnsieve"] = {"score": score_name, "value": s.scores[score_name], "scores": s.scores,
                          "source": s.source}
    return json.dumps(meta, sort_keys=True).encode()


def manifest_schema_fields(score_names: List[str]):
    import pyarrow as pa
    fields = [("key", pa.string()), ("source", pa.string()), ("shard_index", pa.int64()),
              ("index", pa.int64()), ("label", pa.string()), ("decision", pa.string()), ("stage", pa.string()),
              ("reason", pa.string()), ("detail", pa.string()), ("output_shard", pa.string())]
    fields += [(name, pa.float64()) for name in score_names]
    fields += [("reference_sha256", pa.string()), ("proxy_sha256", pa.string())]
    return pa.schema(fields)
