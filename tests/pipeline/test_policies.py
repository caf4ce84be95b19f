"""Selection policies and embedding stages of the literature, as Beam transforms, on
constructed records with a known right answer."""
import dataclasses

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from learnsieve.config import SelectConfig, effective_score
from learnsieve.core.records import KEPT, Scored
from learnsieve.pipeline.cluster import ClusterExamples, DeduplicateExamples
from learnsieve.pipeline.run import FNAPI
from learnsieve.pipeline.select import SelectExamples


def select_cfg(**kw) -> SelectConfig:
    """A select section ranking by learnability (the records here carry it) unless kw names a score."""
    return SelectConfig(**{"score": "learnability", **kw})


def tp():
    return TestPipeline(runner=FNAPI)


def rec(i, score, vec=None, shard=0, digest="", cluster=None, **extra):
    emb = None if vec is None else np.asarray(vec, dtype=np.float16).tobytes()
    return Scored(f"k{i:04d}", f"s{shard}.tar", shard, i, {"learnability": float(score), **extra},
                  embedding=emb, digest=digest or f"d{i}", cluster=cluster)


def kept_keys(decisions):
    return decisions | "Kept" >> beam.Filter(lambda s: s.decision == KEPT) | "Key" >> beam.Map(lambda s: s.key)


def test_per_batch_keeps_top_fraction_of_each_super_batch_in_stream_order():
    # scores rise within each super-batch of 10; a global top-50% would keep only the last batch
    records = [rec(i, (i % 10) + (100 if i >= 10 else 0)) for i in range(20)]
    with tp() as p:
        out = p | beam.Create(records) | SelectExamples(select_cfg(mode="per_batch", batch=10, fraction=0.3))
        assert_that(kept_keys(out), equal_to([f"k{i:04d}" for i in (7, 8, 9, 17, 18, 19)]))


def test_per_cluster_quota_and_coreset():
    recs = []
    for c in range(3):
        for j in range(10):
            # cluster c's scores are 10c + j: a global top 20% would keep cluster 2 only
            recs.append(rec(c * 10 + j, 10 * c + j, vec=np.eye(4)[c] + 0.01 * j, cluster=c))
    with tp() as p:
        out = p | "C1" >> beam.Create(recs) | "S1" >> SelectExamples(select_cfg(mode="per_cluster", fraction=0.2))
        assert_that(kept_keys(out), equal_to([f"k{c * 10 + j:04d}" for c in range(3) for j in (8, 9)]), label="quota")
    with tp() as p:
        out = p | "C2" >> beam.Create(recs) | "S2" >> SelectExamples(select_cfg(mode="coreset", fraction=0.2))
        counts = (out | beam.Filter(lambda s: s.decision == KEPT)
                  | beam.Map(lambda s: s.cluster) | beam.combiners.Count.PerElement())
        assert_that(counts, equal_to([(0, 2), (1, 2), (2, 2)]))


def test_gumbel_sampling_is_seeded_and_prefers_high_scores():
    from learnsieve.models.selection import gumbel_perturb
    records = [rec(i, i / 10.0) for i in range(200)]

    def expected(seed):
        ranked = sorted(records, key=lambda r: -gumbel_perturb(r.scores["learnability"],
                                                               f"{r.source}\x00{r.key}", 0.5, seed))
        return sorted(r.key for r in ranked[:50])

    a, b = expected(1), expected(2)
    assert a != b
    assert np.mean([int(k[1:]) for k in a]) > 130  # well above the pool mean of 99.5 ...
    assert a != [f"k{i:04d}" for i in range(150, 200)]  # ... yet a sample, not the top 50
    with tp() as p:
        out = p | beam.Create(records) | SelectExamples(
            select_cfg(mode="top_k", k=50, sampling="gumbel", temperature=0.5, seed=1))
        assert_that(kept_keys(out), equal_to(a))


