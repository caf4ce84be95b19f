"""The streaming graph moves O(input shards) elements between stages, never one per example:
the property that keeps memory flat at any pool size (the in-process runner materialises every
PCollection between fused stages). Measured with the runner's own per-PCollection element
counts, against the record graph, which does carry one element per example."""
import dataclasses

import apache_beam as beam
import pytest
from apache_beam.metrics import monitoring_infos
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from learnsieve.config import load_config
from learnsieve.core.output import release_lock
from learnsieve.core.plan import plan_run
from learnsieve.pipeline.run import build, streaming

pytestmark = pytest.mark.slow


def _element_counts(data_root, checkpoints, out, *overrides):
    cfg = load_config(None, ["score.image_size=32", "score.batch_size=16", "write.samples_per_shard=20",
                             "write.report=false", *overrides])
    cfg = dataclasses.replace(cfg, input=data_root["pool_pattern"], output=str(out), **checkpoints)
    plan = plan_run(cfg, overwrite=True)
    shards, models, cached = list(plan.shards), plan.models, list(plan.cached)
    try:
        p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
        build(p, cfg, shards, models, cached)
        result = p.run()
        result.wait_until_finish()
    finally:
        release_lock(cfg.output)
    counts = {}
    for mi in result.monitoring_infos():
        if mi.urn == monitoring_infos.ELEMENT_COUNT_URN:
            pcoll = mi.labels[monitoring_infos.PCOLLECTION_LABEL]
            counts[pcoll] = counts.get(pcoll, 0) + monitoring_infos.extract_counter_value(mi)
    return cfg, len(shards), counts


def test_only_per_shard_summaries_cross_stages(data_root, checkpoints, tmp_path):
    for mode in ("top_fraction", "per_batch"):  # a global cut, a shard-local decision
        cfg, shards, counts = _element_counts(data_root, checkpoints, tmp_path / mode, f"select.mode={mode}",
                                              "select.k=40", "select.batch=16")
        assert streaming(cfg)
        # (the runner counts a PCollection once per consuming stage: the summaries feed up to 4)
        assert counts and max(counts.values()) <= 4 * shards, (mode, sorted(counts.items(), key=lambda kv: -kv[1])[:3])


def test_the_record_graph_carries_an_element_per_example(data_root, checkpoints, tmp_path):
    # the same measurement can fail: dedup compares examples across shards, so records cross
    cfg, shards, counts = _element_counts(data_root, checkpoints, tmp_path / "dedup", "select.dedup=exact")
    assert not streaming(cfg)
    assert max(counts.values()) >= 100 > 4 * shards
