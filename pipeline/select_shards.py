"""SelectShards: the streaming graph's selection, one input shard per element (after ScoreShards
with a ``SelectionValue``; the decision logic is learnsieve/core/shard_select.py).

``top_k`` / ``top_fraction``: every shard's histogram of selection values is merged into one
(a CombineGlobally of sums), which names the bucket holding the k-th largest value; the shards
with values in that bucket send their distinct values there with counts, merged again: the exact
cut. ``threshold`` / ``all`` / ``per_batch`` need no global state. Then every shard counts what it
keeps and one small plan (O(input shards)) says how ties at the cut are shared and which output
shards each input shard's kept examples go to. Only ``ShardScores`` summaries, counts and the
plan cross stages: a shard's records are re-read from its score file by whichever stage needs
them, so no worker ever holds more than one shard's rows (memory flat in the pool size).
"""
from __future__ import annotations

import apache_beam as beam

from learnsieve.config import SelectConfig
from learnsieve.core.modes import MODES
from learnsieve.core.shard_select import (
    SelectionValue,
    bucket_cut,
    count_shard,
    kept_target,
    merge_counts,
    selection_plan,
    shard_band,
    value_cut,
)


class MergeCountsFn(beam.CombineFn):
    """(candidates, {bucket or value: count}) summed: associative and commutative, so the result
    does not depend on how a runner splits or orders the shards."""

    def create_accumulator(self):
        return 0, {}

    def add_input(self, acc, element):
        return acc[0] + element[0], merge_counts([acc[1], element[1]])

    def merge_accumulators(self, accs):
        accs = list(accs)
        return sum(a[0] for a in accs), merge_counts(a[1] for a in accs)

    def extract_output(self, acc):
        return acc


class CountKeptFn(beam.DoFn):
    def __init__(self, cfg: SelectConfig):
        self.cfg, self.value = cfg, SelectionValue(cfg)

    def process(self, summary, cut=None):
        yield count_shard(summary, self.cfg, self.value, cut)


class SelectShards(beam.PTransform):
    """ShardScores -> a one-element PCollection holding the ``SelectionPlan``."""

    def __init__(self, cfg: SelectConfig, samples_per_shard: int):
        super().__init__()
        self.cfg, self.samples_per_shard = cfg, samples_per_shard

    def expand(self, summaries):
        cfg, value = self.cfg, SelectionValue(self.cfg)
        cut = None
        if MODES.get(cfg.mode).kind == "cut":
            bcut = (summaries
                    | "Histograms" >> beam.Map(lambda s: (s.candidates, s.histogram))
                    | "MergeHistograms" >> beam.CombineGlobally(MergeCountsFn())
                    | "BucketOfCut" >> beam.Map(lambda h: bucket_cut(h[1], kept_target(cfg.mode, h[0], cfg.fraction,
                                                                                        cfg.k))))
            cut = (summaries
                   | "ValuesInBucket" >> beam.Map(lambda s, b: (0, shard_band(s, value, b)),
                                                  beam.pvalue.AsSingleton(bcut))
                   | "MergeBand" >> beam.CombineGlobally(MergeCountsFn())
                   | "ExactCut" >> beam.Map(lambda band, b: value_cut(band[1], b), beam.pvalue.AsSingleton(bcut)))
            counts = summaries | "CountKept" >> beam.ParDo(CountKeptFn(cfg), beam.pvalue.AsSingleton(cut))
        else:
            counts = summaries | "CountKept" >> beam.ParDo(CountKeptFn(cfg))
        spp = self.samples_per_shard
        gathered = counts | "AllCounts" >> beam.combiners.ToList()
        if cut is None:
            return gathered | "Plan" >> beam.Map(lambda c: selection_plan(c, None, spp))
        return gathered | "Plan" >> beam.Map(lambda c, v: selection_plan(c, v, spp), beam.pvalue.AsSingleton(cut))
