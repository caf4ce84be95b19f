"""ReadShards: one input shard per unit of work, streamed sample by sample."""
from __future__ import annotations

from typing import List, Tuple, Union

import apache_beam as beam
from apache_beam.metrics import Metrics

from learnsieve.core.records import DeadLetter, ShardDone
from learnsieve.core.tar import iter_shard

DEAD = "dead"
DONE = "done"


class ReadShardFn(beam.DoFn):
    def __init__(self, max_member_bytes: int):
        self.max_member_bytes = max_member_bytes
        self.samples = Metrics.counter("read", "samples")
        self.rejected = Metrics.counter("read", "rejected")

    def process(self, element):
        shard_index, url = element
        total = 0
        for item in iter_shard(url, shard_index, self.max_member_bytes):
            total += 1
            if isinstance(item, DeadLetter):
                self.rejected.inc()
                yield beam.pvalue.TaggedOutput(DEAD, item)
            else:
                self.samples.inc()
                yield item
        yield beam.pvalue.TaggedOutput(DONE, ShardDone(url, shard_index, total))


class ReadShards(beam.PTransform):
    """(shard list) -> samples, with a ``dead`` output for unreadable shards and members and a
    ``done`` output with one ShardDone per shard.

    The shard list is resolved before the pipeline starts (``pipeline.shards.expand_pattern``)
    so a bad path fails fast; shards are redistributed so that each one is a unit of work.
    """

    def __init__(self, shards: List[Union[str, Tuple[int, str]]], max_member_bytes: int = 64 << 20):
        """``shards``: URLs, or (index in the full input list, URL) pairs."""
        super().__init__()
        self.shards = [s if isinstance(s, tuple) else (i, s) for i, s in enumerate(shards)]
        self.max_member_bytes = max_member_bytes

    def expand(self, pbegin):
        return (pbegin
                | "ListShards" >> beam.Create(self.shards, reshuffle=False)
                | "SpreadShards" >> beam.Reshuffle()
                | "ReadShard" >> beam.ParDo(ReadShardFn(self.max_member_bytes)).with_outputs(DEAD, DONE, main="samples"))
