"""Selection decided one input shard at a time, in memory that does not grow with the pool (no Beam).

The streaming curation graph (pipeline/run.py) never gathers the pool's records in one place:
what crosses a stage is one ``ShardScores`` per input shard (where its rows are, and a sparse
histogram of its selection values). The global decisions are then made from small, mergeable
summaries:

- ``top_k`` / ``top_fraction`` keep exactly the k highest ``(value, source, key)`` tuples (the
  same order as ``SelectionValue.rank``). The k-th largest is found in two mergeable passes:
  a histogram of every value over ``BUCKET_BITS``-bit order-preserving buckets (its size bounded
  by the buckets the pool's values occupy, not by the pool) locates the bucket holding the cut;
  the distinct values inside that one bucket, with their counts, give the exact cut value ``v*``
  and how many of its ties are still needed. Ties at ``v*`` are then given out by source (then
  key), highest first, from per-shard tie counts (``tie_allowances``): exact, deterministic
  whatever the order shards finish in, and O(shards) on one worker.
- ``threshold``, ``all`` and ``per_batch`` (super-batches within a shard, in stream order)
  decide inside the shard with no global state.

Sums of counts are associative and commutative, so every runner, worker count and bundle order
gives the same cut, hence byte-identical outputs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from learnsieve.core.modes import MODES, decide_groups
from learnsieve.core.records import FILTERED, KEPT, Scored, from_score_rows

BUCKET_BITS = 24  # sign + 11 exponent + 12 mantissa bits: about 2.4e-4 relative width per bucket


class SelectionValue:
    """The number selection ranks by: the chosen score, Gumbel-perturbed when sampling."""

    def __init__(self, cfg):
        from learnsieve.config import effective_score
        self.score = effective_score(cfg)
        self.gumbel = cfg.sampling == "gumbel"
        self.temperature, self.seed = cfg.temperature, cfg.seed

    def __call__(self, s: Scored) -> float:
        v = s.scores[self.score]
        if not self.gumbel:
            return v
        from learnsieve.models.selection import gumbel_perturb
        return gumbel_perturb(v, f"{s.source}\x00{s.key}", self.temperature, self.seed)

    def rank(self, s: Scored):
        return (self(s), s.source, s.key)


def order_keys(values) -> np.ndarray:
    """float64 -> uint64 whose unsigned order is the floats' order (-0.0 just below 0.0)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    return np.where(bits & sign, ~bits, bits | sign)


def buckets(values) -> np.ndarray:
    return order_keys(values) >> np.uint64(64 - BUCKET_BITS)


def histogram(values) -> Dict[int, int]:
    """{bucket: count} of ``values``: what a shard contributes to the global cut."""
    if len(values) == 0:
        return {}
    b, c = np.unique(buckets(values), return_counts=True)
    return {int(x): int(n) for x, n in zip(b, c)}


def merge_counts(parts: Iterable[Dict]) -> Dict:
    out: Dict = {}
    for part in parts:
        for k, n in part.items():
            out[k] = out.get(k, 0) + n
    return out


def kept_target(mode: str, n: int, fraction: float, k: int) -> int:
    """How many of ``n`` candidates a global-cut mode keeps (top_fraction: ceil(fraction * n))."""
    if mode == "top_k":
        return max(0, min(k, n))
    return max(0, min(n, int(math.ceil(fraction * n - 1e-9))))


@dataclass(frozen=True)
class BucketCut:
    """Where the k-th largest value lies: keep every bucket above ``bucket``, and ``need`` more
    from inside it. ``bucket`` None: keep all (``need`` -1) or none (``need`` 0)."""
    bucket: Optional[int]
    need: int


def bucket_cut(hist: Dict[int, int], keep: int) -> BucketCut:
    total = sum(hist.values())
    if keep <= 0:
        return BucketCut(None, 0)
    if keep >= total:
        return BucketCut(None, -1)
    above = 0
    for b in sorted(hist, reverse=True):
        if above + hist[b] >= keep:
            return BucketCut(b, keep - above)
        above += hist[b]
    raise AssertionError("unreachable: keep < total")


def band_counts(values, cut: BucketCut) -> Dict[float, int]:
    """{value: count} of a shard's values inside the cut's bucket."""
    if cut.bucket is None or len(values) == 0:
        return {}
    values = np.asarray(values, dtype=np.float64)
    inside = values[buckets(values) == np.uint64(cut.bucket)]
    v, c = np.unique(inside, return_counts=True)
    return {float(x): int(n) for x, n in zip(v, c)}


