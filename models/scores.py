"""The per-example base quantities and the registry of named scores over them (the math is in
``losses.py``). This module itself needs no torch (the package imports it): only names and
functions over whatever tensors the scorers are given.

A judge (``models/judge.py``) returns ``JUDGE_OUTPUTS`` per example. What is kept of each role's
outputs is ``ROLE_OUTPUTS``: the base quantities are ``ref_<output>`` then ``proxy_<output>``
(``base_quantities()``; today ``ref_loss``, ``ref_sim``, ``proxy_loss``, ``proxy_sim``,
``proxy_entropy``, ``proxy_margin``, ``proxy_least_confidence``). **A new base quantity is one
name added to ``ROLE_OUTPUTS`` here**: scoring, the score file's schema, the manifest, the output
json and the records all take it from these tuples (``tests/core/test_records.py`` shows it).

Every scorer maps the base quantities to one score where higher means "keep first". A new score
is one decorated function here; ``score_names()`` lists the base quantities and then every score.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict

from learnsieve.models.registry import Registry

if TYPE_CHECKING:
    import torch

Quantities = Dict[str, "torch.Tensor"]
SCORERS: "Registry[Callable[[Quantities], torch.Tensor]]" = Registry("scorer")

JUDGE_OUTPUTS = ("loss", "sim", "entropy", "margin", "least_confidence")
ROLE_OUTPUTS = {"ref": ("loss", "sim"), "proxy": JUDGE_OUTPUTS}


def role_quantities(role: str) -> tuple:
    """The base quantities one role's judge contributes: ``ref_loss``, ``ref_sim``, ..."""
    return tuple(f"{role}_{name}" for name in ROLE_OUTPUTS[role])


def base_quantities() -> tuple:
    """Every base quantity, the reference's then the proxy's (read at call time)."""
    return role_quantities("ref") + role_quantities("proxy")



def learnability(proxy_loss, ref_loss):
    from learnsieve.models.losses import learnability as f
    return f(proxy_loss, ref_loss)


@SCORERS.register("learnability")
def _learnability(q: Quantities) -> "torch.Tensor":
    return learnability(q["proxy_loss"], q["ref_loss"])


@SCORERS.register("reducible_loss")
def _reducible_loss(q: Quantities) -> "torch.Tensor":
    """RHO-LOSS: training loss minus irreducible (holdout-model) loss; the reference plays the
    holdout model, so this equals learnability with the roles named as in Mindermann et al."""
    return learnability(q["proxy_loss"], q["ref_loss"])


@SCORERS.register("hard")
def _hard(q: Quantities) -> "torch.Tensor":
    return q["proxy_loss"]


@SCORERS.register("easy")
def _easy(q: Quantities) -> "torch.Tensor":
    return -q["ref_loss"]


@SCORERS.register("ref_sim")
def _ref_sim(q: Quantities) -> "torch.Tensor":
    """The CLIP-score baseline (DataComp): reference image-text cosine similarity."""
    return q["ref_sim"]


@SCORERS.register("entropy")
def _entropy(q: Quantities) -> "torch.Tensor":
    """Proxy uncertainty: entropy of its image-to-caption distribution (high = uncertain)."""
    return q["proxy_entropy"]


@SCORERS.register("margin")
def _margin(q: Quantities) -> "torch.Tensor":
    """Proxy uncertainty by margin: negative top-1 minus top-2 probability (high = uncertain)."""
    return -q["proxy_margin"]


@SCORERS.register("least_confidence")
def _least_confidence(q: Quantities) -> "torch.Tensor":
    return q["proxy_least_confidence"]


@SCORERS.register("proxy_sim")
def _proxy_sim(q: Quantities) -> "torch.Tensor":
    return q["proxy_sim"]


def compute_scores(q: Quantities) -> Dict[str, "torch.Tensor"]:
    """The base quantities plus every registered score."""
    out = dict(q)
    for name in SCORERS.names():
        out[name] = SCORERS.get(name)(q)
    return out


def score_names() -> list:
    """The base quantities, then every registered score: the manifest's score columns."""
    base = base_quantities()
    return list(base) + [n for n in SCORERS.names() if n not in base]
