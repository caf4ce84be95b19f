"""Every script under benchmarks/ end to end at tiny sizes (the quick-check lines of their
docstrings), in the default suite: a benchmark that no longer runs against the package fails here,
not on the day someone wants its numbers. Each runs its ``main(argv)`` in this process (the
scripts that time subprocesses by design start theirs); datasets come from ``bench_data`` (fake
CIFAR-10 / Flickr8k folders, conftest.py), not ../shared/data. The numbers are not checked (tiny
models, a few steps): only that each script gets through and reports what it promises.

Budget: under 90 s for all of them on two busy cores (measured: 62 s of test time, 35 s of CPU,
with the machine's load average at 4-5 on its 2 cores)."""
from __future__ import annotations

import json
import logging
import os

import pytest

TEST_MODELS = ["--reference-model", "ls_clip_test", "--reference-steps", "2"]


@pytest.fixture(autouse=True)
def _restore_process_state():
    """The scripts set torch's thread count, learnsieve's log handler (``cli.setup_logging``) and,
    bench_remote, gcsfs / emulator environment variables and fsspec's gcs token: put them back
    for the tests after."""
    import torch
    threads = torch.get_num_threads()
    logger = logging.getLogger("learnsieve")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    environ = dict(os.environ)
    import copy

    import fsspec
    fsspec_conf = copy.deepcopy(fsspec.config.conf)
    yield
    fsspec.config.conf.clear()
    fsspec.config.conf.update(fsspec_conf)
    torch.set_num_threads(threads)
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    for k in set(os.environ) - set(environ):
        del os.environ[k]
    os.environ.update(environ)


def _rows(text: str) -> list:
    """The markdown table rows (``| ... |``) of a script's output, the separator rows left out."""
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("|---")]


def test_bench_rewrite(capsys):
    from benchmarks import bench_rewrite
    res = bench_rewrite.main(["--pool", "40", "--shards", "2", "--per-shard", "10", "--repeats", "1"])
    assert res["kept"] > 0 and res["ratio"] > 0
    assert len(_rows(capsys.readouterr().out)) == 2  # header + the one result row


def test_bench_gpu_on_cpu(capsys):
    """Without CUDA: the decode bound (one spawned worker) and the scoring step on CPU."""
    from benchmarks import bench_gpu
    rows = bench_gpu.main(["--device", "cpu", "--sizes", "32", "--batches", "1", "--batch-size", "4",
                           "--decode-images", "16", "--workers", "1"])
    assert [r["px"] for r in rows] == [32] and rows[0]["decode_bound"] > 0 and rows[0]["score_rate"] > 0
    assert rows[0]["gpu_util"] is None


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_bench_gpu_on_cuda():
    from benchmarks import bench_gpu
    rows = bench_gpu.main(["--device", "cuda", "--sizes", "64", "--batches", "2", "--batch-size", "32",
                           "--decode-images", "64", "--workers", "1"])
    assert rows[0]["score_rate"] > 0


def test_bench_curate(tmp_path, capsys):
    """The plain multiprocessing loop in its child process (the --child protocol), then the curate
    arm's own function in this process on the same pool (a second child would cost its imports)."""
    from benchmarks import bench_curate
    res = bench_curate.main(["--models", "test", "--pool", "40", "--shards", "2", "--repeats", "1",
                             "--arms", "plain", "--batch-size", "8", "--train-steps", "1",
                             "--workdir", str(tmp_path / "work"), "--json", str(tmp_path / "r.json")])
    assert set(res["ex_s"]) == {"plain"} and res["runs"]["plain"][0]["n"] == 40
    assert json.loads((tmp_path / "r.json").read_text())["cpu_per_wall"]["plain"] > 0
    assert len(_rows(capsys.readouterr().out)) == 2
    overrides = ["score.batch_size=8", "score.device=cpu", "score.image_size=32", "write.report=false"]
    assert bench_curate.curate(res["paths"], overrides, [], str(tmp_path / "out")) == 40


def test_bench_scaling(capsys):
    """One size, in its own measured process (the real ``learnsieve curate`` command)."""
    from benchmarks import bench_scaling
    rows = bench_scaling.main(["--sizes", "40", "--per-shard", "20", "--distinct", "40", "--model", "ls_clip_test",
                               "--train-steps", "1", "--fraction", "0.5"])
    assert len(rows) == 1 and rows[0]["examples"] == 40 and rows[0]["kept"] > 0 and rows[0]["peak_rss_mb"] > 0
    assert len(_rows(capsys.readouterr().out)) == 2


