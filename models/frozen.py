"""Frozen pretrained towers cache their outputs per input; ``uncached()`` switches that off.

Compute accounting needs the cost of a real forward (scoring a fresh pool runs every tower on
every example), not of a cache hit: inside ``uncached()`` every frozen tower recomputes.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_state = threading.local()


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
