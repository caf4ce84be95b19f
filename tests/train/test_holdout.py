"""Reference early stopping: a held-out split of whole images, the best step's weights kept."""
from __future__ import annotations

import pytest
import torch

from learnsieve.config import ConfigError, TrainConfig, load_config
from learnsieve.models.checkpoint import read_checkpoint_meta
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.train.clip import EarlyStopping, split_holdout, train_from_shards


def test_holdout_keeps_all_captions_of_an_image_on_one_side():
    groups = [i // 5 for i in range(100)]  # 20 photos x 5 captions
    train, val = split_holdout(groups, 0.1, seed=0)
    assert sorted(train + val) == list(range(100))
    assert len({groups[i] for i in val}) == 2 and len(val) == 10
    assert not {groups[i] for i in val} & {groups[i] for i in train}
    assert split_holdout(groups, 0.1, seed=0) == (train, val)
    assert split_holdout(groups, 0.1, seed=1) != (train, val)
    assert len(split_holdout(groups, 0.999, seed=0)[0]) == 5  # at least one image left to train on
    with pytest.raises(ValueError):
        split_holdout([1, 1, 1], 0.5, seed=0)


def _tiny_model() -> DualEncoder:
    torch.manual_seed(0)
    return DualEncoder(ClipConfig(name="t", image_tower="resnet10t", image_size=32, embed_dim=16,
                                  text_buckets=256, text_width=16, bank_size=8))


def test_early_stopping_restores_the_weights_of_the_lowest_held_out_loss():
    model = _tiny_model()
    images = torch.randint(0, 255, (12, 3, 32, 32), dtype=torch.uint8)
    captions = [f"caption {i}" for i in range(12)]
    early = EarlyStopping((images, captions, list(range(12))), batch_size=4)
    assert len(early.batches) == 3
    losses = []
    for step in (1, 2, 3):
        with torch.no_grad():
            for p in model.image_proj.parameters():
                p.add_(torch.randn_like(p))
        early(step, model)
        losses.append(early.loss(model))
    best = min(range(3), key=losses.__getitem__)
    meta = early.restore(model)
    assert meta["best_step"] == best + 1 and meta["val_pairs"] == 12
    assert [s for s, _ in meta["val_curve"]] == [1, 2, 3]
    assert early.loss(model) == pytest.approx(losses[best], rel=1e-5)


def test_reference_training_holds_out_and_records_the_kept_step(data_root, tmp_path):
    tc = TrainConfig(batch_size=16, augment=False, reference_val_fraction=0.2, val_every=3)
    out = str(tmp_path / "ref")
    train_from_shards(data_root["clean_pattern"], out, "ls_clip_test", 9, tc, 32)
    meta = read_checkpoint_meta(out)
    assert [s for s, _ in meta["val_curve"]] == [3, 6, 9]
    assert meta["best_step"] in (3, 6, 9)
    assert meta["best_val_loss"] == min(v for _, v in meta["val_curve"])
    n_images = meta["pairs"] + meta["val_pairs"]  # synthetic data: one caption per image
    assert meta["val_pairs"] == round(0.2 * n_images)


def test_val_fraction_is_validated():
    with pytest.raises(ConfigError):
        load_config(None, ["train.reference_val_fraction=1.0"])
    assert load_config(None, ["train.reference_val_fraction=0.1"]).train.reference_val_fraction == 0.1
