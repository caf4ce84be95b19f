"""ReadCachedScores: the records of input shards whose score file is valid for these inputs and
models (resume after a kill, ``--incremental`` re-curation), read instead of scored again. The
file format is in learnsieve/core/score_file.py; score.py writes the files."""
from __future__ import annotations

from typing import List, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from learnsieve.pipeline.read import ListShards

from learnsieve.core.score_file import cache_path, read_score_file
from learnsieve.core.scoring import records_from_rows


class LoadScoreFileFn(beam.DoFn):
    def __init__(self, output: str, models: Tuple[str, str], settings: str):
        self.output, self.models, self.settings = output, tuple(models), settings
        self.loaded = Metrics.counter("score", "shards_from_score_files")

    def process(self, element):
        shard_index, url = element
        found = read_score_file(cache_path(self.output, url), url, self.models, self.settings)
        if found is None or not found[1]:
            raise RuntimeError(f"score file for {url} vanished or changed during the run")
        self.loaded.inc()
        yield from records_from_rows(found[0], url, shard_index)


class ReadCachedScores(beam.PTransform):
    """(shard_index, url) of shards with a valid score file -> their Scored / DeadLetter records."""

    def __init__(self, shards: List[Tuple[int, str]], output: str, models: Tuple[str, str], settings: str):
        super().__init__()
        self.shards = list(shards)
        self.fn = LoadScoreFileFn(output, models, settings)

    def expand(self, pbegin):
        return pbegin | "ListCached" >> ListShards(self.shards) | "LoadScoreFile" >> beam.ParDo(self.fn)
