"""The registry of named scores (the math is in ``losses.py``).

Every scorer maps a dict of the seven per-example base quantities (``BASE_QUANTITIES``:
``ref_loss``, ``proxy_loss``, ``ref_sim``, ``proxy_sim``, ``proxy_entropy``, ``proxy_margin``,
``proxy_least_confidence``) to one score where higher means "keep first". A new score is one
decorated function here; ``score_names()`` lists the base quantities and then every score.
"""
from __future__ import annotations

from typing import Callable, Dict

import torch

from learnsieve.models.losses import learnability
from learnsieve.models.registry import Registry

Quantities = Dict[str, torch.Tensor]
SCORERS: Registry[Callable[[Quantities], torch.Tensor]] = Registry("scorer")
BASE_QUANTITIES = ("ref_loss", "proxy_loss", "ref_sim", "proxy_sim", "proxy_entropy", "proxy_margin",
                   "proxy_least_confidence")


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