def test_bench_remote(tmp_path):
    """The gs:// arm against the loopback GCS emulator, and the stream-read comparison."""
    import importlib.util
    for name in ("gcp_storage_emulator", "gcsfs"):  # not imported here: bench_remote sets gcsfs' env first
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (the test extra)")
    from benchmarks import bench_remote
    res = bench_remote.main(["--pool", "40", "--shards", "2", "--repeats", "1", "--arms", "gs", "--models", "test",
                             "--train-steps", "1", "--json", str(tmp_path / "r.json")])
    assert res["runs"]["gs"][0]["read"] == 40 and res["max_media_gets_per_shard"] >= 1
    assert res["read_only"]["gs_media_gets_per_shard"] >= 1 and "gs_over_local" not in res


def test_bench_eval(bench_data, tmp_path, capsys):
    """cifar (image-text, zero-shot top-1): train both judges, curate by two policies (the second
    from the first's score files), ``learnsieve eval``'s arms, accounting; then --summarise."""
    from benchmarks import bench_eval
    out = tmp_path / "eval.json"
    argv = ["--dataset", "cifar", "--data", bench_data, "--seeds", "0", "--n-ref", "40", "--n-pool", "60",
            "--n-test", "20", "--shards", "2", *TEST_MODELS, "--proxy-model", "ls_clip_test", "--learner",
            "ls_clip_test", "--proxy-steps", "2", "--learner-steps", "4", "--eval-every", "2", "--batch-size", "16",
            "--policies", "learnability", "ref_sim", "--threads", "1", "--no-plots", "--json", str(out),
            "--work", str(tmp_path / "work")]
    assert bench_eval.main(argv) == 0
    results = json.loads(out.read_text())
    assert set(results[0]["arms"]) == {"learnability", "ref_sim", "random", "pool"}
    assert results[0]["compute"] and results[0]["judges"]["auroc"]
    capsys.readouterr()
    assert bench_eval.main(["--dataset", "cifar", "--summarise", str(out)]) == 0
    assert any(r.startswith("| learnability | 30 |") for r in _rows(capsys.readouterr().out))


