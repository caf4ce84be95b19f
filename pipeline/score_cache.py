"""ReadCachedScores: the records of input shards whose score file is valid for these inputs and
models (resume after a kill, ``--incremental`` re-curation), read instead of scored again. The
file format is in learnsieve/core/score_file.py; score.py writes the files.

A shard whose score file was valid at preflight but is not any more when its turn comes (the
shard was rewritten meanwhile, or its score file removed) is scored again, by the same code as
``ScoreShards`` (its models loaded then, once per process), and counted in
``score/shards_rescored_after_change``: never a failed run, never stale scores."""
from __future__ import annotations

from typing import List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from learnsieve.core.records import from_score_rows
from learnsieve.core.score_file import cache_path, read_score_file
from learnsieve.core.shard_select import summarise
from learnsieve.pipeline.read import ListShards


class LoadScoreFileFn(beam.DoFn):
    def __init__(self, output: str, models: Tuple[str, str], settings: str, rescore=None, value=None):
        """``value`` (a ``SelectionValue``): emit one ``ShardScores`` per shard (the streaming
        graph) instead of its records; ``rescore`` then must be built with the same ``value``."""
        self.value = value
        self.output, self.models, self.settings = output, tuple(models), settings
        self.rescore = rescore  # a ScoreShardFn for shards whose file went stale; set up on first use
        self._ready = False
        self.loaded = Metrics.counter("score", "shards_from_score_files")
        self.changed = Metrics.counter("score", "shards_rescored_after_change")

    def process(self, element):
        shard_index, url = element
        path = cache_path(self.output, url)
        found = read_score_file(path, url, self.models, self.settings)
        if found is None or not found[1]:
            if self.rescore is None:
                raise RuntimeError(f"score file for {url} vanished or changed during the run")
            if not self._ready:
                self.rescore.setup()
                self._ready = True
            self.changed.inc()
            yield from self.rescore.process(element)
            return
        self.loaded.inc()
        records = from_score_rows(found[0], url, shard_index)
        if self.value is None:
            yield from records
        else:
            yield summarise(records, shard_index, url, path, None, self.value)

    def teardown(self):
        if self._ready:
            self.rescore.teardown()


class ReadCachedScores(beam.PTransform):
    """(shard_index, url) of shards with a valid score file -> their Scored / DeadLetter records."""

    def __init__(self, shards: List[Tuple[int, str]], output: str, models: Tuple[str, str], settings: str,
                 rescore=None, value=None):
        super().__init__()
        self.shards = list(shards)
        self.fn = LoadScoreFileFn(output, models, settings, rescore, value)

    def expand(self, pbegin):
        return pbegin | "ListCached" >> ListShards(self.shards) | "LoadScoreFile" >> beam.ParDo(self.fn)
