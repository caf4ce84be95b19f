"""`learnsieve curate --runner DaskRunner` on a dask.distributed cluster (a LocalCluster: two
worker processes on loopback, dashboard on loopback) writes the same bytes as the default runner;
the Dask runner's flags pass learnsieve's flag check and its dry run."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

pytest.importorskip("distributed", reason="needs the dask extra (pip install -e '.[dask]')")

from apache_beam.options.pipeline_options import StandardOptions  # noqa: E402
from apache_beam.runners.dask.dask_runner import DaskOptions  # noqa: E402

from learnsieve.cli import main  # noqa: E402
from learnsieve.pipeline.options import DASK_RUNNER  # noqa: E402
from learnsieve.pipeline.run import pipeline_options  # noqa: E402
from tests.e2e.helpers import snapshot  # noqa: E402

SETTINGS = ["score.image_size=32", "score.batch_size=16", "score.torch_threads=1",
            "write.samples_per_shard=20"]
GRAPHS = {  # the streaming graph (one summary per shard between stages) and the per-example one
    "streaming_top_k": ["select.mode=top_k", "select.k=40"],
    "ranked_with_dedup": ["select.fraction=0.5", "select.ranked=true", "select.dedup=semantic"],
}

DASK_FLAGS = {"streaming_top_k": [], "ranked_with_dedup": ["--dask_partition_size", "1"]}


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


@pytest.mark.slow
@pytest.mark.parametrize("graph", sorted(GRAPHS))
def test_dask_runner_writes_what_the_default_runner_writes(graph, cluster, data_root, checkpoints,
                                                          tmp_path, capsys):
    ref, got = tmp_path / "default", tmp_path / "dask"
    counters = _curate(data_root, checkpoints, ref, GRAPHS[graph], capsys)
    before = cluster.scheduler.transition_counter
    dask_counters = _curate(data_root, checkpoints, got, GRAPHS[graph], capsys,
                            ["--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address]
                            + DASK_FLAGS[graph])
    assert cluster.scheduler.transition_counter - before > 100  # the cluster ran the job
    assert dask_counters == counters and "score/shards_scored 3" in counters
    expected, written = snapshot(str(ref)), snapshot(str(got))
    assert sorted(written) == sorted(expected) and any(n.endswith(".tar") for n in written)
    assert {n: v for n, v in written.items() if v != expected[n]} == {}
    assert pq.read_table(os.path.join(got, "manifest.parquet")).to_pylist() == \
        pq.read_table(os.path.join(ref, "manifest.parquet")).to_pylist()
    assert _stats(got) == _stats(ref)
    assert _stats(got)["read"] == 150
    # an interrupted run resumed on Dask: 1 shard scored again, 2 read from their score files
    # (the graph's cached branch and its Flatten), the same bytes
    resumed = tmp_path / "resumed"
    shutil.copytree(ref, resumed)
    os.remove(resumed / "stats.json")
    os.remove(sorted(glob.glob(str(resumed / "_scores" / "*.parquet")))[0])
    _curate(data_root, checkpoints, resumed, GRAPHS[graph], capsys,
            ["--runner", "DaskRunner", "--dask_client_address", cluster.scheduler_address])
    assert snapshot(str(resumed)) == expected
    assert json.load(open(resumed / "stats.json"))["rescored_shards"] == 1


@pytest.mark.parametrize("runner", ["DaskRunner", "dask", "daskrunner",
                                    "apache_beam.runners.dask.dask_runner.DaskRunner"])
def test_dask_runner_names_resolve_to_learnsieves_runner(runner):
    for args in (["--runner", runner], [f"--runner={runner}"]):
        options = pipeline_options(args + ["--dask_client_address", "tcp://127.0.0.1:8786",
                                           "--dask_partition_size", "4"])
        assert options.view_as(StandardOptions).runner == DASK_RUNNER
        dask = options.view_as(DaskOptions)
        assert (dask.address, dask.partition_size) == ("tcp://127.0.0.1:8786", 4)


@pytest.mark.parametrize("extra,msg", [
    (["--runner", "DaskRuner"], "unknown runner DaskRuner (did you mean DaskRunner?)"),
    (["--runner", "DaskRunner", "--dask_partiton_size", "1"],
     "unknown flag --dask_partiton_size (did you mean --dask_partition_size?)"),
    (["--runner", "DaskRunner", "--dask_npartitions", "2", "--dask_partition_size", "1"],
     "not allowed with argument --dask_npartitions"),
])
def test_dask_flag_mistakes_are_refused_in_one_line(extra, msg, capsys, tmp_path):
    argv = ["curate", "--input", "x.tar", "--output", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert msg in err and len(err.strip().splitlines()) == 1


def test_dry_run_accepts_the_dask_flags(data_root, checkpoints, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["curate", "--input", data_root["pool_pattern"], "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"], "--dry-run",
            "--runner", "DaskRunner", "--dask_client_address", "tcp://127.0.0.1:8786",
            "--dask_partition_size", "1", "--dask_connection_timeout", "30"]
    assert main(argv) == 0
    assert f"runner: {DASK_RUNNER}" in capsys.readouterr().out
    assert not out.exists()


def test_without_dask_the_flags_say_what_to_install(tmp_path):
    """Where dask is not installed, a --dask_* flag names the extra instead of "unknown flag"."""
    code = ("import sys; sys.modules['dask'] = None; from learnsieve.cli import main; "
            "sys.exit(main(['curate', '--input', 'x.tar', '--output', 'o', "
            "'--dask_client_address', 'tcp://127.0.0.1:8786']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "--dask_client_address is a flag of the Dask runner, and dask is not installed " \
        "(pip install 'learnsieve[dask]')" in done.stderr
    done = subprocess.run([sys.executable, "-c", code.replace("'--dask_client_address', "
                                                              "'tcp://127.0.0.1:8786'",
                                                              "'--runner', 'DaskRunner'")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "--runner DaskRunner: dask is not installed (pip install 'learnsieve[dask]')" in done.stderr
