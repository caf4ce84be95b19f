"""WriteShards: kept examples -> curated WebDataset shards, ``_stats.json`` per shard, sizes.json,
the wids index and the HF dataset card beside it;
and a manifest row per decision (pipeline/manifest.py turns the rows into manifest.parquet,
rejected/ and stats.json).

Kept examples are written with their original bytes, re-read from the input shards by the
worker that writes them (as DataComp's resharder does): only small score records cross the
shuffle in the default mode, so memory stays flat whatever the pool size. Shards are written
under ``_tmp/`` as ``*.partial``, renamed when complete, and given their final sequential names
(``00000.tar`` ...) once every shard exists.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List

import apache_beam as beam
import fsspec
from apache_beam.metrics import Metrics
from apache_beam.transforms.stats import ApproximateQuantiles

from learnsieve.config import SelectConfig, WriteConfig, effective_score
from learnsieve.core.finalize import finalize_shards, move_file
from learnsieve.core.layout import TMP, group_shard_name, plan_groups, rank_bucket
from learnsieve.core.paths import join
from learnsieve.core.records import (
    KEPT,
    Sample,
    Scored,
    WrittenShard,
    decide,
    duplicate_key,
    manifest_row,
    output_json,
)
from learnsieve.core.tar import iter_shard, read_spans
from learnsieve.core.tar_write import TarSink

ROWS = "rows"


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
        self.tmp = join(output, TMP)
        self.score_name = score_name
        self.samples_per_shard = samples_per_shard
        self.models = models
        self.written = Metrics.counter("write", "kept_written")

    def _write(self, name: str, records: Iterable[tuple]):
        """Write one shard from (Scored, files); yields manifest rows then the WrittenShard."""
        path = join(self.tmp, name)
        sink = TarSink(path + ".partial")
        sources: List[str] = []
        keys = set()
        for s, files in records:
            if s.key in keys:  # webdataset would merge two same-key samples of one tar
                yield beam.pvalue.TaggedOutput(ROWS, manifest_row(duplicate_key(s, name), models=self.models))
                continue
            keys.add(s.key)
            out = {ext: data for ext, data in files.items() if ext != "json"}
            out["json"] = output_json(files.get("json"), s, self.score_name)
            sink.write(s.key, out)
            if not sources or sources[-1] != s.source:
                sources.append(s.source)
            yield beam.pvalue.TaggedOutput(ROWS, manifest_row(s, name, self.models))
        sink.close()
        fs, p = fsspec.core.url_to_fs(path)
        move_file(fs, p + ".partial", p)
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


class WriteShards(beam.PTransform):
    """{decisions, dead} -> output shards and sizes.json; returns {"rows": a manifest row per
    example (kept rows carry their final output shard), "names": provisional -> final names}."""

    def __init__(self, output: str, write: WriteConfig, select: SelectConfig, models: tuple = ("", "")):
        """Shards of ``write.samples_per_shard``; ``select.ranked`` orders them by the selection
        score (``effective_score(select)``, also written into each sample's json)."""
        super().__init__()
        self.output, self.score_name = output, effective_score(select)
        self.samples_per_shard, self.ranked = write.samples_per_shard, select.ranked
        self.models = models

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
        return {"rows": rows, "names": names}




class WriteShardGroupFn(beam.DoFn):
    """The streaming graph's writer: (group, its input shards' ``ShardScores``) -> the group's
    output shards, a manifest part per input shard, and one small ``GroupWritten``.

    Each input shard's rows are re-read from its score file and decided by the same function the
    counting stage used (learnsieve/core/shard_select.py); its kept examples' original bytes are
    read back by byte range and streamed into output shards of ``samples_per_shard``, named by
    the plan. One input shard's rows are in memory at a time."""

    def __init__(self, output: str, select: SelectConfig, samples_per_shard: int, models: tuple, schema):
        from learnsieve.core.shard_select import SelectionValue
        self.output, self.tmp = output, join(output, TMP)
        self.select, self.value = select, SelectionValue(select)
        self.score_name = effective_score(select)
        self.samples_per_shard, self.models, self.schema = samples_per_shard, models, schema
        self.written = Metrics.counter("write", "kept_written")
        self.parts = Metrics.counter("write", "manifest_parts")
        self.kept = Metrics.counter("select", "kept")
        self.filtered = Metrics.counter("select", "filtered")

    def process(self, element, plan):
        from learnsieve.core.shard_select import load_records, shard_decisions
        from learnsieve.pipeline.manifest import CountRowsFn, count_rows, write_manifest_part
        group, summaries = element
        out = _GroupSink(self, plan, group)
        stats, parts = [], []
        for summary in sorted(summaries, key=lambda s: s.shard_index):
            records = load_records(summary)
            scored, decisions = shard_decisions(records, self.select, self.value, plan.cut,
                                                plan.allowances.get(summary.shard_index, 0))
            kept = {s.key: s for s, d in zip(scored, decisions) if d == KEPT}
            if len(kept) != plan.kept_of(summary.shard_index):
                raise RuntimeError(f"score file of {summary.source} changed during the run "
                                   f"({len(kept)} kept now, {plan.kept_of(summary.shard_index)} counted)")
            self.kept.inc(len(kept))
            self.filtered.inc(len(scored) - len(kept))
            rows = [manifest_row(r, models=self.models) for r in records if not isinstance(r, Scored)]
            rows += [manifest_row(decide(s, d), models=self.models)
                     for s, d in zip(scored, decisions) if d != KEPT]
            for s, files in read_kept(summary.source, summary.shard_index, kept):
                rows.append(out.add(decide(s, KEPT), files))
            parts.append(write_manifest_part((summary.shard_index, rows), self.output, self.schema))
            self.parts.inc()
            stats.append(count_rows(rows))
        out.close()
        yield GroupWritten(group, tuple(out.shards), tuple(parts), CountRowsFn().merge_accumulators(stats))


class _GroupSink:
    """Output shards of one write group, rolled every ``samples_per_shard`` kept examples (a
    duplicate key within one output shard is a ``write:duplicate_key`` dead letter)."""

    def __init__(self, fn: WriteShardGroupFn, plan, group: int):
        self.fn, self.plan, self.group = fn, plan, group
        self.chunk, self.taken, self.sink = -1, 0, None
        self.shards: List[WrittenShard] = []

    def add(self, s: Scored, files) -> dict:
        fn = self.fn
        if self.sink is None or self.taken == fn.samples_per_shard:
            self.close()
            self.chunk += 1
            self.name = self.plan.write.name(self.group, self.chunk)
            self.sink, self.taken, self.keys, self.sources = TarSink(join(fn.tmp, self.name) + ".partial"), 0, set(), []
        self.taken += 1
        if s.key in self.keys:  # webdataset would merge two same-key samples of one tar
            return manifest_row(duplicate_key(s, self.name), models=fn.models)
        self.keys.add(s.key)
        out = {ext: data for ext, data in files.items() if ext != "json"}
        out["json"] = output_json(files.get("json"), s, fn.score_name)
        self.sink.write(s.key, out)
        if not self.sources or self.sources[-1] != s.source:
            self.sources.append(s.source)
        return manifest_row(s, self.name, fn.models)

    def close(self):
        if self.sink is None:
            return
        self.sink.close()
        path = join(self.fn.tmp, self.name)
        fs, p = fsspec.core.url_to_fs(path)
        move_file(fs, p + ".partial", p)
        self.fn.written.inc(self.sink.count)
        self.shards.append(WrittenShard(provisional=self.name, count=self.sink.count, sources=tuple(self.sources)))
        self.sink = None


@dataclasses.dataclass(frozen=True)
class GroupWritten:
    """What a write group reports: its output shards, its input shards' manifest parts, and their
    read / kept / filtered / rejected counts summed (a few hundred bytes a group)."""
    group: int
    shards: tuple
    parts: tuple
    stats: dict


class WriteShardGroups(beam.PTransform):
    """(ShardScores, the one-element plan) -> a GroupWritten per write group. Only summaries
    cross the GroupByKey (the group's input shards), never records."""

    def __init__(self, output: str, write: WriteConfig, select: SelectConfig, models: tuple, schema):
        super().__init__()
        self.fn = WriteShardGroupFn(output, select, write.samples_per_shard, models, schema)

    def expand(self, pcolls):
        summaries, plan = pcolls["shards"], pcolls["plan"]
        return (summaries
                | "ByWriteGroup" >> beam.Map(lambda s, pl: (pl.write.group(s.shard_index), s),
                                             beam.pvalue.AsSingleton(plan))
                | "GroupShards" >> beam.GroupByKey()
                | "WriteGroup" >> beam.ParDo(self.fn, beam.pvalue.AsSingleton(plan)))
