"""ClassAct on CIFAR-10 with 40% flipped labels: does learnability curation train a classifier
faster than a random subset of the same size, or the whole noisy pool?

Per seed:

1. ``pipeline.cifar.build_cifar(task="classification")``: a clean reference split, a pool with
   ``--noise`` flipped labels (plus 1% corrupt JPEGs), a clean labelled test split;
2. reference classifier trained on the clean split, proxy warmed up on a sample of the pool
   (``learnsieve train-reference`` / ``train-proxy`` code path, ``configs/classact.yaml``);
3. ``learnsieve curate`` keeps the top ``--fraction`` by learnability (Beam, in-process runner);
4. the same learner classifier, same steps and seed, trained on: curated, a random subset of the
   pool of the curated size (``pipeline.evaluate.random_subset``), the whole pool; top-1 on the
   test split every ``--eval-every`` steps.

Printed per seed and as a mean: AUROC of learnability (and ref_sim, hard) for clean vs flipped
pool examples, the flipped share of the kept set, each arm's final top-1 and the steps it needs
to reach the random arm's final top-1.

    python benchmarks/bench_classact.py --seeds 0 1 --json runs/bench_classact.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_ARCHIVE = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10-jpg.tar.gz")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archive", default=DEFAULT_ARCHIVE, help="cifar10-jpg.tar.gz")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--n-ref", type=int, default=4000, help="clean reference split")
    ap.add_argument("--n-pool", type=int, default=6000, help="noisy pool")
    ap.add_argument("--n-test", type=int, default=1000, help="clean labelled test split")
    ap.add_argument("--noise", type=float, default=0.4, help="flipped-label share of the pool")
    ap.add_argument("--reference-model", default="ls_cls_small")
    ap.add_argument("--proxy-model", default="ls_cls_tiny")
    ap.add_argument("--learner", default="ls_cls_tiny")
    ap.add_argument("--reference-steps", type=int, default=400)
    ap.add_argument("--proxy-steps", type=int, default=100)
    ap.add_argument("--proxy-sample", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=300, help="learner steps per arm")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--fraction", type=float, default=0.5, help="kept share (learnability top)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--workdir", default=None, help="keep data and outputs here (default: temp, removed)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    return ap.parse_args(argv)


def quality(manifest: str, truth: dict, scores=("learnability", "ref_sim", "hard", "easy")) -> dict:
    """AUROC (clean = positive) of each score over scored pool examples, and the flipped share of
    the scored pool and of the kept set."""
    import pyarrow.parquet as pq
    from models.metrics import auroc
    rows = [r for r in pq.read_table(manifest).to_pylist() if r["decision"] in ("kept", "filtered")]
    rows = [r for r in rows if truth.get(r["key"]) in ("clean", "flipped")]
    clean = [truth[r["key"]] == "clean" for r in rows]
    kept = [r for r in rows if r["decision"] == "kept"]
    out = {f"auroc_{s}": auroc([r[s] for r in rows], clean) for s in scores}
    out["flipped_share_pool"] = 1 - sum(clean) / len(rows)
    out["flipped_share_kept"] = sum(truth[r["key"]] == "flipped" for r in kept) / max(1, len(kept))
    return out


def run_seed(seed: int, args, root: str, log=print) -> dict:
    from pipeline.cifar import build_cifar
    from pipeline.cli import main as learnsieve
    from pipeline.config import load_config
    from pipeline.evaluate import random_subset, speedup
    from pipeline.evaluate_cls import classification_arm
    from pipeline.training import train_from_shards

    t0 = time.perf_counter()
    data = build_cifar(args.archive, os.path.join(root, "data"), task="classification", seed=seed,
                       n_ref=args.n_ref, n_pool=args.n_pool, n_test=args.n_test, noise=args.noise,
                       shards=4, ref_shards=2, test_shards=1)
    log(f"[seed {seed}] data: clean {data['clean_count']}, pool {data['pool_count']}, "
        f"test {data['test_count']} ({time.perf_counter() - t0:.0f}s)")
    sets = ["task=classification", f"train.reference_model={args.reference_model}",
            f"train.proxy_model={args.proxy_model}", f"train.seed={seed}", f"train.torch_threads={args.threads}",
            f"score.torch_threads={args.threads}", f"select.fraction={args.fraction}",
            "select.score=learnability", "select.mode=top_fraction"]
    cfg = load_config(os.path.join(ROOT, "configs", "classact.yaml"), sets)
    ref, proxy = os.path.join(root, "reference"), os.path.join(root, "proxy")
    timings = {}
    t = time.perf_counter()
    train_from_shards(data["clean_pattern"], ref, args.reference_model, args.reference_steps, cfg.train,
                      cfg.score.image_size, role="reference", log=lambda m: None)
    timings["reference_s"] = time.perf_counter() - t
    t = time.perf_counter()
    train_from_shards(data["pool_pattern"], proxy, args.proxy_model, args.proxy_steps, cfg.train,
                      cfg.score.image_size, sample=args.proxy_sample, role="proxy", log=lambda m: None)
    timings["proxy_s"] = time.perf_counter() - t
    t = time.perf_counter()
    curated = os.path.join(root, "curated")
    argv = ["curate", "--config", os.path.join(ROOT, "configs", "classact.yaml"), "--input", data["pool_pattern"],
            "--output", curated, "--reference", ref, "--proxy", proxy, "--overwrite"]
    for s in sets:
        argv += ["--set", s]
    if learnsieve(argv) != 0:
        raise RuntimeError("learnsieve curate failed")
    timings["curate_s"] = time.perf_counter() - t
    stats = json.load(open(os.path.join(curated, "stats.json")))
    q = quality(os.path.join(curated, "manifest.parquet"), data["truth"])
    log(f"[seed {seed}] curated: kept {stats['kept']} of {stats['read']} (rejected {stats['rejected']}); "
        f"AUROC learnability {q['auroc_learnability']:.3f}, ref_sim {q['auroc_ref_sim']:.3f}, "
        f"hard {q['auroc_hard']:.3f}; flipped share pool {q['flipped_share_pool']:.1%} -> kept "
        f"{q['flipped_share_kept']:.1%}")
    n = stats["output_shards"]
    arms = {"curated": os.path.join(curated, "{00000..%05d}.tar" % (n - 1)) if n > 1
            else os.path.join(curated, "00000.tar"),
            "random": random_subset(data["pool_pattern"], stats["kept"], os.path.join(root, "random"), seed=seed),
            "pool": data["pool_pattern"]}
    learn_cfg = dataclasses.replace(cfg.train, seed=seed)
    results = {"arms": {}}
    for name, pattern in arms.items():
        arm = classification_arm(pattern, data["test_pattern"], args.learner, args.steps, args.eval_every,
                                 learn_cfg, cfg.score.image_size)
        arm["final"] = arm["curve"][-1]
        results["arms"][name] = arm
        log(f"[seed {seed}] {name}: {arm['examples']} examples, final top-1 {arm['final']['top1']:.3f}, "
            f"{arm['seconds_per_step']:.3f}s/step")
    sp = speedup(results, "top1", "random")
    for name, s in sp["arms"].items():
        log(f"[seed {seed}] {name}: steps to random's final top-1 ({sp['target']:.3f}): "
            f"{s['steps_to_target']} (speed-up {s['speedup_vs_reference']})")
    return {"seed": seed, "stats": {k: stats[k] for k in ("read", "kept", "filtered", "rejected")},
            "quality": q, "timings": {k: round(v, 1) for k, v in timings.items()},
            "arms": {k: {"examples": a["examples"], "curve": a["curve"], "final_top1": a["final"]["top1"],
                         "seconds_per_step": round(a["seconds_per_step"], 4)}
                     for k, a in results["arms"].items()},
            "speedup": sp, "seconds": round(time.perf_counter() - t0, 1)}


def summary(runs: list) -> dict:
    mean = lambda xs: statistics.mean(xs) if xs else None  # noqa: E731
    out = {"auroc_learnability": mean([r["quality"]["auroc_learnability"] for r in runs]),
           "flipped_share_kept": mean([r["quality"]["flipped_share_kept"] for r in runs]), "arms": {}}
    for name in runs[0]["arms"]:
        steps = [r["speedup"]["arms"][name]["steps_to_target"] for r in runs]
        out["arms"][name] = {"final_top1": mean([r["arms"][name]["final_top1"] for r in runs]),
                             "steps_to_random_final": steps}
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, ROOT)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    torch.set_num_threads(args.threads)
    if not os.path.exists(args.archive):
        print(f"no CIFAR-10 archive at {args.archive}", file=sys.stderr)
        return 2
    base = args.workdir or tempfile.mkdtemp(prefix="bench_classact_")
    try:
        runs = [run_seed(seed, args, os.path.join(base, f"seed{seed}")) for seed in args.seeds]
    finally:
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
    s = summary(runs)
    print(f"mean over seeds {args.seeds}: AUROC learnability (clean vs flipped) {s['auroc_learnability']:.3f}, "
          f"flipped share kept {s['flipped_share_kept']:.1%}")
    for name, a in s["arms"].items():
        print(f"  {name}: final top-1 {a['final_top1']:.3f}, steps to random's final {a['steps_to_random_final']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "runs": runs, "summary": s}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
