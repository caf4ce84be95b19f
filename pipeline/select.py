"""SelectExamples: a decision per scored example, from thresholds computed across all shards.

Global modes: ``top_fraction`` (Beam's ApproximateQuantiles over every example, not per worker
or shard), ``top_k`` (exact; ties broken by source and key), ``threshold``, ``all``. Grouped
modes: ``per_batch`` (the paper's online selection: top fraction of each super-batch of B
examples in stream order), ``per_cluster`` / ``per_class`` (a quota per k-means cluster / per ``KEY.cls`` label), ``coreset`` (k-center
greedy within each cluster). ``sampling: gumbel`` turns top-k / top-fraction into seeded
sampling without replacement proportional to softmax(score / T). Higher is always kept first;
records already decided upstream (duplicates) pass through unchanged.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, List, Optional

import apache_beam as beam
import numpy as np
from apache_beam.transforms.stats import ApproximateQuantiles
from learnsieve.models.registry import Registry
from learnsieve.models.selection import (
    gumbel_perturb,
    kcenter_greedy,
    top_fraction_mask,
)

from learnsieve.config import SelectConfig, effective_score
from learnsieve.core.records import FILTERED, KEPT, Scored

QUANTILES = 1001  # 0.1% resolution of the global threshold


def quantile_threshold(quantiles: List[float], fraction: float) -> Optional[float]:
    """The score above which ``fraction`` of examples lie, from an evenly spaced quantile list."""
    if not quantiles:
        return None
    if fraction >= 1.0:
        return float("-inf")
    idx = round((1.0 - fraction) * (len(quantiles) - 1))
    return quantiles[min(max(idx, 0), len(quantiles) - 1)]


def decide(s: Scored, keep: bool) -> Scored:
    return dataclasses.replace(s, decision=KEPT if keep else FILTERED, embedding=None)


class SelectionValue:
    """The number selection ranks by: the chosen score, Gumbel-perturbed when sampling."""

    def __init__(self, cfg: SelectConfig):
        self.score = effective_score(cfg)
        self.gumbel = cfg.sampling == "gumbel"
        self.temperature, self.seed = cfg.temperature, cfg.seed

    def __call__(self, s: Scored) -> float:
        v = s.scores[self.score]
        return gumbel_perturb(v, f"{s.source}\x00{s.key}", self.temperature, self.seed) if self.gumbel else v

    def rank(self, s: Scored):
        return (self(s), s.source, s.key)


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
        yield decide(s, bool(k))


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
# A new mode is one decorated function here; config validation lists SELECTORS.names().
SELECTORS: Registry[Callable] = Registry("selection mode")


@SELECTORS.register("all")
def _all(scored, cfg: SelectConfig, value: SelectionValue):
    return scored | "KeepAll" >> beam.Map(decide, True)


@SELECTORS.register("threshold")
def _threshold(scored, cfg: SelectConfig, value: SelectionValue):
    return scored | "Threshold" >> beam.Map(lambda s: decide(s, value(s) >= cfg.threshold))


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
    keyed = scored | "ByCluster" >> beam.Map(lambda s: (int(s.scores["cluster"]), s))
    return _grouped(scored, keyed, cfg, value)


@SELECTORS.register("top_fraction")
def _top_fraction(scored, cfg: SelectConfig, value: SelectionValue):
    """Global quantile over every example (Beam's ApproximateQuantiles), not per worker or shard."""
    threshold = (scored
                 | "ScoreValues" >> beam.Map(value)
                 | "GlobalQuantiles" >> ApproximateQuantiles.Globally(QUANTILES)
                 | "ThresholdAt" >> beam.Map(quantile_threshold, cfg.fraction))
    return scored | "KeepAbove" >> beam.Map(
        lambda s, t: decide(s, t is not None and value(s) >= t), beam.pvalue.AsSingleton(threshold))


@SELECTORS.register("top_k")
def _top_k(scored, cfg: SelectConfig, value: SelectionValue):
    """Exact: the k-th largest (value, source, key) tuple is the cut."""
    kth = (scored
           | "RankTuples" >> beam.Map(value.rank)
           | "TopK" >> beam.combiners.Top.Of(cfg.k)
           | "KthLargest" >> beam.Map(lambda top: min(top) if len(top) >= cfg.k else None))
    return scored | "KeepTopK" >> beam.Map(
        lambda s, t: decide(s, t is None or value.rank(s) >= t), beam.pvalue.AsSingleton(kth))