@dataclass(frozen=True)
class ValueCut:
    """Keep values above ``value``, and ``ties`` of those equal to it (by source, then key, highest
    first). ``value`` None: keep all (``ties`` -1) or none (``ties`` 0)."""
    value: Optional[float]
    ties: int

    @property
    def keep_all(self) -> bool:
        return self.value is None and self.ties < 0


def value_cut(band: Dict[float, int], cut: BucketCut) -> ValueCut:
    if cut.bucket is None:
        return ValueCut(None, cut.need)
    need = cut.need
    for v in sorted(band, reverse=True):
        if band[v] >= need:
            return ValueCut(v, need)
        need -= band[v]
    raise RuntimeError("the cut's bucket holds fewer values than its histogram counted: "
                       "score files changed during the run")


def above_and_ties(values, cut: ValueCut) -> Tuple[int, int]:
    """A shard's (values above the cut, values equal to it)."""
    if cut.value is None:
        return (len(values), 0) if cut.keep_all else (0, 0)
    values = np.asarray(values, dtype=np.float64)
    return int((values > cut.value).sum()), int((values == cut.value).sum())


def tie_allowances(ties: Dict[int, Tuple[str, int]], needed: int) -> Dict[int, int]:
    """{shard_index: (source, ties at the cut)} -> how many of its ties each shard keeps: by source,
    highest first (the ``(value, source, key)`` order), until ``needed`` are given out."""
    out: Dict[int, int] = {}
    for shard_index, (_, n) in sorted(ties.items(), key=lambda kv: kv[1][0], reverse=True):
        take = max(0, min(n, needed))
        if take:
            out[shard_index] = take
        needed -= take
    return out


def decide_shard(records: Sequence[Scored], mode: str, value: SelectionValue, *, cut: Optional[ValueCut] = None,
                 allowance: int = 0, cfg=None, threshold: float = 0.0, fraction: float = 1.0,
                 batch: int = 1024) -> List[str]:
    """KEPT / FILTERED for each of one shard's scored ``records`` (in their order), by the mode's
    entry in ``core/modes.py``; ``cfg`` (a SelectConfig) or the keyword values are what it reads."""
    m = MODES.get(mode)
    if not m.streaming:
        raise ValueError(f"selection mode {mode!r} is not decided per shard")
    if cfg is None:
        cfg = SimpleNamespace(mode=mode, threshold=threshold, fraction=fraction, batch=batch)
    values = np.array([value(s) for s in records], dtype=np.float64)
    if m.kind == "each":
        keep = [m.keep(v, cfg) for v in values]
    elif m.kind == "group":
        keep = decide_groups(records, values, m, cfg)
    else:
        if cut is None:
            raise ValueError(f"{mode} needs the global cut")
        if cut.value is None:
            keep = np.full(len(records), cut.keep_all)
        else:
            keep = values > cut.value
            tied = [i for i in range(len(records)) if values[i] == cut.value]
            for i in sorted(tied, key=lambda i: records[i].key, reverse=True)[:allowance]:
                keep[i] = True
    return [KEPT if k else FILTERED for k in keep]


@dataclass(frozen=True, eq=False)
class WritePlan:
    """Where each input shard's kept examples go: consecutive shards packed into write groups of
    about ``samples_per_shard`` kept examples (``layout.plan_groups``'s rule); each group writes
    ceil(kept / samples_per_shard) output shards, numbered from its ``first``; every input shard
    (kept examples or not) belongs to a group, which writes its manifest part. Arrays indexed by
    input shard / group: 4-8 bytes a shard, so the plan stays a small side input at 1M shards."""
    groups: np.ndarray   # int64 per input shard index: its write group (-1: not in this run)
    first: np.ndarray    # int64 per group: its first output shard's number
    total_shards: int
    samples_per_shard: int

    def group(self, shard_index: int) -> int:
        return int(self.groups[shard_index])

    def name(self, group: int, chunk: int) -> str:
        from learnsieve.core.layout import output_shard_name
        return output_shard_name(int(self.first[group]) + chunk, self.total_shards)


