"""learnsieve's Dask runner: Beam's stock DaskRunner (apache_beam/runners/dask/) with its faults
fixed, so that one Beam pipeline runs on a dask.distributed cluster with the output of the
default runner. ``--runner DaskRunner`` (pipeline/options.py) names it; docs/DASK.md says how to
run it. Options are the stock ones (``--dask_client_address``, ``--dask_scheduler_file``,
``--dask_partition_size``, ``--dask_npartitions``, ...).

What the stock runner gets wrong, and what this one does instead (each fix is named ``FIX n`` at
the code that makes it):

1. dask_runner.py:DaskBagVisitor.visit_transform keeps one bag per *transform*, so every output
   tag of a multi-output ParDo reads the same bag (transform_evaluator.py:apply_dofn_to_bundle
   returns every tag's elements together): here each PCollection has its own partitions, a
   bundle returns one list per declared tag.
2. transform_evaluator.py:ParDo.apply builds the output receivers once at graph time, and every
   bundle appends to them without clearing (counts grew with each task): here each bundle has
   fresh receivers.
3. transform_evaluator.py:DaskBagWindowedIterator computes a side input's bag with ``list(bag)``
   inside every task that reads it (the producer is recomputed per reader, on the worker's
   local scheduler): here a side input is one task that concatenates its partitions, a
   dependency of its readers, computed once.
4. dask_runner.py:DaskRunner.run_pipeline computes only the last visited bag, so other leaves
   (a second sink, unread tags) never run: here every bundle of every ParDo and every leaf
   PCollection is computed.
5. overrides.py:ReshuffleOverride maps Reshuffle to a transform with no translation (a no-op:
   up to 128 Create elements stay in one task): here Reshuffle rebalances its input into
   ``--dask_partition_size`` elements per partition (default 1, at most
   RESHUFFLE_MAX_PARTITIONS partitions) or ``--dask_npartitions`` partitions, keeping order.
6. transform_evaluator.py:GroupByKey.apply groups with ``Bag.groupby`` on the key object (hash
   of a str differs between worker processes) and strips the windows that
   _GroupAlsoByWindowDoFn reads: here keys are grouped by their encoded bytes (the key coder,
   as DirectRunner's _GroupByKeyOnlyEvaluator does), values stay windowed and in input order,
   into ``--dask_npartitions`` or 2 per worker thread (at least SHUFFLE_MIN) partitions, with at
   most SHUFFLE_PIECES bucket tasks.
7. dask_runner.py:DaskRunnerResult.metrics raises NotImplementedError: here each bundle runs in
   a MetricsContainer (as direct/executor.py:TransformExecutor.call does) and its updates are
   returned with its outputs, merged per step; metrics() answers with Beam's DirectMetrics. A
   bundle that dask retries counts once (the retried result replaces the lost one).
8. transform_evaluator.py:apply_dofn_to_bundle runs DoFn.setup/teardown around every
   partition: here set-up DoFn instances are kept per worker process and reused by later
   bundles (one instance per concurrent thread); teardown runs on every worker when the job
   ends.
9. Memory: nothing is held for the whole job. The graph is submitted in waves split at
   Reshuffles (the only step whose output layout needs its input's size); within a wave, dask's
   scheduler frees a partition as soon as every task that reads it has run, and the driver
   holds futures only for partitions that a later wave reads (dropped once that wave is
   submitted), plus each ParDo's merged metric updates and each leaf partition's length.

Not supported (refused before anything runs): stateful and splittable DoFns, and primitives
other than Create, Impulse, Read, ParDo, GroupByKey, Flatten and Reshuffle (unbounded reads,
TestStream). Combiners are not lifted: CombinePerKey groups all values of a key in one task.
"""
from __future__ import annotations

import importlib
import itertools
import math
import threading
import uuid
import zlib
from typing import Any, Dict, List

from apache_beam import pvalue
from apache_beam.internal import pickler
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners.common import DoFnRunner, DoFnSignature, Receiver
from apache_beam.runners.dask import dask_runner as stock
from apache_beam.runners.dask.overrides import (
    _Create,
    _Flatten,
    _GroupByKeyOnly,
    _Read,
    _Reshuffle,
    dask_overrides,
)
from apache_beam.runners.direct.direct_metrics import DirectMetrics
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.core import Impulse, ParDo
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindows

