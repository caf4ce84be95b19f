"""ReadShards: one input shard per unit of work, streamed sample by sample."""
from __future__ import annotations

from typing import List

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline.example import DeadLetter
from pipeline.shards import iter_shard

DEAD = "dead"


class ReadShardFn(beam.DoFn):
    def __init__(self, max_member_bytes: int):
        self.max_member_bytes = max_member_bytes
        self.samples = Metrics.counter("read", "samples")
        self.rejected = Metrics.counter("read", "rejected")

    def process(self, element):
        shard_index, url = element
        for item in iter_shard(url, shard_index, self.max_member_bytes):
            if isinstance(item, DeadLetter):
                self.rejected.inc()
                yield beam.pvalue.TaggedOutput(DEAD, item)
            else:
                self.samples.inc()
                yield item


class ReadShards(beam.PTransform):
    """(shard list) -> samples, with a ``dead`` output for unreadable shards and members.

    The shard list is resolved before the pipeline starts (``pipeline.shards.expand_pattern``)
    so a bad path fails fast; shards are redistributed so that each one is a unit of work.
    """

    def __init__(self, shards: List[str], max_member_bytes: int = 64 << 20):
        super().__init__()
        self.shards = list(shards)
        self.max_member_bytes = max_member_bytes

    def expand(self, pbegin):
        return (pbegin
                | "ListShards" >> beam.Create(list(enumerate(self.shards)))
                | "SpreadShards" >> beam.Reshuffle()
                | "ReadShard" >> beam.ParDo(ReadShardFn(self.max_member_bytes)).with_outputs(DEAD, main="samples"))
