"""A selection mode is one entry in learnsieve/core/modes.py: registered there and nowhere else,
it is a valid ``select.mode``, the dry run describes it, and both graphs (the streaming graph
through core/shard_select.py, the record graph through pipeline/select.py) decide with it."""
import dataclasses
import json
import os

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.util import assert_that, equal_to

from learnsieve.config import ConfigError, SelectConfig, load_config
from learnsieve.core.modes import MODES, Mode, register, top_fraction
from learnsieve.core.records import KEPT, Scored
from learnsieve.core.shard_select import SelectionValue, decide_shard


def select_cfg(**kw) -> SelectConfig:
    """A select section ranking by learnability (the records here carry it) unless kw names a score."""
    return SelectConfig(**{"score": "learnability", **kw})


@pytest.fixture()
def per_shard():
    """A new mode, as a newcomer would add it: the top fraction of each input shard."""
    mode = register(Mode("per_shard", "group", keep=top_fraction, group=lambda s, cfg: s.shard_index,
                         uses=("fraction",), shard_local=True))
    yield mode
    MODES._entries.pop("per_shard")


def rec(i, shard, value):
    return Scored(f"k{i:03d}", f"s{shard}.tar", shard, i, {"learnability": float(value)})


def test_a_mode_registered_in_one_place_is_valid_config_and_decides_per_shard(per_shard):
    cfg = load_config(None, ["select.mode=per_shard", "select.fraction=0.5", "select.score=learnability"])
    assert cfg.select.mode == "per_shard"
    with pytest.raises(ConfigError, match="per_shard"):  # an unknown mode's message lists it
        load_config(None, ["select.mode=per_shardd"])
    from learnsieve.dry_run import select_policy
    assert select_policy(cfg.select, "learnability").startswith("per_shard fraction=0.5 by learnability")
    shard = [rec(i, 0, v) for i, v in enumerate([0.1, 0.9, 0.5, 0.7])]
    assert decide_shard(shard, "per_shard", SelectionValue(cfg.select), cfg=cfg.select) == \
        ["filtered", "kept", "filtered", "kept"]


def test_the_record_graph_runs_the_new_mode(per_shard):
    from learnsieve.pipeline.run import FNAPI
    from learnsieve.pipeline.select import SelectExamples
    records = [rec(i, i % 2, i) for i in range(10)]  # shard 0: 0,2,4,6,8; shard 1: 1,3,5,7,9
    with beam.Pipeline(FNAPI) as p:
        out = p | beam.Create(records) | SelectExamples(select_cfg(mode="per_shard", fraction=0.4))
        kept = out | beam.Filter(lambda s: s.decision == KEPT) | beam.Map(lambda s: s.key)
        assert_that(kept, equal_to(["k006", "k008", "k007", "k009"]))


@pytest.mark.slow
def test_curate_runs_the_new_mode_end_to_end(per_shard, data_root, checkpoints, tmp_path):
    from learnsieve.pipeline.run import run, streaming
    cfg = load_config(None, ["score.image_size=32", "score.batch_size=16", "select.mode=per_shard",
                             "select.fraction=0.25"])
    cfg = dataclasses.replace(cfg, input=data_root["pool_pattern"], output=str(tmp_path / "o"), **checkpoints)
    assert streaming(cfg)
    stats = run(cfg, progress_every=0)
    manifest = pq.read_table(os.path.join(cfg.output, "manifest.parquet")).to_pylist()
    for shard in {r["shard_index"] for r in manifest}:
        scored = [r for r in manifest if r["shard_index"] == shard and r["decision"] != "rejected"]
        kept = [r for r in scored if r["decision"] == KEPT]
        assert len(kept) == -(-len(scored) // 4)  # ceil(0.25 n) per input shard
        by = cfg.select.score  # the default score ranks within each shard
        assert min(r[by] for r in kept) >= max(r[by] for r in scored if r not in kept)
    assert stats["kept"] == sum(json.load(open(os.path.join(cfg.output, "sizes.json"))).values())
