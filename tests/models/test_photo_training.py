"""Photo training helpers: one caption per image in a batch, photo augmentation."""
from __future__ import annotations

import pytest
import torch

from learnsieve.models.train import augment_photo, train_clip
from learnsieve.train.clip import distinct_group_batches, epoch_batches


def test_batches_hold_one_caption_per_image_and_use_each_pair_once_per_epoch():
    groups = [i // 5 for i in range(100)]  # 20 images x 5 captions, as the Flickr reference split
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0)).tolist()
    batches = list(distinct_group_batches(order, groups, 16))
    assert len(batches) >= 5
    for b in batches:
        assert len(b) == 16 and len({groups[i] for i in b}) == 16
    used = [i for b in batches for i in b]
    assert len(used) == len(set(used))


def test_grouped_epochs_equal_plain_epochs_when_no_image_repeats():
    images = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2)
    caps = [f"c{i}" for i in range(40)]
    plain, grouped = epoch_batches(images, caps, 8, 3), epoch_batches(images, caps, 8, 3, groups=caps)
    for _ in range(12):
        (a, ca), (b, cb) = next(plain), next(grouped)
        assert ca == cb and torch.equal(a, b)


def test_grouped_batch_size_shrinks_to_the_number_of_images():
    images = torch.zeros(10, 3, 2, 2, dtype=torch.uint8)
    _, caps = next(epoch_batches(images, [f"c{i}" for i in range(10)], 8, 0, groups=[i % 3 for i in range(10)]))
    assert len(caps) == 3
    with pytest.raises(ValueError, match="groups"):
        next(epoch_batches(images, ["c"] * 10, 8, 0, groups=[0]))


def test_photo_augmentation_is_seeded_and_keeps_shape():
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    a = augment_photo(x, torch.Generator().manual_seed(1))
    b = augment_photo(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert not torch.equal(a, x)


def test_unknown_augmentation_is_refused():
    from learnsieve.models.factory import create_model
    with pytest.raises(ValueError, match="augment_kind"):
        train_clip(create_model("ls_clip_test"), [], steps=1, augment_kind="mixup")