def write_plan(kept_per_shard: Dict[int, int], samples_per_shard: int) -> WritePlan:
    """A group closes once it holds >= ``samples_per_shard`` kept examples; a shard with nothing
    kept joins the group before it (group 0 before any)."""
    n = max(kept_per_shard, default=-1) + 1
    groups = np.full(n, -1, dtype=np.int64)
    firsts: List[int] = []
    group, filled, out = -1, 0, 0
    for shard in sorted(kept_per_shard):
        k = kept_per_shard[shard]
        if group < 0 or (k > 0 and filled >= samples_per_shard):
            if group >= 0:
                out += -(-filled // samples_per_shard)
            group, filled = group + 1, 0
            firsts.append(out)
        groups[shard] = group
        filled += k
    if group >= 0:
        out += -(-filled // samples_per_shard)
    return WritePlan(groups, np.array(firsts, dtype=np.int64), out, samples_per_shard)


@dataclass(frozen=True, eq=False)
class SelectionPlan:
    """Everything the writers need besides each shard's own rows: the global cut (global-cut
    modes), each shard's share of the ties at the cut, how many it keeps, where they go."""
    cut: Optional[ValueCut]
    allowances: Dict[int, int]
    write: WritePlan
    kept: np.ndarray  # int64 per input shard index

    def kept_of(self, shard_index: int) -> int:
        return int(self.kept[shard_index])


def selection_plan(counts: Sequence[Tuple[int, int, int, str]], cut: Optional[ValueCut],
                   samples_per_shard: int) -> SelectionPlan:
    """From every shard's (shard_index, kept or above the cut, ties at the cut, its source when it
    has ties: the tie-break)."""
    allowances: Dict[int, int] = {}
    if cut is not None and cut.value is not None:
        allowances = tie_allowances({i: (src, t) for i, _, t, src in counts if t}, cut.ties)
    kept = {i: above + allowances.get(i, 0) for i, above, _, _ in counts}
    array = np.zeros(max(kept, default=-1) + 1, dtype=np.int64)
    for i, k in kept.items():
        array[i] = k
    return SelectionPlan(cut, allowances, write_plan(kept, samples_per_shard), array)


def shard_decisions(records, cfg, value: SelectionValue, cut: Optional[ValueCut], allowance: int = 0):
    """(scored records, their decisions) of one shard, as every stage of the streaming graph
    computes them (one function, so the counting and the writing stage cannot disagree)."""
    scored = [r for r in records if isinstance(r, Scored)]
    decisions = decide_shard(scored, cfg.mode, value, cut=cut, allowance=allowance, cfg=cfg)
    return scored, decisions


def count_shard(summary, cfg, value: SelectionValue, cut: Optional[ValueCut]) -> Tuple[int, int, int, str]:
    """(shard_index, kept (global-cut modes: above the cut), ties at the cut, source if ties)."""
    i = summary.shard_index
    if summary.candidates == 0:
        return i, 0, 0, ""
    if MODES.get(cfg.mode).kind == "cut":
        if cut.value is None:
            return i, summary.candidates if cut.keep_all else 0, 0, ""
        at = int(buckets([cut.value])[0])  # the cut's bucket: only a shard with values in it is read
        if max(summary.histogram) < at:
            return i, 0, 0, ""
        if min(summary.histogram) > at:
            return i, summary.candidates, 0, ""
        values = [value(s) for s in load_records(summary) if isinstance(s, Scored)]
        above, ties = above_and_ties(values, cut)
        return i, above, ties, summary.source if ties else ""
    _, decisions = shard_decisions(load_records(summary), cfg, value, None)
    return i, sum(d == KEPT for d in decisions), 0, ""


def shard_band(summary, value: SelectionValue, cut: BucketCut) -> Dict[float, int]:
    """The shard's {value: count} inside the cut's bucket (its score file read only if it has any)."""
    if cut.bucket is None or cut.bucket not in summary.histogram:
        return {}
    return band_counts([value(s) for s in load_records(summary) if isinstance(s, Scored)], cut)


def summarise(records, shard_index: int, source: str, score_file: Optional[str], rows: Optional[Sequence[dict]],
              value: SelectionValue):
    """One shard's ``ShardScores`` from its freshly scored or loaded records; ``rows`` travel only
    when ``score_file`` is None (without embeddings, which the streaming modes never read)."""
    from learnsieve.core.records import ShardScores
    values = [value(s) for s in records if isinstance(s, Scored)]
    inline = None if score_file is not None else tuple({**r, "embedding": None} for r in rows)
    return ShardScores(shard_index, source, score_file, len(records), len(values), histogram(values), inline)


def load_records(summary):
    """A ``ShardScores``'s records again, from its score file (or its inline rows)."""
    from learnsieve.core.score_file import read_score_rows
    rows = summary.rows if summary.score_file is None else read_score_rows(summary.score_file)
    return from_score_rows(rows, summary.source, summary.shard_index)
