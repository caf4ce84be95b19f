"""The frozen MiniLM text tower: shape, determinism, cache, frozen weights outside checkpoints."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from learnsieve.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.text_minilm import (
    WIDTH,
    FrozenMiniLM,
    MiniLMError,
    MiniLMTextTower,
    shared_minilm,
)
from learnsieve.models.train import train_clip

CAPTIONS = ["a dog runs on the grass", "A black dog is running through a field .",
            "a man surfs a large wave", "two children play in the snow"]


def photo_test_config(**kw) -> ClipConfig:
    return ClipConfig(name="minilm_test", image_tower="test_efficientnet", image_size=32,
                      text_tower="minilm", embed_dim=32, bank_size=8, **kw)


def test_embeddings_are_unit_384d_and_the_tower_projects_to_embed_dim():
    emb = shared_minilm().embed(CAPTIONS)
    assert emb.shape == (4, WIDTH) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    tower = MiniLMTextTower(embed_dim=48)
    assert tower(CAPTIONS).shape == (4, 48)
    assert MiniLMTextTower(embed_dim=48, hidden=64)(CAPTIONS).shape == (4, 48)


def test_embeddings_rank_paraphrases_above_unrelated_captions():
    e = shared_minilm().embed(CAPTIONS)
    sim = e @ e.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]


def test_a_caption_embeds_bit_identically_whatever_its_batch_mates_and_process_cache():
    fresh = FrozenMiniLM(shared_minilm().model_dir)  # own cache: every caption is a miss
    alone = torch.cat([fresh.embed([c]) for c in CAPTIONS[:2]])
    other = FrozenMiniLM(shared_minilm().model_dir)
    together = other.embed(list(reversed(CAPTIONS)))[2:].flip(0)
    assert torch.equal(alone, together)


def test_repeated_captions_hit_the_cache(monkeypatch):
    m = FrozenMiniLM(shared_minilm().model_dir)
    first = m.embed(CAPTIONS + CAPTIONS[:1])
    assert (m.misses, m.hits) == (4, 1)
    monkeypatch.setattr(m, "_encode", lambda *a, **k: pytest.fail("cached caption re-encoded"))
    again = m.embed(list(reversed(CAPTIONS)))
    assert m.hits == 5 and torch.equal(again, first[:4].flip(0))


def test_the_cache_is_bounded():
    m = FrozenMiniLM(shared_minilm().model_dir, cache_size=2)
    m.embed(CAPTIONS)
    assert list(m.cache) == CAPTIONS[2:]


def test_only_the_head_trains_and_the_checkpoint_holds_no_frozen_weights(tmp_path):
    torch.manual_seed(0)
    model = DualEncoder(photo_test_config())
    frozen = {k: v.clone() for k, v in model.text.frozen.encoder.state_dict().items()}
    head = model.text.head.weight.detach().clone()
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    caps = CAPTIONS * 2
    train_clip(model, [(images, caps)], steps=3, warmup=1, augment_kind="photo")
    assert not torch.equal(model.text.head.weight, head)
    assert all(torch.equal(v, model.text.frozen.encoder.state_dict()[k]) for k, v in frozen.items())
    model.set_bank(images, caps)
    save_checkpoint(model, str(tmp_path / "ck"))
    saved = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert {k for k in saved if k.startswith("text.")} == {"text.head.weight", "text.head.bias"}
    assert (tmp_path / "ck" / "model.safetensors").stat().st_size < 2_000_000
    meta = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert meta["config"]["text_weights_sha256"] == shared_minilm().sha256
    loaded, _ = load_checkpoint(str(tmp_path / "ck"))
    a, b = model.score_batch(images, caps), loaded.score_batch(images, caps)
    assert torch.allclose(a["loss"], b["loss"], atol=1e-6)


def test_a_checkpoint_trained_with_other_minilm_weights_is_refused(tmp_path):
    model = DualEncoder(photo_test_config())
    model.set_bank(torch.zeros(8, 3, 32, 32, dtype=torch.uint8), CAPTIONS * 2)
    save_checkpoint(model, str(tmp_path / "ck"))
    path = tmp_path / "ck" / "config.json"
    meta = json.loads(path.read_text())
    meta["config"]["text_weights_sha256"] = "0" * 64
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="MiniLM weights .* sha256") as err:
        load_checkpoint(str(tmp_path / "ck"))
    assert "\n" not in str(err.value)
    with pytest.raises(MiniLMError, match="retrain"):
        DualEncoder(photo_test_config(text_weights_sha256="0" * 64))


def test_unknown_text_tower_is_refused():
    with pytest.raises(ValueError, match="known: hashed-ngrams, minilm"):
        DualEncoder(ClipConfig(text_tower="bert-large"))


@pytest.mark.slow
def test_matches_sentence_transformers():
    """The plain-torch forward equals sentence-transformers' encode (mean pooling + L2 norm)."""
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(shared_minilm().model_dir, device="cpu")
    expected = torch.tensor(ref.encode(CAPTIONS, normalize_embeddings=True))
    assert torch.allclose(FrozenMiniLM(shared_minilm().model_dir).embed(CAPTIONS), expected, atol=1e-5)
