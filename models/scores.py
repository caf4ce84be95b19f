"""Per-example scoring math: plain functions over tensors, and the registry of named scores.

Every scorer maps a dict of per-example base quantities (``ref_loss``, ``proxy_loss``,
``ref_sim``, ``proxy_sim``) to one score where higher means "keep first".
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

from models.registry import Registry

Quantities = Dict[str, torch.Tensor]
SCORERS: Registry[Callable[[Quantities], torch.Tensor]] = Registry("scorer")
BASE_QUANTITIES = ("ref_loss", "proxy_loss", "ref_sim", "proxy_sim", "proxy_entropy", "proxy_margin",
                   "proxy_least_confidence")


def pair_similarity(img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of matching rows of two L2-normalised embedding matrices."""
    return (img * txt).sum(dim=-1)


def bank_contrastive_loss(img: torch.Tensor, txt: torch.Tensor, bank_img: torch.Tensor,
                          bank_txt: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Symmetric InfoNCE of each pair against a fixed bank of negatives.

    Row i depends only on (img[i], txt[i]) and the bank, so the loss of an example is the same
    whatever batch it is scored in (unlike in-batch CLIP loss).
    """
    pos = scale * pair_similarity(img, txt)
    i2t = torch.cat([pos[:, None], scale * img @ bank_txt.T], dim=1)
    t2i = torch.cat([pos[:, None], scale * txt @ bank_img.T], dim=1)
    return 0.5 * ((torch.logsumexp(i2t, dim=1) - pos) + (torch.logsumexp(t2i, dim=1) - pos))


def bank_logits(img: torch.Tensor, txt: torch.Tensor, bank_txt: torch.Tensor,
                scale: torch.Tensor | float) -> torch.Tensor:
    """Image-to-text logits over [own caption, bank captions]: the model's "classification" of
    each image among candidate captions, for uncertainty scores. Batch-invariant like the loss."""
    return torch.cat([(scale * pair_similarity(img, txt))[:, None], scale * img @ bank_txt.T], dim=1)


def learnability(proxy_loss: torch.Tensor, ref_loss: torch.Tensor) -> torch.Tensor:
    """Evans et al. 2023: high for learnable-but-not-yet-learnt, low for noise and for trivia."""
    return proxy_loss - ref_loss


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def margin(logits: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 probability; small means uncertain."""
    top2 = torch.softmax(logits, dim=-1).topk(2, dim=-1).values
    return top2[..., 0] - top2[..., 1]


def least_confidence(logits: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.softmax(logits, dim=-1).max(dim=-1).values


@SCORERS.register("learnability")
def _learnability(q: Quantities) -> torch.Tensor:
    return learnability(q["proxy_loss"], q["ref_loss"])


@SCORERS.register("reducible_loss")
def _reducible_loss(q: Quantities) -> torch.Tensor:
    """RHO-LOSS: training loss minus irreducible (holdout-model) loss; the reference plays the
    holdout model, so this equals learnability with the roles named as in Mindermann et al."""
    return learnability(q["proxy_loss"], q["ref_loss"])


@SCORERS.register("hard")
def _hard(q: Quantities) -> torch.Tensor:
    return q["proxy_loss"]


@SCORERS.register("easy")
def _easy(q: Quantities) -> torch.Tensor:
    return -q["ref_loss"]


@SCORERS.register("ref_sim")
def _ref_sim(q: Quantities) -> torch.Tensor:
    """The CLIP-score baseline (DataComp): reference image-text cosine similarity."""
    return q["ref_sim"]


@SCORERS.register("entropy")
def _entropy(q: Quantities) -> torch.Tensor:
    """Proxy uncertainty: entropy of its image-to-caption distribution (high = uncertain)."""
    return q["proxy_entropy"]


@SCORERS.register("margin")
def _margin(q: Quantities) -> torch.Tensor:
    """Proxy uncertainty by margin: negative top-1 minus top-2 probability (high = uncertain)."""
    return -q["proxy_margin"]


@SCORERS.register("least_confidence")
def _least_confidence(q: Quantities) -> torch.Tensor:
    return q["proxy_least_confidence"]


@SCORERS.register("proxy_sim")
def _proxy_sim(q: Quantities) -> torch.Tensor:
    return q["proxy_sim"]


def compute_scores(q: Quantities) -> Dict[str, torch.Tensor]:
    """The base quantities plus every registered score."""
    out = dict(q)
    for name in SCORERS.names():
        out[name] = SCORERS.get(name)(q)
    return out


def score_names() -> list:
    return list(BASE_QUANTITIES) + [n for n in SCORERS.names() if n not in BASE_QUANTITIES]
