"""Text tower that needs no vocabulary file and no download: hashed word n-grams into an
EmbeddingBag (fastText-style), then a small MLP. Tokenisation is deterministic across processes
(crc32, not Python's salted ``hash``)."""
from __future__ import annotations

import re
import zlib
from typing import List, Sequence, Tuple

import torch
from torch import nn

_WORD = re.compile(r"[a-z0-9]+")


def hash_tokens(caption: str, buckets: int, max_words: int = 64) -> List[int]:
    """Bucket ids of the caption's lower-cased words and word bigrams."""
    words = _WORD.findall(caption.lower())[:max_words]
    grams = words + [a + " " + b for a, b in zip(words, words[1:])]
    return [zlib.crc32(g.encode()) % buckets for g in grams]


def pack_captions(captions: Sequence[str], buckets: int, max_words: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Flat token ids and offsets for ``nn.EmbeddingBag``."""
    ids: List[int] = []
    offsets: List[int] = []
    for caption in captions:
        offsets.append(len(ids))
        ids.extend(hash_tokens(caption, buckets, max_words))
    return torch.tensor(ids, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)


class HashedTextTower(nn.Module):
    def __init__(self, buckets: int, width: int, embed_dim: int, max_words: int = 64):
        super().__init__()
        self.buckets = buckets
        self.max_words = max_words
        self.bag = nn.EmbeddingBag(buckets, width, mode="mean")
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, embed_dim))
        nn.init.normal_(self.bag.weight, std=0.1)

    def forward(self, captions: Sequence[str]) -> torch.Tensor:
        device = self.bag.weight.device
        ids, offsets = pack_captions(captions, self.buckets, self.max_words)
        return self.mlp(self.bag(ids.to(device), offsets.to(device)))
