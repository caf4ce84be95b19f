"""WriteShards: curated WebDataset shards, sizes.json, manifest.parquet, rejected/, stats.json.

Kept examples are written with their original bytes, re-read from the input shards by the
worker that writes them (as DataComp's resharder does): only small score records cross the
shuffle in the default mode, so memory stays flat whatever the pool size. Shards are written
under ``_tmp/`` as ``*.partial``, renamed when complete, and given their final sequential names
(``00000.tar`` ...) once every shard exists.
"""
from __future__ import annotations

import json
from typing import Dict, Iterable, List

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics
from apache_beam.transforms.stats import ApproximateQuantiles

from pipeline.example import FILTERED, KEPT, REJECTED, DeadLetter, Sample, Scored, WrittenShard
from pipeline.layout import (annotate_json, final_names, group_shard_name, manifest_schema_fields,
                             plan_groups, rank_bucket)
from pipeline.shards import TarSink, iter_shard, read_spans

TMP = "_tmp"
MANIFEST_PARTS = "_manifest"
ROWS = "rows"


def _join(*parts: str) -> str:
    return "/".join([parts[0].rstrip("/")] + [p.strip("/") for p in parts[1:]])


def manifest_row(s, output_shard=None, models=("", "")) -> dict:
    if isinstance(s, DeadLetter):
        row = {"key": s.key, "source": s.source, "shard_index": s.shard_index, "index": s.index,
               "decision": REJECTED, "stage": s.stage, "reason": s.reason, "detail": s.detail,
               "output_shard": None}
    else:
        row = {"key": s.key, "source": s.source, "shard_index": s.shard_index, "index": s.index,
               "label": s.label, "decision": s.decision, "stage": "select" if s.reason else None,
               "reason": s.reason,
               "detail": None, "output_shard": output_shard}
        row.update(s.scores)
    row["reference_sha256"], row["proxy_sha256"] = models
    return row


def read_kept(source: str, shard_index: int, kept: Dict[str, Scored]) -> Iterable[tuple]:
    """(Scored, files) for the kept keys of one input shard, in stream order: ranged reads of
    just their members when the first read recorded their offsets (uncompressed tars), else a
    second streaming pass over the shard."""
    if kept and all(s.spans for s in kept.values()):
        yield from read_spans(source, list(kept.values()))
        return
    found = 0
    for item in iter_shard(source, shard_index):
        if isinstance(item, Sample) and item.key in kept:
            found += 1
            yield kept[item.key], item.files
    if found != len(kept):
        raise RuntimeError(f"input shard {source} changed during the run: {len(kept) - found} kept "
                           f"examples are gone on re-read")


class _ShardWriterFn(beam.DoFn):
    def __init__(self, output: str, score_name: str, samples_per_shard: int, models: tuple):
        self.tmp = _join(output, TMP)
        self.score_name = score_name
        self.samples_per_shard = samples_per_shard
        self.models = models
        self.written = Metrics.counter("write", "kept_written")

    def _write(self, name: str, records: Iterable[tuple]):
        """Write one shard from (Scored, files); yields manifest rows then the WrittenShard."""
        path = _join(self.tmp, name)
        sink = TarSink(path + ".partial")
        sources: List[str] = []
        keys = set()
        for s, files in records:
            if s.key in keys:  # webdataset would merge two same-key samples of one tar
                dup = DeadLetter(s.key, s.source, "write", "duplicate_key",
                                 f"key already in output shard {name}", s.shard_index, s.index)
                yield beam.pvalue.TaggedOutput(ROWS, manifest_row(dup, models=self.models))
                continue
            keys.add(s.key)
            out = {ext: data for ext, data in files.items() if ext != "json"}
            out["json"] = annotate_json(files.get("json"), s, self.score_name)
            sink.write(s.key, out)
            if not sources or sources[-1] != s.source:
                sources.append(s.source)
            yield beam.pvalue.TaggedOutput(ROWS, manifest_row(s, name, self.models))
        sink.close()
        fs, p = fsspec.core.url_to_fs(path)
        fs.mv(p + ".partial", p)
        self.written.inc(sink.count)
        yield WrittenShard(provisional=name, count=sink.count, sources=tuple(sources))


