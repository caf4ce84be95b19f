"""ClusterExamples and DeduplicateExamples: the embedding-based stages (prototypes, SemDeDup,
exact duplicates). Embeddings come from the score stage (reference image tower, float16),
computed once per example."""
from __future__ import annotations

import dataclasses
import hashlib

import apache_beam as beam
import numpy as np

from learnsieve.config import SelectConfig, effective_score
from learnsieve.core.records import FILTERED, Scored, with_cluster
from learnsieve.models.selection import kmeans, nearest_centroid, semdedup


def _sample_key(s: Scored) -> bytes:
    return hashlib.blake2b(f"{s.source}\x00{s.key}".encode(), digest_size=8).digest()


class AssignClusterFn(beam.DoFn):
    def process(self, s: Scored, centroids):
        dist, idx = nearest_centroid(s.vector()[None, :], centroids)
        yield with_cluster(s, int(idx[0]), float(dist[0]))


class ClusterExamples(beam.PTransform):
    """k-means (faiss) on a deterministic sample of embeddings, then each example's nearest
    centroid and its distance (Sorscher et al.'s self-supervised prototype metric)."""

    def __init__(self, cfg: SelectConfig):
        """``cfg.clusters`` centroids from ``cfg.cluster_sample`` embeddings, seeded by ``cfg.seed``."""
        super().__init__()
        self.clusters, self.sample, self.seed = cfg.clusters, cfg.cluster_sample, cfg.seed

    def expand(self, scored):
        k, seed = self.clusters, self.seed
        centroids = (scored
                     | "SampleKeys" >> beam.Map(lambda s: (_sample_key(s), s.embedding))
                     | "DeterministicSample" >> beam.combiners.Top.Smallest(self.sample)
                     | "KMeans" >> beam.Map(lambda pairs: kmeans(
                         np.stack([np.frombuffer(e, dtype=np.float16).astype(np.float32) for _, e in pairs]),
                         k, seed)))
        return scored | "AssignCluster" >> beam.ParDo(AssignClusterFn(), beam.pvalue.AsSingleton(centroids))


def _mark(s: Scored, reason: str) -> Scored:
    return dataclasses.replace(s, decision=FILTERED, stage="dedup", reason=reason)


def keep_first_exact(element):
    """Of examples with identical image bytes keep the first in stream order."""
    _, group = element
    group = sorted(group, key=Scored.order)
    yield group[0]
    for s in group[1:]:
        yield _mark(s, "exact_duplicate")


class DeduplicateExamples(beam.PTransform):
    """Exact duplicates by image hash; with ``semantic``, SemDeDup within each k-means cluster
    (needs ClusterExamples first), keeping the highest ``score`` of each near-duplicate group.
    Duplicates are decided as filtered, with the reason in the manifest."""

    def __init__(self, cfg: SelectConfig):
        """``cfg.dedup``: exact | semantic (with ``cfg.semdedup_eps``), keeping the highest of the
        selection score (``effective_score(cfg)``)."""
        super().__init__()
        self.semantic, self.eps, self.score = cfg.dedup == "semantic", cfg.semdedup_eps, effective_score(cfg)

    def expand(self, scored):
        out = (scored
               | "ByImageHash" >> beam.Map(lambda s: (s.digest or f"{s.source}\x00{s.key}", s))
               | "GroupByHash" >> beam.GroupByKey()
               | "KeepFirst" >> beam.FlatMap(keep_first_exact))
        if not self.semantic:
            return out
        eps, score = self.eps, self.score

        def dedup_cluster(element):
            _, group = element
            group = sorted(group, key=Scored.order)
            live = [s for s in group if s.decision is None]
            for s in group:
                if s.decision is not None:
                    yield s
            if live:
                keep = semdedup(np.stack([s.vector() for s in live]), [s.scores[score] for s in live], eps)
                for s, k in zip(live, keep):
                    yield s if k else _mark(s, "semantic_duplicate")

        return (out
                | "ByCluster" >> beam.Map(lambda s: (s.cluster, s))
                | "GroupByCluster" >> beam.GroupByKey()
                | "SemDeDup" >> beam.FlatMap(dedup_cluster))
