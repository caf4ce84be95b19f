"""learnsieve's DaskRunner (pipeline/dask_runner.py) on a real dask.distributed cluster: two worker
processes on loopback. Each test pins one fix; where the stock runner
(apache_beam/runners/dask/dask_runner.py) gets the same pipeline wrong, the test shows that too."""
import json
import os
import uuid

import pytest

pytest.importorskip("distributed", reason="needs the dask extra (pip install -e '.[dask]')")

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.dask.dask_runner import DaskRunner as StockDaskRunner  # noqa: E402
from apache_beam.runners.runner import PipelineState  # noqa: E402

from learnsieve.pipeline.dask_runner import DaskRunner  # noqa: E402
from learnsieve.pipeline.run import counters  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="module")
def threads_cluster():
    """One worker with two threads in this process: tasks are not pickled between partitions,
    so the stock runner's shared output receivers show."""
    from distributed import LocalCluster
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=2,
                      dashboard_address="127.0.0.1:0") as c:
        yield c


class Record(beam.DoFn):
    """A sink: each bundle writes its elements (and its process id) to its own file."""

    def __init__(self, folder):
        super().__init__()
        self.folder = str(folder)

    def start_bundle(self):
        self.seen = []

    def process(self, x):
        self.seen.append(x)

    def finish_bundle(self):
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, uuid.uuid4().hex), "w") as f:
            json.dump({"pid": os.getpid(), "items": self.seen}, f)


def bundles(folder) -> list:
    """The non-empty bundles a Record sink wrote: [{"pid", "items"}]."""
    if not os.path.isdir(folder):
        return []
    found = [json.load(open(os.path.join(folder, n))) for n in sorted(os.listdir(folder))]
    return [b for b in found if b["items"]]


def items(folder) -> list:
    return sorted((json.dumps(x) for b in bundles(folder) for x in b["items"]))


def as_items(values) -> list:
    return sorted(json.dumps(v) for v in values)


def run(cluster, make, runner=DaskRunner, flags=()):
    """Builds ``make(p)`` and runs it to the end on ``cluster``; returns the result."""
    options = PipelineOptions(["--dask_client_address", cluster.scheduler_address, *flags])
    p = beam.Pipeline(runner=runner(), options=options)
    make(p)
    result = p.run()
    try:
        result.wait_until_finish()
    finally:
        if runner is StockDaskRunner:
            result.client.close()
    return result


def stock_gets_it_wrong(cluster, make, check, flags=()) -> bool:
    """Whether the stock runner fails ``check`` (an exception counts as failing)."""
    try:
        run(cluster, make, StockDaskRunner, flags)
        check()
    except Exception:  # an assertion or the job itself
        return True
    return False


class Parity(beam.DoFn):
    def process(self, x):
        yield beam.pvalue.TaggedOutput("odd" if x % 2 else "even", x)
        yield x * 100


def test_each_output_tag_gets_its_own_elements(cluster, tmp_path):
    """FIX 1: the stock runner hands every element to every tag of a multi-output ParDo."""
    out = tmp_path / "out"

    def make(p):
        r = p | beam.Create(range(6)) | beam.ParDo(Parity()).with_outputs("odd", "even", main="main")
        ((r.odd | "o" >> beam.Map(lambda x: ["odd", x]),
          r.even | "e" >> beam.Map(lambda x: ["even", x]),
          r.main | "m" >> beam.Map(lambda x: ["main", x]))
         | beam.Flatten() | beam.ParDo(Record(out)))

    expected = as_items([["odd", x] for x in (1, 3, 5)] + [["even", x] for x in (0, 2, 4)]
                        + [["main", x * 100] for x in range(6)])

    def check():
        assert items(out) == expected

    run(cluster, make)
    check()
    for f in out.iterdir():
        f.unlink()
    assert stock_gets_it_wrong(cluster, make, check)


class CountRuns(beam.DoFn):
    """Writes one file each time a bundle of it runs (to count recomputations)."""

    def __init__(self, folder):
        super().__init__()
        self.folder = str(folder)

    def finish_bundle(self):
        os.makedirs(self.folder, exist_ok=True)
        open(os.path.join(self.folder, uuid.uuid4().hex), "w").close()

    def process(self, x):
        yield x


