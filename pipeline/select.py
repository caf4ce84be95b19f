"""SelectExamples: a decision per scored example, from thresholds computed across all shards.

Global modes: ``top_fraction`` (exactly ceil(fraction * n) over every example, not per worker or
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
import math
from typing import Callable

import apache_beam as beam
import numpy as np

from learnsieve.config import SELECTION_MODES, SelectConfig
from learnsieve.core.records import FILTERED, KEPT, Scored, decide
from learnsieve.core.shard_select import (
    SelectionValue,
    band_counts,
    bucket_cut,
    histogram,
    kept_target,
    value_cut,
)
from learnsieve.models.registry import Registry
from learnsieve.models.selection import (
    kcenter_greedy,
    top_fraction_mask,
)
from learnsieve.pipeline.select_shards import MergeCountsFn


def decide_keep(s: Scored, keep: bool) -> Scored:
    return decide(s, KEPT if keep else FILTERED, "select")


def _decide_group(element, value: SelectionValue, fraction: float, coreset: bool):
    _, group = element
    group = sorted(group, key=Scored.order)
    if coreset:
        k = int(math.ceil(fraction * len(group) - 1e-9))
        first = int(np.argmax([value(s) for s in group]))
        chosen = set(kcenter_greedy(np.stack([s.vector() for s in group]), k, first))
        keep = [i in chosen for i in range(len(group))]
    else:
        keep = top_fraction_mask([value(s) for s in group], fraction)
    for s, k in zip(group, keep):
        yield decide_keep(s, bool(k))


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
        return SELECTORS.get(self.cfg.mode)(scored, self.cfg, SelectionValue(self.cfg))


# select.mode -> (undecided scored records, SelectConfig, SelectionValue) -> decided records.
# A new mode is one decorated function here and its name in learnsieve.config.SELECTION_MODES.
SELECTORS: Registry[Callable] = Registry("selection mode")


@SELECTORS.register("all")
def _all(scored, cfg: SelectConfig, value: SelectionValue):
    return scored | "KeepAll" >> beam.Map(decide_keep, True)


@SELECTORS.register("threshold")
def _threshold(scored, cfg: SelectConfig, value: SelectionValue):
    return scored | "Threshold" >> beam.Map(lambda s: decide_keep(s, value(s) >= cfg.threshold))


def _grouped(scored, keyed, cfg: SelectConfig, value: SelectionValue):
    return (keyed | "Group" >> beam.GroupByKey()
            | "DecideGroup" >> beam.FlatMap(_decide_group, value, cfg.fraction, cfg.mode == "coreset"))


@SELECTORS.register("per_batch")
def _per_batch(scored, cfg: SelectConfig, value: SelectionValue):
    """The paper's online selection: top fraction of each super-batch, in stream order."""
    keyed = scored | "SuperBatch" >> beam.Map(lambda s: ((s.shard_index, s.index // cfg.batch), s))
    return _grouped(scored, keyed, cfg, value)


@SELECTORS.register("per_class")
def _per_class(scored, cfg: SelectConfig, value: SelectionValue):
    """A quota per ``KEY.cls`` label; examples without a label form one group."""
    keyed = scored | "ByClass" >> beam.Map(lambda s: (s.label or "", s))
    return _grouped(scored, keyed, cfg, value)


@SELECTORS.register("per_cluster")
@SELECTORS.register("coreset")
def _per_cluster(scored, cfg: SelectConfig, value: SelectionValue):
    """A quota per k-means cluster (top score), or k-center greedy within each (coreset)."""
    keyed = scored | "ByCluster" >> beam.Map(lambda s: (s.cluster, s))
    return _grouped(scored, keyed, cfg, value)


@SELECTORS.register("top_fraction")
@SELECTORS.register("top_k")
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


if set(SELECTORS.names()) != set(SELECTION_MODES):  # config validation lists SELECTION_MODES
    raise ImportError(f"selection modes registered {sorted(SELECTORS.names())} differ from "
                      f"learnsieve.config.SELECTION_MODES {sorted(SELECTION_MODES)}: list a new mode in both")
