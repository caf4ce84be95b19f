"""Classifier scoring math (ClassAct): per-example cross-entropy, batch invariance, learnability."""
import pytest
import torch
import torch.nn.functional as F

from learnsieve.models.classifier import (
    Classifier,
    ClassifierConfig,
    as_targets,
    create_classifier,
    top1,
)
from learnsieve.models.losses import entropy, learnability
from learnsieve.models.scores import compute_scores
from learnsieve.models.train_cls import label_batches, train_classifier

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_classifier("ls_cls_test", num_classes=5).eval()


def _images(n, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_per_example_loss_is_cross_entropy(model):
    images, labels = _images(12), torch.arange(12) % 5
    out = model.score_batch(images, labels)
    with torch.no_grad():
        logits = model(images)
    assert torch.allclose(out["loss"], F.cross_entropy(logits, labels, reduction="none"), atol=1e-5)
    assert torch.allclose(out["sim"], torch.softmax(logits, -1)[torch.arange(12), labels], atol=1e-6)
    assert torch.allclose(out["entropy"], entropy(logits), atol=1e-5)
    top2 = torch.softmax(logits, -1).topk(2).values
    assert torch.allclose(out["margin"], top2[:, 0] - top2[:, 1], atol=1e-6)
    assert torch.allclose(out["least_confidence"], 1 - top2[:, 0], atol=1e-6)
    emb = out["image_embedding"]
    assert emb.shape[0] == 12 and torch.allclose(emb.norm(dim=-1), torch.ones(12), atol=1e-5)
    # labels as KEY.cls text give the same result
    assert torch.equal(model.score_batch(images, [str(int(v)) for v in labels])["loss"], out["loss"])


def test_scores_are_batch_invariant(model):
    images, labels = _images(32, seed=1), torch.randint(0, 5, (32,), generator=torch.Generator().manual_seed(1))
    full = model.score_batch(images, labels)
    for size in (1, 7, 32):
        parts = [model.score_batch(images[i:i + size], labels[i:i + size]) for i in range(0, 32, size)]
        for name in ("loss", "sim", "entropy", "margin", "least_confidence", "image_embedding"):
            joined = torch.cat([p[name] for p in parts])
            assert torch.allclose(joined, full[name], atol=1e-5), (name, size)


def test_labels_outside_the_classes_are_refused(model):
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        model.score_batch(_images(2), [0, 5])
    with pytest.raises(ValueError):
        as_targets(["-1"], 5, torch.device("cpu"))
    with pytest.raises(ValueError, match="num_classes"):
        Classifier(ClassifierConfig(backbone="test_efficientnet", image_size=32, num_classes=1))


def test_learnability_ranks_noisy_label_below_clean():
    """A reference that learnt two separable classes, a barely trained proxy: an example with a
    flipped label has a high reference loss, so its learnability is below the clean one's."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    dark = torch.randint(0, 60, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    light = torch.randint(190, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=gen)
    images, labels = torch.cat([dark, light]), torch.cat([torch.zeros(64), torch.ones(64)]).long()
    reference = create_classifier("ls_cls_test", num_classes=2)
    train_classifier(reference, label_batches(images, labels, 32, 0), 30, lr=3e-3, do_augment=False)
    assert top1(reference, images, labels) == 1.0
    proxy = create_classifier("ls_cls_test", num_classes=2).eval()
    probe = torch.cat([dark[:4], light[:4]])
    clean, flipped = torch.tensor([0] * 4 + [1] * 4), torch.tensor([1] * 4 + [0] * 4)
    learn = {}
    for name, target in (("clean", clean), ("flipped", flipped)):
        ref, prx = reference.score_batch(probe, target), proxy.score_batch(probe, target)
        scores = compute_scores({"ref_loss": ref["loss"], "proxy_loss": prx["loss"], "ref_sim": ref["sim"],
                                 "proxy_sim": prx["sim"], "proxy_entropy": prx["entropy"],
                                 "proxy_margin": prx["margin"], "proxy_least_confidence": prx["least_confidence"]})
        assert torch.allclose(scores["learnability"], learnability(prx["loss"], ref["loss"]))
        learn[name] = scores["learnability"]
    assert bool((learn["flipped"] < learn["clean"]).all())
    assert float(learn["clean"].min()) > float(learn["flipped"].max())


def test_training_calls_on_eval_and_lowers_the_loss():
    torch.manual_seed(0)
    model = create_classifier("ls_cls_test", num_classes=3)
    images, labels = _images(48, seed=2), torch.arange(48) % 3
    seen = []
    losses = train_classifier(model, label_batches(images, labels, 16, 0), 12, lr=3e-3, warmup=2,
                              eval_every=5, on_eval=lambda step, m: seen.append((step, m.training)))
    assert seen == [(5, False), (10, False), (12, False)]
    assert not model.training and len(losses) == 12
    assert sum(losses[-3:]) < sum(losses[:3])
