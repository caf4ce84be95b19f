"""ListShards: the input shards, one element each, spread over workers: one shard is the unit of
work. The shard list is resolved before the pipeline starts (learnsieve/core/paths.py), so a bad
path fails fast; reading a shard's members happens inside its scoring step (score.py), where the
pixels stay."""
from __future__ import annotations

from typing import List, Tuple

import apache_beam as beam


class ListShards(beam.PTransform):
    """(index in the full input list, URL) pairs -> a PCollection of them, redistributed so
    that each shard can go to a different worker."""

    def __init__(self, shards: List[Tuple[int, str]]):
        super().__init__()
        self.shards = list(shards)

    def expand(self, pbegin):
        return (pbegin
                | "Create" >> beam.Create(self.shards, reshuffle=False)
                | "Spread" >> beam.Reshuffle())
