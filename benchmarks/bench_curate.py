"""Throughput of ``curate`` on every core against a plain loop that also uses every core.

Setup (untimed): a synthetic noisy pool (``learnsieve.datasets.synthetic``) and reference / proxy
checkpoints trained for a handful of steps (score quality does not matter for speed): the default
judges (``--models small``: ``ls_clip_small`` / ``ls_clip_tiny`` at 64 px), the strong judge
(``--models lit``: ``ls_clip_lit`` for both at 160 px, where the models dominate) or the tests'
tiny one (``--models test``: ``ls_clip_test`` at 32 px, for a quick check of the script).

Each arm runs in its own child process (so its wall time, CPU time and peak RSS are its own),
alternately, ``--repeats`` times; medians are reported:

* ``plain``: a ``multiprocessing`` pool of one process per core over the shards, each with one
  torch thread and the models loaded once, running ``learnsieve.core.scoring.score_shard``
  (read, decode, score; nothing written): the work with no Beam at all.
* ``curate``: ``learnsieve curate`` as a user runs it, no runner flags (in-process runner, one
  worker thread per core sharing one copy of the models, one torch thread each): the same work plus score files,
  selection, the ranged re-read of kept examples, shards, manifest, stats.
* ``curate_1``: the same forced to one worker (``--direct_num_workers 1``,
  ``score.torch_threads=1``, ``score.decode_threads=1``).
* ``curate_mt`` / ``curate_mp``: DirectRunner multi_threading / multi_processing with one
  worker per core and one torch thread each; ``curate_1t``: one worker with torch's intra-op
  threads and decode threads on every core (``--arms`` to include them).

    python benchmarks/bench_curate.py --pool 16000 --shards 16 --repeats 3
    python benchmarks/bench_curate.py --models lit --pool 2000 --shards 8 --repeats 2
    python benchmarks/bench_curate.py --rss 8 --pool 2000 --shards 4   # peak RSS at 1x and 8x input
    python benchmarks/bench_curate.py --models test --pool 40 --shards 2 --repeats 1 --arms plain,curate \
        --batch-size 8 --train-steps 1   # a quick check
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = ("plain", "curate", "curate_1", "curate_mt", "curate_mp", "curate_1t")
MODELS = {"small": (("ls_clip_small", "ls_clip_tiny"), 64), "lit": (("ls_clip_lit", "ls_clip_lit"), 160),
          "test": (("ls_clip_test", "ls_clip_test"), 32)}  # --models: (reference, proxy), decode px


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=4000, help="examples in the noisy pool")
    ap.add_argument("--shards", type=int, default=8, help="input shards of the pool")
    ap.add_argument("--models", choices=sorted(MODELS), default="small")
    ap.add_argument("--batch-size", type=int, default=64, help="scoring batch size (every arm)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each arm")
    ap.add_argument("--arms", default="plain,curate,curate_1", help=f"comma-separated, of {','.join(ARMS)}")
    ap.add_argument("--rss", type=int, default=0, metavar="K",
                    help="instead: peak RSS of the default curate at 1x and Kx the pool")
    ap.add_argument("--train-steps", type=int, default=5, help="training steps per checkpoint")
    ap.add_argument("--workdir", default=None, help="keep data and outputs here (default: a temp dir)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one arm
    args = ap.parse_args(argv)
    unknown = [a for a in args.arms.split(",") if a not in ARMS]
    if unknown:
        ap.error(f"unknown arms {unknown}; known: {', '.join(ARMS)}")
    return args


def _cfg(paths: dict, overrides):
    from learnsieve.config import load_config
    return dataclasses.replace(load_config(None, overrides), **{k: paths[k] for k in ("input", "reference", "proxy")})


_MODELS = None


def _init_worker(reference: str, proxy: str) -> None:
    global _MODELS
    import torch

    from learnsieve.models.checkpoint import load_checkpoint
    torch.set_num_threads(1)
    _MODELS = (load_checkpoint(reference)[0], load_checkpoint(proxy)[0])


def _plain_shard(job) -> int:
    import functools

    from learnsieve.core.decode import decode_sample
    from learnsieve.core.scoring import score_shard
    shard_index, url, s = job
    decode = functools.partial(decode_sample, image_size=s["image_size"], max_pixels=s["max_pixels"],
                               max_caption_bytes=s["max_caption_bytes"])
    return len(score_shard(_MODELS[0], _MODELS[1], url, shard_index, decode, s["batch_size"], s["max_member_bytes"]))


def plain(paths: dict, overrides) -> int:
    import multiprocessing as mp

    from learnsieve.core.paths import expand_pattern
    cfg = _cfg(paths, overrides)
    s = dataclasses.asdict(cfg.score)
    jobs = [(i, u, s) for i, u in enumerate(expand_pattern(cfg.input))]
    with mp.get_context("fork").Pool(os.cpu_count(), _init_worker, (cfg.reference, cfg.proxy)) as pool:
        return sum(pool.imap_unordered(_plain_shard, jobs))


def curate(paths: dict, overrides, runner_args, output) -> int:
    from learnsieve.pipeline.run import run
    cfg = dataclasses.replace(_cfg(paths, overrides), output=output)
    stats = run(cfg, runner_args, overwrite=True, progress_every=0)
    if stats["rescored_shards"] != stats["input_shards"]:
        raise RuntimeError("curate reused score files: not a fresh run")
    return stats["read"]


def child(spec: dict) -> None:
    """One arm in this process; prints {"n", "wall", "cpu", "maxrss_mb"} as JSON."""
    import logging
    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    import torch  # noqa: F401  (its import is not part of the arm, nor Beam's for the curate arms)
    if spec["arm"] != "plain":
        import apache_beam  # noqa: F401
    overrides = [f"score.batch_size={spec['batch_size']}", "score.device=cpu",
                 f"score.image_size={spec['image_size']}"]
    cores = str(os.cpu_count())
    arm = spec["arm"]
    t0, c0 = time.perf_counter(), _cpu()
    if arm == "plain":
        n = plain(spec["paths"], overrides)
    else:
        runner_args = []
        if arm == "curate_1":
            overrides += ["score.torch_threads=1", "score.decode_threads=1"]
            runner_args = ["--direct_num_workers", "1"]
        elif arm == "curate_1t":  # one worker, torch intra-op threads on every core, decode threads ahead
            overrides += [f"score.torch_threads={cores}", f"score.decode_threads={cores}"]
            runner_args = ["--direct_num_workers", "1"]
        elif arm in ("curate_mt", "curate_mp"):
            overrides += ["score.torch_threads=1", "score.decode_threads=1"]
            mode = "multi_threading" if arm == "curate_mt" else "multi_processing"
            runner_args = ["--runner", "DirectRunner", "--direct_running_mode", mode, "--direct_num_workers", cores]
        n = curate(spec["paths"], overrides, runner_args, spec["output"])
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
              resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"n": n, "wall": wall, "cpu": cpu, "maxrss_mb": rss / 1024}))


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def run_arm(spec: dict) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"arm {spec['arm']} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def setup(root: str, args, pool: int) -> dict:
    sys.path.append(os.path.dirname(HERE))  # for benchmarks.*; after the installed learnsieve
    from benchmarks.common import make_pool_and_models
    names = MODELS[args.models][0]
    t0 = time.perf_counter()
    paths = make_pool_and_models(root, pool, args.shards, train_steps=args.train_steps,
                                 reference_model=names[0], proxy_model=names[1])
    print(f"setup: {pool} examples in {args.shards} shards, {names} trained, {time.perf_counter() - t0:.0f}s",
          file=sys.stderr)
    return paths


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return {}
    image_size = MODELS[args.models][1]
    base = {"batch_size": args.batch_size, "image_size": image_size}
    result = {"date": datetime.date.today().isoformat(), "models": args.models, "pool": args.pool,
              "shards": args.shards, "batch_size": args.batch_size, "repeats": args.repeats,
              "nproc": os.cpu_count(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
              "loadavg_before": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory(prefix="bench_curate_") as tmp:
        root = args.workdir or tmp
        if args.rss:
            rows = {}
            for k in (1, args.rss):
                paths = setup(os.path.join(root, f"x{k}"), args, args.pool * k)
                r = run_arm({**base, "arm": "curate", "paths": paths, "output": os.path.join(root, f"x{k}", "out")})
                rows[f"{k}x"] = r
                print(f"{k}x: {r['n']} examples, peak RSS {r['maxrss_mb']:.0f} MB, {r['wall']:.1f}s", file=sys.stderr)
            result["rss"] = rows
            result["rss_ratio"] = rows[f"{args.rss}x"]["maxrss_mb"] / rows["1x"]["maxrss_mb"]
            print(f"peak RSS {args.rss}x / 1x = {result['rss_ratio']:.2f}")
        else:
            paths = setup(root, args, args.pool)
            result["paths"] = paths  # the pool and checkpoints (kept with --workdir)
            arms = args.arms.split(",")
            runs = {a: [] for a in arms}
            for rep in range(args.repeats):
                for arm in arms:
                    r = run_arm({**base, "arm": arm, "paths": paths,
                                 "output": os.path.join(root, "out", f"{arm}{rep}")})
                    runs[arm].append(r)
                    print(f"run {rep + 1}/{args.repeats} {arm:10s} {r['n']} examples {r['wall']:6.1f}s "
                          f"{r['n'] / r['wall']:6.0f} ex/s  cpu/wall {r['cpu'] / r['wall']:.2f}  "
                          f"rss {r['maxrss_mb']:.0f} MB", file=sys.stderr)
            if len({r["n"] for rs in runs.values() for r in rs}) != 1:
                raise RuntimeError("arms disagree on the number of examples read")
            med = {a: statistics.median(r["wall"] for r in rs) for a, rs in runs.items()}
            n = runs[arms[0]][0]["n"]
            result["runs"] = runs
            result["ex_s"] = {a: n / w for a, w in med.items()}
            result["cpu_per_wall"] = {a: statistics.median(r["cpu"] / r["wall"] for r in rs) for a, rs in runs.items()}
            if "plain" in med and "curate" in med:
                result["curate_over_plain"] = med["plain"] / med["curate"]
            if "curate_1" in med and "curate" in med:
                result["curate_over_one_worker"] = med["curate_1"] / med["curate"]
            print(markdown(result))
    from benchmarks.common import finish_result
    return finish_result(result, args.json)


def markdown(r: dict) -> str:
    arms = list(r["ex_s"])
    head = ["models", "examples", "shards"] + [f"{a} ex/s (cpu/wall)" for a in arms]
    head += ["curate / plain", "curate / 1 worker"]
    vals = [r["models"], r["pool"], r["shards"]] + [f"{r['ex_s'][a]:.0f} ({r['cpu_per_wall'][a]:.2f})" for a in arms]
    vals += [f"**{r['curate_over_plain']:.2f}**" if "curate_over_plain" in r else "-",
             f"**{r['curate_over_one_worker']:.2f}**" if "curate_over_one_worker" in r else "-"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      "| " + " | ".join(str(v) for v in vals) + " |"])


if __name__ == "__main__":
    main()
