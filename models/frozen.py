"""Frozen pretrained towers cache their outputs per input; ``uncached()`` switches that off.

Compute accounting needs the cost of a real forward (scoring a fresh pool runs every tower on
every example), not of a cache hit: inside ``uncached()`` every frozen tower recomputes.

``shared_inputs()`` is the one reuse scoring keeps: when the reference and the proxy run on the
same frozen towers (e.g. ``ls_clip_lit`` and ``ls_clip_lit_proxy``), the batch goes through each
tower once and both models' heads read the same features (``memoised``).
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
from collections import OrderedDict
from typing import Callable, Hashable, Iterator, List, Sequence

import torch

_state = threading.local()


def file_sha256(path: str) -> str:
    """sha256 of a weights file, read in 4 MiB blocks (FileNotFoundError when absent)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def caching_enabled() -> bool:
    return getattr(_state, "off", 0) == 0


@contextlib.contextmanager
def uncached() -> Iterator[None]:
    """In this thread, frozen towers ignore (and do not fill) their caches."""
    _state.off = getattr(_state, "off", 0) + 1
    try:
        yield
    finally:
        _state.off -= 1


@contextlib.contextmanager
def shared_inputs() -> Iterator[None]:
    """In this thread, a frozen tower asked again for the same input object (the very tensor or
    caption list, unchanged) at the same resolution and device returns the tensor it computed the
    first time instead of running again. What ``score_decoded`` wraps a batch in, so the reference
    and a proxy on the same frozen towers cost one tower forward; the memo (and the inputs it
    holds) is dropped when the outermost block ends."""
    if getattr(_state, "memo", None) is not None:  # nested: the outer block's memo
        yield
        return
    _state.memo = {}
    try:
        yield
    finally:
        _state.memo = None


def memoised(tower: object, inputs: object, extra: Hashable, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()``; inside ``shared_inputs()``, once per (tower, input object, ``extra``)."""
    memo = getattr(_state, "memo", None)
    if memo is None:
        return compute()
    key = (id(tower), id(inputs), extra)
    hit = memo.get(key)
    if hit is not None and hit[0] is inputs:  # the memo holds the input, so its id is not reused
        return hit[1]
    out = compute()
    memo[key] = (inputs, out)
    return out


class CachedFeatures:
    """Mixin for frozen towers: a thread-safe LRU cache of one feature row per input key."""

    def init_cache(self, cache_size: int) -> None:
        self.cache_size = cache_size
        self.cache: "OrderedDict[Hashable, torch.Tensor]" = OrderedDict()
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def cached_rows(self, keys: Sequence[Hashable], compute: Callable[[List[int]], torch.Tensor]
                    ) -> List[torch.Tensor]:
        """The rows for ``keys``; ``compute(indices)`` runs once, on the first index of each key
        not in the cache, and returns their rows in that order."""
        with self._lock:
            first: dict = {}
            for i, k in enumerate(keys):
                if k not in self.cache:
                    first.setdefault(k, i)
            todo = list(first.values())
            self.misses += len(todo)
            self.hits += len(keys) - len(todo)
            fresh = dict(zip(first, compute(todo))) if todo else {}
            rows = []
            for k in keys:
                if k in fresh:
                    rows.append(fresh[k])
                else:
                    rows.append(self.cache[k])
                    self.cache.move_to_end(k)
            self.cache.update(fresh)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
        return rows
