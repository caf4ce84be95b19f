"""ScoreShards: one input shard per unit of work: read it, decode, score in batches with the
reference and the proxy, write its score file, emit compact records.

Reading, decoding and scoring happen inside one step (img2dataset's unit of work), so no pixels
cross a stage boundary: what leaves is a ``Scored`` record (key, source, byte spans, scores, the
reference's float16 image embedding) or a ``DeadLetter`` per example. The shard's score file
(``OUTPUT/_scores/``, learnsieve/core/score_file.py) is written atomically as soon as the shard
is scored, on every runner, so a run killed at any moment resumes from the shards already done.
Both models are loaded once per worker process in ``setup()`` and shared between its threads
(``beam.utils.shared.Shared``), as RunInference model handlers do.
"""
from __future__ import annotations

import functools
import os
from typing import Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from learnsieve.config import ScoreConfig
from learnsieve.core.decode import decode_labelled, decode_sample
from learnsieve.core.records import DeadLetter, from_score_rows
from learnsieve.core.score_file import (
    cache_path,
    read_score_file,
    score_settings,
    source_fingerprint,
    write_score_file,
)
from learnsieve.core.scoring import (
    pick_device,
    pick_precision,
    score_shard_rows,
)
from learnsieve.core.shard_select import summarise


class _Models:
    """Holder so that ``Shared`` can keep a weak reference to the loaded pair."""

    def __init__(self, reference, proxy):
        self.reference, self.proxy = reference, proxy


def decode_threads(cfg: ScoreConfig) -> int:
    """Threads decoding ahead of the model: ``score.decode_threads``, or with 0 one per core."""
    return cfg.decode_threads if cfg.decode_threads > 0 else (os.cpu_count() or 1)


class ScoreShardFn(beam.DoFn):
    def __init__(self, cfg: ScoreConfig, reference: str, proxy: str, output: str,
                 models: Tuple[str, str], num_classes: int = 0, value=None):
        """``value`` (a ``SelectionValue``): emit one ``ShardScores`` per shard (the streaming
        graph) instead of a record per example."""
        self.value = value
        self.cfg, self.reference_path, self.proxy_path = cfg, reference, proxy
        self.output, self.models, self.num_classes = output, tuple(models), num_classes
        self.settings = score_settings(cfg, num_classes)
        self._shared = Shared()
        self.shards = Metrics.counter("score", "shards_scored")
        self.proxy_only = Metrics.counter("score", "shards_proxy_only")
        self.reused = Metrics.counter("score", "shards_reused")
        self.scored = Metrics.counter("score", "scored")
        self.rejected = {stage: Metrics.counter(stage, "rejected") for stage in ("read", "decode", "score")}

    def setup(self):
        from concurrent.futures import ThreadPoolExecutor

        import torch

        from learnsieve.models.checkpoint import load_checkpoint
        if self.cfg.torch_threads > 0:
            torch.set_num_threads(self.cfg.torch_threads)
        device = pick_device(self.cfg.device)
        self.amp = pick_precision(self.cfg.precision, device)

        def load():
            return _Models(load_checkpoint(self.reference_path, device)[0],
                           load_checkpoint(self.proxy_path, device)[0])

        self.models_ = self._shared.acquire(load, tag=f"{self.reference_path}|{self.proxy_path}|{device}")
        threads = decode_threads(self.cfg)
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="decode") if threads > 1 else None
        c = self.cfg
        if self.num_classes:
            self.decode = functools.partial(decode_labelled, image_size=c.image_size, max_pixels=c.max_pixels,
                                            num_classes=self.num_classes)
        else:
            self.decode = functools.partial(decode_sample, image_size=c.image_size, max_pixels=c.max_pixels,
                                            max_caption_bytes=c.max_caption_bytes)

    def teardown(self):
        if getattr(self, "pool", None) is not None:
            self.pool.shutdown()

    def process(self, element):
        shard_index, url = element
        path = cache_path(self.output, url)
        rows, in_file = self.score(shard_index, url, path)
        records = from_score_rows(rows, url, shard_index)
        for r in records:
            if isinstance(r, DeadLetter):
                self.rejected[r.stage].inc() if r.stage in self.rejected else None
            else:
                self.scored.inc()
        if self.value is None:
            yield from records
        else:  # the streaming graph: one compact summary instead of the shard's records
            yield summarise(records, shard_index, url, path if in_file else None, rows, self.value)

    def score(self, shard_index: int, url: str, path: str):
        """(the shard's score-file rows, whether they are in its score file now)."""
        # a retried bundle (or a second attempt on Dataflow) finds the file its first try wrote;
        # a file from another proxy keeps its reference part: only the proxy runs
        found = read_score_file(path, url, self.models, self.settings)
        if found is not None and found[1]:
            self.reused.inc()
            return found[0], True
        try:  # before reading: a shard changed meanwhile is not trusted later
            stamp = source_fingerprint(url, self.settings)
        except OSError as exc:  # vanished or unreadable since it was listed: a dead letter, no file
            return [{"key": None, "index": -1, "stage": "read", "reason": "missing_shard",
                     "detail": f"{type(exc).__name__}: {exc}"[:200]}], False
        c = self.cfg
        rows = score_shard_rows(self.models_.reference, self.models_.proxy, url, shard_index, self.decode,
                                c.batch_size, c.max_member_bytes, self.amp, self.pool,
                                reference_rows=found[0] if found is not None else None)
        (self.proxy_only if found is not None else self.shards).inc()
        # a score error is the model's on this example, but a later try may differ
        # (another device, a fixed model): such a shard is scored again next time
        if any(r.get("reason") == "score_error" for r in rows):
            return rows, False
        write_score_file(path, url, rows, self.models, self.settings, fingerprint=stamp)
        return rows, True


class ScoreShards(beam.PTransform):
    """(shard_index, url) -> a Scored record or a DeadLetter per example of each shard (or, with
    ``value``, one ``ShardScores`` per shard); each shard's score file is written when that shard
    is done."""

    def __init__(self, cfg: ScoreConfig, reference: str, proxy: str, output: str, models: Tuple[str, str],
                 num_classes: int = 0, value=None):
        super().__init__()
        self.fn = ScoreShardFn(cfg, reference, proxy, output, models, num_classes, value)

    def expand(self, shards):
        return shards | "ScoreShard" >> beam.ParDo(self.fn)