# GroupByKey: 2 output partitions per worker thread (at least SHUFFLE_MIN), and at most
# SHUFFLE_PIECES bucket tasks (split tasks x output partitions)
SHUFFLE_MIN, SHUFFLE_PIECES = 8, 4096
RESHUFFLE_MAX_PARTITIONS = 1024  # Reshuffle without partition flags: one element each, up to this


# ---- what runs on the workers -------------------------------------------------------------

_POOL: Dict[str, list] = {}  # FIX 8: "token/step" -> set-up DoFn specs not in use
_POOL_LOCK = threading.Lock()


class _ListReceiver(Receiver):
    def __init__(self):
        self.values: list = []

    def receive(self, windowed_value):
        self.values.append(windowed_value)


class _Receivers(dict):
    """FIX 1, 2: one fresh list per output tag, made per bundle (also for undeclared tags,
    which are dropped, as DirectRunner's _TaggedReceivers does)."""

    def __missing__(self, tag):
        self[tag] = _ListReceiver()
        return self[tag]


def _computed(parts: list) -> bool:
    from dask.distributed import Future
    return all(isinstance(p, Future) for p in parts)


def _windowing(pc):
    """A PCollection's windowing; global where a producer upstream (the stock _Read, whose
    get_windowing asks its PBegin) cannot say: Read and Impulse emit into the global window."""
    try:
        return pc.windowing
    except AttributeError:
        from apache_beam.transforms.core import Windowing
        return Windowing(GlobalWindows())


def _load(pickle_lib: str, blob: bytes):
    return importlib.import_module(pickle_lib).loads(blob)


