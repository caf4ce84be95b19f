"""learnsieve.online: the selector's choice against hand-computed super-batches, its counters,
the proxies' batch-invariant losses, and online batches driving learnsieve's own loop."""
from __future__ import annotations

import math

import pytest
import torch

from learnsieve.online.batches import OnlineBatches
from learnsieve.online.cached import CachedPool
from learnsieve.online.proxy import LearnerProxy, OnlineModelProxy, PairBank, per_example_loss
from learnsieve.online.selector import OnlineSelector, select_indices


def test_top_k_of_a_hand_computed_super_batch():
    proxy = torch.tensor([3.0, 1.0, 2.5, 4.0, 0.5, 2.0])
    ref = torch.tensor([0.5, 0.8, 2.4, 1.0, 0.1, 0.2])
    # learnability = proxy - ref = [2.5, 0.2, 0.1, 3.0, 0.4, 1.8]: keep 3 -> examples 3, 0, 5
    sel = OnlineSelector(batch_size=3)
    idx = sel.select(proxy, ref, labels=list("abcdef"))
    assert idx.tolist() == [3, 0, 5]
    c = sel.counters.as_dict()
    assert (c["steps"], c["scored"], c["selected"]) == (1, 6, 3)
    assert c["picked"] == {"d": 1, "a": 1, "f": 1} and sum(c["offered"].values()) == 6
    assert c["mean_proxy_loss_selected"] == pytest.approx((4.0 + 3.0 + 2.0) / 3)
    assert c["mean_ref_loss_selected"] == pytest.approx((1.0 + 0.5 + 0.2) / 3)
    assert c["mean_ref_loss_all"] == pytest.approx(float(ref.sum()) / 6)
    # the other scores: easy = -ref (examples 4, 5, 0), hard = proxy (3, 0, 2)
    assert OnlineSelector(3, score="easy").select(None, ref).tolist() == [4, 5, 0]
    assert OnlineSelector(3, score="hard").select(proxy, ref).tolist() == [3, 0, 2]
    easy = OnlineSelector(3, score="easy", proxy_flops_per_example=10.0)
    easy.select(None, ref)
    assert easy.counters.scored == 0 and easy.counters.proxy_forward_flops == 0.0  # no proxy forward


def test_ties_go_to_the_lower_index_and_missing_references_rank_last():
    assert select_indices(torch.tensor([1.0, 1.0, 0.0, 1.0]), 2).tolist() == [0, 1]
    scores = torch.tensor([math.nan, 0.1, -5.0, math.nan])
    assert select_indices(scores, 3).tolist() == [1, 2, 0]
    sel = OnlineSelector(2)
    sel.select(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, math.nan, 0.0]))
    assert sel.counters.missing_reference == 1


def test_gumbel_is_seeded_and_samples_in_proportion_to_softmax():
    s = torch.tensor([0.0, math.log(3.0)])  # softmax: 0.25, 0.75
    g = torch.Generator().manual_seed(0)
    first = [int(select_indices(s, 1, "gumbel", 1.0, g)[0]) for _ in range(4000)]
    assert sum(first) / len(first) == pytest.approx(0.75, abs=0.03)
    a = OnlineSelector(3, method="gumbel", seed=5)
    b = OnlineSelector(3, method="gumbel", seed=5)
    c = OnlineSelector(3, method="gumbel", seed=6)
    x = torch.randn(40, dtype=torch.float64)
    picks = [(a.select(x, torch.zeros(40)).tolist(), b.select(x, torch.zeros(40)).tolist(),
              c.select(x, torch.zeros(40)).tolist()) for _ in range(5)]
    assert all(pa == pb for pa, pb, _ in picks) and any(pa != pc for pa, _, pc in picks)
    # a low temperature is top-k
    assert select_indices(x, 3, "gumbel", 1e-6, torch.Generator().manual_seed(1)).tolist() == \
        select_indices(x, 3).tolist()


@pytest.mark.parametrize("bad", [dict(k=0), dict(k=5), dict(method="nope"), dict(method="gumbel", temperature=0.0)])
def test_refused_arguments(bad):
    args = dict(k=2, method="topk", temperature=1.0) | bad
    with pytest.raises(ValueError):
        select_indices(torch.zeros(4), args["k"], args["method"], args["temperature"])


def tiny_model(seed=0):
    from learnsieve.models.factory import create_model
    torch.manual_seed(seed)
    return create_model("ls_clip_test").eval()


