"""RestrictCandidates: SEALS-style candidate pool (Coleman et al. 2022). Seed captions of a
concept are embedded by the reference text tower; the candidate pool starts as their nearest
neighbours among the pool's image embeddings (a faiss inner-product index built in the
pipeline) and grows for a few rounds by the neighbours of its newest members. Selection then
runs among candidates only; the rest are filtered with reason ``not_candidate``.

The index holds every embedding (float16 in transit, float32 in faiss): 128-d x 10M examples is
about 5 GB on one worker; beyond that, shard the pool or use an IVF index."""
from __future__ import annotations

from typing import List, Sequence, Set

import apache_beam as beam
import numpy as np

from learnsieve.config import SelectConfig
from learnsieve.core.records import FILTERED, Scored, decide


def grow_candidates(emb: np.ndarray, queries: np.ndarray, k: int, rounds: int) -> Set[int]:
    """Indices of the candidate pool: k nearest rows of ``emb`` per query, then ``rounds - 1``
    more rounds querying with the rows added last."""
    import faiss
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    found: Set[int] = set()
    frontier = np.ascontiguousarray(queries, dtype=np.float32)
    for _ in range(rounds):
        if len(frontier) == 0:
            break
        _, idx = index.search(frontier, min(k, len(emb)))
        new = {int(i) for i in idx.ravel() if i >= 0} - found
        found |= new
        frontier = emb[sorted(new)] if new else frontier[:0]
    return found


def encode_seeds(reference_path: str, seeds: Sequence[str]) -> np.ndarray:
    import torch

    from learnsieve.models.checkpoint import load_checkpoint
    model, _ = load_checkpoint(reference_path)
    with torch.no_grad():
        return model.encode_text(list(seeds)).numpy().astype(np.float32)


class RestrictCandidates(beam.PTransform):
    def __init__(self, seed_vectors: np.ndarray, cfg: SelectConfig):
        """``seed_vectors``: the seed captions embedded (``encode_seeds``); ``cfg.seeds_k``
        neighbours per query, ``cfg.seeds_rounds`` rounds."""
        super().__init__()
        self.seed_vectors, self.k, self.rounds = seed_vectors, cfg.seeds_k, cfg.seeds_rounds

    def expand(self, scored):
        seeds, k, rounds = self.seed_vectors, self.k, self.rounds

        def find(items: List[tuple]):
            items = sorted(items)
            if not items:
                return set()
            emb = np.stack([np.frombuffer(e, dtype=np.float16).astype(np.float32) for _, e in items])
            return {items[i][0] for i in grow_candidates(emb, seeds, k, rounds)}

        pool = (scored
                | "Embeddings" >> beam.Filter(lambda s: s.decision is None)
                | "IdAndEmbedding" >> beam.Map(lambda s: ((s.source, s.key), s.embedding))
                | "AllEmbeddings" >> beam.combiners.ToList()
                | "SearchIndex" >> beam.Map(find))

        def mark(s: Scored, candidates):
            if s.decision is not None or (s.source, s.key) in candidates:
                return s
            return decide(s, FILTERED, "candidates", "not_candidate")

        return scored | "MarkCandidates" >> beam.Map(mark, beam.pvalue.AsSingleton(pool))
