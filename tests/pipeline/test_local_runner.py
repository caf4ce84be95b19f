"""The in-process runner's split-element fault (pipeline/local_runner.py), reproduced in seconds:
the 1 s timer flush of Beam's embedded gRPC workers, shortened to 1 ms so that it lands inside
element encodes as it does on a busy machine over a 40,000-example run. The stock runner then
decodes garbage; LocalRunner, flushing only at element boundaries, is exact."""
import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.testing.util import assert_that, equal_to

from learnsieve.pipeline.local_runner import LocalRunner

N = 2000


class Record:
    """Takes a little pure-Python time to pickle, as a dataclass record does."""

    def __init__(self, i):
        self.i, self.pad = i, "x" * 200

    def __reduce__(self):
        sum(range(20000))
        return (Record, (self.i,))


def _pipeline(runner):
    # a PCollection materialised between stages (its consumer waits for a side input computed
    # from it), then dealt to 2 parallel bundles: the shape of curate's record graph
    p = beam.Pipeline(runner=runner, options=PipelineOptions(["--direct_num_workers=2",
                                                               "--direct_running_mode=multi_threading"]))
    xs = p | beam.Create(list(range(4))) | "Emit" >> beam.FlatMap(lambda s: [Record(s * N + j) for j in range(N)])
    total = xs | "Ones" >> beam.Map(lambda x: 1) | "Sum" >> beam.CombineGlobally(sum)
    got = xs | "Use" >> beam.Map(lambda x, t: (x.i, t), beam.pvalue.AsSingleton(total))
    assert_that(got, equal_to([(i, 4 * N) for i in range(4 * N)]))
    return p


@pytest.fixture()
def flush_every_ms(monkeypatch):
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)


def test_stock_runner_splits_elements_under_timer_flushes(flush_every_ms):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    with pytest.raises(Exception, match="Unknown type tag|Error decoding|NoneType|not equal|Failed assert"):
        _pipeline(FnApiRunner()).run().wait_until_finish()


def test_local_runner_flushes_only_whole_elements(flush_every_ms):
    _pipeline(LocalRunner()).run().wait_until_finish()
