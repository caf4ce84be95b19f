"""The frozen pretrained image tower: safe loading, pinned weights, per-image cache, frozen
weights outside checkpoints, heads-only training."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from learnsieve.models import image_pretrained as ip
from learnsieve.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.frozen import uncached
from learnsieve.models.image_pretrained import (
    FrozenImageTower,
    PretrainedImageError,
    load_into,
    shared_image_tower,
)
from learnsieve.models.train import train_clip

NAME = "efficientnet_lite0.imagenet"


def images(n: int, seed: int = 0, size: int = 32) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def lit_config(**kw) -> ClipConfig:
    return ClipConfig(name="lit_test", image_pretrained=NAME, image_size=64, text_tower="minilm",
                      embed_dim=32, bank_size=8, augment="none", **kw)


def test_the_packaged_weights_load_pinned_and_frozen():
    tower = shared_image_tower(NAME)
    assert tower.sha256 == ip.PRETRAINED_IMAGE[NAME].sha256 and tower.width == 1280
    assert not any(p.requires_grad for p in tower.backbone.parameters())
    # ImageNet statistics, not a fresh init (whose BN running stats are exactly 0 / 1)
    bn = tower.backbone.bn1
    assert bn.running_var.sub(1).abs().max() > 0.1 and bn.running_mean.abs().max() > 0.1


def test_features_are_bit_identical_whatever_the_batch_mates():
    path = shared_image_tower(NAME).path
    x = images(5)
    a = FrozenImageTower(NAME, path).features(x[:2], 64)
    b = FrozenImageTower(NAME, path).features(x.flip(0), 64).flip(0)[:2]
    assert a.shape == (2, 1280) and torch.equal(a, b)


def test_each_distinct_image_runs_through_the_tower_once(monkeypatch):
    tower = FrozenImageTower(NAME, shared_image_tower(NAME).path)
    x = images(3)
    first = tower.features(torch.cat([x, x[:1]]), 64)
    assert (tower.misses, tower.hits) == (3, 1) and torch.equal(first[0], first[3])
    assert tower.features(x, 48).shape == (3, 1280) and tower.misses == 6  # resolution is in the key
    monkeypatch.setattr(tower, "_forward", lambda *a, **k: pytest.fail("cached image re-run"))
    assert torch.equal(tower.features(x.flip(0), 64), first[:3].flip(0))


def test_uncached_recomputes_and_leaves_the_cache_alone():
    tower = FrozenImageTower(NAME, shared_image_tower(NAME).path)
    x = images(2, seed=1)
    with uncached():
        a = tower.features(x, 64)
    assert tower.misses == 0 and len(tower.cache) == 0
    assert torch.equal(a, tower.features(x, 64))


def test_wrong_or_unsafe_weights_are_refused(tmp_path, monkeypatch):
    spec = ip.PRETRAINED_IMAGE[NAME]
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(2)}, other)
    with pytest.raises(PretrainedImageError, match="sha256"):
        FrozenImageTower(NAME, str(other))
    # a pickle that would run code: even with a matching pin, the restricted unpickler refuses it
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(Boom()))
    monkeypatch.setitem(ip.PRETRAINED_IMAGE, NAME, ip.ImageWeights(**{
        **spec.__dict__, "sha256": ip.file_sha256(str(evil))}))
    with pytest.raises(PretrainedImageError, match="does not load as weights"):
        FrozenImageTower(NAME, str(evil))
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(PretrainedImageError, match="unknown pretrained image tower"):
        ip.weights_spec("resnet_nope")


class Boom:
    def __reduce__(self):
        import os
        return (os.system, (f"touch {os.path.join(os.path.dirname(__file__), 'pwned')}",))


def test_tensors_map_in_order_and_every_shape_is_checked():
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    renamed = {f"theirs.{k}": v for k, v in src.state_dict().items()}
    load_into(dst, renamed, "src")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))
    with pytest.raises(PretrainedImageError, match="does not fit"):
        load_into(nn.Sequential(nn.Linear(3, 5), nn.Linear(5, 2)), renamed, "src")
    with pytest.raises(PretrainedImageError, match="tensors"):
        load_into(nn.Linear(3, 4), renamed, "src")


def test_checkpoints_hold_only_the_heads_and_pin_the_frozen_weights(tmp_path):
    torch.manual_seed(0)
    model = DualEncoder(lit_config())
    assert model.cfg.image_weights_sha256 == ip.PRETRAINED_IMAGE[NAME].sha256
    assert not any(k.startswith("image_backbone") for k in model.state_dict())
    x, caps = images(8, seed=2), [f"a photo of thing {i}" for i in range(8)]
    model.set_bank(x, caps)
    save_checkpoint(model, str(tmp_path / "m"))
    loaded, _ = load_checkpoint(str(tmp_path / "m"))
    a, b = model.score_batch(x[:3], caps[:3]), loaded.score_batch(x[:3], caps[:3])
    assert torch.allclose(a["loss"], b["loss"], atol=1e-6)
    import json
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["config"]["image_weights_sha256"] = "0" * 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="trained with"):
        load_checkpoint(str(tmp_path / "m"))


@pytest.mark.slow
def test_training_moves_the_heads_only_and_learns_the_pairs():
    torch.manual_seed(0)
    model = DualEncoder(lit_config())
    frozen = {k: v.clone() for k, v in model.image_frozen.backbone.state_dict().items()}
    x = images(16, seed=3)
    caps = [f"picture number {i} of a {['cat', 'car', 'tree', 'boat'][i % 4]}" for i in range(16)]
    batches = [(x[:8], caps[:8]), (x[8:], caps[8:])]
    losses = train_clip(model, batches, steps=40, lr=5e-3, warmup=2, augment_kind="none")
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert all(torch.equal(v, model.image_frozen.backbone.state_dict()[k]) for k, v in frozen.items())


def test_feature_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = DualEncoder(lit_config(feature_dropout=0.5))
    images = torch.randint(0, 255, (4, 3, 64, 64), dtype=torch.uint8)
    model.eval()
    a, b = model.encode_image(images), model.encode_image(images)
    assert torch.equal(a, b)
    model.train()
    assert not torch.allclose(model.encode_image(images), a)


def test_scoring_a_streamed_pool_leaves_the_feature_caches_alone():
    """score_decoded sees each pool example once: no cache entries, same scores as cached."""
    import numpy as np

    from learnsieve.core.records import Decoded
    from learnsieve.core.scoring import score_decoded
    torch.manual_seed(0)
    model = DualEncoder(lit_config())
    model.set_bank(torch.randint(0, 255, (model.cfg.bank_size, 3, 64, 64), dtype=torch.uint8),
                   [f"bank caption {i}" for i in range(model.cfg.bank_size)])
    tower = model.image_frozen
    images = np.random.default_rng(1).integers(0, 255, (3, 3, 64, 64), dtype=np.uint8)
    batch = [Decoded(key=f"k{i}", source="s.tar", image=images[i], caption=f"a pool caption {i}",
                     digest=str(i), shard_index=0, index=i) for i in range(3)]
    before = (len(tower.cache), tower.misses)
    scored = score_decoded(model, model, batch)
    assert (len(tower.cache), tower.misses) == before
    with torch.no_grad():
        direct = model.score_batch(torch.from_numpy(images), [d.caption for d in batch])["loss"]
    assert [s.scores["ref_loss"] for s in scored] == pytest.approx(direct.tolist(), abs=1e-5)
