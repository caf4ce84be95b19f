"""Do curated shards train faster? The benchmarks of issue 3, on real data.

For each seed: build the noisy pool from ``../shared/data``: CIFAR-10 with class-name captions
(``cifar``) or Flickr8k photos with human captions (``flickr``), both with 40% mismatched captions,
5% junk alt-text and 1% corrupt images; or CIFAR-10 image-label shards with 40% flipped labels
(``classact``, ``task: classification``). Train the reference on a disjoint clean split, warm up
the proxy on a sample of the pool, curate the pool with each policy (learnability, reference
similarity = CLIP-score, hard = proxy loss; top ``--fraction``), then ``learnsieve eval``: the same
learner, optimizer, seed and step budget on every policy's output, on a random subset of the pool
of the same size, and on the whole pool, evaluated on a clean held-out split (zero-shot top-1 for
cifar, retrieval recall for flickr, top-1 for classact), with each score's AUROC against the
ground truth and the compute accounting. Prints one table (over seeds) and keeps each seed's
eval.json and plots under ``--work``.

    python benchmarks/bench_eval.py --dataset cifar --seeds 0 1
    python benchmarks/bench_eval.py --dataset flickr --seeds 0 1
    python benchmarks/bench_eval.py --dataset classact --seeds 0 1
    python benchmarks/bench_eval.py --dataset cifar --seeds 0 --n-ref 40 --n-pool 60 --n-test 20 --shards 2 \
        --reference-model ls_clip_test --proxy-model ls_clip_test --learner ls_clip_test --reference-steps 2 \
        --proxy-steps 2 --learner-steps 4 --eval-every 2 --batch-size 16 --no-plots   # a quick check
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # for benchmarks.*; after the installed learnsieve

DATASETS = {  # sizes and models chosen to run in minutes on a 2-core CPU
    "cifar": {"archive": "cifar10-jpg.tar.gz", "task": "retrieval", "n_ref": 5000, "n_pool": 10000,
              "n_test": 2000, "image_size": 32, "metric": "zeroshot_top1",
              "reference_model": "ls_clip_small", "proxy_model": "ls_clip_tiny", "learner": "ls_clip_small"},
    "flickr": {"archive": "flickr8k-1k.tar.gz", "task": "retrieval", "n_ref": 600, "n_pool": 300,
               "n_test": 100, "image_size": 64, "metric": "mean_r@5",
               "reference_model": "ls_clip_photo", "proxy_model": "ls_clip_photo_tiny",
               "learner": "ls_clip_photo"},
    "classact": {"archive": "cifar10-jpg.tar.gz", "task": "classification", "n_ref": 4000,
                 "n_pool": 6000, "n_test": 1000, "image_size": 32, "metric": "top1",
                 "reference_model": "ls_cls_small", "proxy_model": "ls_cls_tiny", "learner": "ls_cls_tiny"},
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--data", help="folder of the dataset archives (or their extracted folders; default "
                    "../shared/data)")
    ap.add_argument("--work", help="working folder (default: a temp dir, removed at the end)")
    ap.add_argument("--n-ref", type=int, help="clean reference examples (CIFAR) / images (Flickr)")
    ap.add_argument("--n-pool", type=int, help="pool examples (CIFAR) / images (Flickr, 5 captions each)")
    ap.add_argument("--n-test", type=int, help="held-out test examples / images")
    ap.add_argument("--shards", type=int, help="input shards of the pool (default: the builder's, 8; Flickr 4)")
    ap.add_argument("--reference-model", help="default: per dataset (see DATASETS)")
    ap.add_argument("--proxy-model", help="default: per dataset")
    ap.add_argument("--learner", help="default: per dataset")
    ap.add_argument("--image-size", type=int, help="decode resolution (default: per dataset; the "
                    "pretrained judges (ls_clip_lit) want 160 for Flickr photos)")
    ap.add_argument("--reference-steps", type=int, default=600)
    ap.add_argument("--proxy-steps", type=int, default=100)
    ap.add_argument("--reference-val-fraction", type=float, default=0.0,
                    help="hold out this share of the clean images; keep the reference's step with the "
                         "lowest held-out loss (early stopping)")
    ap.add_argument("--val-every", type=int, default=10, help="steps between held-out evaluations")
    ap.add_argument("--proxy-sample", type=int, default=2000, help="pool examples the proxy warms up on")
    ap.add_argument("--learner-steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--fraction", type=float, default=0.5, help="kept share of the pool")
    ap.add_argument("--policies", nargs="+", default=["learnability", "ref_sim", "hard"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-plots", action="store_true", help="skip each seed's eval_curves.png and "
                    "eval_scores_hist.png (eval.json and eval.html are written)")
    ap.add_argument("--json", help="write all seeds' summaries here")
    ap.add_argument("--markdown", help="append the table to this file")
    ap.add_argument("--summarise", nargs="+", metavar="JSON", help="no runs: print the table of "
                    "earlier --json outputs together (e.g. seeds run as separate processes)")
    args = ap.parse_args(argv)
    for name in ("reference_model", "proxy_model", "learner"):
        if getattr(args, name) is None:
            setattr(args, name, DATASETS[args.dataset][name])
    return args


def build(args, seed: int, out: str) -> dict:
    from benchmarks.common import build_dataset
    spec = DATASETS[args.dataset]
    return build_dataset(args.dataset, out, seed=seed, n_ref=args.n_ref or spec["n_ref"],
                         n_pool=args.n_pool or spec["n_pool"], n_test=args.n_test or spec["n_test"],
                         task=spec["task"], px=max(80, image_size(args)), shards=args.shards, folder=args.data)


def image_size(args) -> int:
    return args.image_size or DATASETS[args.dataset]["image_size"]


def run_seed(args, seed: int, work: str) -> dict:
    from benchmarks.common import reuse_scores
    from learnsieve.config import load_config
    from learnsieve.evaluate.arms import evaluate, random_subset
    from learnsieve.evaluate.report import finish
    from learnsieve.pipeline.run import run
    from learnsieve.train.clip import train_from_shards

    spec, root = DATASETS[args.dataset], os.path.join(work, f"seed{seed}")
    size = image_size(args)
    t0 = time.perf_counter()
    data = build(args, seed, os.path.join(root, "data"))
    cfg = load_config(None, [f"task={spec['task']}", f"train.reference_model={args.reference_model}",
                             f"train.proxy_model={args.proxy_model}", f"train.batch_size={args.batch_size}",
                             f"train.lr={args.lr}", f"train.seed={seed}", f"train.torch_threads={args.threads}",
                             f"train.reference_val_fraction={args.reference_val_fraction}",
                             f"train.val_every={args.val_every}",
                             f"score.image_size={size}", "select.mode=top_fraction",
                             f"select.fraction={args.fraction}", "write.samples_per_shard=1000"])
    tc, log = cfg.train, (lambda m: print(f"  [seed {seed}] {m}", flush=True))
    ref, proxy = os.path.join(root, "reference"), os.path.join(root, "proxy")
    train_from_shards(data["clean_pattern"], ref, tc.reference_model, args.reference_steps, tc, size,
                      role="reference")
    train_from_shards(data["pool_pattern"], proxy, tc.proxy_model, args.proxy_steps, tc, size,
                      sample=args.proxy_sample, role="proxy")
    arms, first, scoring_seconds, kept = {}, None, None, 0
    for policy in args.policies:
        out = os.path.join(root, f"curated_{policy}")
        if first:  # every policy reads the same scores: reuse the first run's per-shard score files
            reuse_scores(first, out)
        t = time.perf_counter()
        stats = run(dataclasses.replace(cfg, input=data["pool_pattern"], output=out, reference=ref,
                                        proxy=proxy, select=dataclasses.replace(cfg.select, score=policy)),
                    overwrite=True)
        if first is None:
            first, scoring_seconds, kept = out, time.perf_counter() - t, stats["kept"]
        log(f"curated by {policy}: kept {stats['kept']} of {stats['read']} ({time.perf_counter() - t:.0f}s)")
        arms[policy] = os.path.join(out, "*.tar")
    arms["random"] = random_subset(data["pool_pattern"], kept, os.path.join(root, "random"), seed=seed)
    arms["pool"] = data["pool_pattern"]
    out = os.path.join(root, "eval.json")
    classes = data.get("classes") if spec["task"] == "retrieval" else None
    res = evaluate(arms, data["test_pattern"], out, args.learner, args.learner_steps, args.eval_every, tc,
                   size, task=spec["task"], metric=spec["metric"], classes=classes)
    res = finish(res, out, size, tc.batch_size, manifest=os.path.join(first, "manifest.parquet"),
           truth=os.path.join(root, "data", "truth.json"), reference=ref, proxy=proxy,
           scored=data["pool_count"], scoring_seconds=scoring_seconds, curated_arm=args.policies[0],
           plots=not args.no_plots)
    from learnsieve.evaluate.report import table
    for line in table(res):
        log(line)
    res["wall_seconds"] = time.perf_counter() - t0
    from learnsieve.models.checkpoint import read_checkpoint_meta
    meta = read_checkpoint_meta(ref)
    res["reference_training"] = {k: meta.get(k) for k in ("steps", "pairs", "best_step", "best_val_loss",
                                                          "val_pairs", "final_loss", "seconds")}
    return res


def summarise(args, results: list) -> list:
    metric = results[0]["metric"]
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    lines = [f"### {args.dataset}: {len(results)} seeds ({', '.join(map(str, args.seeds))}), learner "
             f"{results[0]['learner']}, {results[0]['steps']} steps of {results[0]['batch_size']}", "",
             f"| arm | examples | final {metric} (per seed) | steps to random's best (per seed) | "
             "speed-up vs random (mean) |", "|---|---|---|---|---|"]
    for arm in results[0]["arms"]:
        finals = [r["arms"][arm]["final"][metric] for r in results]
        steps = [r["speedup"]["arms"][arm]["steps_to_target"] for r in results]
        ups = [r["speedup"]["arms"][arm]["speedup_vs_reference"] for r in results]
        up = mean([u for u in ups if u]) if all(ups) else None
        lines.append(f"| {arm} | {results[0]['arms'][arm]['examples']} | {mean(finals):.3f} "
                     f"({', '.join(f'{f:.3f}' for f in finals)}) | "
                     f"{', '.join(str(s) if s else 'not reached' for s in steps)} | "
                     f"{f'{up:.2f}x' if up else 'not reached in every seed'} |")
    scores = list(results[0]["judges"]["auroc"])
    lines += ["", "| score | AUROC true vs noisy (mean; per seed) |", "|---|---|"]
    for s in scores:
        vals = [r["judges"]["auroc"][s] for r in results]
        lines.append(f"| {s} | {mean(vals):.3f} ({', '.join(f'{v:.3f}' for v in vals)}) |")
    kept = [r["judges"]["kept_noise"] for r in results]
    pool = [r["judges"]["pool_noise"] for r in results]
    lines += ["", f"Noisy share ({args.policies[0]}): pool {mean(pool):.1%}, kept {mean(kept):.1%}."]
    kept_steps = [r.get("reference_training", {}).get("best_step") for r in results]
    if all(kept_steps):
        lines.append(f"Reference early stopping: kept step {', '.join(map(str, kept_steps))} of "
                     f"{results[0]['reference_training']['steps']} (lowest held-out loss).")
    from learnsieve.evaluate.accounting import compute_summary
    for seed, r in zip(args.seeds, results):
        lines.append(f"Compute, seed {seed}: " + (compute_summary(r["compute"]) if r.get("compute")
                                                   else "not measured") + ".")
    lines += ["", "Command: `python benchmarks/bench_eval.py " + " ".join(
        shlex.quote(a) for a in sys.argv[1:]) + "`", ""]
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    from learnsieve.cli import setup_logging
    setup_logging(quiet=False)  # training and eval steps on stderr, as the CLI shows them
    if args.summarise:
        results = []
        for path in args.summarise:
            with open(path) as f:
                results += json.load(f)
        args.seeds = [r["seed"] for r in results]
        from learnsieve.evaluate.accounting import totals
        from learnsieve.evaluate.arms import speedup
        for r in results:  # recomputed from the stored curves: runs made before a rule changed agree
            r["speedup"] = speedup(r, r["metric"])
            if r.get("compute"):
                r["compute"] = totals(r["compute"], r)
        print("\n".join(summarise(args, results)))
        return 0
    from benchmarks.common import workdir
    with workdir(args.work, f"bench_eval_{args.dataset}_") as work:
        results = []
        for seed in args.seeds:
            print(f"seed {seed}", flush=True)
            results.append(run_seed(args, seed, work))
        lines = summarise(args, results)
        print("\n".join(lines))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        if args.markdown:
            with open(args.markdown, "a") as f:
                f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
