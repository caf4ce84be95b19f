import math

import pytest
import torch

from learnsieve.models.factory import create_model
from learnsieve.models.losses import (
    bank_contrastive_loss,
    entropy,
    learnability,
    least_confidence,
    margin,
)
from learnsieve.models.metrics import auroc
from learnsieve.models.scores import SCORERS, compute_scores, score_names


def unit(x):
    return torch.nn.functional.normalize(x, dim=-1)


def test_bank_loss_is_low_for_matching_pair_and_high_for_mismatch():
    torch.manual_seed(0)
    bank_i, bank_t = unit(torch.randn(50, 16)), unit(torch.randn(50, 16))
    img = unit(torch.randn(4, 16))
    matched = bank_contrastive_loss(img, img.clone(), bank_i, bank_t, 10.0)
    mismatched = bank_contrastive_loss(img, -img, bank_i, bank_t, 10.0)
    assert (matched < mismatched).all()
    assert (matched >= 0).all()


def test_bank_loss_row_depends_only_on_its_own_pair():
    torch.manual_seed(1)
    bank_i, bank_t = unit(torch.randn(20, 8)), unit(torch.randn(20, 8))
    img, txt = unit(torch.randn(10, 8)), unit(torch.randn(10, 8))
    full = bank_contrastive_loss(img, txt, bank_i, bank_t, 5.0)
    for i in range(10):
        alone = bank_contrastive_loss(img[i:i + 1], txt[i:i + 1], bank_i, bank_t, 5.0)
        assert torch.allclose(full[i], alone[0], atol=1e-6)


def test_bank_loss_matches_cross_entropy_definition():
    torch.manual_seed(2)
    bank_i, bank_t = unit(torch.randn(5, 4)), unit(torch.randn(5, 4))
    img, txt = unit(torch.randn(1, 4)), unit(torch.randn(1, 4))
    s = 3.0
    logits_i2t = torch.cat([(img @ txt.T)[0], (img @ bank_t.T)[0]]) * s
    logits_t2i = torch.cat([(txt @ img.T)[0], (txt @ bank_i.T)[0]]) * s
    want = 0.5 * (-torch.log_softmax(logits_i2t, 0)[0] - torch.log_softmax(logits_t2i, 0)[0])
    assert torch.allclose(bank_contrastive_loss(img, txt, bank_i, bank_t, s)[0], want, atol=1e-6)


def test_learnability_ranks_learnable_above_noise_and_trivia():
    # (proxy loss, reference loss): learnable, noise (both high), trivial (both low)
    proxy = torch.tensor([3.0, 4.0, 0.2])
    ref = torch.tensor([0.5, 3.9, 0.1])
    score = learnability(proxy, ref)
    assert score.argmax() == 0
    assert score[0] > score[1] and score[0] > score[2]


def test_uncertainty_scores():
    sure = torch.tensor([[10.0, 0.0, 0.0]])
    unsure = torch.tensor([[1.0, 1.0, 1.0]])
    assert entropy(unsure) > entropy(sure)
    assert math.isclose(float(entropy(unsure)), math.log(3), rel_tol=1e-5)
    assert margin(sure) > margin(unsure)
    assert least_confidence(unsure) > least_confidence(sure)


def test_registered_scores_cover_the_methods():
    from learnsieve.models.scores import base_quantities
    q = {k: torch.rand(6) for k in base_quantities()}
    out = compute_scores(q)
    for name in ("learnability", "hard", "easy", "ref_sim", "reducible_loss", "entropy", "margin",
                 "least_confidence"):
        assert name in SCORERS.names() and name in out and name in score_names()
    assert torch.equal(out["hard"], q["proxy_loss"])
    assert torch.equal(out["easy"], -q["ref_loss"])
    assert torch.equal(out["margin"], -q["proxy_margin"])
    with pytest.raises(KeyError, match="unknown scorer"):
        SCORERS.get("nope")


def test_auroc_known_values():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    assert abs(auroc([0.1, 0.4, 0.5, 0.8], [False, True, False, True]) - 0.75) < 1e-9


def test_scores_are_batch_invariant_across_batch_sizes_and_order():
    """Beam decides batching: an example's scores must not depend on its batch mates."""
    torch.manual_seed(0)
    model = create_model("ls_clip_test")
    bank_imgs = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8)
    model.set_bank(bank_imgs, [f"bank caption {i}" for i in range(32)])
    model.eval()
    n = 64
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    captions = [f"a {c} shape number {i}" for i, c in zip(range(n), ["red", "blue"] * 32)]

    def score(batch_size, order):
        out = torch.empty(n)
        sims = torch.empty(n)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            r = model.score_batch(images[idx], [captions[i] for i in idx.tolist()])
            out[idx], sims[idx] = r["loss"], r["sim"]
        return out, sims

    ref_loss, ref_sim = score(64, torch.arange(n))
    for bs in (1, 7, 64):
        for order in (torch.arange(n), torch.randperm(n, generator=torch.Generator().manual_seed(bs))):
            loss, sim = score(bs, order)
            assert torch.allclose(loss, ref_loss, atol=1e-5, rtol=1e-5), bs
            assert torch.allclose(sim, ref_sim, atol=1e-5, rtol=1e-5), bs


def test_uncertainty_over_the_caption_bank_is_high_for_an_unmatched_caption():
    from learnsieve.models.losses import bank_logits
    bank = unit(torch.eye(8))
    img = unit(torch.eye(8)[:1])
    sure = bank_logits(img, img.clone(), bank[1:], 20.0)        # own caption == image direction
    unsure = bank_logits(img, unit(torch.ones(1, 8)), bank[1:], 20.0)
    assert entropy(unsure) > entropy(sure) and margin(sure) > margin(unsure)


def test_score_batch_refuses_model_without_bank():
    model = create_model("ls_clip_test").eval()
    with pytest.raises(RuntimeError, match="no negative bank"):
        model.score_batch(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), ["x"])
