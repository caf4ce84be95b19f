"""The streaming selection's cut (learnsieve/core/shard_select.py) against brute force: exact
top-k of (value, source, key) from mergeable per-shard summaries, whatever the merge order."""
import random

import numpy as np
import pytest

from learnsieve.config import SelectConfig
from learnsieve.core.records import KEPT, Scored
from learnsieve.core.shard_select import (
    BucketCut,
    SelectionValue,
    band_counts,
    bucket_cut,
    decide_shard,
    histogram,
    kept_target,
    merge_counts,
    order_keys,
    selection_plan,
    tie_allowances,
    value_cut,
    write_plan,
)


def select_cfg(**kw) -> SelectConfig:
    """A select section ranking by learnability (the records here carry it) unless kw names a score."""
    return SelectConfig(**{"score": "learnability", **kw})


def _pool(rng, shards, per_shard, values):
    pool = []
    for i in range(shards):
        src = f"pool/{rng.randrange(10**6):06d}-{i}.tar"
        pool.append([Scored(key=f"k{j:04d}", source=src, shard_index=i, index=j,
                            scores={"learnability": values(rng)}) for j in range(per_shard)])
    return pool


def _streamed_keep(pool, cfg):
    """The streaming graph's decisions, computed the way its stages compute them."""
    value = SelectionValue(cfg)
    vals = [[value(s) for s in shard] for shard in pool]
    order = list(range(len(pool)))
    random.Random(1).shuffle(order)  # merge order must not matter
    n = sum(len(v) for v in vals)
    hist = merge_counts(histogram(vals[i]) for i in order)
    bcut = bucket_cut(hist, kept_target(cfg.mode, n, cfg.fraction, cfg.k))
    cut = value_cut(merge_counts(band_counts(vals[i], bcut) for i in order), bcut)
    counts = []
    for shard, v in zip(pool, vals):
        if cut.value is None:
            above, ties = (len(v), 0) if cut.keep_all else (0, 0)
        else:
            above, ties = int((np.array(v) > cut.value).sum()), int((np.array(v) == cut.value).sum())
        counts.append((shard[0].shard_index, above, ties, shard[0].source if ties else ""))
    plan = selection_plan(counts, cut, 7)
    kept = set()
    for shard in pool:
        i = shard[0].shard_index
        decisions = decide_shard(shard, cfg.mode, value, cut=cut, allowance=plan.allowances.get(i, 0))
        kept |= {(s.source, s.key) for s, d in zip(shard, decisions) if d == KEPT}
        assert sum(d == KEPT for d in decisions) == plan.kept_of(i)
    return kept


def _brute_keep(pool, cfg):
    value = SelectionValue(cfg)
    flat = [s for shard in pool for s in shard]
    k = kept_target(cfg.mode, len(flat), cfg.fraction, cfg.k)
    top = sorted(flat, key=value.rank, reverse=True)[:k]
    return {(s.source, s.key) for s in top}


@pytest.mark.parametrize("values", [
    lambda r: r.gauss(0.0, 1.0),                    # continuous
    lambda r: round(r.gauss(0.0, 1.0), 1),           # heavy ties
    lambda r: 1.0,                                   # every value tied
    lambda r: r.choice([-0.0, 0.0, -1e-300, 1e300, -5.5]),  # signs, zeros, extremes
])
@pytest.mark.parametrize("mode,fraction,k", [("top_fraction", 0.3, 0), ("top_fraction", 0.999, 0),
                                             ("top_k", 0.0, 1), ("top_k", 0.0, 37), ("top_k", 0.0, 10**6),
                                             ("top_fraction", 0.0, 0)])
def test_streamed_cut_equals_sorting_everything(values, mode, fraction, k):
    rng = random.Random(0)
    pool = _pool(rng, 9, 23, values)
    cfg = select_cfg(mode=mode, fraction=fraction, k=k)
    assert _streamed_keep(pool, cfg) == _brute_keep(pool, cfg)


def test_gumbel_sampling_cut_equals_sorting():
    pool = _pool(random.Random(3), 5, 40, lambda r: r.random())
    cfg = select_cfg(mode="top_fraction", fraction=0.25, sampling="gumbel", temperature=0.5, seed=4)
    assert _streamed_keep(pool, cfg) == _brute_keep(pool, cfg)


def test_order_keys_sort_like_floats():
    x = np.array([3.0, -0.0, 0.0, -1e-300, 1e-300, -2.5, float("inf"), -float("inf"), 7.25, -7.25])
    assert list(np.argsort(order_keys(x), kind="stable")) == list(np.argsort(x, kind="stable"))


def test_histogram_stops_growing_with_the_pool():
    rng = np.random.default_rng(0)
    small, large = histogram(rng.normal(size=200_000)), histogram(rng.normal(size=2_000_000))
    assert sum(large.values()) == 2_000_000
    # bounded by the buckets the values' octaves hold (4,096 each), not by the pool: 10x the
    # examples, well under 2x the buckets
    assert len(large) < 2 * len(small)


def test_bucket_cut_edges():
    assert bucket_cut({5: 3}, 0) == BucketCut(None, 0)
    assert bucket_cut({5: 3}, 3) == BucketCut(None, -1)
    assert bucket_cut({5: 3, 9: 2}, 4) == BucketCut(5, 2)
    assert value_cut({}, BucketCut(None, -1)).keep_all


def test_ties_go_to_the_highest_sources_first():
    assert tie_allowances({0: ("a.tar", 3), 1: ("c.tar", 2), 2: ("b.tar", 4)}, 5) == {1: 2, 2: 3}


def test_top_fraction_keeps_ceil_fraction():
    assert kept_target("top_fraction", 4802, 0.5, 0) == 2401
    assert kept_target("top_fraction", 10, 0.3, 0) == 3
    assert kept_target("top_k", 10, 0.0, 50) == 10


def test_write_plan_names_follow_the_stream():
    plan = write_plan({0: 0, 1: 5, 2: 0, 3: 7, 4: 2, 5: 0}, samples_per_shard=4)
    # a group closes once it holds >= 4 kept; a shard with nothing kept joins the group before it
    assert [plan.group(i) for i in range(6)] == [0, 0, 0, 1, 2, 2]
    # group 0: 5 kept -> 2 output shards; group 1: 7 -> 2; group 2: 2 -> 1
    assert plan.total_shards == 5
    assert [plan.name(0, 0), plan.name(0, 1), plan.name(1, 0), plan.name(2, 0)] == [
        "00000.tar", "00001.tar", "00002.tar", "00004.tar"]
    assert write_plan({}, 4).total_shards == 0


def test_per_batch_and_threshold_are_local():
    shard = _pool(random.Random(5), 1, 10, lambda r: r.random())[0]
    value = SelectionValue(select_cfg())
    d = decide_shard(shard, "per_batch", value, fraction=0.5, batch=4)
    # super-batches of 4, 4, 2 in stream order keep 2, 2, 1
    assert [sum(x == KEPT for x in d[i:i + 4]) for i in (0, 4, 8)] == [2, 2, 1]
    t = decide_shard(shard, "threshold", value, threshold=0.5)
    assert [x == KEPT for x in t] == [s.scores["learnability"] >= 0.5 for s in shard]
