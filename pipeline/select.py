"""SelectExamples: a decision per scored example from thresholds computed across all shards.

``top_fraction`` uses Beam's ApproximateQuantiles over every example (not per worker, not per
shard); ``top_k`` is exact, with ties broken by (source, key); ``threshold`` needs no global pass.
Higher scores are always kept first.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantiles

from pipeline.config import SelectConfig
from pipeline.example import FILTERED, KEPT, Scored

QUANTILES = 1001  # 0.1% resolution of the global threshold


def quantile_threshold(quantiles: List[float], fraction: float) -> Optional[float]:
    """The score above which ``fraction`` of examples lie, from an evenly spaced quantile list."""
    if not quantiles:
        return None
    if fraction >= 1.0:
        return float("-inf")
    idx = round((1.0 - fraction) * (len(quantiles) - 1))
    return quantiles[min(max(idx, 0), len(quantiles) - 1)]


def rank_tuple(s: Scored, score: str):
    return (s.scores[score], s.source, s.key)


def decide(s: Scored, keep: bool) -> Scored:
    return dataclasses.replace(s, decision=KEPT if keep else FILTERED)


class SelectExamples(beam.PTransform):
    def __init__(self, cfg: SelectConfig):
        super().__init__()
        self.cfg = cfg

    def expand(self, scored):
        cfg, name = self.cfg, self.cfg.score
        if cfg.mode == "all":
            return scored | "KeepAll" >> beam.Map(decide, True)
        if cfg.mode == "threshold":
            return scored | "Threshold" >> beam.Map(lambda s: decide(s, s.scores[name] >= cfg.threshold))
        if cfg.mode == "top_fraction":
            threshold = (scored
                         | "ScoreValues" >> beam.Map(lambda s: s.scores[name])
                         | "GlobalQuantiles" >> ApproximateQuantiles.Globally(QUANTILES)
                         | "ThresholdAt" >> beam.Map(quantile_threshold, cfg.fraction))
            return scored | "KeepAbove" >> beam.Map(
                lambda s, t: decide(s, t is not None and s.scores[name] >= t),
                beam.pvalue.AsSingleton(threshold))
        # top_k: the k-th largest (score, source, key) tuple is the exact cut.
        kth = (scored
               | "RankTuples" >> beam.Map(rank_tuple, name)
               | "TopK" >> beam.combiners.Top.Of(cfg.k)
               | "KthLargest" >> beam.Map(lambda top: min(top) if len(top) >= cfg.k else None))
        return scored | "KeepTopK" >> beam.Map(
            lambda s, t: decide(s, t is None or rank_tuple(s, name) >= t), beam.pvalue.AsSingleton(kth))
