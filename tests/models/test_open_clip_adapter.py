"""open_clip:ARCH:PATH models (models/open_clip_adapter.py): loading without unpickling,
the architecture's own preprocessing and tokenizer, the file's sha256 as the model hash, the
fixed prompt bank, and scores that do not depend on batching.

Most tests run on a tiny architecture registered with open_clip here (fast); one slow test
repeats batch invariance on the real ViT-S-32 with random weights (no weights are downloaded)."""
from __future__ import annotations

import hashlib
import json
import random
import sys

import pytest
import torch

open_clip = pytest.importorskip("open_clip")

from learnsieve.models import open_clip_adapter as oc  # noqa: E402
from learnsieve.models.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    read_checkpoint_meta,
)

TINY = "ls-test-tiny"
TINY_WIDE = "ls-test-tiny-wide"


def _config(width: int, image_size: int = 32) -> dict:
    return {"embed_dim": 32,
            "vision_cfg": {"image_size": image_size, "layers": 2, "width": width, "patch_size": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": width, "heads": 2, "layers": 2}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """Two tiny architectures registered with open_clip, a weights file and a trainer
    checkpoint of the same weights."""
    root = tmp_path_factory.mktemp("open_clip")
    for name, width in ((TINY, 64), (TINY_WIDE, 96)):
        (root / f"{name}.json").write_text(json.dumps(_config(width)))
        open_clip.add_model_config(str(root / f"{name}.json"))
    torch.manual_seed(0)
    model = open_clip.create_model(TINY)
    weights = str(root / "weights.pt")
    oc.save_weights(model, weights)
    trainer = str(root / "epoch_3.pt")  # what open_clip_train writes, keys as under DDP
    torch.save({"epoch": 3, "name": "run", "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}}, trainer)
    return {"root": root, "model": model.eval(), "weights": weights, "trainer": trainer}


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def batch(n: int, seed: int = 0, size: int = 48):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    rng = random.Random(seed)
    words = ["dog", "cat", "red", "circle", "on", "a", "beach", "DSC4821", "photo", "of", "tench"]
    captions = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(n)]
    captions[0] = "a photo of a goldfish."  # equal to a bank prompt: that prompt is masked
    return images, captions


def test_trainer_checkpoint_and_weights_file_load_alike(tiny):
    spec_w, spec_t = f"open_clip:{TINY}:{tiny['weights']}", f"open_clip:{TINY}:{tiny['trainer']}"
    a, meta_w = load_checkpoint(spec_w)
    b, meta_t = load_checkpoint(spec_t)
    assert isinstance(a, oc.OpenClipScorer) and not a.training
    # the model hash is the file's sha256, as the manifest and score files record it
    assert meta_w["sha256"] == sha256(tiny["weights"]) == read_checkpoint_meta(spec_w)["sha256"]
    assert meta_t["sha256"] == sha256(tiny["trainer"]) == read_checkpoint_meta(spec_t)["sha256"]
    assert meta_t["epoch"] == 3 and meta_w["format"] == "open_clip" and meta_w["role"] is None
    assert meta_w["config"]["arch"] == TINY and meta_w["config"]["bank_size"] == 1000
    images, captions = batch(5)
    sa, sb = a.score_batch(images, captions), b.score_batch(images, captions)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_arbitrary_objects_are_never_unpickled(tiny, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny["model"].state_dict(), "extra": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True") as err:
        load_checkpoint(f"open_clip:{TINY}:{path}")
    assert "\n" not in str(err.value) and not marker.exists()


@pytest.mark.parametrize("spec, match", [
    ("open_clip:only-arch", "expected open_clip:ARCH:PATH"),
    ("open_clip:NoSuchArch-1:{weights}", "unknown open_clip architecture 'NoSuchArch-1'"),
    ("open_clip:vit-s-32:{weights}", "did you mean ViT-S-32"),
    (f"open_clip:{TINY}:{{root}}/missing.pt", "no such file"),
    (f"open_clip:{TINY}:{{root}}", "is a directory"),
    (f"open_clip:{TINY_WIDE}:{{weights}}", "do not fit ls-test-tiny-wide"),
])
def test_bad_specs_fail_in_one_line(tiny, spec, match):
    spec = spec.format(weights=tiny["weights"], root=tiny["root"])
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(spec)
    assert "\n" not in str(err.value)


def test_not_a_checkpoint(tiny, tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    torch.save({"step": 3}, tmp_path / "dict.pt")
    for name, match in (("junk.pt", "weights_only=True"), ("dict.pt", "no state dict of tensors")):
        with pytest.raises(CheckpointError, match=match):
            load_checkpoint(f"open_clip:{TINY}:{tmp_path / name}")


def test_missing_open_clip_is_one_line(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # import open_clip raises ImportError
    with pytest.raises(CheckpointError, match=r"install learnsieve\[open-clip\]") as err:
        read_checkpoint_meta(f"open_clip:{TINY}:{tiny['weights']}")
    assert "\n" not in str(err.value)


def test_preflight_verifies_open_clip_models(tiny):
    from learnsieve.core.plan import verify_model
    meta = verify_model(f"open_clip:{TINY}:{tiny['trainer']}")
    assert meta["sha256"] == sha256(tiny["trainer"]) and meta["epoch"] == 3
    with pytest.raises(CheckpointError, match="do not fit"):
        verify_model(f"open_clip:{TINY_WIDE}:{tiny['trainer']}")


def test_own_preprocessing_and_tokenizer(tiny):
    scorer, _ = load_checkpoint(f"open_clip:{TINY}:{tiny['weights']}")
    model = tiny["model"]
    pp = open_clip.get_model_preprocess_cfg(model)
    assert scorer.size == (32, 32) and tuple(scorer.mean.flatten().tolist()) == pytest.approx(pp["mean"])
    # at the model's size: exactly open_clip's own transform (ToTensor + Normalize)
    _, _, transform = open_clip.create_model_and_transforms(TINY)
    from PIL import Image
    images, captions = batch(3, size=32)
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
    want = torch.stack([transform(p) for p in pil])
    assert torch.allclose(scorer.preprocess(images), want, atol=1e-6)
    # another size is resized to the model's; a flat colour stays that colour
    flat = torch.full((2, 3, 80, 80), 200, dtype=torch.uint8)
    x = scorer.preprocess(flat)
    assert x.shape == (2, 3, 32, 32)
    assert torch.allclose(x, (torch.full_like(x, 200 / 255) - scorer.mean) / scorer.std, atol=1e-5)
    # the architecture's tokenizer, the model's text tower, normalised
    tok = open_clip.get_tokenizer(TINY)
    with torch.no_grad():
        want = torch.nn.functional.normalize(model.encode_text(tok(captions)), dim=-1)
    assert torch.allclose(scorer.encode_text(captions), want, atol=1e-6)


def test_bank_is_the_pinned_prompts_and_masks_the_own_caption(tiny):
    scorer, _ = load_checkpoint(f"open_clip:{TINY}:{tiny['weights']}")
    assert scorer.bank_text.shape[0] == 0  # encoded on first use: runs from score files skip it
    captions = oc.bank_captions()
    assert len(captions) == 1000 and captions[1] == "a photo of a goldfish."
    assert hashlib.sha256("\n".join(captions).encode()).hexdigest() == oc.BANK_SHA256
    # the bank was encoded on the prompts' prefix: equal to the full-context text tower
    with torch.no_grad():
        full = torch.nn.functional.normalize(scorer.model.encode_text(scorer.tokens(captions[:40])), dim=-1)
    assert torch.allclose(scorer.bank_embeddings()[:40], full, atol=1e-5)
    images, caps = batch(2)
    img, txt = scorer.encode_image(images), scorer.encode_text(caps)
    logits = scorer.bank_logits(img, txt, caps)
    assert logits.shape == (2, 1001)
    assert logits[0, 1 + 1] == oc.MASKED and (logits[1, 1:] > oc.MASKED).all()
    out = scorer.score_batch(images, caps)
    assert torch.isfinite(torch.stack([out[k] for k in ("loss", "entropy", "margin", "least_confidence")])).all()
    assert (out["loss"] > 0).all()


def _invariance(scorer, n: int = 64, chunk: int = 7, chunked: int = 64, singles: int = 64):
    """Scores of the first ``chunked`` examples in batches of ``chunk`` and of the first
    ``singles`` one by one equal those of one batch of ``n``."""
    images, captions = batch(n, seed=1)
    whole = scorer.score_batch(images, captions)
    parts = [scorer.score_batch(images[i:min(i + chunk, chunked)], captions[i:min(i + chunk, chunked)])
             for i in range(0, chunked, chunk)]
    ones = [scorer.score_batch(images[i:i + 1], captions[i:i + 1]) for i in range(singles)]
    for k, v in whole.items():
        assert v.shape[0] == n
        assert torch.allclose(torch.cat([p[k] for p in parts]), v[:chunked], atol=1e-4, rtol=1e-4), k
        assert torch.allclose(torch.cat([p[k] for p in ones]), v[:singles], atol=1e-4, rtol=1e-4), k


def test_scores_do_not_depend_on_batching(tiny):
    scorer, _ = load_checkpoint(f"open_clip:{TINY}:{tiny['weights']}")
    _invariance(scorer)


def test_scoring_path_and_seed_encoding(tiny):
    """What the pipeline's scoring step and SEALS seeds call."""
    import numpy as np

    from learnsieve.core.records import Decoded, Scored
    from learnsieve.core.scoring import score_decoded
    from learnsieve.pipeline.candidates import encode_seeds
    spec = f"open_clip:{TINY}:{tiny['weights']}"
    scorer, _ = load_checkpoint(spec)
    images, captions = batch(5)
    decoded = [Decoded(key=f"k{i}", source="s.tar", shard_index=0, index=i, image=images[i].numpy(),
                       caption=c) for i, c in enumerate(captions)]
    out = score_decoded(scorer, scorer, decoded, pad_to=8)
    assert all(isinstance(r, Scored) for r in out) and len(out) == 5
    assert all(r.scores["learnability"] == 0.0 for r in out)  # the same model on both sides
    assert len(np.frombuffer(out[0].embedding, dtype=np.float16)) == 32
    assert encode_seeds(spec, ["a dog", "a cat"]).shape == (2, 32)


@pytest.mark.slow
def test_vit_s_32_scores_do_not_depend_on_batching(tmp_path):
    """The real ViT-S-32 (random weights, 224 px, 77-token context) at batch 1, 7 and 64."""
    torch.manual_seed(0)
    path = str(tmp_path / "vit-s-32.pt")
    oc.save_weights(open_clip.create_model("ViT-S-32"), path)
    scorer, meta = load_checkpoint(f"open_clip:ViT-S-32:{path}")
    assert scorer.size == (224, 224) and meta["config"]["embed_dim"] == 384
    _invariance(scorer, n=64, chunk=7, chunked=21, singles=7)


def test_eval_accounting_measures_scoring_only(tiny):
    from learnsieve.evaluate.accounting import judge_costs
    images, captions = batch(4, size=32)
    costs = judge_costs(f"open_clip:{TINY}:{tiny['weights']}", images, captions, batch_size=4)
    assert costs["model"] == f"open_clip:{TINY}" and costs["train_cost_known"] is False
    assert costs["forward_flops_per_example"] > 0 and costs["score_seconds_per_example"] > 0
    assert costs["train_flops"] == 0 and costs["train_seconds"] is None