class WriteGroupFn(_ShardWriterFn):
    """(group, kept records of consecutive input shards) -> output shards of that group."""

    def process(self, element):
        group, records = element
        by_shard: Dict[int, Dict[str, Scored]] = {}
        sources: Dict[int, str] = {}
        for s in records:
            by_shard.setdefault(s.shard_index, {})[s.key] = s
            sources[s.shard_index] = s.source

        def stream():
            for shard_index in sorted(by_shard):
                yield from read_kept(sources[shard_index], shard_index, by_shard[shard_index])

        it = stream()
        chunk = 0
        while True:
            first = next(it, None)
            if first is None:
                break
            yield from self._write(group_shard_name(group, chunk), _take(first, it, self.samples_per_shard))
            chunk += 1


def _take(first, it, n):
    yield first
    for _ in range(n - 1):
        item = next(it, None)
        if item is None:
            return
        yield item


class RereadKeptFn(beam.DoFn):
    """Ranked mode: (input shard, kept records) -> (bucket, (Scored, files))."""

    def __init__(self, score_name: str, samples_per_shard: int):
        self.score_name = score_name
        self.samples_per_shard = samples_per_shard

    def process(self, element, quantiles, kept_total):
        shard_index, records = element
        records = list(records)
        kept = {s.key: s for s in records}
        for s, files in read_kept(records[0].source, shard_index, kept):
            bucket = rank_bucket(s.scores[self.score_name], quantiles, kept_total, self.samples_per_shard)
            yield bucket, (s, files)


