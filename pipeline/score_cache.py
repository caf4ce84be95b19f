"""CacheScores / ReadCachedScores: per-input-shard score files that let a killed run resume and
an incremental run score only new shards (see pipeline/cache.py for the file format)."""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from learnsieve.core.records import ShardDone
from learnsieve.core.score_file import cache_path, read_shard_scores, write_shard_scores


class CacheScoresFn(beam.DoFn):
    """Passes every record through unchanged and, once all records of an input shard have been
    seen (its ShardDone says how many), writes that shard's score file. Shards not complete at
    the end of a bundle are simply not cached; nothing downstream depends on the cache."""

    def __init__(self, output: str, models: Tuple[str, str], score_names: Sequence[str]):
        self.output, self.models, self.score_names = output, tuple(models), list(score_names)
        self.cached = Metrics.counter("cache", "shards_written")

    def start_bundle(self):
        self.pending: Dict[int, dict] = {}

    def process(self, item):
        entry = self.pending.setdefault(item.shard_index, {"records": [], "done": None})
        if isinstance(item, ShardDone):
            entry["done"] = item
        else:
            entry["records"].append(item)
            yield item
        done = entry["done"]
        if done is not None and len(entry["records"]) == done.total:
            write_shard_scores(cache_path(self.output, done.source), done.source, entry["records"],
                               self.models, self.score_names)
            self.cached.inc()
            del self.pending[item.shard_index]

    def finish_bundle(self):
        self.pending.clear()


class ReadCachedScores(beam.PTransform):
    """(shard_index, url) of shards with a valid score file -> their Scored / DeadLetter records."""

    def __init__(self, shards: List[Tuple[int, str]], output: str, models: Tuple[str, str],
                 score_names: Sequence[str]):
        super().__init__()
        self.shards, self.output = list(shards), output
        self.models, self.score_names = tuple(models), list(score_names)

    def expand(self, pbegin):
        output, models, names = self.output, self.models, self.score_names

        def load(element):
            shard_index, url = element
            records = read_shard_scores(cache_path(output, url), url, shard_index, models, names)
            if records is None:
                raise RuntimeError(f"score cache for {url} vanished or changed during the run")
            return records

        return (pbegin | "ListCached" >> beam.Create(self.shards, reshuffle=False)
                | "SpreadCached" >> beam.Reshuffle()
                | "LoadCached" >> beam.FlatMap(load))
