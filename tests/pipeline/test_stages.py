"""Beam stages with TestPipeline + assert_that on tiny generated shards."""
import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from learnsieve.config import SelectConfig
from learnsieve.core.records import FILTERED, KEPT, Scored
from learnsieve.pipeline.read import ListShards
from learnsieve.pipeline.run import FNAPI
from learnsieve.pipeline.score import ScoreShards
from learnsieve.pipeline.select import SelectExamples


def select_cfg(**kw) -> SelectConfig:
    """A select section ranking by learnability (the records here carry it) unless kw names a score."""
    return SelectConfig(**{"score": "learnability", **kw})


def tp():
    return TestPipeline(runner=FNAPI)


def test_score_shards_routes_each_bad_record_to_a_dead_letter_and_writes_the_score_file(
        bad_shard, checkpoints, tmp_path):
    from learnsieve.config import ScoreConfig
    from learnsieve.core.score_file import cache_path, read_score_file, score_settings
    out = str(tmp_path / "out")
    models = ("r", "p")
    with tp() as p:
        records = (p | ListShards([(0, bad_shard)])
                   | ScoreShards(ScoreConfig(image_size=32, batch_size=4), checkpoints["reference"],
                                 checkpoints["proxy"], out, models))
        good = records | "Good" >> beam.Filter(lambda r: isinstance(r, Scored)) | "K" >> beam.Map(
            lambda r: (r.key, r.embedding is not None, r.spans is not None))
        assert_that(good, equal_to([("ok1", True, True), ("jsoncap", True, True), ("ok2", True, True)]),
                    label="good")
        reasons = (records | "Dead" >> beam.Filter(lambda r: not isinstance(r, Scored))
                   | "R" >> beam.Map(lambda d: (d.key, d.stage, d.reason)))
        assert_that(reasons, equal_to([
            ("ok1", "read", "duplicate_key"), ("nocap", "decode", "missing_caption"),
            ("noimg", "decode", "missing_image"), ("empty", "decode", "empty_caption"),
            ("latin", "decode", "caption_not_utf8"), ("corrupt", "decode", "undecodable_image"),
            ("trunc", "decode", "undecodable_image"), ("zero", "decode", "empty_image"),
            ("long", "decode", "caption_too_long")]), label="dead")
    found = read_score_file(cache_path(out, bad_shard), bad_shard, models,
                            score_settings(ScoreConfig(image_size=32, batch_size=4)))
    assert found is not None and found[1] and len(found[0]) == 12  # the shard's score file, written by the step


def _scored(n):
    return [Scored(f"k{i:03d}", f"s{i % 3}.tar", i % 3, i, {"learnability": float(i), "ref_sim": -float(i)})
            for i in range(n)]


@pytest.mark.parametrize("cfg,kept", [
    (select_cfg(mode="top_k", k=5), list(range(95, 100))),
    (select_cfg(mode="threshold", threshold=90.0), list(range(90, 100))),
    (select_cfg(mode="top_k", k=10, score="ref_sim"), list(range(0, 10))),
    (select_cfg(mode="all"), list(range(100))),
])
def test_select_uses_global_thresholds(cfg, kept):
    with tp() as p:
        decisions = p | beam.Create(_scored(100)) | SelectExamples(cfg)
        assert_that(decisions | beam.Filter(lambda s: s.decision == KEPT) | beam.Map(lambda s: s.index),
                    equal_to(kept))


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 1.0])
def test_top_fraction_keeps_the_top_share_within_quantile_resolution(fraction):
    """ApproximateQuantiles over all examples: the kept set is a prefix of the ranking and its
    size is fraction * n up to one element (0.1% resolution at scale)."""
    n = 1000
    with tp() as p:
        decisions = p | beam.Create(_scored(n)) | SelectExamples(select_cfg(mode="top_fraction", fraction=fraction))
        kept = (decisions | beam.Filter(lambda s: s.decision == KEPT) | beam.Map(lambda s: s.index)
                | beam.combiners.ToList())

        def check(lists):
            (got,) = lists
            assert abs(len(got) - fraction * n) <= 1.5, len(got)
            assert sorted(got) == list(range(n - len(got), n))  # exactly the highest scores
        assert_that(kept, check)


def test_top_k_is_exact_with_ties():
    tied = [Scored(f"k{i:02d}", "s.tar", 0, i, {"learnability": 1.0}) for i in range(20)]
    with tp() as p:
        decisions = p | beam.Create(tied) | SelectExamples(select_cfg(mode="top_k", k=7))
        counts = decisions | beam.Map(lambda s: s.decision) | beam.combiners.Count.PerElement()
        assert_that(counts, equal_to([(KEPT, 7), (FILTERED, 13)]))




def test_a_shard_gone_since_listing_is_a_dead_letter_not_a_crash(checkpoints, tmp_path):
    from learnsieve.config import ScoreConfig
    gone = str(tmp_path / "gone.tar")
    with tp() as p:
        records = (p | ListShards([(0, gone)])
                   | ScoreShards(ScoreConfig(image_size=32, batch_size=4), checkpoints["reference"],
                                 checkpoints["proxy"], str(tmp_path / "out"), ("r", "p")))
        assert_that(records | beam.Map(lambda d: (d.stage, d.reason)), equal_to([("read", "missing_shard")]))
    assert not (tmp_path / "out" / "_scores").exists() or not list((tmp_path / "out" / "_scores").iterdir())
