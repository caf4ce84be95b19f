"""Point 1 of issue 23: reference scores cached by ``learnsieve curate`` for online use.

``select.mode=all`` writes every scored example with its scores in ``KEY.json``; the cached
reference loss is batch-invariant (scored against the reference's fixed bank), so what a
trainer reads back equals a re-scoring of the same examples in any other batching."""
from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest
import torch

from learnsieve.cli import main
from learnsieve.models.checkpoint import load_checkpoint
from learnsieve.online.cached import load_cached_pool, read_cached_scores


def curate(data_root, checkpoints, out, *sets):
    argv = ["curate", "--input", data_root["pool_pattern"], "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "write.report=false"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0


@pytest.fixture(scope="module")
def cached_all(data_root, checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp("cached") / "all"
    curate(data_root, checkpoints, out, "select.mode=all", "score.batch_size=7")
    return out


def test_mode_all_caches_every_scored_example_batch_invariantly(cached_all, checkpoints):
    manifest = pq.read_table(cached_all / "manifest.parquet").to_pylist()
    scored = {r["key"]: r for r in manifest if r["decision"] != "rejected"}
    cached = read_cached_scores(str(cached_all / "*.tar"))
    assert set(cached) == set(scored) and len(cached) > 100  # every scored example, none rejected
    for k, s in cached.items():
        assert s["ref_loss"] == pytest.approx(scored[k]["ref_loss"], abs=1e-6)
        assert s["ref_sim"] == pytest.approx(scored[k]["ref_sim"], abs=1e-6)
    pool = load_cached_pool(str(cached_all / "*.tar"), 32)
    assert pool.missing == 0 and len(pool) == len(cached)
    # the job scored in batches of 7; re-score in one batch, and one example at a time
    ref, _ = load_checkpoint(checkpoints["reference"])
    whole = ref.score_batch(pool.images, pool.targets)
    single = torch.cat([ref.score_batch(pool.images[i:i + 1], pool.targets[i:i + 1])["loss"]
                        for i in range(0, 12)])
    assert torch.allclose(whole["loss"].double(), pool.ref_loss, atol=1e-4)
    assert torch.allclose(whole["sim"].double(), pool.ref_sim, atol=1e-4)
    assert torch.allclose(single.double(), pool.ref_loss[:12], atol=1e-4)
    assert "learnability" in pool.extra and not torch.isnan(pool.extra["learnability"]).any()


def test_ref_sim_pre_filter_drops_the_bottom_fifth(data_root, checkpoints, tmp_path, cached_all):
    out = tmp_path / "pre"
    curate(data_root, checkpoints, out, "select.mode=top_fraction", "select.score=ref_sim", "select.fraction=0.8")
    everything = read_cached_scores(str(cached_all / "*.tar"))
    kept = read_cached_scores(str(out / "*.tar"))
    assert len(kept) == math.ceil(0.8 * len(everything))
    dropped = set(everything) - set(kept)
    assert min(kept[k]["ref_sim"] for k in kept) >= max(everything[k]["ref_sim"] for k in dropped) - 1e-6
    for k in kept:  # the same cached values as the unfiltered run (same models, same bank)
        assert kept[k]["ref_loss"] == pytest.approx(everything[k]["ref_loss"], abs=1e-5)  # fp32, batch 64 vs 7


def test_shards_without_cached_scores_are_refused(data_root):
    with pytest.raises(ValueError, match="curate the pool first"):
        load_cached_pool(data_root["pool_pattern"], 32)