class WriteBucketFn(_ShardWriterFn):
    def process(self, element):
        bucket, pairs = element
        ordered = sorted(pairs, key=lambda p: (-p[0].scores[self.score_name], p[0].source, p[0].key))
        for chunk in range(0, len(ordered), self.samples_per_shard):
            yield from self._write(group_shard_name(bucket, chunk // self.samples_per_shard),
                                   ordered[chunk:chunk + self.samples_per_shard])


class AssignGroupFn(beam.DoFn):
    """Key each kept record by its write group (plan computed once per side-input value)."""

    def __init__(self, samples_per_shard: int):
        self.samples_per_shard = samples_per_shard
        self._cache = (None, None)

    def process(self, s, counts):
        if self._cache[0] is not counts:
            self._cache = (counts, plan_groups(dict(counts), self.samples_per_shard))
        yield self._cache[1][s.shard_index], s


def finalize_shards(output: str, written: List[WrittenShard]) -> Dict[str, str]:
    """Rename ``_tmp/*`` to sequential names; write ``_stats.json`` per shard and sizes.json."""
    fs, root = fsspec.core.url_to_fs(output)
    names = final_names([w.provisional for w in written])
    sizes = {}
    for w in sorted(written, key=lambda w: w.provisional):
        final = names[w.provisional]
        fs.mv(_join(root, TMP, w.provisional), _join(root, final))
        stem = final[:-len(".tar")]
        with fs.open(_join(root, f"{stem}_stats.json"), "w") as f:
            json.dump({"count": w.count, "successes": w.count, "sources": list(w.sources)}, f,
                      indent=1, sort_keys=True)
        sizes[final] = w.count
    with fs.open(_join(root, "sizes.json"), "w") as f:
        json.dump(sizes, f, indent=1, sort_keys=True)
    if fs.exists(_join(root, TMP)) and not fs.ls(_join(root, TMP)):
        fs.rm(_join(root, TMP), recursive=True)
    return names


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


class WriteShards(beam.PTransform):
    """{decisions, dead} -> shards, sizes.json, manifest.parquet, rejected/, stats.json.

    The manifest and rejected/ are assembled from per-input-shard parts in input order, so
    reruns give byte-identical files; stats.json is written last and marks a finished run."""

    def __init__(self, output: str, score_name: str, samples_per_shard: int, ranked: bool,
                 score_names: List[str], models: tuple = ("", ""), extra_stats: dict | None = None):
        super().__init__()
        self.output, self.score_name = output, score_name
        self.samples_per_shard, self.ranked = samples_per_shard, ranked
        self.score_names, self.models = score_names, models
        self.extra_stats = extra_stats or {}

    def expand(self, pcolls):
        decisions, dead = pcolls["decisions"], pcolls["dead"]
        spp, name = self.samples_per_shard, self.score_name
        kept = decisions | "Kept" >> beam.Filter(lambda s: s.decision == KEPT)
        writer_args = (self.output, name, spp, self.models)
        if not self.ranked:
            counts = (kept | "KeptPerShard" >> beam.Map(lambda s: (s.shard_index, 1))
                      | "CountKept" >> beam.CombinePerKey(sum))
            written = (kept
                       | "AssignGroup" >> beam.ParDo(AssignGroupFn(spp), beam.pvalue.AsDict(counts))
                       | "GroupForWrite" >> beam.GroupByKey()
                       | "WriteGroups" >> beam.ParDo(WriteGroupFn(*writer_args)).with_outputs(ROWS, main="shards"))
        else:
            quantiles = (kept | "KeptScores" >> beam.Map(lambda s: s.scores[name])
                         | "KeptQuantiles" >> ApproximateQuantiles.Globally(1001))
            total = kept | "CountAllKept" >> beam.combiners.Count.Globally()
            written = (kept
                       | "BySource" >> beam.Map(lambda s: (s.shard_index, s))
                       | "GroupBySource" >> beam.GroupByKey()
                       | "Reread" >> beam.ParDo(RereadKeptFn(name, spp), beam.pvalue.AsSingleton(quantiles),
                                                beam.pvalue.AsSingleton(total))
                       | "GroupByBucket" >> beam.GroupByKey()
                       | "WriteBuckets" >> beam.ParDo(WriteBucketFn(*writer_args)).with_outputs(ROWS, main="shards"))
        output = self.output
        names = (written.shards
                 | "AllShards" >> beam.combiners.ToList()
                 | "Finalize" >> beam.Map(lambda ws: finalize_shards(output, ws)))
        models = self.models
        other_rows = ((decisions | "NotKept" >> beam.Filter(lambda s: s.decision != KEPT),
                       dead)
                      | "Unwritten" >> beam.Flatten()
                      | "RowsOf" >> beam.Map(manifest_row, None, models))
        rows = ((written[ROWS]
                 | "FinalName" >> beam.Map(lambda r, m: {**r, "output_shard": m.get(r["output_shard"])},
                                           beam.pvalue.AsSingleton(names)),
                 other_rows)
                | "AllRows" >> beam.Flatten())
        schema = manifest_schema_fields(self.score_names)
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
    path = _join(output, MANIFEST_PARTS, f"{shard_index:06d}.parquet")
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
    fs.makedirs(_join(root, "rejected"), exist_ok=True)
    rows = 0
    with fs.open(_join(root, "manifest.parquet"), "wb") as mf, \
            fs.open(_join(root, "rejected", "rejected.jsonl"), "w") as rf, \
            pq.ParquetWriter(mf, schema) as writer:
        for part in sorted(parts):
            with fsspec.open(part, "rb") as f:
                table = pq.read_table(f)
            writer.write_table(table)
            rows += table.num_rows
            for r in table.filter(pc_equal(table, "decision", REJECTED)).to_pylist():
                rf.write(json.dumps({k: r[k] for k in ("key", "source", "stage", "reason", "detail")},
                                    sort_keys=True) + "\n")
    fs.rm(_join(root, MANIFEST_PARTS), recursive=True) if parts else None
    return rows


def pc_equal(table, column: str, value: str):
    import pyarrow.compute as pc
    return pc.equal(table[column], value)


def write_stats(stats: dict, output: str, extra: dict, names: Dict[str, str], manifest_rows: int) -> dict:
    """Written last: its presence marks a finished run."""
    if manifest_rows != stats["read"]:
        raise RuntimeError(f"manifest has {manifest_rows} rows but {stats['read']} examples were read")
    stats = {**stats, "output_shards": len(names), **extra}
    fs, root = fsspec.core.url_to_fs(output)
    with fs.open(_join(root, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2, sort_keys=True)
    return stats
