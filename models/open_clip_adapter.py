"""open_clip models as the reference or the proxy: ``open_clip:ARCH:PATH``.

``PATH`` is a checkpoint written by open_clip's trainer (``logs/NAME/checkpoints/epoch_N.pt``: a
dict with ``state_dict``, keys possibly prefixed ``module.``) or a weights file that
``open_clip.create_model(ARCH, pretrained=PATH)`` takes (a state dict, ``.pt``/``.bin`` or
``.safetensors``), local or any fsspec URL. It is read with ``torch.load(weights_only=True)``
(or safetensors): nothing but tensors and plain containers is ever unpickled. The model's
identity (the manifest's ``reference_sha256``/``proxy_sha256``, the score files' stamps) is the
sha256 of that file.

The architecture brings its own preprocessing (image size, mean/std, interpolation, from
open_clip's preprocess config) and tokenizer (``open_clip.get_tokenizer(ARCH)``). The pipeline
hands models uint8 [B,3,H,W] images decoded at ``score.image_size``; they are resized here to
the model's size (set ``score.image_size`` to the model's, e.g. 224, or the model sees
upsampled pixels).

The negative bank. Built-in models store a bank of embeddings of held-back training pairs;
an open_clip file has none, so the bank must come from somewhere that keeps scores a function
of (the file, the architecture, this code) alone, or the file's sha256 would not identify
them and cached scores would be reused under a changed bank. The bank is a fixed, shipped set
of captions: ``"a photo of a {class}."`` for the 1000 ImageNet classes (open_clip's own
zero-shot class names, pinned by ``BANK_SHA256``), encoded by each model at load time. Each
image is scored against its own caption and the 1000 prompts (image-to-text InfoNCE), exactly
the zero-shot classification view of a CLIP model: a correct caption beats generic class
prompts, a mismatched or junk one (``DSC4821``) loses to the prompt of what the image shows.
Bank prompts whose normalised text equals the example's caption are masked (a caption
"a photo of a goldfish" is not its own negative). The uncertainty scores (entropy, margin,
least confidence) are over the same logits, as for the built-in models.

Trade-offs: (1) there is no image-side bank (no shipped images can stand for real photos), so
the loss is image-to-text only, where the built-in models' loss is symmetric: a caption that
matches many images equally is caught only through its low similarity to its own image.
Learnability is comparable between two open_clip models (same bank, same loss); with a
learnsieve-trained model on the other side, the two losses have different banks and scales
and learnability ranks by a difference of unlike quantities. (2) The prompts are a generic
web-photo prior: for data far from ImageNet's classes (medical, documents) the negatives are
easy and the loss mostly tracks the pair's own similarity. (3) The bank costs one text-tower
pass over 1000 short prompts per model, on its first scoring call (causal text towers are run
on the prompts' length, not the full context); embeddings are cached per process by (file
sha256, ARCH).
Random unit vectors were rejected: they are not where a trained model's text embeddings live,
so every loss would be about the same.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

# the file side (spec, sha256, state dict, building the model): models/open_clip_files.py
from learnsieve.models.judge import Judge
from learnsieve.models.losses import entropy, least_confidence, margin, pair_similarity
from learnsieve.models.open_clip_files import (  # noqa: F401 (known_arch, save_weights: re-exported)
    INSTALL_HINT,
    PREFIX,
    OpenClipError,
    build_model,
    file_digest,
    import_open_clip,
    is_open_clip,
    known_arch,
    parse_spec,
    read_state_dict,
    save_weights,
)

log = logging.getLogger(__name__)

FORMAT = "open_clip"
BANK_NAME = "imagenet-1k-prompts-v1"
BANK_TEMPLATE = "a photo of a {}."
# sha256 of "\n".join(bank captions): open_clip's IMAGENET_CLASSNAMES through BANK_TEMPLATE.
BANK_SHA256 = "667e985c62f319010021259b7d3fd4ebd4d8fce6e02bf49987fae323d194d831"
MASKED = -1e4  # logit of a masked bank prompt: exp() underflows to 0, entropy stays finite


def bank_captions() -> List[str]:
    """The fixed negative bank: one prompt per ImageNet class, pinned by ``BANK_SHA256``."""
    import_open_clip()
    try:
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    except ImportError:
        raise OpenClipError(f"this open-clip-torch has no zero_shot_metadata.IMAGENET_CLASSNAMES "
                            f"(the negative bank's class names): {INSTALL_HINT}") from None
    captions = [BANK_TEMPLATE.format(c) for c in IMAGENET_CLASSNAMES]
    digest = hashlib.sha256("\n".join(captions).encode()).hexdigest()
    if digest != BANK_SHA256:
        raise OpenClipError(f"open-clip-torch's ImageNet class names changed (bank sha256 "
                            f"{digest[:12]}, expected {BANK_SHA256[:12]}): scores would not be "
                            f"comparable with earlier runs; install an open-clip-torch release "
                            f"with the same class names, e.g. 3.3")
    return captions


def normalise_caption(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


# --- meta, verify, load --------------------------------------------------------------------

def _model_info(arch: str) -> Dict[str, Any]:
    cfg = import_open_clip().get_model_config(arch) or {}
    size = cfg.get("vision_cfg", {}).get("image_size", 224)
    size = size if isinstance(size, int) else int(max(size))
    return {"image_size": size, "embed_dim": int(cfg.get("embed_dim", 0))}


def read_meta(spec: str) -> Dict[str, Any]:
    """What ``read_checkpoint_meta`` returns for an ``open_clip:`` spec (no model is built)."""
    arch, path = parse_spec(spec)
    known_arch(spec, arch)
    digest = file_digest(spec, path)
    import open_clip
    cfg = OpenClipConfig(name=f"open_clip:{arch}", arch=arch, bank=BANK_NAME,
                         bank_size=len(bank_captions()), **_model_info(arch))
    return {"format": FORMAT, "sha256": digest, "path": path, "config": asdict(cfg),
            "open_clip_version": getattr(open_clip, "__version__", "unknown"),
            "role": None, "steps": None, "seconds": None}


def verify(spec: str) -> Dict[str, Any]:
    """Everything loading would refuse, before any work: the architecture, the file (read with
    weights_only=True), the weights fitting the architecture, the tokenizer, the bank."""
    meta = read_meta(spec)
    arch, path = parse_spec(spec)
    sd, info, digest = read_state_dict(spec, path)
    build_model(spec, arch, sd)
    _tokenizer(spec, arch)
    return {**meta, **info, "sha256": digest}


def _tokenizer(spec: str, arch: str):
    try:
        return import_open_clip().get_tokenizer(arch)
    except Exception as exc:
        raise OpenClipError(f"{spec}: no tokenizer for {arch} ({exc})".splitlines()[0]) from None


@dataclass(frozen=True)
class OpenClipConfig:
    name: str
    arch: str
    image_size: int
    embed_dim: int
    bank: str = BANK_NAME
    bank_size: int = 1000


_bank_cache: Dict[Tuple[str, str, str], torch.Tensor] = {}
_warned_small: set = set()  # architectures warned about upsampled input, once per process


class OpenClipScorer(nn.Module, Judge):
    """An open_clip model with ``DualEncoder``'s scoring interface: ``encode_image`` (uint8
    images), ``encode_text`` (strings), ``score_batch`` against the fixed prompt bank."""

    checkpoint_format = FORMAT

    def __init__(self, model: nn.Module, tokenizer, cfg: OpenClipConfig, digest: str):
        super().__init__()
        open_clip = import_open_clip()
        self.model, self.tokenizer, self.cfg, self.sha256 = model, tokenizer, cfg, digest
        pp = open_clip.get_model_preprocess_cfg(model) if hasattr(open_clip, "get_model_preprocess_cfg") \
            else {}
        size = pp.get("size", cfg.image_size)
        self.size = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
        self.interpolation = "bilinear" if pp.get("interpolation") == "bilinear" else "bicubic"
        self.resize_mode = pp.get("resize_mode", "shortest")
        mean = pp.get("mean", open_clip.OPENAI_DATASET_MEAN)
        std = pp.get("std", open_clip.OPENAI_DATASET_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("bank_text", torch.zeros(0, cfg.embed_dim), persistent=False)
        self.register_buffer("bank_filled", torch.zeros((), dtype=torch.bool), persistent=False)
        self.bank_index: Dict[str, List[int]] = {}
        self.bank_captions: List[str] = []
        self._bank_lock = threading.Lock()

    @property
    def scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0).reshape(())

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B,3,H,W] -> the architecture's input: resized (short side, centre crop) and
        normalised with its mean/std."""
        x = images.to(self.mean.device, non_blocking=True).float().div_(255.0)
        th, tw = self.size
        h, w = x.shape[-2:]
        if (h, w) != (th, tw):
            if (h < th or w < tw) and self.cfg.name not in _warned_small:
                _warned_small.add(self.cfg.name)
                log.warning(f"{self.cfg.name} sees {h}x{w} images upsampled to {th}x{tw}: set "
                            f"score.image_size to {max(th, tw)} for open_clip models")
            if self.resize_mode == "squash":
                x = F.interpolate(x, size=(th, tw), mode=self.interpolation, antialias=True,
                                  align_corners=False)
            else:
                s = max(th / h, tw / w)
                nh, nw = max(th, round(h * s)), max(tw, round(w * s))
                x = F.interpolate(x, size=(nh, nw), mode=self.interpolation, antialias=True,
                                  align_corners=False)
                top, left = (nh - th) // 2, (nw - tw) // 2
                x = x[..., top:top + th, left:left + tw]
            x = x.clamp_(0.0, 1.0)
        return (x - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(self.preprocess(images)).float(), dim=-1)

    def tokens(self, captions: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(captions)).to(self.mean.device)

    def encode_text(self, captions: Sequence[str]) -> torch.Tensor:
        """Each caption at the tokenizer's full context: a fixed shape per batch size, so
        scores do not depend on which captions share a batch."""
        return F.normalize(self.model.encode_text(self.tokens(captions)).float(), dim=-1)

    @torch.no_grad()
    def _encode_prefix(self, tokens: torch.Tensor) -> torch.Tensor:
        """``encode_text`` on the shortest prefix holding every end-of-text token: exact for
        CLIP's causal, argmax-pooled text tower (a token sees only those before it); other text
        towers run at full length."""
        m = self.model
        causal = getattr(m, "attn_mask", None) is not None and getattr(m, "text_pool_type", None) == "argmax" \
            and hasattr(m, "positional_embedding") and hasattr(m, "token_embedding")
        if not causal:
            return m.encode_text(tokens)
        n = int(tokens.argmax(dim=-1).max()) + 1
        t = tokens[:, :n]
        cast = m.transformer.get_cast_dtype()
        x = m.token_embedding(t).to(cast) + m.positional_embedding[:n].to(cast)
        x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:n, :n]))
        x = x[torch.arange(x.shape[0], device=x.device), t.argmax(dim=-1)]
        proj = m.text_projection
        if proj is not None:
            x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return x

    def fill_bank(self, captions: Sequence[str], lazy: bool = False) -> None:
        """Set the bank prompts; they are encoded now, or with ``lazy`` on first use (a run
        whose scores all come from score files never pays for it)."""
        self.bank_captions = list(captions)
        self.bank_index = {}
        for i, c in enumerate(self.bank_captions):
            self.bank_index.setdefault(normalise_caption(c), []).append(i)
        self.bank_filled.fill_(True)
        if not lazy:
            self.bank_embeddings()

    @torch.no_grad()
    def bank_embeddings(self) -> torch.Tensor:
        """The bank prompts' text embeddings [N, D], encoded once per process per file and
        architecture (thread-safe: the pipeline's threads share a model)."""
        if self.bank_text.shape[0] == 0:
            with self._bank_lock:
                if self.bank_text.shape[0] == 0:
                    self.bank_text = self._encode_bank(self.bank_captions).to(self.mean.device)
        return self.bank_text

    def _encode_bank(self, captions: Sequence[str], batch_size: int = 250) -> torch.Tensor:
        key = (self.sha256, self.cfg.arch, self.cfg.bank)
        bank = _bank_cache.get(key)
        if bank is None:
            tokens = self.tokens(captions)
            full = self.model.encode_text(tokens[:1]).float()
            order = torch.argsort(tokens.argmax(dim=-1), stable=True)  # short prompts together
            rows = torch.cat([self._encode_prefix(tokens[order[i:i + batch_size]]).float()
                              for i in range(0, len(captions), batch_size)])
            bank = F.normalize(torch.empty_like(rows).index_copy_(0, order, rows), dim=-1)
            if (F.normalize(full, dim=-1) - bank[:1]).abs().max() > 1e-3:  # another text tower
                bank = F.normalize(torch.cat([self.model.encode_text(tokens[i:i + batch_size]).float()
                                              for i in range(0, len(captions), batch_size)]), dim=-1)
            _bank_cache[key] = bank = bank.cpu()
        return bank

    def bank_logits(self, img: torch.Tensor, txt: torch.Tensor, captions: Sequence[str]) -> torch.Tensor:
        """Image-to-text logits over [own caption, bank prompts], prompts equal to the caption
        masked. Row i depends only on example i and the bank."""
        scale = self.scale
        neg = scale * img @ self.bank_embeddings().T.to(img.dtype)
        for i, c in enumerate(captions):
            same = self.bank_index.get(normalise_caption(c))
            if same:
                neg[i, same] = MASKED
        return torch.cat([(scale * pair_similarity(img, txt))[:, None], neg], dim=1)

    @torch.no_grad()
    def score_batch(self, images: torch.Tensor, captions: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Per example, as ``DualEncoder.score_batch``: loss against the bank (image-to-text
        InfoNCE), cosine similarity, uncertainty over the bank logits, the image embedding."""
        if not bool(self.bank_filled):
            raise RuntimeError("open_clip model has no negative bank (call fill_bank)")
        img = self.encode_image(images)
        txt = self.encode_text(captions)
        logits = self.bank_logits(img, txt, captions)
        return {
            "loss": torch.logsumexp(logits, dim=1) - logits[:, 0],
            "sim": pair_similarity(img, txt),
            "entropy": entropy(logits),
            "margin": margin(logits),
            "least_confidence": least_confidence(logits),
            "image_embedding": img,
        }


def load(spec: str, device: str = "cpu") -> Tuple[OpenClipScorer, Dict[str, Any]]:
    """What ``load_checkpoint`` returns for an ``open_clip:`` spec: (model in eval mode, meta)."""
    meta = read_meta(spec)
    arch, path = parse_spec(spec)
    sd, info, digest = read_state_dict(spec, path)
    model = build_model(spec, arch, sd)
    cfg = OpenClipConfig(**meta["config"])
    scorer = OpenClipScorer(model, _tokenizer(spec, arch), cfg, digest).to(device).eval()
    scorer.fill_bank(bank_captions(), lazy=True)
    return scorer, {**meta, **info, "sha256": digest}
