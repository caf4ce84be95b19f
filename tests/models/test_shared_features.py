"""A reference and a proxy on the same frozen towers: scoring runs each tower once per batch
(``frozen.shared_inputs``) and every score is bit-identical to scoring the models one by one."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from learnsieve.core import scoring
from learnsieve.core.records import Decoded
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.frozen import memoised, shared_inputs

NAME = "efficientnet_lite0.imagenet"


def lit(embed_dim: int, seed: int) -> DualEncoder:
    torch.manual_seed(seed)
    model = DualEncoder(ClipConfig(name=f"lit_{embed_dim}", image_pretrained=NAME, image_size=64,
                                   text_tower="minilm", embed_dim=embed_dim, bank_size=8, augment="none"))
    bank = torch.randint(0, 256, (8, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    model.set_bank(bank, [f"bank caption {i} of {seed}" for i in range(8)])
    return model.eval()


def counted(monkeypatch, obj, name: str) -> list:
    calls: list = []
    real = getattr(obj, name)

    def wrapper(x, *a, **k):
        calls.append(len(x))
        return real(x, *a, **k)
    monkeypatch.setattr(obj, name, wrapper)
    return calls


def test_reference_and_proxy_on_the_same_frozen_towers_run_them_once_with_unchanged_scores(monkeypatch):
    reference, proxy = lit(32, seed=0), lit(16, seed=1)  # different heads, same frozen towers
    assert reference.image_frozen is proxy.image_frozen and reference.text.frozen is proxy.text.frozen
    pixels = np.random.default_rng(2).integers(0, 255, (5, 3, 64, 64), dtype=np.uint8)
    batch = [Decoded(key=f"k{i}", source="s.tar", image=pixels[i], caption=f"a dog runs on grass {i}",
                     digest=str(i), shard_index=0, index=i) for i in range(5)]
    image_calls = counted(monkeypatch, reference.image_frozen, "_forward")
    text_calls = counted(monkeypatch, reference.text.frozen, "_encode")
    shared = scoring.score_decoded(reference, proxy, batch, pad_to=8)
    assert image_calls == [8] and text_calls == [8]  # one forward per tower for both models
    image_calls.clear(), text_calls.clear()
    monkeypatch.setattr(scoring, "shared_inputs", contextlib.nullcontext)
    alone = scoring.score_decoded(reference, proxy, batch, pad_to=8)
    assert image_calls == [8, 8] and text_calls == [8, 8]
    assert [s.scores for s in shared] == [s.scores for s in alone]  # bit-identical, every score
    assert [s.embedding for s in shared] == [s.embedding for s in alone]
    assert shared[0].scores["ref_loss"] != shared[0].scores["proxy_loss"]  # two different models


def test_memoised_reuses_only_the_same_object_inside_the_block():
    calls = []

    def compute():
        calls.append(1)
        return torch.ones(1) * len(calls)

    tower, x, y = object(), [1, 2], [1, 2]
    assert memoised(tower, x, 64, compute) is not memoised(tower, x, 64, compute)  # outside: no memo
    calls.clear()
    with shared_inputs():
        a = memoised(tower, x, 64, compute)
        with shared_inputs():  # nested: the outer memo
            assert memoised(tower, x, 64, compute) is a
        assert memoised(tower, y, 64, compute) is not a      # an equal but different object
        assert memoised(tower, x, 32, compute) is not a      # another resolution
        assert memoised(object(), x, 64, compute) is not a   # another tower
    assert len(calls) == 4
    with shared_inputs():
        assert memoised(tower, x, 64, compute) is not a      # the memo ended with its block


def test_a_from_scratch_proxy_is_untouched():
    """Sharing applies to frozen towers only: a from-scratch proxy scores as before."""
    reference = lit(32, seed=0)
    torch.manual_seed(0)
    proxy = DualEncoder(ClipConfig(name="t", image_tower="test_efficientnet", image_size=32,
                                   text_buckets=1 << 10, text_width=16, embed_dim=16, bank_size=8))
    proxy.set_bank(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), [f"c {i}" for i in range(8)])
    proxy.eval()
    pixels = np.random.default_rng(3).integers(0, 255, (3, 3, 32, 32), dtype=np.uint8)
    batch = [Decoded(key=f"k{i}", source="s.tar", image=pixels[i], caption=f"caption {i}", digest=str(i),
                     shard_index=0, index=i) for i in range(3)]
    scored = scoring.score_decoded(reference, proxy, batch)
    with torch.no_grad():
        direct = proxy.score_batch(torch.from_numpy(pixels), [d.caption for d in batch])["loss"]
    assert [s.scores["proxy_loss"] for s in scored] == pytest.approx(direct.tolist(), abs=1e-5)


def test_accounting_counts_shared_towers_once(tmp_path):
    """``learnsieve eval``'s scoring FLOPs: both models inside shared_inputs, as the pipeline runs
    them, so the frozen towers count once (they counted twice before)."""
    from learnsieve.evaluate.accounting import joint_scoring_flops, scoring_forward
    from learnsieve.models.checkpoint import save_checkpoint
    from learnsieve.models.flops import flops_per_example
    from learnsieve.models.frozen import uncached
    paths = []
    for dim, seed in ((32, 0), (16, 1)):
        paths.append(str(tmp_path / f"m{dim}"))
        save_checkpoint(lit(dim, seed), paths[-1])
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    captions = [f"a photo of thing {i}" for i in range(4)]
    joint = joint_scoring_flops(paths[0], paths[1], images, captions)
    ref, prx = lit(32, 0), lit(16, 1)
    with uncached():
        each = [flops_per_example(scoring_forward(m, images, captions), 4) for m in (ref, prx)]
    # the towers (Lite0 + MiniLM) dominate: one model's cost plus a second set of heads
    assert each[0] < joint < 0.6 * sum(each)