def test_a_side_input_is_computed_once_and_outputs_are_not_repeated(cluster, threads_cluster,
                                                                   tmp_path):
    """FIX 2, 3: 3 tasks read a side input. The stock runner's receivers are shared by every
    partition of a ParDo in a process, and its side inputs are computed inside the reading task:
    on a one-process cluster outputs repeat and sums triple."""
    runs, out = tmp_path / "runs", tmp_path / "out"

    def make(p):
        side = p | "side" >> beam.Create([10, 20, 30]) | "producer" >> beam.ParDo(CountRuns(runs))
        total = side | beam.combiners.Count.Globally() | beam.Map(lambda c: c * 20)
        (p | "main" >> beam.Create(range(6))
         | beam.Map(lambda x, s, t: [x, sum(s), t], beam.pvalue.AsList(side),
                    beam.pvalue.AsSingleton(total))
         | beam.ParDo(Record(out)))

    def check():
        assert items(out) == as_items([[x, 60, 60] for x in range(6)])
        assert len(os.listdir(runs)) == 2  # the producer's 2 bundles (of 2 and 1), once each

    def clear():
        for d in (runs, out):
            for f in d.iterdir():
                f.unlink()

    flags = ["--dask_partition_size", "2"]  # 3 tasks read the side inputs
    for c in (cluster, threads_cluster):
        run(c, make, flags=flags)
        check()
        assert len(bundles(out)) == 3
        clear()
    assert stock_gets_it_wrong(threads_cluster, make, check, flags)


def test_every_leaf_is_computed(cluster, tmp_path):
    """FIX 4: the stock runner computes only the last leaf it visited."""
    a, b = tmp_path / "a", tmp_path / "b"

    def make(p):
        nums = p | beam.Create([1, 2, 3])
        nums | "sink a" >> beam.ParDo(Record(a))
        nums | beam.Map(lambda x: x * 2) | "sink b" >> beam.ParDo(Record(b))

    def check():
        assert items(a) == as_items([1, 2, 3]) and items(b) == as_items([2, 4, 6])

    run(cluster, make)
    check()
    for d in (a, b):
        for f in d.iterdir():
            f.unlink()
    assert stock_gets_it_wrong(cluster, make, check)


def test_reshuffle_spreads_elements_over_tasks(cluster, tmp_path):
    """FIX 5: after Reshuffle each element is its own task (default) or --dask_partition_size
    elements are; the stock runner keeps all 8 Create elements in one task."""
    out = tmp_path / "out"

    def make(p):
        p | beam.Create(range(8), reshuffle=False) | beam.Reshuffle() | beam.ParDo(Record(out))

    def check():
        assert sorted(len(b["items"]) for b in bundles(out)) == [1] * 8

    run(cluster, make)
    check()
    assert items(out) == as_items(range(8))
    assert len({b["pid"] for b in bundles(out)}) == 2  # both workers took part
    for f in out.iterdir():
        f.unlink()
    assert stock_gets_it_wrong(cluster, make, check)
    for f in out.iterdir():
        f.unlink()
    run(cluster, make, flags=["--dask_partition_size", "3"])
    assert [b["items"] for b in sorted(bundles(out), key=lambda b: b["items"])] == \
        [[0, 1, 2], [3, 4, 5], [6, 7]]  # order kept within each run


class Counted(beam.DoFn):
    def __init__(self):
        super().__init__()
        self.seen = beam.metrics.Metrics.counter("test", "seen")
        self.sizes = beam.metrics.Metrics.distribution("test", "size")

    def process(self, x):
        self.seen.inc()
        self.sizes.update(x)
        yield x


def test_metrics_are_reported(cluster):
    """FIX 7: counters and distributions of every bundle, once each (the stock runner raises
    NotImplementedError, which learnsieve's counters() turns into {})."""
    def make(p):
        p | beam.Create(range(1, 11), reshuffle=False) | beam.Reshuffle() | beam.ParDo(Counted())

    result = run(cluster, make)
    assert counters(result) == {"test/seen": 10}
    dist = result.metrics().query()["distributions"]
    assert [(d.committed.count, d.committed.sum, d.committed.min, d.committed.max) for d in dist] == \
        [(10, 55, 1, 10)]
    stock = run(cluster, make, StockDaskRunner)
    with pytest.raises(NotImplementedError):
        stock.metrics()
    assert counters(stock) == {}


class Lifecycle(beam.DoFn):
    """Writes a file at setup and at teardown."""

    def __init__(self, folder):
        super().__init__()
        self.folder = str(folder)

    def _mark(self, what):
        os.makedirs(self.folder, exist_ok=True)
        open(os.path.join(self.folder, f"{what}-{os.getpid()}-{uuid.uuid4().hex}"), "w").close()

    def setup(self):
        self._mark("setup")

    def process(self, x):
        yield x

    def teardown(self):
        self._mark("teardown")


def test_dofn_setup_once_per_worker_and_teardown_at_the_end(cluster, tmp_path):
    """FIX 8: 8 bundles on 2 single-thread workers set the DoFn up at most twice, and each
    instance is torn down once the job ends; the stock runner sets up per partition."""
    marks = tmp_path / "marks"

    def make(p):
        p | beam.Create(range(8)) | beam.ParDo(Lifecycle(marks))

    def count(what):
        return len([n for n in os.listdir(marks) if n.startswith(what)])

    flags = ["--dask_partition_size", "1"]  # 8 partitions
    run(cluster, make, flags=flags)
    assert 1 <= count("setup") <= 2 and count("teardown") == count("setup")
    for f in marks.iterdir():
        f.unlink()
    run(cluster, make, StockDaskRunner, flags)
    assert count("setup") == 8


