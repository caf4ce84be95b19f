"""Forward FLOPs per example, counted by torch's FlopCounterMode (matmuls and convolutions).

Used for compute accounting: a training step costs about 3x the forward pass (forward plus a
backward twice as large), scoring costs one forward of each scoring model.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

TRAIN_MULTIPLIER = 3.0  # forward + backward (about 2x forward)


@torch.no_grad()
def flops_per_example(fn: Callable[[], object], batch: int) -> float:
    """FLOPs of one call of ``fn`` (a forward over ``batch`` examples), divided by ``batch``."""
    if batch < 1:
        raise ValueError("batch must be >= 1")
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / batch