def tiny_pool(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    captions = [f"a {['red', 'blue', 'green'][i % 3]} shape number {i}" for i in range(n)]
    ref = torch.rand(n, generator=g, dtype=torch.float64) * 3
    return CachedPool(images, captions, [f"k{i}" for i in range(n)], ref, -ref)


def test_proxy_losses_do_not_depend_on_the_super_batch():
    pool, model = tiny_pool(), tiny_model()
    bank = PairBank(pool.images[:16], pool.targets[:16])
    whole = per_example_loss(model, pool.images, pool.targets, bank)
    parts = torch.cat([per_example_loss(model, pool.images[i:i + 5], pool.targets[i:i + 5], bank)
                       for i in range(0, len(pool), 5)])
    assert torch.allclose(whole, parts, atol=1e-5) and whole.std() > 0
    rev = per_example_loss(model, pool.images.flip(0), pool.targets[::-1], bank).flip(0)
    assert torch.allclose(whole, rev, atol=1e-5)


def test_online_batches_pick_the_highest_learnability_of_each_super_batch():
    from learnsieve.models.train import train_clip
    pool, learner = tiny_pool(), tiny_model()
    bank = PairBank(pool.images[:16], pool.targets[:16])
    proxy = LearnerProxy(learner, bank)
    sel = OnlineSelector(batch_size=4)
    batches = OnlineBatches(pool, 4, 3, proxy, sel, seed=1, labels=["x"] * len(pool))
    seen = []  # what the learner's own loss said, just before each step, recomputed here

    orig = proxy.losses

    def spy(images, targets):
        loss = orig(images, targets)
        seen.append(loss)
        return loss
    proxy.losses = spy
    sups = batches.super_batches()
    train_clip(learner, batches, 3, lr=1e-3, do_augment=False, log_every=0)
    for step in range(3):
        sup = next(sups)
        want = sup[torch.sort(-(seen[step] - pool.ref_loss[sup]), stable=True).indices[:4]]
        assert batches.picked[4 * step:4 * step + 4] == want.tolist()
    c = sel.counters
    assert (c.steps, c.scored, c.selected) == (3, 36, 12) and c.bank_refreshes == 3
    assert c.picked == {"x": 12} and c.offered == {"x": 36}


def test_online_model_trains_on_what_was_picked_and_ratio_one_is_iid():
    pool = tiny_pool()
    small = tiny_model(1)
    proxy = OnlineModelProxy(small, PairBank(pool.images[:16], pool.targets[:16]), lr=1e-2, warmup=1)
    before = per_example_loss(small, pool.images, pool.targets, proxy.bank)
    it = iter(OnlineBatches(pool, 8, 2, proxy, OnlineSelector(8), seed=0))
    for _ in range(3):
        images, captions = next(it)
        assert images.shape[0] == 8 and len(captions) == 8
    assert proxy.steps == 3 and proxy.train_examples == 24
    assert not torch.allclose(before, per_example_loss(small, pool.images, pool.targets, proxy.bank))
    iid = OnlineBatches(pool, 8, 1, None, OnlineSelector(8), seed=0)
    first = next(iter(iid))
    assert first[1] == [pool.targets[int(i)] for i in next(iid.super_batches())]
    assert iid.selector.counters.scored == 0 and iid.selector.counters.selected == 8
    with pytest.raises(ValueError):
        OnlineBatches(pool, 8, 10, None, OnlineSelector(8))  # super-batch larger than the pool


def test_classifier_losses_are_per_example_cross_entropy():
    from learnsieve.models.classifier import create_classifier
    torch.manual_seed(0)
    m = create_classifier("ls_cls_tiny", num_classes=10).eval()
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    loss = per_example_loss(m, images, labels)
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(m(images), labels, reduction="none").double()
    assert torch.allclose(loss, want, atol=1e-6)
    assert torch.allclose(loss[:3], per_example_loss(m, images[:3], labels[:3]), atol=1e-5)


def test_trace_says_what_each_window_picked_and_the_losses_by_label():
    sel = OnlineSelector(2, trace_every=2)
    labels = ["clean", "noisy", "clean", "noisy"]
    for _ in range(2):  # learnability: [1.0, 3.0, 0.5, 2.0] -> the two noisy
        sel.select(torch.tensor([2.0, 5.0, 1.5, 4.0]), torch.tensor([1.0, 2.0, 1.0, 2.0]), labels)
    sel.select(torch.tensor([2.0, 5.0, 1.5, 4.0]), torch.tensor([1.0, 2.0, 1.0, 2.0]), labels)
    (t,) = sel.counters.trace
    assert t["step"] == 2 and t["picked_share"] == {"clean": 0.0, "noisy": 1.0}
    assert t["proxy_loss"] == {"clean": 1.75, "noisy": 4.5} and t["ref_loss"] == {"clean": 1.0, "noisy": 2.0}
