"""The judge interface: what scores examples, as Beam's ``ModelHandler`` splits it into
``load_model`` and ``run_inference``.

* **load**: ``models.checkpoint.load_checkpoint(source, device)`` -> ``(judge, meta)``, the one
  loader, for every source ``models.spec`` parses (a learnsieve checkpoint folder, or
  ``open_clip:ARCH:PATH``); it raises ``CheckpointError`` (one line) for anything that does not load;
* **score a batch**: ``judge.score_batch(images, targets)`` -> one tensor per name of
  ``JUDGE_OUTPUTS`` (``models/scores.py``: per-example loss under the judge's fixed bank,
  image-text similarity, and the uncertainty of its image-to-target distribution), plus
  ``image_embedding`` (L2-normalised, ``[B, D]``).

``images`` are uint8 ``[B, 3, H, W]``; ``targets`` are the decoded examples' ``target_field``
(captions, or class names for a classifier judge). A judge is in eval mode and scores without
gradients; per-example outputs do not depend on the rest of the batch (the bank is fixed).
Implemented by ``clip.DualEncoder``, ``classifier.Classifier`` and
``open_clip_adapter.OpenClipScorer``; ``check_outputs`` is what scoring asks of any judge.
"""
from __future__ import annotations

import abc
from typing import Dict, Sequence

import torch

from learnsieve.models.scores import JUDGE_OUTPUTS

OUTPUTS = JUDGE_OUTPUTS + ("image_embedding",)


class Judge(abc.ABC):
    """Scores a batch of examples (mixed into an ``nn.Module``)."""

    target_field = "caption"  # which field of a decoded example is its scoring target

    @abc.abstractmethod
    def score_batch(self, images: torch.Tensor, targets: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Per example: every name of ``OUTPUTS`` -> a tensor with the batch as first dimension."""


def check_outputs(out: Dict[str, torch.Tensor], batch: int) -> Dict[str, torch.Tensor]:
    """``out`` as the interface promises it, or a TypeError naming what is missing or misshapen."""
    missing = [n for n in OUTPUTS if n not in out]
    if missing:
        raise TypeError(f"judge returned no {', '.join(missing)} (a judge returns {', '.join(OUTPUTS)})")
    bad = [n for n in OUTPUTS if out[n].shape[0] != batch]
    if bad:
        raise TypeError(f"judge returned {', '.join(bad)} for {out[bad[0]].shape[0]} examples, not {batch}")
    return out
