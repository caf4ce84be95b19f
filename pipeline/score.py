"""ScoreExamples: batches of decoded examples -> reference/proxy losses, learnability, ...

Both models are loaded once per worker process in ``setup()`` and shared between its threads
(``beam.utils.shared.Shared``), as RunInference model handlers do. Scores are batch-invariant,
so Beam's batching never changes a result.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared
from learnsieve.pipeline.read import DEAD

from learnsieve.core.records import DeadLetter
from learnsieve.core.scoring import pick_device, pick_precision, score_decoded


class _Models:
    """Holder so that ``Shared`` can keep a weak reference to the loaded pair."""

    def __init__(self, reference, proxy, ref_meta, proxy_meta):
        self.reference, self.proxy = reference, proxy
        self.ref_meta, self.proxy_meta = ref_meta, proxy_meta


class ScoreBatchFn(beam.DoFn):
    def __init__(self, reference: str, proxy: str, device: str, shared: Shared, batch_size: int,
                 torch_threads: int = 0, precision: str = "auto"):
        self.reference_path, self.proxy_path = reference, proxy
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self.precision = precision
        self.device = device
        self._shared = shared
        self.models = None
        self.scored = Metrics.counter("score", "scored")
        self.rejected = Metrics.counter("score", "rejected")

    def setup(self):
        import torch
        from learnsieve.models.checkpoint import load_checkpoint
        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        device = pick_device(self.device)
        self.amp = pick_precision(self.precision, device)

        def load():
            ref, ref_meta = load_checkpoint(self.reference_path, device)
            prx, prx_meta = load_checkpoint(self.proxy_path, device)
            return _Models(ref, prx, ref_meta, prx_meta)

        self.models = self._shared.acquire(load, tag=f"{self.reference_path}|{self.proxy_path}|{device}")

    def _score(self, batch):
        return score_decoded(self.models.reference, self.models.proxy, batch, pad_to=self.batch_size,
                             precision=self.amp)

    def process(self, batch):
        try:
            results = self._score(batch)
        except Exception:  # isolate the bad example(s): retry one at a time
            results = []
            for d in batch:
                try:
                    results.extend(self._score([d]))
                except Exception as exc:
                    results.append(DeadLetter(key=d.key, source=d.source, stage="score",
                                              reason="score_error", detail=repr(exc)[:200],
                                              shard_index=d.shard_index, index=d.index))
        for r in results:
            if isinstance(r, DeadLetter):
                self.rejected.inc()
                yield beam.pvalue.TaggedOutput(DEAD, r)
            else:
                self.scored.inc()
                yield r


class ScoreExamples(beam.PTransform):
    def __init__(self, reference: str, proxy: str, batch_size: int = 64, device: str = "auto",
                 torch_threads: int = 0, precision: str = "auto"):
        super().__init__()
        self.reference, self.proxy = reference, proxy
        self.batch_size, self.device, self.torch_threads = batch_size, device, torch_threads
        self.precision = precision

    def expand(self, decoded):
        return (decoded
                | "Batch" >> beam.BatchElements(min_batch_size=self.batch_size,
                                                max_batch_size=self.batch_size)
                | "Score" >> beam.ParDo(ScoreBatchFn(self.reference, self.proxy, self.device, Shared(),
                                                    self.batch_size, self.torch_threads, self.precision))
                .with_outputs(DEAD, main="scored"))
