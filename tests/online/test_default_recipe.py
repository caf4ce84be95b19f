"""Issue 23, point 5: no default recipe may keep more noise than CLIP-score filtering at the
same budget, until learnability is measured to beat it.

"The default recipe" is whatever ``configs/default.yaml`` says, read here at test time: its
``select`` section (mode, score, fraction, sampling ...) and, on Flickr8k, its judges
(``train.reference_model``, ``train.proxy_model``, their steps and sample). It is run as
``learnsieve curate`` runs it; CLIP-score filtering is the same run with ``select.mode=top_k``,
``select.score=ref_sim`` and ``select.k`` = what the default kept (the same budget exactly).
The default may keep at most one example more of noise than CLIP-score does.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from learnsieve.config import load_config
from learnsieve.pipeline.run import run

FLICKR = Path(__file__).resolve().parents[2].parent / "shared/data/flickr8k-1k.tar.gz"


def noisy_kept(out: Path, truth: dict):
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    kept = [r for r in rows if r["decision"] == "kept"]
    return sum(truth.get(r["key"], "clean") != "clean" for r in kept), len(kept)


def compare(cfg, truth: dict, root: Path) -> str:
    """Curate with ``cfg`` (the default recipe) and with CLIP score at the same kept count."""
    default_out, clip_out = root / "default", root / "clip_score"
    run(dataclasses.replace(cfg, output=str(default_out)), progress_every=0)
    noisy, kept = noisy_kept(default_out, truth)
    clip = dataclasses.replace(cfg, output=str(clip_out), select=dataclasses.replace(
        cfg.select, mode="top_k", k=kept, score="ref_sim", sampling="greedy", ranked=False))
    run(clip, progress_every=0)
    clip_noisy, clip_kept = noisy_kept(clip_out, truth)
    assert clip_kept == kept
    summary = (f"default recipe (select.mode={cfg.select.mode}, score={cfg.select.score}, "
               f"fraction={cfg.select.fraction}) kept {noisy}/{kept} noisy ({noisy / max(1, kept):.1%}); "
               f"CLIP score (ref_sim) at the same budget {clip_noisy}/{kept} ({clip_noisy / max(1, kept):.1%})")
    print(summary)
    assert noisy <= clip_noisy + 1, summary
    return summary


# Measured with the previous default select section (learnability, top 50%): it kept 29/143 noisy
# pairs on the synthetic pool below, CLIP score 27/143 (2026-12-04); on Flickr8k-1k with every
# default (issue 23's report) 20.9% against 9.0% at 30%. The default is ref_sim since 2026-12-08,
# so both tests must pass; should the default go back to learnability, they are expected to fail
# (strict: a pass then says learnability has caught up and the marker must go).
DEFAULT_IS_LEARNABILITY = load_config(None, []).select.score == "learnability"
known_gap = pytest.mark.xfail(DEFAULT_IS_LEARNABILITY, strict=True, raises=AssertionError,
                              reason="issue 23 point 5: the default select.score=learnability keeps more "
                                     "noise than CLIP score (ref_sim) at the same budget; change the default")


@pytest.fixture(scope="module")
def judged_pool(tmp_path_factory):
    """A synthetic pool (default noise mix) with judges that tell noise apart (ls_clip_test
    trained 150 steps on 300 clean pairs; the shared fixtures' 8-step judges are near chance)."""
    from learnsieve.config import TrainConfig
    from learnsieve.core.paths import shard_pattern
    from learnsieve.datasets.synthetic import generate
    from learnsieve.train.clip import train_from_shards
    root = tmp_path_factory.mktemp("recipe")
    data = generate(str(root / "data"), pool=300, clean=300, shards=2, seed=0)
    clean = shard_pattern(data["clean"], data["clean_shards"])
    pool = shard_pattern(data["pool"], data["pool_shards"])
    tc = TrainConfig(reference_model="ls_clip_test", proxy_model="ls_clip_test", batch_size=32, augment=False,
                     reference_val_fraction=0.0, proxy_val_fraction=0.0)
    train_from_shards(clean, str(root / "reference"), "ls_clip_test", 150, tc, 32)
    train_from_shards(pool, str(root / "proxy"), "ls_clip_test", 40, tc, 32, sample=200, role="proxy")
    return {"pool": pool, "truth": data["truth"], "reference": str(root / "reference"),
            "proxy": str(root / "proxy")}


@known_gap
def test_default_recipe_keeps_no_more_noise_than_clip_score_on_the_synthetic_pool(judged_pool, tmp_path):
    cfg = load_config(None, ["score.image_size=32", "write.report=false"])  # the default select section
    cfg = dataclasses.replace(cfg, input=judged_pool["pool"], reference=judged_pool["reference"],
                              proxy=judged_pool["proxy"])
    compare(cfg, judged_pool["truth"], tmp_path)


@known_gap
@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(not FLICKR.exists(), reason=f"{FLICKR} not present")
def test_default_recipe_keeps_no_more_noise_than_clip_score_on_flickr(tmp_path):
    """The README's recipe with every default: the default judges trained with their default
    steps (the proxy on its default sample of the pool), then the default selection."""
    from learnsieve.datasets.flickr import build_flickr
    from learnsieve.train.clip import train_from_shards
    data = build_flickr(str(FLICKR), str(tmp_path / "data"), seed=0, n_ref_images=700,
                        n_pool_images=300, mismatch=0.4, junk=0.05, corrupt=0.01, shards=4)
    cfg = load_config(None, ["write.report=false"])
    tc = cfg.train
    ref_dir, proxy_dir = str(tmp_path / "reference"), str(tmp_path / "proxy")
    train_from_shards(data["clean_pattern"], ref_dir, tc.reference_model, tc.reference_steps, tc,
                      cfg.score.image_size, role="reference")
    train_from_shards(data["pool_pattern"], proxy_dir, tc.proxy_model, tc.proxy_steps, tc,
                      cfg.score.image_size, sample=tc.proxy_sample, role="proxy")
    cfg = dataclasses.replace(cfg, input=data["pool_pattern"], reference=ref_dir, proxy=proxy_dir)
    compare(cfg, data["truth"], tmp_path)