class InMemory(beam.DoFn):
    """Emits the stage names whose outputs the scheduler holds in memory while this runs."""

    def process(self, x):
        from distributed import get_client

        def held(dask_scheduler):  # the runner's keys are "step-what-i-token"
            keys = [str(k).rsplit("-", 3) for k, ts in dask_scheduler.tasks.items()
                    if ts.state == "memory" and "-beam" in str(k)]
            return sorted({f"{k[0]}:{k[1]}" for k in keys})
        yield get_client().run_on_scheduler(held)


def test_a_stage_is_freed_once_its_readers_ran(cluster, tmp_path):
    """FIX 9: while stage C runs, A's outputs (read by B, done) are gone; B's (C's input) are
    held. Also across a GroupByKey and a side input."""
    out = tmp_path / "out"

    def make(p):
        side = p | "S" >> beam.Create([5]) | "T" >> beam.Map(lambda x: x)
        (p | beam.Create([("k", 1), ("k", 2)]) | "A" >> beam.Map(lambda kv: kv)
         | "B" >> beam.GroupByKey() | "C" >> beam.Map(lambda kv, s: kv, beam.pvalue.AsSingleton(side))
         | "D" >> beam.ParDo(InMemory()) | beam.ParDo(Record(out)))

    run(cluster, make)
    [[held]] = [b["items"] for b in bundles(out)]
    assert "C:out.None" in held  # D's input
    # every other stage's outputs are gone; each step's metric updates (small) stay
    assert {h for h in held if not h.endswith(":metrics")} <= {"C:out.None", "C:bundle", "C:metric"}
    assert {"A:metrics", "B/ReifyWindows:metrics", "T:metrics"} <= set(held)


def test_group_by_key_combine_and_dict_side_input(cluster, tmp_path):
    """FIX 6: string keys group across worker processes (Python's str hash differs between
    them); CombinePerKey and AsDict on top, values in input order."""
    out = tmp_path / "out"
    pairs = [(f"key{i % 5}", i) for i in range(40)]

    def make(p):
        kv = p | beam.Create(pairs) | beam.Reshuffle()
        totals = kv | beam.CombinePerKey(sum)
        (kv | beam.GroupByKey()
         | beam.Map(lambda g, t: [g[0], sorted(g[1]), t[g[0]]], beam.pvalue.AsDict(totals))
         | beam.ParDo(Record(out)))

    run(cluster, make)
    expected = [[f"key{k}", list(range(k, 40, 5)), sum(range(k, 40, 5))] for k in range(5)]
    assert items(out) == as_items(expected)


def test_read_flatten_of_one_collection_twice_and_empty_create(cluster, tmp_path):
    out = tmp_path / "out"
    src = tmp_path / "lines.txt"
    src.write_text("a\nb\nc\n")

    def make(p):
        lines = p | beam.io.ReadFromText(str(src))
        empty = p | "none" >> beam.Create([])
        (lines, lines, empty) | beam.Flatten() | beam.ParDo(Record(out))

    run(cluster, make)
    assert items(out) == as_items(["a", "a", "b", "b", "c", "c"])


def test_a_failing_dofn_fails_the_job_with_its_error(cluster):
    def boom(x):
        raise ValueError(f"bad element {x}")

    def make(p):
        p | beam.Create([1]) | "Explode" >> beam.Map(boom)

    options = PipelineOptions(["--dask_client_address", cluster.scheduler_address])
    p = beam.Pipeline(runner=DaskRunner(), options=options)
    make(p)
    result = p.run()
    with pytest.raises(ValueError, match=r"bad element 1 \[while running 'Explode'\]"):
        result.wait_until_finish()
    assert result.state == PipelineState.FAILED


class Stateful(beam.DoFn):
    COUNT = beam.transforms.userstate.CombiningValueStateSpec("count", sum)

    def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
        yield kv


def test_what_it_cannot_run_is_refused_before_anything_runs(cluster):
    def make(p):
        p | beam.Create([("a", 1)]) | beam.ParDo(Stateful())

    with pytest.raises(NotImplementedError, match="stateful"):
        run(cluster, make)


def test_wait_with_a_duration_returns_while_running_then_finishes(cluster):
    import time

    def slow(x):
        time.sleep(1.5)
        return x

    options = PipelineOptions(["--dask_client_address", cluster.scheduler_address])
    p = beam.Pipeline(runner=DaskRunner(), options=options)
    p | beam.Create([1, 2], reshuffle=False) | beam.Reshuffle() | beam.Map(slow) | beam.ParDo(Counted())
    result = p.run()
    assert result.wait_until_finish(duration=100) == PipelineState.RUNNING
    assert result.wait_until_finish() == PipelineState.DONE
    assert counters(result) == {"test/seen": 2}  # each bundle's metrics committed once