def test_exact_and_semantic_dedup_remove_planted_duplicates():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((12, 8))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    recs = [rec(i, 0.0, base[i], cluster=0.0) for i in range(12)]
    recs.append(rec(12, 1.0, base[0], digest="d0", cluster=0.0))            # exact copy of k0000
    near = base[1] + 0.01 * rng.standard_normal(8)
    recs.append(rec(13, 5.0, near / np.linalg.norm(near), cluster=0.0))     # near copy of k0001, better score
    with tp() as p:
        out = p | beam.Create(recs) | DeduplicateExamples(select_cfg(dedup="semantic", semdedup_eps=0.02))
        reasons = out | beam.Filter(lambda s: s.reason is not None) | beam.Map(lambda s: (s.key, s.reason))
        assert_that(reasons, equal_to([("k0012", "exact_duplicate"), ("k0001", "semantic_duplicate")]))


def test_cluster_stage_gives_an_outlier_the_largest_prototype_distance():
    rng = np.random.default_rng(3)
    recs = []
    for i in range(90):
        v = np.eye(8)[i % 3] + 0.05 * rng.standard_normal(8)
        recs.append(rec(i, 0.0, v / np.linalg.norm(v)))
    odd = -np.ones(8) / np.sqrt(8)
    recs.append(rec(90, 0.0, odd))
    with tp() as p:
        out = p | beam.Create(recs) | ClusterExamples(select_cfg(clusters=3, cluster_sample=1000, seed=0))
        top = out | beam.combiners.Top.Of(1, key=lambda s: s.scores["proto_dist"]) | beam.Map(lambda top1: top1[0].key)
        assert_that(top, equal_to(["k0090"]))


def test_prototype_score_follows_the_data_regime_rule():
    assert effective_score(select_cfg(score="prototype", fraction=0.2)) == "proto_easy"
    assert effective_score(select_cfg(score="prototype", fraction=0.8)) == "proto_hard"
    assert effective_score(select_cfg(score="prototype", prototype_regime="hard", fraction=0.1)) == "proto_hard"


def test_per_class_quota_uses_cls_labels():
    recs = [dataclasses.replace(rec(i, i % 5), label=str(i // 5)) for i in range(15)]
    with tp() as p:
        out = p | beam.Create(recs) | SelectExamples(select_cfg(mode="per_class", fraction=0.4))
        assert_that(kept_keys(out), equal_to([f"k{c * 5 + j:04d}" for c in range(3) for j in (3, 4)]))


def test_cls_label_is_read_from_shards(tmp_path):
    from learnsieve.core.decode import decode_sample
    from learnsieve.core.records import Sample
    from tests.conftest import good_example
    img, cap = good_example()
    d = decode_sample(Sample("k", "s", 0, 0, {"jpg": img, "txt": cap, "cls": b"7\n"}), 32, 10**8, 8192)
    assert d.label == "7"


def test_seals_candidate_pool_grows_from_seed_neighbours():
    from learnsieve.pipeline.candidates import grow_candidates
    rng = np.random.default_rng(4)
    # a chain of points from the seed direction outwards, plus far-away clutter
    chain = np.stack([np.cos(t) * np.eye(8)[0] + np.sin(t) * np.eye(8)[1] for t in np.linspace(0, 1.2, 12)])
    clutter = -np.abs(rng.standard_normal((40, 8)))
    clutter /= np.linalg.norm(clutter, axis=1, keepdims=True)
    emb = np.concatenate([chain, clutter]).astype(np.float32)
    seed = np.eye(8, dtype=np.float32)[:1]
    one = grow_candidates(emb, seed, k=3, rounds=1)
    assert one == {0, 1, 2}
    more = grow_candidates(emb, seed, k=3, rounds=4)
    assert one < more <= set(range(12))  # grows along the chain, never into the clutter
    assert more == set(range(6))  # one step further along the chain per round


def test_seals_restricts_selection_to_candidates():
    from learnsieve.pipeline.candidates import RestrictCandidates
    recs = [rec(i, float(i), np.eye(4)[i % 2]) for i in range(10)]  # even: direction 0, odd: 1
    seed = np.eye(4, dtype=np.float32)[:1]
    with tp() as p:
        out = (p | beam.Create(recs) | RestrictCandidates(seed, select_cfg(seeds_k=5, seeds_rounds=1))
               | SelectExamples(select_cfg(mode="all")))
        assert_that(kept_keys(out), equal_to([f"k{i:04d}" for i in range(0, 10, 2)]))