def _bundle(ident: str, pickle_lib: str, blob: bytes, part: list, *sides: list):
    """One ParDo bundle: (metric updates, [outputs of each declared tag]); outputs and inputs
    are WindowedValues."""
    from apache_beam.metrics.execution import MetricsContainer
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils.counters import CounterFactory
    with _POOL_LOCK:
        free = _POOL.setdefault(ident, [])
        spec = free.pop() if free else None
    fresh = spec is None
    if fresh:
        spec = _load(pickle_lib, blob)
    fn, args, kwargs, views, windowing, label, tags = spec
    receivers = _Receivers()
    side_maps = [SideInputMap(view, options, values) for (view, options), values in zip(views, sides)]
    runner = DoFnRunner(fn, args, kwargs, side_maps, windowing, receivers, step_name=label)
    container = MetricsContainer(label)  # FIX 7
    sampler = statesampler.StateSampler("", CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(label, "process", metrics_container=container):
            if fresh:
                runner.setup()
            runner.start()
            for wv in part:
                runner.process(wv)
            runner.finish()
    except BaseException:
        _teardown_one(spec)
        raise
    finally:
        statesampler.set_current_tracker(None)
    with _POOL_LOCK:
        _POOL.setdefault(ident, []).append(spec)
    return container.get_cumulative(), [receivers[t].values for t in tags]


def _teardown_one(spec) -> None:
    try:
        spec[0].teardown()
    except Exception:  # best effort, as in Beam
        pass


def _teardown(token: str) -> int:
    """FIX 8: run on every worker at the end of a job: tear down its pooled DoFns."""
    with _POOL_LOCK:
        mine = [k for k in _POOL if k.startswith(token)]
        specs = [s for k in mine for s in _POOL.pop(k)]
    for spec in specs:
        _teardown_one(spec)
    return len(specs)


def _metrics(result):
    return result[0]


def _merge_metrics(*updates):
    """A step's metric updates, its bundles' combined (one small result held per step)."""
    from apache_beam.metrics.execution import MetricUpdates
    merged: Dict[str, dict] = {}
    for field in ("counters", "distributions", "gauges", "string_sets", "bounded_tries",
                  "histograms"):
        out: dict = {}
        for u in updates:
            for k, v in getattr(u, field).items():
                out[k] = v if k not in out else out[k] + v if field == "counters" else out[k].combine(v)
        merged[field] = out
    return MetricUpdates(**merged)


def _tag(result, i: int) -> list:
    return result[1][i]


def _concat(*parts: list) -> list:
    return [x for p in parts for x in p]


def _slices(pieces: list) -> list:
    return [x for part, lo, hi in pieces for x in part[lo:hi]]


def _split(key_coder, n: int, *parts: list) -> list:
    """FIX 6: (key bytes, key, windowed value) of every element, in ``n`` buckets by a
    deterministic hash of the encoded key."""
    buckets: List[list] = [[] for _ in range(n)]
    for wv in itertools.chain.from_iterable(parts):
        key, value = wv.value
        kb = key_coder.encode(key)
        buckets[zlib.crc32(kb) % n].append((kb, key, value))
    return buckets


def _bucket(buckets: list, j: int) -> list:
    return buckets[j]


def _group(*pieces: list) -> list:
    groups: Dict[bytes, tuple] = {}
    for kb, key, value in itertools.chain.from_iterable(pieces):
        if kb not in groups:
            groups[kb] = (key, [])
        groups[kb][1].append(value)
    return [GlobalWindows.windowed_value((k, vs)) for k, vs in groups.values()]


def _read(source, start, stop) -> list:
    return [GlobalWindows.windowed_value(x)
            for x in source.read(source.get_range_tracker(start, stop))]


# ---- the driver ---------------------------------------------------------------------------

class _Steps(PipelineVisitor):
    def __init__(self):
        self.steps: list = []

    def visit_transform(self, node):
        self.steps.append(node)


class _Plan:
    """Submits a pipeline's primitive steps to dask, wave by wave (FIX 9)."""

    def __init__(self, client, bag_kwargs: dict, steps: list):
        self.client, self.steps = client, steps
        self.npartitions = bag_kwargs.get("npartitions")
        self.partition_size = bag_kwargs.get("partition_size")
        self.threads = sum(client.nthreads().values())  # at the start (an adaptive cluster grows)
        self.token = f"beam{uuid.uuid4().hex[:12]}"  # keys: "step-what-i-token"
        self.pickle_lib = pickler.desired_pickle_lib.__name__
        self.parts: Dict[Any, list] = {}  # PCollection -> its partitions (Delayed or Future)
        self.uses: Dict[Any, int] = {}  # PCollection -> consumers not yet submitted
        self.sides: Dict[Any, Any] = {}  # PCollection -> its side-input task (this wave)
        self.metrics: list = []  # futures: each ParDo's metric updates (its bundles' merged)
        self.wave_metrics: list = []  # the same, not yet submitted
        self.wave = 0
        self.done: list = []  # futures: lengths of leaf partitions
        for node in steps:
            self._check(node)
            for pc in self._inputs(node) + [si.pvalue for si in node.side_inputs]:
                self.uses[pc] = self.uses.get(pc, 0) + 1

    @staticmethod
    def _inputs(node) -> list:
        return [pc for pc in node.inputs if isinstance(pc, pvalue.PCollection)]

    @staticmethod
    def _outputs(node) -> dict:
        return {tag: pc for tag, pc in node.outputs.items() if pc.producer is node}

    def _check(self, node) -> None:
        t = node.transform
        if isinstance(t, ParDo):
            sig = DoFnSignature(t.fn)
            if sig.is_stateful_dofn() or sig.is_splittable_dofn():
                raise NotImplementedError(f"DaskRunner: {node.full_label}: stateful and splittable "
                                          f"DoFns are not supported")
        elif not isinstance(t, (_Create, Impulse, _Read, _Flatten, _GroupByKeyOnly, _Reshuffle)) \
                and self._outputs(node):
            raise NotImplementedError(f"DaskRunner: {node.full_label}: {type(t).__name__} is not "
                                      f"supported")

    def _key(self, node, what: str, i: int) -> str:
        return f"{node.full_label}-{what}-{i}-{self.token}"

    def _delayed(self, fn, key: str, *args):
        import dask
        return dask.delayed(fn, pure=False)(*args, dask_key_name=key)

    def submit(self) -> None:
        waves, wave = [], []
        for node in self.steps:  # FIX 5, 9: a Reshuffle starts a wave (it needs its input's size)
            if isinstance(node.transform, _Reshuffle) and wave:
                waves.append(wave)
                wave = []
            wave.append(node)
        waves.append(wave)
        for i, wave in enumerate(waves):
            self.wave = i
            later = {pc for node in itertools.chain(*waves[i + 1:]) for pc in self._inputs(node)
                     + [si.pvalue for si in node.side_inputs]}
            leaves: list = []
            for node in wave:
                produced = self._run(node)
                for tag, pc in self._outputs(node).items():
                    if self.uses.get(pc):
                        self.parts[pc] = produced[tag]
                    elif not isinstance(node.transform, ParDo):  # FIX 4 (ParDos: their metrics)
                        leaves += [self._delayed(len, self._key(node, "len", j), p)
                                   for j, p in enumerate(produced[tag])]
                for pc in self._inputs(node) + [si.pvalue for si in node.side_inputs]:
                    self._release(pc)
            keep = [pc for pc in self.parts if pc in later and not _computed(self.parts[pc])]
            wanted = [self.parts[pc] for pc in keep] + [self.wave_metrics, leaves]
            futures = iter(self.client.compute(list(itertools.chain(*wanted)), sync=False))
            for pc in keep:
                self.parts[pc] = [next(futures) for _ in self.parts[pc]]
            self.metrics += [next(futures) for _ in self.wave_metrics]
            self.done += list(futures)
            self.wave_metrics = []
            self.sides.clear()  # a Delayed must not be recomputed by a later wave

    def _release(self, pc) -> None:
        self.uses[pc] -= 1
        if not self.uses[pc]:
            self.parts.pop(pc, None)
            self.sides.pop(pc, None)

    def _run(self, node) -> dict:
        t, ins = node.transform, [self.parts[pc] for pc in self._inputs(node)]
        if isinstance(t, ParDo):
            return self._pardo(node, ins[0])
        if isinstance(t, _Create):
            return {None: self._create(list(t.values))}
        if isinstance(t, Impulse):
            return {None: self._create([b""])}
        if isinstance(t, _Read):
            return {None: self._read(node, t.source)}
        if isinstance(t, _Flatten):
            return {None: [p for parts in ins for p in parts]}
        if isinstance(t, _GroupByKeyOnly):
            return {None: self._group(node, ins[0])}
        return {None: self._reshuffle(node, ins[0])}

    def _create(self, values: list) -> list:
        n = len(values)
        if self.npartitions:
            k = min(n, self.npartitions)
        else:  # the stock runner's default (transform_evaluator.py:Create.apply)
            size = self.partition_size or max(128, math.ceil(math.sqrt(n) / 10))
            k = math.ceil(n / size)
        chunks = [[GlobalWindows.windowed_value(v) for v in values[j * n // k:(j + 1) * n // k]]
                  for j in range(k)]
        return self.client.scatter(chunks, hash=False) if chunks else []

    def _read(self, node, source) -> list:
        size = max(1 << 20, (source.estimate_size() or 0) // max(SHUFFLE_MIN, 2 * self.threads))
        return [self._delayed(_read, self._key(node, "read", j), s.source, s.start_position,
                              s.stop_position)
                for j, s in enumerate(source.split(desired_bundle_size=size))]

    def _side(self, pc):
        """FIX 3: a side input is one task over its partitions, shared by every reader."""
        if pc not in self.sides:
            self.sides[pc] = self._delayed(_concat, self._key(pc.producer, f"side.{pc.tag}",
                                                              self.wave), *self.parts[pc])
        return self.sides[pc]

    def _pardo(self, node, parts: list) -> dict:
        t = node.transform
        tags = list(node.outputs)
        spec = (t.fn, t.args, t.kwargs, [(type(si), si._view_options()) for si in node.side_inputs],
                _windowing(node.inputs[0]), node.full_label, tags)
        blob = self.client.scatter(pickler.dumps(spec), hash=False)
        ident = f"{self.token}/{node.full_label}"
        sides = [self._side(si.pvalue) for si in node.side_inputs]
        bundles = [self._delayed(_bundle, self._key(node, "bundle", j), ident, self.pickle_lib,
                                 blob, part, *sides) for j, part in enumerate(parts)]
        self.wave_metrics.append(self._delayed(_merge_metrics, self._key(node, "metrics", 0), *[
            self._delayed(_metrics, self._key(node, "metric", j), b) for j, b in enumerate(bundles)]))
        out = {}
        for i, tag in enumerate(tags):
            if self.uses.get(node.outputs[tag]):  # FIX 1: each tag its own partitions
                out[tag] = [self._delayed(_tag, self._key(node, f"out.{tag}", j), b, i)
                            for j, b in enumerate(bundles)]
            else:
                out[tag] = []
        return out

    def _group(self, node, parts: list) -> list:
        """FIX 6: split the inputs into ``n`` buckets by encoded key (``s`` split tasks, each over
        a run of input partitions), then group each bucket."""
        from apache_beam import coders, typehints
        m = len(parts)
        if not m:
            return []
        try:  # as direct_runner's _GroupByKeyOnlyEvaluator.start_bundle
            kv = node.outputs[None].element_type or \
                node.transform.get_type_hints().input_types[0][0]
            key_coder = coders.registry.get_coder(kv.tuple_types[0])
        except Exception:
            key_coder = coders.registry.get_coder(typehints.Any)
        n = self.npartitions or min(m, max(SHUFFLE_MIN, 2 * self.threads))
        s = min(m, max(1, SHUFFLE_PIECES // n))
        splits = [self._delayed(_split, self._key(node, "split", i), key_coder, n,
                                *parts[i * m // s:(i + 1) * m // s]) for i in range(s)]
        return [self._delayed(_group, self._key(node, "group", j),
                              *[self._delayed(_bucket, self._key(node, f"bucket.{i}", j), sp, j)
                                for i, sp in enumerate(splits)])
                for j in range(n)]

    def _reshuffle(self, node, parts: list) -> list:
        """FIX 5: the input's partitions (futures of an earlier wave) cut into even runs."""
        lengths = self.client.gather(self.client.map(len, parts, key=[
            self._key(node, "size", j) for j in range(len(parts))]))
        n = sum(lengths)
        if not n:
            return []
        if self.partition_size:  # runs of exactly that many (the last one shorter)
            bounds = list(range(0, n, self.partition_size)) + [n]
        else:  # even runs
            k = min(n, self.npartitions or RESHUFFLE_MAX_PARTITIONS)
            bounds = [j * n // k for j in range(k + 1)]
        starts = list(itertools.accumulate([0] + lengths))
        out = []
        for j, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
            pieces = [(parts[i], max(lo, starts[i]) - starts[i], min(hi, starts[i + 1]) - starts[i])
                      for i in range(len(parts)) if starts[i] < hi and starts[i + 1] > lo]
            out.append(self._delayed(_slices, self._key(node, "part", j), pieces))
        return out


class DaskRunnerResult(stock.DaskRunnerResult):
    """The stock result, plus metrics (FIX 7) and the end of a job: DoFn teardown on every
    worker (FIX 8), then the client closed (a LocalCluster it started goes with it)."""

    def __init__(self, client, plan: _Plan):
        super().__init__(client, set(plan.metrics + plan.done))
        self._metric_futures = set(plan.metrics)
        self._token = plan.token
        self._metrics = DirectMetrics()

    def wait_until_finish(self, duration=None) -> str:
        """Waits for every bundle and leaf; ``duration`` (ms) passed: returns RUNNING."""
        import dask.distributed as ddist
        if self._state != PipelineState.RUNNING:
            return self._state
        try:
            for future, result in ddist.as_completed(
                    list(self.futures), timeout=None if duration is None else duration / 1000,
                    with_results=True):
                self.futures.remove(future)
                if future in self._metric_futures:
                    self._metrics.commit_physical(None, result)
                    self._metrics.commit_logical(None, result)
        except ddist.TimeoutError:
            return self._state
        except BaseException:
            self._state = PipelineState.FAILED
            self.close()
            raise
        self._state = PipelineState.DONE
        self.close()
        return self._state

    def cancel(self) -> str:
        super().cancel()
        self.close()
        return self._state

    def close(self) -> None:
        self.futures, self._metric_futures = [], set()
        try:
            self.client.run(_teardown, self._token)
        except Exception:  # the cluster is gone: nothing to tear down
            pass
        self.client.close()

    def metrics(self):
        return self._metrics


class DaskRunner(stock.DaskRunner):
    """Beam's DaskRunner with the fixes listed in this module's docstring."""

    def run_pipeline(self, pipeline, options):
        import dask.distributed as ddist
        dask_options = options.view_as(stock.DaskOptions).get_all_options(
            drop_default=True, current_only=True)
        bag_kwargs = stock.DaskOptions._extract_bag_kwargs(dask_options)  # pylint: disable=protected-access
        pipeline.replace_all(dask_overrides())
        visitor = _Steps()
        pipeline.visit(visitor)
        client = ddist.Client(**dask_options)
        try:
            plan = _Plan(client, bag_kwargs, visitor.steps)
            plan.submit()
        except BaseException:
            client.close()
            raise
        return DaskRunnerResult(client, plan)
