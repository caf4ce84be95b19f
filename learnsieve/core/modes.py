"""Selection modes: the one registry, without Beam. **A new mode is one ``MODES.register`` here**:
config validation (``learnsieve.config``), the dry run, the record graph (``pipeline/select.py``)
and the streaming graph (``core/shard_select.py``) all read it (``tests/core/test_modes.py``
adds a mode that way and runs it through both graphs).

A mode is one of three kinds:

* ``each``: every example on its own (``keep(value, cfg) -> bool``): ``all``, ``threshold``;
* ``group``: examples grouped by ``group(record, cfg)``, then ``keep(records, values, cfg) ->
  [bool]`` within each group (records in stream order): ``per_batch``, ``per_class``,
  ``per_cluster``, ``coreset``. ``shard_local`` says a group never spans input shards;
* ``cut``: the global exact cut over every example (``top_k``, ``top_fraction``: the histogram
  cut of ``core/shard_select.py``).

``each`` and ``cut`` modes, and ``group`` modes that are ``shard_local``, take the streaming
graph (unless clusters, dedup, SEALS seeds or ranked output need the record graph); so does a
mode without ``needs_clusters``. ``uses`` names the ``select.*`` keys a mode reads (the dry run
prints them).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Hashable, Optional, Sequence, Tuple

import numpy as np

from learnsieve.models.registry import Registry

KINDS = ("each", "group", "cut")


@dataclass(frozen=True)
class Mode:
    name: str
    kind: str
    keep: Optional[Callable] = None  # each: (value, cfg) -> bool; group: (records, values, cfg) -> [bool]
    group: Optional[Callable[..., Hashable]] = None  # group: (record, cfg) -> its group's key
    uses: Tuple[str, ...] = ()                     # the select.* keys it reads
    needs_clusters: bool = False                   # reads record.cluster (k-means first: the record graph)
    shard_local: bool = False                      # a group never spans input shards

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"selection mode {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == "cut") != (self.keep is None) or (self.kind == "group") != (self.group is not None):
            raise ValueError(f"selection mode {self.name!r}: a {self.kind} mode needs "
                             + {"each": "keep", "group": "group and keep", "cut": "neither keep nor group"}[self.kind])

    @property
    def streaming(self) -> bool:
        """Decidable one input shard at a time (or by the global cut)."""
        return not self.needs_clusters and (self.kind != "group" or self.shard_local)


MODES: "Registry[Mode]" = Registry("selection mode")


def register(mode: Mode) -> Mode:
    MODES.register(mode.name)(mode)
    return mode


def top_fraction(records: Sequence, values: Sequence[float], cfg) -> list:
    """The ceil(fraction * n) highest of a group (ties by stream position)."""
    from learnsieve.models.selection import top_fraction_mask
    return [bool(k) for k in top_fraction_mask(values, cfg.fraction)]


def kcenter(records: Sequence, values: Sequence[float], cfg) -> list:
    """k-center greedy over the reference embeddings, from the highest value (coreset)."""
    from learnsieve.models.selection import kcenter_greedy
    k = int(math.ceil(cfg.fraction * len(records) - 1e-9))
    first = int(np.argmax(values))
    chosen = set(kcenter_greedy(np.stack([s.vector() for s in records]), k, first))
    return [i in chosen for i in range(len(records))]


register(Mode("all", "each", keep=lambda value, cfg: True))
register(Mode("threshold", "each", keep=lambda value, cfg: value >= cfg.threshold, uses=("threshold",)))
register(Mode("top_fraction", "cut", uses=("fraction",)))
register(Mode("top_k", "cut", uses=("k",)))
# the paper's online selection: the top fraction of each super-batch of B examples, in stream order
register(Mode("per_batch", "group", keep=top_fraction, group=lambda s, cfg: (s.shard_index, s.index // cfg.batch),
              uses=("fraction", "batch"), shard_local=True))
# a quota per KEY.cls label; examples without a label form one group
register(Mode("per_class", "group", keep=top_fraction, group=lambda s, cfg: s.label or "", uses=("fraction",)))
register(Mode("per_cluster", "group", keep=top_fraction, group=lambda s, cfg: s.cluster,
              uses=("fraction", "clusters"), needs_clusters=True))
register(Mode("coreset", "group", keep=kcenter, group=lambda s, cfg: s.cluster, uses=("fraction", "clusters"),
              needs_clusters=True))


def decide_groups(records: Sequence, values: Sequence[float], mode: Mode, cfg) -> list:
    """keep flags for ``records`` (one group mode's examples, any order): grouped by the mode's
    key, each group decided in stream order. What the streaming graph does within one shard and
    the record graph within one Beam group."""
    keep = [False] * len(records)
    groups: dict = {}
    for i in sorted(range(len(records)), key=lambda i: records[i].order()):
        groups.setdefault(mode.group(records[i], cfg), []).append(i)
    for members in groups.values():
        flags = mode.keep([records[i] for i in members], [values[i] for i in members], cfg)
        for i, k in zip(members, flags):
            keep[i] = bool(k)
    return keep
