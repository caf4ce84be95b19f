"""The default proxy warm-up learns: after ``train-proxy`` with every default, the proxy's loss on
its pool sample and on pairs it never saw is below chance. (Before: the from-scratch
``ls_clip_tiny`` stayed at ln(64) on a real photo pool, so learnability ranked like -ref_loss;
docs/BENCHMARKS.md, "A proxy that learns".)"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from learnsieve.config import TrainConfig
from learnsieve.core.paths import shard_pattern
from learnsieve.datasets.synthetic import generate
from learnsieve.models.checkpoint import load_checkpoint, read_checkpoint_meta
from learnsieve.train.clip import EarlyStopping, load_grouped_pairs, train_from_shards

FLICKR = Path(__file__).resolve().parents[2].parent / "shared/data/flickr8k-1k.tar.gz"


def warm_up(pattern: str, out: str, image_size: int) -> tuple:
    """``learnsieve train-proxy`` with the defaults (1 torch thread)."""
    tc = dataclasses.replace(TrainConfig(), torch_threads=1)
    train_from_shards(pattern, out, tc.proxy_model, tc.proxy_steps, tc, image_size, sample=tc.proxy_sample,
                      role="proxy")
    return tc, read_checkpoint_meta(out)


def in_batch_loss(model, pattern: str, image_size: int, batch_size: int) -> tuple:
    """(in-batch CLIP loss in eval mode, one caption per image in each batch; its chance level)."""
    images, captions, groups, _ = load_grouped_pairs(pattern, image_size)
    size = min(batch_size, len(set(groups)))
    return EarlyStopping((images, captions, groups), size).loss(model.eval()), math.log(size)


@pytest.mark.slow
def test_the_default_warm_up_learns_a_noisy_synthetic_pool(tmp_path):
    data = generate(str(tmp_path / "data"), pool=300, clean=10, shards=2, seed=0)
    pool = shard_pattern(data["pool"], data["pool_shards"])
    tc, meta = warm_up(pool, str(tmp_path / "proxy"), 64)
    chance = math.log(meta["batch_size"])
    assert meta["config"]["name"] == tc.proxy_model
    assert meta["final_loss"] < chance - 1.0, meta["final_loss"]  # training loss, last 20 steps
    if tc.proxy_val_fraction > 0:  # held-out pool images (noisy too): below chance as well
        val_chance = math.log(min(meta["batch_size"], meta["val_pairs"]))
        assert meta["best_val_loss"] < val_chance - 0.2, (meta["best_val_loss"], val_chance)
    model, _ = load_checkpoint(str(tmp_path / "proxy"))
    loss, chance = in_batch_loss(model, pool, 64, tc.batch_size)
    print(f"synthetic: last-20 training loss {meta['final_loss']:.3f}, held-out {meta.get('best_val_loss')}, "
          f"kept step {meta.get('best_step')}, pool sample {loss:.3f} (chance {chance:.3f})")
    assert loss < chance - 1.0, (loss, chance)


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.skipif(not FLICKR.exists(), reason=f"{FLICKR} not present")
def test_the_default_warm_up_learns_real_photos(tmp_path):
    """150 Flickr8k photos x 5 captions, 40% of the captions moved to other photos: the warmed-up
    proxy matches 60 photos it never saw to their captions better than chance."""
    from learnsieve.datasets.flickr import build_flickr
    data = build_flickr(str(FLICKR), str(tmp_path / "data"), seed=0, n_ref_images=1, n_pool_images=150,
                        n_test_images=60, pool_captions_per_image=5, shards=1, ref_shards=1, px=160)
    tc, meta = warm_up(data["pool_pattern"], str(tmp_path / "proxy"), 160)
    assert meta["final_loss"] < math.log(meta["batch_size"]), meta["final_loss"]
    model, _ = load_checkpoint(str(tmp_path / "proxy"))
    loss, chance = in_batch_loss(model, data["test_pattern"], 160, 64)
    print(f"flickr: last-20 training loss {meta['final_loss']:.3f}, kept step {meta.get('best_step')}, "
          f"unseen test photos {loss:.3f} (chance {chance:.3f})")
    assert loss < chance - 0.2, (loss, chance)


def test_proxy_early_stopping_holds_out_part_of_the_sample_not_for_an_online_proxy(data_root, tmp_path):
    tc = TrainConfig(batch_size=16, augment=False, proxy_val_fraction=0.2, val_every=2)
    first = str(tmp_path / "proxy")
    train_from_shards(data_root["pool_pattern"], first, "ls_clip_test", 4, tc, 32, sample=80, role="proxy")
    meta = read_checkpoint_meta(first)
    assert [s for s, _ in meta["val_curve"]] == [2, 4] and meta["best_step"] in (2, 4)
    assert meta["pairs"] + meta["val_pairs"] == 80 and meta["val_pairs"] == 16  # one caption per image
    online = str(tmp_path / "online")  # continued from a checkpoint (rounds): trains on all it gets
    train_from_shards(data_root["pool_pattern"], online, "", 2, tc, 32, sample=80, role="proxy", init=first)
    assert "val_curve" not in read_checkpoint_meta(online) and read_checkpoint_meta(online)["pairs"] == 80
    off = str(tmp_path / "off")
    train_from_shards(data_root["pool_pattern"], off, "ls_clip_test", 2,
                      dataclasses.replace(tc, proxy_val_fraction=0.0), 32, sample=80, role="proxy")
    assert "val_curve" not in read_checkpoint_meta(off)
    with pytest.raises(ValueError, match="proxy_val_fraction"):
        train_from_shards(data_root["pool_pattern"], off, "ls_clip_test", 2,
                          dataclasses.replace(tc, proxy_val_fraction=1.0), 32, sample=80, role="proxy")
