"""End-to-end throughput of ``curate`` (Beam) against a plain Python loop on the same shards.

Setup (untimed): a synthetic noisy pool (``pipeline.synthetic.generate``) in a temp dir, and
reference/proxy checkpoints with the default model configs (``ls_clip_small`` /
``ls_clip_tiny``) trained for a handful of steps: score quality does not matter for speed.

Timed, alternately (plain, pipeline, plain, pipeline, ...) so that both arms see the same
machine load, and reported as the median of each arm:

* plain:    load both checkpoints, stream samples out of every shard (``iter_shard``), decode
            (``decode_sample``), score batches of ``--batch-size`` with both models
            (``score_decoded``, padded to one shape as ``ScoreBatchFn`` does).
            Nothing is written.
* pipeline: ``pipeline.run.run(cfg, overwrite=True)``: the same work plus selection, a second
            read of the kept examples, and writing shards, manifest.parquet, rejected/, stats.

examples/s = examples in the pool (including rejected ones) / wall seconds. The figure of merit
is the ratio pipeline/plain (target >= 0.8); absolute numbers depend on the machine's load.

    python benchmarks/bench_curate.py --pool 4000 --shards 8 --repeats 3 --json bench.json
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=4000, help="examples in the noisy pool")
    ap.add_argument("--shards", type=int, default=8, help="input shards of the pool")
    ap.add_argument("--batch-size", type=int, default=64, help="scoring batch size (both arms)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each arm")
    ap.add_argument("--runner-args", default="",
                    help="Beam pipeline args, e.g. '--direct_num_workers 2 "
                         "--direct_running_mode multi_threading' (default: in-process FnApiRunner)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads in both arms (default 1: on a shared 2-core "
                         "machine 2 OpenMP threads collapse under load, see docs/BENCHMARKS.md)")
    ap.add_argument("--train-steps", type=int, default=5, help="training steps per checkpoint")
    ap.add_argument("--workdir", default=None,
                    help="keep data and outputs here (default: a temp dir, removed)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    return ap.parse_args(argv)


def setup(root: str, args) -> dict:
    """Synthetic pool + quickly trained checkpoints (both on 600 clean pairs: enough for the
    models' full 512-entry negative bank, so scoring costs what it would in a real run)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks.common import make_pool_and_models
    t0 = time.perf_counter()
    paths = make_pool_and_models(root, args.pool, args.shards, train_steps=args.train_steps)
    print(f"setup: {args.pool} examples in {args.shards} shards, checkpoints trained, "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return paths


def plain_loop(cfg) -> int:
    """The same read/decode/score work as the pipeline, as one Python loop; returns #read."""
    from learnsieve.models.checkpoint import load_checkpoint

    from learnsieve.core.decode import decode_sample
    from learnsieve.core.paths import expand_pattern
    from learnsieve.core.records import DeadLetter
    from learnsieve.core.scoring import batched, score_decoded
    from learnsieve.core.tar import iter_shard

    reference, _ = load_checkpoint(cfg.reference)
    proxy, _ = load_checkpoint(cfg.proxy)
    s = cfg.score
    read = 0

    def decoded():
        nonlocal read
        for shard_index, url in enumerate(expand_pattern(cfg.input)):
            for item in iter_shard(url, shard_index, s.max_member_bytes):
                read += 1
                if isinstance(item, DeadLetter):
                    continue
                d = decode_sample(item, s.image_size, s.max_pixels, s.max_caption_bytes)
                if not isinstance(d, DeadLetter):
                    yield d

    for batch in batched(decoded(), s.batch_size):
        score_decoded(reference, proxy, batch, pad_to=s.batch_size)  # as ScoreBatchFn does
    return read


def pipeline_run(cfg, runner_args, output) -> int:
    """One curate run into a fresh ``output``, so no earlier run's outputs or score cache
    (``_scores/``) can be reused and nothing has to be deleted inside the timed region."""
    from learnsieve.pipeline.run import run
    stats = run(dataclasses.replace(cfg, output=output), runner_args, overwrite=True)
    rescored, shards = stats.get("rescored_shards"), stats.get("input_shards")
    if rescored is not None and rescored != shards:
        raise RuntimeError(f"pipeline reused cached scores ({rescored} of {shards} rescored)")
    return stats["read"]


def timed(fn, *a):
    t0 = time.perf_counter()
    n = fn(*a)
    return n, time.perf_counter() - t0


def markdown(r: dict) -> str:
    cols = ["examples", "shards", "batch", "plain ex/s", "pipeline ex/s", "ratio", "runner",
            "nproc", "torch threads", "load avg"]
    vals = [r["examples"], r["shards"], r["batch_size"], f"{r['plain_ex_s']:.0f}",
            f"{r['pipeline_ex_s']:.0f}", f"**{r['ratio']:.2f}**", r["runner"], r["nproc"],
            r["torch_threads"], "%.1f-%.1f" % tuple(r["loadavg_1min"])]
    return "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
                      "| " + " | ".join(str(v) for v in vals) + " |"])


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Before torch is imported, so that Beam worker processes (multi_processing) inherit it too.
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    import apache_beam  # imported here: its ~2 s import cost is not part of either arm

    from learnsieve.config import load_config

    runner_args = shlex.split(args.runner_args)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_curate_") as tmp:
        root = args.workdir or tmp
        paths = setup(root, args)
        cfg = dataclasses.replace(load_config(None, [f"score.batch_size={args.batch_size}",
                                                     "score.device=cpu"]), **paths)
        times = {"plain": [], "pipeline": []}
        counts = set()
        for rep in range(args.repeats):
            output = os.path.join(paths["output"], f"run{rep}")
            for arm, fn, extra in (("plain", plain_loop, ()),
                                   ("pipeline", pipeline_run, (runner_args, output))):
                n, dt = timed(fn, cfg, *extra)
                counts.add(n)
                times[arm].append(dt)
                print(f"run {rep + 1}/{args.repeats} {arm:8s} {n} examples {dt:6.2f}s "
                      f"{n / dt:7.0f} ex/s", file=sys.stderr)
    if len(counts) != 1:
        raise RuntimeError(f"arms disagree on the number of examples read: {sorted(counts)}")
    n = counts.pop()
    pairs = [p / q for p, q in zip(times["plain"], times["pipeline"])]
    plain_s, pipe_s = statistics.median(times["plain"]), statistics.median(times["pipeline"])
    result = {
        "date": datetime.date.today().isoformat(), "examples": n, "shards": args.shards,
        "batch_size": args.batch_size, "repeats": args.repeats,
        "plain_s": times["plain"], "pipeline_s": times["pipeline"],
        "plain_ex_s": n / plain_s, "pipeline_ex_s": n / pipe_s, "ratio": plain_s / pipe_s,
        "ratio_per_pair_median": statistics.median(pairs),
        "runner": args.runner_args or "FnApiRunner (default)",
        "nproc": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
        "python": platform.python_version(),
        "torch": torch.__version__, "apache_beam": apache_beam.__version__,
    }
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
