"""ReadCachedScores: the records of input shards whose score file is valid for these inputs and
models (resume after a kill, ``--incremental`` re-curation), read instead of scored again. The
file format is in learnsieve/core/score_file.py; score.py writes the files."""
from __future__ import annotations

from typing import List, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from learnsieve.pipeline.read import ListShards

from learnsieve.core.score_file import cache_path, read_shard_scores


class LoadScoreFileFn(beam.DoFn):
    def __init__(self, output: str, models: Tuple[str, str], score_names: Sequence[str]):
        self.output, self.models, self.score_names = output, tuple(models), list(score_names)
        self.loaded = Metrics.counter("score", "shards_from_score_files")

    def process(self, element):
        shard_index, url = element
        records = read_shard_scores(cache_path(self.output, url), url, shard_index, self.models, self.score_names)
        if records is None:
            raise RuntimeError(f"score file for {url} vanished or changed during the run")
        self.loaded.inc()
        yield from records


class ReadCachedScores(beam.PTransform):
    """(shard_index, url) of shards with a valid score file -> their Scored / DeadLetter records."""

    def __init__(self, shards: List[Tuple[int, str]], output: str, models: Tuple[str, str],
                 score_names: Sequence[str]):
        super().__init__()
        self.shards = list(shards)
        self.fn = LoadScoreFileFn(output, models, score_names)

    def expand(self, pbegin):
        return pbegin | "ListCached" >> ListShards(self.shards) | "LoadScoreFile" >> beam.ParDo(self.fn)
