"""Selection math of the data-curation literature: plain functions over arrays (no Beam).

- Gumbel-top-k (Kool et al. 2019): top-k of score/T + Gumbel noise is a sample without
  replacement with probabilities proportional to softmax(score/T); the noise is a hash of
  (seed, key), so a sample is reproducible offline and independent of batching.
- Self-supervised prototypes (Sorscher et al. 2022): k-means on embeddings (faiss), distance to
  the nearest centroid as difficulty; keep easy when the budget is small, hard when it is large.
- SemDeDup (Abbas et al. 2023): within a cluster, examples closer than 1 - eps in cosine
  similarity are one group; keep one per group (the highest by a chosen score).
- k-center greedy coreset (Sener & Savarese 2018).
"""
from __future__ import annotations

import hashlib
import math
from typing import List, Sequence, Tuple

import numpy as np


def gumbel_noise(key: str, seed: int) -> float:
    """A standard Gumbel draw determined by (seed, key)."""
    h = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    u = (int.from_bytes(h, "little") + 0.5) / 2.0 ** 64  # in (0, 1)
    return -math.log(-math.log(u))


def gumbel_perturb(score: float, key: str, temperature: float, seed: int) -> float:
    return score / temperature + gumbel_noise(key, seed)


def kmeans(x: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """Spherical k-means centroids (faiss), k capped at the number of points."""
    import faiss
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = max(1, min(k, len(x)))
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=1 << 20)
    km.train(x)
    return km.centroids.copy()


def nearest_centroid(x: np.ndarray, centroids: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(cosine distance to the nearest centroid, its index) for unit-norm rows of ``x``."""
    c = centroids / np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    sims = np.asarray(x, dtype=np.float32) @ c.T.astype(np.float32)
    idx = sims.argmax(axis=1)
    return 1.0 - sims[np.arange(len(x)), idx], idx


def prototype_regime(kept_fraction: float, switch: float = 0.5) -> str:
    """Sorscher et al.: with a small budget keep easy (prototypical) examples, with a large one
    keep hard ones."""
    return "easy" if kept_fraction < switch else "hard"


def semdedup(emb: np.ndarray, priority: Sequence[float], eps: float) -> np.ndarray:
    """Keep mask: greedily keep examples in priority order, dropping any whose cosine similarity
    to an already-kept example exceeds 1 - eps."""
    emb = np.asarray(emb, dtype=np.float32)
    order = np.argsort(-np.asarray(priority, dtype=np.float64), kind="stable")
    keep = np.zeros(len(emb), dtype=bool)
    kept_rows: List[int] = []
    for i in order:
        if kept_rows and float((emb[kept_rows] @ emb[i]).max()) > 1.0 - eps:
            continue
        keep[i] = True
        kept_rows.append(i)
    return keep


def kcenter_greedy(emb: np.ndarray, k: int, first: int = 0) -> List[int]:
    """Indices of a k-center greedy coreset: each pick is the point farthest from those picked."""
    emb = np.asarray(emb, dtype=np.float32)
    n = len(emb)
    if k <= 0 or n == 0:
        return []
    picked = [first]
    dist = np.linalg.norm(emb - emb[first], axis=1)
    while len(picked) < min(k, n):
        nxt = int(dist.argmax())
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(emb - emb[nxt], axis=1))
    return picked


def top_fraction_mask(scores: Sequence[float], fraction: float) -> np.ndarray:
    """Keep the ceil(fraction * n) highest scores (ties by position)."""
    s = np.asarray(scores, dtype=np.float64)
    k = int(math.ceil(fraction * len(s) - 1e-9))
    keep = np.zeros(len(s), dtype=bool)
    keep[np.argsort(-s, kind="stable")[:k]] = True
    return keep
