"""SelectExamples: a decision per scored example, from thresholds computed across all shards.

The modes are core/modes.py's registry (a new mode is one entry there); this composite runs each
kind on Beam. Global modes: ``top_fraction`` (exactly ceil(fraction * n) over every example, not per worker or
shard) and ``top_k`` (exact; ties broken by source and key), both by a mergeable histogram cut
(learnsieve/core/shard_select.py); ``threshold``, ``all``. This module serves the record graph
(clusters, dedup, SEALS, ranked output); without those, pipeline/run.py takes the streaming
graph (pipeline/select_shards.py), which decides the same way one input shard at a time. Grouped
modes: ``per_batch`` (the paper's online selection: top fraction of each super-batch of B
examples in stream order), ``per_cluster`` / ``per_class`` (a quota per k-means cluster / per
``KEY.cls`` label), ``coreset`` (k-center
greedy within each cluster). ``sampling: gumbel`` turns top-k / top-fraction into seeded
sampling without replacement proportional to softmax(score / T). Higher is always kept first;
records already decided upstream (duplicates) pass through unchanged.
"""
from __future__ import annotations

import dataclasses

import apache_beam as beam

from learnsieve.config import SelectConfig
from learnsieve.core.modes import MODES, decide_groups
from learnsieve.core.records import FILTERED, KEPT, Scored, decide
from learnsieve.core.shard_select import (
    SelectionValue,
    band_counts,
    bucket_cut,
    histogram,
    kept_target,
    value_cut,
)
from learnsieve.pipeline.select_shards import MergeCountsFn


def decide_keep(s: Scored, keep: bool) -> Scored:
    return decide(s, KEPT if keep else FILTERED, "select")


def _decide_group(element, value: SelectionValue, cfg: SelectConfig):
    _, group = element
    group = list(group)
    for s, k in zip(group, decide_groups(group, [value(s) for s in group], MODES.get(cfg.mode), cfg)):
        yield decide_keep(s, k)


class SelectExamples(beam.PTransform):
    def __init__(self, cfg: SelectConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, scored):
        open_ = scored | "Undecided" >> beam.Filter(lambda s: s.decision is None)
        done = (scored | "AlreadyDecided" >> beam.Filter(lambda s: s.decision is not None)
                | "DropEmbedding" >> beam.Map(lambda s: dataclasses.replace(s, embedding=None)))
        return (done, self._select(open_)) | "AllDecisions" >> beam.Flatten()

    def _select(self, scored):
        cfg, value = self.cfg, SelectionValue(self.cfg)
        kind = MODES.get(cfg.mode).kind  # workers look the mode up by name (its functions are not pickled)
        if kind == "each":
            return scored | "KeepEach" >> beam.Map(lambda s: decide_keep(s, MODES.get(cfg.mode).keep(value(s), cfg)))
        if kind == "group":
            return (scored
                    | "ByGroup" >> beam.Map(lambda s: (MODES.get(cfg.mode).group(s, cfg), s))
                    | "Group" >> beam.GroupByKey()
                    | "DecideGroup" >> beam.FlatMap(_decide_group, value, cfg))
        return _global_cut(scored, cfg, value)


def _global_cut(scored, cfg: SelectConfig, value: SelectionValue):
    """Exactly the k highest (value, source, key) tuples (top_fraction: k = ceil(fraction * n)),
    by the same mergeable two-pass cut as the streaming graph (learnsieve/core/shard_select.py):
    a histogram of values names the bucket of the cut, the distinct values in it the cut value;
    the tied records at that value (few) give the last tuple kept. No worker holds k records."""
    bcut = (scored
            | "Histogram" >> beam.Map(lambda s: (1, histogram([value(s)])))
            | "MergeHistogram" >> beam.CombineGlobally(MergeCountsFn())
            | "BucketOfCut" >> beam.Map(lambda h: bucket_cut(h[1], kept_target(cfg.mode, h[0], cfg.fraction, cfg.k))))
    cut = (scored
           | "InBucket" >> beam.Map(lambda s, b: (0, band_counts([value(s)], b)), beam.pvalue.AsSingleton(bcut))
           | "MergeBand" >> beam.CombineGlobally(MergeCountsFn())
           | "ExactCut" >> beam.Map(lambda band, b: value_cut(band[1], b), beam.pvalue.AsSingleton(bcut)))
    last = (scored
            | "TiedAtCut" >> beam.Filter(lambda s, c: c.value is not None and value(s) == c.value,
                                         beam.pvalue.AsSingleton(cut))
            | "TieRanks" >> beam.Map(value.rank)
            | "AllTies" >> beam.combiners.ToList()
            | "LastKept" >> beam.Map(lambda ties, c: sorted(ties, reverse=True)[c.ties - 1] if c.ties > 0 else None,
                                     beam.pvalue.AsSingleton(cut)))

    def keep(s, c, t):
        if c.value is None:
            return c.keep_all
        v = value(s)
        return v > c.value or (v == c.value and t is not None and value.rank(s) >= t)

    return scored | "KeepAbove" >> beam.Map(lambda s, c, t: decide_keep(s, keep(s, c, t)), beam.pvalue.AsSingleton(cut),
                                            beam.pvalue.AsSingleton(last))
