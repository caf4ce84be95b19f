"""WriteManifest: manifest rows -> manifest.parquet, rejected/rejected.jsonl and stats.json.
Rows, their schema and rejected lines are the record module's (``learnsieve.core.records``:
``manifest_row``, ``manifest_schema``, ``rejected_line``); this stage assembles and counts them.

The manifest and rejected/ are assembled from per-input-shard parts in input order, so reruns
give byte-identical files; stats.json is written last and marks a finished run (read = kept +
filtered + rejected, checked against the manifest's row count)."""
from __future__ import annotations

import json
from typing import Dict, Iterable, List

import apache_beam as beam
import fsspec

from learnsieve.core.finalize import finalize_shards
from learnsieve.core.layout import MANIFEST_PARTS
from learnsieve.core.paths import join
from learnsieve.core.records import FILTERED, KEPT, REJECTED, manifest_schema, rejected_line


def count_rows(rows: Iterable[dict]) -> dict:
    stats = {"read": 0, KEPT: 0, FILTERED: 0, REJECTED: 0, "rejected_by_reason": {},
             "filtered_by_reason": {}}
    for r in rows:
        stats["read"] += 1
        stats[r["decision"]] += 1
        if r["decision"] == FILTERED and r.get("reason"):
            stats["filtered_by_reason"][r["reason"]] = stats["filtered_by_reason"].get(r["reason"], 0) + 1
        if r["decision"] == REJECTED:
            reason = f"{r['stage']}:{r['reason']}"
            stats["rejected_by_reason"][reason] = stats["rejected_by_reason"].get(reason, 0) + 1
    return stats


class CountRowsFn(beam.CombineFn):
    def create_accumulator(self):
        return count_rows([])

    def add_input(self, acc, row):
        one = count_rows([row])
        return self.merge_accumulators([acc, one])

    def merge_accumulators(self, accs):
        out = count_rows([])
        for a in accs:
            for k in ("read", KEPT, FILTERED, REJECTED):
                out[k] += a[k]
            for field in ("rejected_by_reason", "filtered_by_reason"):
                for reason, n in a[field].items():
                    out[field][reason] = out[field].get(reason, 0) + n
        return out

    def extract_output(self, acc):
        return acc


class WriteManifest(beam.PTransform):
    """{"rows", "names"} (from WriteShards) -> manifest.parquet, rejected/, stats.json; returns
    the PCollection holding the final stats dict."""

    def __init__(self, output: str, score_names: List[str], extra_stats: dict | None = None):
        super().__init__()
        self.output, self.score_names = output, score_names
        self.extra_stats = extra_stats or {}

    def expand(self, pcolls):
        rows, names, output = pcolls["rows"], pcolls["names"], self.output
        schema = manifest_schema(self.score_names)
        parts = (rows
                 | "ByInputShard" >> beam.Map(lambda r: (r["shard_index"], r))
                 | "GroupRows" >> beam.GroupByKey()
                 | "WriteManifestParts" >> beam.Map(write_manifest_part, output, schema))
        merged = (parts
                  | "AllParts" >> beam.combiners.ToList()
                  | "MergeManifest" >> beam.Map(merge_manifest, output, schema))
        extra = self.extra_stats
        return (rows
                | "CountRows" >> beam.CombineGlobally(CountRowsFn())
                | "WriteStats" >> beam.Map(write_stats, output, extra, beam.pvalue.AsSingleton(names),
                                           beam.pvalue.AsSingleton(merged)))


def write_manifest_part(element, output: str, schema) -> str:
    """One input shard's manifest rows, in stream order, as a parquet part."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    shard_index, rows = element
    rows = sorted(rows, key=lambda r: (r["index"], r["key"] or ""))
    table = pa.Table.from_pydict({n: [r.get(n) for r in rows] for n in schema.names}, schema=schema)
    path = join(output, MANIFEST_PARTS, f"{shard_index:06d}.parquet")
    fs, p = fsspec.core.url_to_fs(path)
    fs.makedirs(p.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(p, "wb") as f:
        pq.write_table(table, f)
    return path


def merge_manifest(parts: List[str], output: str, schema) -> int:
    """Concatenate the parts in input-shard order into manifest.parquet (one part in memory at
    a time) and write rejected/rejected.jsonl from its rejected rows: deterministic bytes."""
    import pyarrow.parquet as pq
    fs, root = fsspec.core.url_to_fs(output)
    fs.makedirs(join(root, "rejected"), exist_ok=True)
    rows = 0
    with fs.open(join(root, "manifest.parquet"), "wb") as mf, \
            fs.open(join(root, "rejected", "rejected.jsonl"), "w") as rf, \
            pq.ParquetWriter(mf, schema) as writer:
        for part in sorted(parts, key=_part_order):
            with fsspec.open(part, "rb") as f:
                table = pq.read_table(f)
            writer.write_table(table)
            rows += table.num_rows
            for r in table.filter(pc_equal(table, "decision", REJECTED)).to_pylist():
                rf.write(rejected_line(r) + "\n")
    fs.rm(join(root, MANIFEST_PARTS), recursive=True) if parts else None
    return rows


def _part_order(path: str):
    """Parts are named by input shard index: numeric order (past 999,999 shards too)."""
    stem = path.rsplit("/", 1)[-1].split(".")[0]
    return (int(stem), path) if stem.isdigit() else (float("inf"), path)


def pc_equal(table, column: str, value: str):
    import pyarrow.compute as pc
    return pc.equal(table[column], value)


def write_stats(stats: dict, output: str, extra: dict, names: Dict[str, str], manifest_rows: int) -> dict:
    """Written last: its presence marks a finished run."""
    if manifest_rows != stats["read"]:
        raise RuntimeError(f"manifest has {manifest_rows} rows but {stats['read']} examples were read")
    stats = {**stats, "output_shards": len(names), **extra}
    fs, root = fsspec.core.url_to_fs(output)
    with fs.open(join(root, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
    return stats


class FinishOutput(beam.PTransform):
    """The streaming graph's last step: every write group's ``GroupWritten`` (O(output shards)
    small values) -> output shards renamed into place with their ``_stats.json``, sizes.json,
    manifest.parquet (the per-input-shard parts merged in input order), rejected/ and, last,
    stats.json. Returns the PCollection holding the final stats dict."""

    def __init__(self, output: str, schema, extra_stats: dict | None = None):
        super().__init__()
        self.output, self.schema, self.extra_stats = output, schema, extra_stats or {}

    def expand(self, groups):
        output, schema, extra = self.output, self.schema, self.extra_stats
        return (groups
                | "AllGroups" >> beam.combiners.ToList()
                | "Finish" >> beam.Map(finish_output, output, schema, extra))


def finish_output(groups, output: str, schema, extra: dict) -> dict:
    written = [w for g in groups for w in g.shards]
    names = finalize_shards(output, written)
    if any(k != v for k, v in names.items()):
        raise RuntimeError("output shard names do not follow the write plan")
    rows = merge_manifest([p for g in groups for p in g.parts], output, schema)
    stats = CountRowsFn().merge_accumulators([g.stats for g in groups])
    return write_stats(stats, output, extra, names, rows)
