"""Loading examples outside Beam (training, eval, benchmarks): every decoded example of a shard
pattern, or a seeded uniform reservoir sample of them."""
from __future__ import annotations

import random
from typing import Callable, Iterable, List, Optional, Tuple, TypeVar, Union

from learnsieve.core.paths import expand_pattern
from learnsieve.core.records import DeadLetter, Decoded, Sample
from learnsieve.core.tar import iter_shard

T = TypeVar("T")


class Reservoir:
    """A seeded uniform sample of ``size`` items from a stream of unknown length (Algorithm R);
    ``size=None`` keeps everything."""

    def __init__(self, size: Optional[int], seed: int = 0):
        self.size, self.rng = size, random.Random(seed)
        self.items: List = []
        self.seen = 0

    def add(self, item) -> None:
        self.seen += 1
        if self.size is None or len(self.items) < self.size:
            self.items.append(item)
        elif (j := self.rng.randrange(self.seen)) < self.size:
            self.items[j] = item


def pattern_items(pattern: str) -> Iterable[Union[Sample, DeadLetter]]:
    """Every sample and read-stage dead letter of every shard of ``pattern``, in input order."""
    for shard_index, url in enumerate(expand_pattern(pattern)):
        yield from iter_shard(url, shard_index)


def sample_shards(pattern: str, n: Optional[int], seed: int = 0) -> List[Sample]:
    """A uniform seeded sample of ``n`` readable samples of ``pattern`` (raw bytes, stream order)."""
    res = Reservoir(n, seed)
    for item in pattern_items(pattern):
        if isinstance(item, Sample):
            res.add(item)
    return sorted(res.items, key=lambda s: (s.shard_index, s.index))


def decoded_examples(pattern: str, decode: Callable[[Sample], Union[Decoded, DeadLetter]],
                     sample: Optional[int] = None, seed: int = 0) -> Tuple[List[Decoded], int]:
    """(decoded examples, rejected count) of every shard of ``pattern``, for training and
    evaluation outside Beam. With ``sample``, a uniform reservoir sample of that many (seeded)."""
    res = Reservoir(sample, seed)
    rejected = 0
    for item in pattern_items(pattern):
        d = item if isinstance(item, DeadLetter) else decode(item)
        if isinstance(d, DeadLetter):
            rejected += 1
        else:
            res.add(d)
    return res.items, rejected
