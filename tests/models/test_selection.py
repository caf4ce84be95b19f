
import numpy as np

from learnsieve.models.selection import (
    gumbel_noise,
    gumbel_perturb,
    kcenter_greedy,
    kmeans,
    nearest_centroid,
    prototype_regime,
    semdedup,
    top_fraction_mask,
)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_gumbel_top1_frequencies_match_softmax():
    scores = np.array([0.0, 1.0, 2.0, 0.5])
    t = 0.7
    probs = np.exp(scores / t) / np.exp(scores / t).sum()
    trials = 4000
    wins = np.zeros(len(scores))
    for seed in range(trials):
        perturbed = [gumbel_perturb(s, f"k{i}", t, seed) for i, s in enumerate(scores)]
        wins[int(np.argmax(perturbed))] += 1
    assert np.allclose(wins / trials, probs, atol=0.025)


def test_gumbel_is_reproducible_and_seeded():
    assert gumbel_noise("abc", 1) == gumbel_noise("abc", 1)
    assert gumbel_noise("abc", 1) != gumbel_noise("abc", 2)
    draws = [gumbel_noise(f"k{i}", 0) for i in range(20000)]
    assert abs(np.mean(draws) - 0.5772) < 0.03  # Euler-Mascheroni: the Gumbel mean


def _blobs(rng, centers, n_each, spread=0.05):
    pts = [c + spread * rng.standard_normal((n_each, len(c))) for c in centers]
    return unit(np.concatenate(pts).astype(np.float32))


def test_prototype_distance_ranks_an_outlier_cluster_last():
    rng = np.random.default_rng(0)
    dim = 16
    main = [np.eye(dim)[i] for i in range(3)]
    x_main = _blobs(rng, main, 200)
    outliers = unit(rng.standard_normal((6, dim)).astype(np.float32))  # scattered, far from all
    x = np.concatenate([x_main, outliers])
    centroids = kmeans(x_main, 3, seed=0)
    dist, idx = nearest_centroid(x, centroids)
    easy_order = np.argsort(dist)  # most prototypical first
    assert set(easy_order[-6:]) == set(range(600, 606))
    assert len(set(idx[:600])) == 3


def test_prototype_regime_rule():
    assert prototype_regime(0.1) == "easy" and prototype_regime(0.8) == "hard"
    assert prototype_regime(0.3, switch=0.2) == "hard"


def test_semdedup_removes_planted_near_duplicates_keeping_highest_priority():
    rng = np.random.default_rng(1)
    base = unit(rng.standard_normal((20, 32)).astype(np.float32))
    dups = unit(base[:5] + 0.01 * rng.standard_normal((5, 32)).astype(np.float32))
    emb = np.concatenate([base, dups])
    priority = np.concatenate([np.zeros(20), np.ones(5)])  # the copies score higher
    keep = semdedup(emb, priority, eps=0.01)
    assert keep.sum() == 20
    assert keep[20:].all() and not keep[:5].any() and keep[5:20].all()


def test_kcenter_greedy_covers_every_cluster_first():
    rng = np.random.default_rng(2)
    centers = [np.eye(8)[i] * 10 for i in range(4)]
    x = np.concatenate([c + rng.standard_normal((50, 8)) * 0.1 for c in centers])
    picked = kcenter_greedy(x, 4)
    assert sorted(i // 50 for i in picked) == [0, 1, 2, 3]
    assert kcenter_greedy(x, 0) == [] and len(kcenter_greedy(x, 500)) == 200


def test_top_fraction_mask():
    keep = top_fraction_mask([0.1, 0.9, 0.5, 0.7], 0.5)
    assert keep.tolist() == [False, True, False, True]
    assert top_fraction_mask([1.0] * 3, 1.0).all()
