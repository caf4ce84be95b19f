"""`learnsieve curate --runner DaskRunner` on a dask.distributed cluster (a LocalCluster: two
worker processes on loopback, no dashboard) writes the same bytes as the default runner."""
import json
import os

import pyarrow.parquet as pq
import pytest

pytest.importorskip("distributed", reason="needs the dask extra (pip install -e '.[dask]')")

from learnsieve.cli import main  # noqa: E402

from tests.e2e.helpers import snapshot  # noqa: E402

pytestmark = pytest.mark.slow

SETTINGS = ["score.image_size=32", "score.batch_size=16", "score.torch_threads=1",
            "write.samples_per_shard=20"]
GRAPHS = {  # the streaming graph (one summary per shard between stages) and the per-example one
    "streaming_top_k": ["select.mode=top_k", "select.k=40"],
    "ranked_with_dedup": ["select.fraction=0.5", "select.ranked=true", "select.dedup=semantic"],
}


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as c:
        yield c


def _curate(data_root, checkpoints, out, overrides, capsys, runner_args=()) -> str:
    """Runs the command; returns its ``counters:`` line (the job's Beam counters)."""
    argv = ["curate", "--input", data_root["pool_pattern"], "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"]]
    for s in SETTINGS + overrides:
        argv += ["--set", s]
    capsys.readouterr()
    assert main(argv + list(runner_args)) == 0
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("counters:"))


def _stats(out) -> dict:
    stats = json.load(open(os.path.join(out, "stats.json")))
    stats.pop("counters", None)
    return stats


@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_dask_runner_writes_what_the_default_runner_writes(graph, cluster, data_root, checkpoints,
                                                          tmp_path, capsys):
    ref, got = tmp_path / "default", tmp_path / "dask"
    counters = _curate(data_root, checkpoints, ref, GRAPHS[graph], capsys)
    before = cluster.scheduler.transition_counter
    dask_counters = _curate(data_root, checkpoints, got, GRAPHS[graph], capsys,
                            ["--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address])
    assert cluster.scheduler.transition_counter - before > 100  # the cluster ran the job
    assert dask_counters == counters and "score/shards_scored 3" in counters
    expected, written = snapshot(str(ref)), snapshot(str(got))
    assert sorted(written) == sorted(expected) and any(n.endswith(".tar") for n in written)
    assert {n: v for n, v in written.items() if v != expected[n]} == {}
    assert pq.read_table(os.path.join(got, "manifest.parquet")).to_pylist() == \
        pq.read_table(os.path.join(ref, "manifest.parquet")).to_pylist()
    assert _stats(got) == _stats(ref)
    assert _stats(got)["read"] == 150
