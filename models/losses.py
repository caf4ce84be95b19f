"""Per-example loss and score math as plain functions over tensors (no registry, no model).

Bank losses are batch-invariant: an example's value depends only on itself and a fixed bank of
negatives stored with the model, never on the batch Beam put it in.
"""
from __future__ import annotations

import torch


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