def test_bench_rounds(bench_data, tmp_path, capsys):
    """cifar: the fixed curations, random, and the learner as its own proxy over two rounds (the
    reference's scores reused); then --summarise with the plots."""
    from benchmarks import bench_rounds
    jsonl = tmp_path / "rounds.jsonl"
    argv = ["--dataset", "cifar", "--data", bench_data, "--n-ref", "40", "--n-pool", "60", "--n-test", "20",
            "--shards", "2", "--learner", "ls_clip_test", *TEST_MODELS, "--proxy-model", "ls_clip_test",
            "--proxy-steps", "2", "--learner-steps", "4", "--rounds", "2", "--eval-every", "2", "--batch-size", "16",
            "--arms", "random,ref_sim,learnability_learner", "--large-learners", "none", "--json", str(jsonl)]
    assert bench_rounds.main(argv) == 0
    (res,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    online = res["arms"]["learnability_learner"]
    assert [r["step"] for r in online["rounds"]] == [0, 2]
    assert all(r["proxy_only_shards"] == r["input_shards"] == 2 for r in online["rounds"])
    assert res["compute"]["learner_forward_flops_per_example"] > 0
    capsys.readouterr()
    assert bench_rounds.main(["--summarise", str(jsonl), "--plots", str(tmp_path / "plots"),
                              "--large-learners", "none"]) == 0
    assert any(r.startswith("| learnability_learner |") for r in _rows(capsys.readouterr().out))
    (png,) = (tmp_path / "plots").glob("rounds_cifar*.png")  # named by dataset and reference
    assert png.stat().st_size > 0


def test_bench_proxy(bench_data, tmp_path, capsys):
    """flickr (5 captions a photo, a held-out split): a warm-up candidate scored against the
    reference as the pipeline scores; then --summarise."""
    from benchmarks import bench_proxy
    jsonl = tmp_path / "proxy.jsonl"
    argv = ["--dataset", "flickr", "--data", bench_data, "--n-ref", "10", "--n-pool", "10", "--n-test", "5",
            *TEST_MODELS, "--candidates", "tiny", "--steps", "2", "--json", str(jsonl)]
    assert bench_proxy.main(argv) == 0
    (res,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert res["candidate"] == "tiny" and res["steps"] == 2 and res["curve"] == []  # no 50-step point yet
    assert 0.0 <= res["all_auroc_learnability"] <= 1.0 and res["pool_bank_loss"] > 0
    capsys.readouterr()
    assert bench_proxy.main(["--summarise", str(jsonl)]) == 0
    assert any(r.startswith("| tiny | ls_clip_tiny |") for r in _rows(capsys.readouterr().out))


def test_judge_flickr(bench_data, tmp_path):
    from benchmarks import judge_flickr
    jsonl = tmp_path / "judge.jsonl"
    rows = judge_flickr.main(["--configs", "baseline", "--data", os.path.join(bench_data, "flickr8k-1k"),
                              "--n-ref-images", "10", "--n-pool-images", "10", "--ref-steps", "2",
                              "--proxy-steps", "2", "--json", str(jsonl)])
    assert [r["config"] for r in rows] == ["baseline"] and rows[0]["ref_steps"] == 2
    assert 0.0 <= rows[0]["auroc_learnability"] <= 1.0
    assert json.loads(jsonl.read_text())["config"] == "baseline"


def test_bench_online(bench_data, tmp_path, capsys):
    """cifar: both judges, the one curate with select.mode=all (cached reference scores), then
    an offline arm, CLIP score, and the online arms (learner and small online model as proxies,
    easy reference, the ref_sim pre-filter); then --summarise with the plots."""
    from benchmarks import bench_online
    jsonl = tmp_path / "online.jsonl"
    arms = "random,clip30,offline30,learner_r2,small_r2,easy_r5,pre50_learner_r2"
    argv = ["--dataset", "cifar", "--data", bench_data, "--n-ref", "40", "--n-pool", "80", "--n-test", "20",
            "--shards", "2", "--learner", "ls_clip_test", "--small", "ls_clip_test", *TEST_MODELS,
            "--proxy-model", "ls_clip_test", "--proxy-steps", "2", "--steps", "4", "--batch-size", "8",
            "--eval-every", "2", "--bank", "16", "--arms", arms, "--json", str(jsonl), "--work", str(tmp_path / "w")]
    assert bench_online.main(argv) == 0
    (res,) = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert set(res["arms"]) == set(arms.split(","))
    online = res["arms"]["learner_r2"]
    assert online["ratio"] == 2 and online["counters"]["scored"] == 2 * online["counters"]["selected"] > 0
    assert res["arms"]["clip30"]["examples"] < res["pool"] and res["budget_noise"]["ref_sim"]
    capsys.readouterr()
    assert bench_online.main(["--summarise", str(jsonl), "--plots", str(tmp_path / "img")]) == 0
    out = capsys.readouterr().out
    assert any(r.startswith("| learner_r2 ") for r in _rows(out)) and "wrote " in out


def test_shared_archive_finds_an_extracted_folder(bench_data, tmp_path):
    from benchmarks.common import shared_archive
    assert shared_archive("cifar10-jpg.tar.gz", bench_data) == os.path.join(bench_data, "cifar10-jpg")
    with pytest.raises(SystemExit, match="not found"):
        shared_archive("cifar10-jpg.tar.gz", str(tmp_path))


def test_every_script_has_a_smoke_test():
    """A new script under benchmarks/ gets a test here (libraries of the scripts excepted)."""
    import benchmarks
    here = os.path.dirname(benchmarks.__file__)
    libraries = {"__init__", "common", "rounds_report", "rounds_spec", "online_report"}
    # (fake data through --data, tiny judges and steps)
    scripts = {f[:-3] for f in os.listdir(here) if f.endswith(".py")} - libraries
    tested = {name[len("test_"):] for name in globals() if name.startswith("test_")}
    missing = {s for s in scripts if not any(t == s or t.startswith(s + "_") for t in tested)}
    assert not missing, f"benchmarks without a smoke test in {__file__}: {sorted(missing)}"
