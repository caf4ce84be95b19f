"""Online selection in the training loop vs offline filters, at aggressive budgets (issue 23, point 4).

For one dataset and seed: build the pool from ``../shared/data`` (``learnsieve.datasets``:
``cifar`` CIFAR-10 image-text, 40% mismatched + 5% junk + 1% corrupt; ``redundant`` a clean but
redundant CIFAR pool; ``flickr`` Flickr8k x 5 captions with the same noise; ``classact``
CIFAR-10 image-label, 40% flipped labels), train the reference on a disjoint clean split and
the warm-up proxy on the pool (``learnsieve train-reference`` / ``train-proxy``'s code), and
curate the pool **once** with ``select.mode=all`` (``pipeline.run.run``, what ``learnsieve
curate`` runs), so that every example's reference loss and similarity are cached in its
``KEY.json``; ``learnsieve.online.cached.load_cached_pool`` reads them back. Then train the
same learner (architecture, initialisation, optimizer, lr schedule, seed, batch size, step
budget; learnsieve's ``train_clip`` / ``train_classifier`` loop) on each arm:

- ``random``: IID batches from the whole pool;
- ``clip30`` / ``clip50``: IID from the top 30% / 50% by cached ``ref_sim`` (CLIP score,
  DataComp's best single-score baseline; ClassAct: the reference's probability of the label);
- ``offline{10,20,30,50}``: IID from the top 10-50% by offline learnability (warm-up proxy loss -
  reference loss: today's ``learnsieve curate`` recipe);
- ``learner_r{2,5,10}``: online, every step a uniform super-batch of ratio x B scored with
  learnability = the learner's own current loss - the cached reference loss, top B trained on;
- ``small_r{2,5,10}``: the same with a small online model trained alongside on the selected
  batches (``learnsieve.online.proxy.OnlineModelProxy``) as the proxy;
- ``easy_r5``: online "easy reference" (-cached reference loss per super-batch; no proxy);
- ``pre50_{learner,small,easy}_r{2,5}``: the same online selections within the top 50% of the
  pool by cached ``ref_sim`` (the noise pre-filter of point 1), so that learnability chooses
  among mostly clean pairs.

Both online proxies score against the same bank loss as the reference: InfoNCE against 512
clean pairs re-encoded by the proxy every step (ClassAct: cross-entropy). Per arm: the curve,
steps to random's best, the noisy (or duplicate) share of what it trained on, and FLOPs
(torch's FlopCounterMode on the real models) including every super-batch forward.

    python benchmarks/bench_online.py --dataset cifar --seed 0 --json online.jsonl
    python benchmarks/bench_online.py --summarise online.jsonl --plots docs/img

Quick check (tiny models and sizes, seconds; what tests/benchmarks/test_smoke.py runs):

    python benchmarks/bench_online.py --dataset cifar --n-ref 40 --n-pool 80 --n-test 20 --shards 2 \
        --learner ls_clip_test --small ls_clip_test --reference-model ls_clip_test --reference-steps 2 \
        --proxy-model ls_clip_test --proxy-steps 2 --steps 4 --batch-size 8 --eval-every 2 --bank 16 \
        --arms random,clip30,offline30,learner_r2,small_r2,easy_r5,pre50_learner_r2
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `benchmarks.common` when run as a script; the installed learnsieve stays first
    sys.path.append(ROOT)

log = logging.getLogger("learnsieve.bench_online")

DATASETS = {  # sizes for a 2-core shared CPU: every seed of every dataset in a few minutes
    "cifar": {"archive": "cifar10-jpg.tar.gz", "n_ref": 2000, "n_pool": 6000, "n_test": 1000, "image_size": 32,
              "metric": "zeroshot_top1", "learner": "ls_clip_lit", "small": "ls_clip_lit_proxy",
              "steps": 300, "batch_size": 128, "eval_every": 10},
    "redundant": {"archive": "cifar10-jpg.tar.gz", "n_ref": 2000, "n_pool": 6000, "n_test": 1000, "image_size": 32,
                  "metric": "zeroshot_top1", "learner": "ls_clip_lit", "small": "ls_clip_lit_proxy",
                  "steps": 300, "batch_size": 128, "eval_every": 10},
    "flickr": {"archive": "flickr8k-1k.tar.gz", "n_ref": 600, "n_pool": 300, "n_test": 100, "image_size": 160,
               "metric": "mean_r@5", "learner": "ls_clip_lit", "small": "ls_clip_lit_proxy",
               "steps": 100, "batch_size": 64, "eval_every": 4},
    "classact": {"archive": "cifar10-jpg.tar.gz", "n_ref": 4000, "n_pool": 6000, "n_test": 1000, "image_size": 32,
                 "metric": "top1", "learner": "ls_cls_tiny", "small": "ls_cls_test", "task": "classification",
                 "reference_model": "ls_cls_small", "proxy_model": "ls_cls_tiny", "reference_val_fraction": 0.0,
                 "reference_steps": 400, "proxy_steps": 100, "steps": 300, "batch_size": 64, "eval_every": 25},
}
ALL_ARMS = ["random", "clip30", "clip50", "offline10", "offline20", "offline30", "offline50",
            "learner_r2", "learner_r5", "learner_r10", "small_r2", "small_r5", "small_r10", "easy_r5",
            "pre50_learner_r2", "pre50_small_r2", "pre50_easy_r2", "pre50_learner_r5"]
PREFILTER_ARMS = ["random", "clip30", "pre50_learner_r2", "pre50_small_r2", "pre50_easy_r2", "pre50_learner_r5"]
REDUCED_ARMS = ["random", "clip30", "offline30", "learner_r5", "small_r5", "easy_r5"]
DEFAULT_ARMS = {"cifar": ALL_ARMS, "flickr": ALL_ARMS, "redundant": ALL_ARMS, "classact": REDUCED_ARMS}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    from benchmarks.common import add_pool_flags
    add_pool_flags(ap)
    ap.add_argument("--work", help="working folder (default: a temp dir, removed at the end)")
    ap.add_argument("--arms", help="comma-separated (default: per dataset; classact a reduced set)")
    ap.add_argument("--steps", type=int, help="the learner's steps (default: per dataset, 300; flickr 100)")
    ap.add_argument("--learner", help="the learner's architecture (default: per dataset)")
    ap.add_argument("--small", help="the small online model's architecture (default: per dataset)")
    from benchmarks.common import add_judge_flags
    add_judge_flags(ap)
    ap.add_argument("--batch-size", type=int, help="default: 128 (flickr, classact: 64)")
    ap.add_argument("--eval-every", type=int, help="default: 10 (flickr 4, classact 25)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--bank", type=int, default=512, help="clean pairs in the online proxies' bank")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="append this run's result as one JSON line")
    ap.add_argument("--summarise", nargs="+", metavar="JSONL")
    ap.add_argument("--plots", metavar="DIR")
    args = ap.parse_args(argv)
    if not args.summarise and not args.dataset:
        ap.error("--dataset is required (or --summarise)")
    return args


def build(args, out: str) -> dict:
    from benchmarks.common import build_from_args
    return build_from_args(args, DATASETS[args.dataset], out)


def new_model(name: str, task: str, seed: int, num_classes: int = 10):
    import torch
    torch.manual_seed(seed)
    if task == "classification":
        from learnsieve.models.classifier import create_classifier
        return create_classifier(name, num_classes=num_classes)
    from learnsieve.models.factory import create_model
    return create_model(name)


def forward_flops(model, images, targets) -> dict:
    """Forward FLOPs per example: with every tower run (``full``) and with frozen towers' features
    cached (``trainable``: what a pass costs once an example's features were computed)."""
    import torch

    from learnsieve.evaluate.accounting import forward
    from learnsieve.models.flops import flops_per_example
    from learnsieve.models.frozen import uncached
    model.eval()
    n = images.shape[0]
    with uncached():
        full = flops_per_example(forward(model, images, targets), n)
    with torch.no_grad():
        forward(model, images, targets)()
    return {"full": full, "trainable": flops_per_example(forward(model, images, targets), n)}


def composition(indices, keys, labels) -> dict:
    c = Counter(labels.get(keys[i], "unknown") for i in indices)
    n = max(1, sum(c.values()))
    return {k: v / n for k, v in sorted(c.items())}


def budget_noise(pool, labels: dict, fractions=(0.1, 0.2, 0.3, 0.5)) -> dict:
    """The share of each kind (noisy, duplicate, ...) in the top fraction of the pool by each
    cached score: what ``curate --set select.score=S --set select.fraction=F`` keeps."""
    import torch
    out = {}
    scores = {"ref_sim": pool.ref_sim, "easy": -pool.ref_loss, **pool.extra}
    for name in ("ref_sim", "easy", "learnability", "proxy_sim"):
        if name not in scores:
            continue
        order = torch.sort(-torch.nan_to_num(scores[name], nan=-1e9), stable=True).indices
        out[name] = {f"{f:g}": composition(order[: max(1, int(round(f * len(pool))))].tolist(), pool.keys, labels)
                     for f in fractions}
    return out


def run_seed(args) -> dict:
    import torch

    from benchmarks.bench_rounds import Evaluator, curate
    from learnsieve.config import load_config
    from learnsieve.evaluate.accounting import judge_costs
    from learnsieve.evaluate.arms import speedup
    from learnsieve.evaluate.ground_truth import load_truth
    from learnsieve.models.train import augment as shift_augment
    from learnsieve.models.train import train_clip
    from learnsieve.models.train_cls import train_classifier
    from learnsieve.online.batches import OnlineBatches
    from learnsieve.online.cached import load_cached_pool
    from learnsieve.online.proxy import LearnerProxy, OnlineModelProxy, PairBank
    from learnsieve.online.selector import OnlineSelector
    from learnsieve.train.clip import load_pairs, train_from_shards
    spec = dict(DATASETS[args.dataset])
    for key, flag in (("learner", args.learner), ("small", args.small), ("reference_model", args.reference_model),
                      ("reference_steps", args.reference_steps), ("proxy_model", args.proxy_model),
                      ("proxy_steps", args.proxy_steps), ("batch_size", args.batch_size),
                      ("eval_every", args.eval_every), ("steps", args.steps)):
        if flag is not None:
            spec[key] = flag
    task = spec.get("task", "retrieval")
    size, steps, bs = spec["image_size"], spec["steps"], spec["batch_size"]
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    root = os.path.join(args.work, f"{args.dataset}_seed{args.seed}")
    data = build(args, os.path.join(root, "data"))
    extra = [f"train.proxy_model={spec['proxy_model']}"] if "proxy_model" in spec else []
    extra += [f"train.proxy_steps={spec['proxy_steps']}"] if "proxy_steps" in spec else []
    cfg = load_config(None, extra + [
        f"task={task}", f"train.reference_model={spec.get('reference_model', 'ls_clip_lit')}",
        f"train.batch_size={bs}", f"train.lr={args.lr}", f"train.seed={args.seed}",
        f"train.torch_threads={args.threads}", "train.val_every=10",
        f"train.reference_val_fraction={spec.get('reference_val_fraction', 0.1)}",
        f"score.image_size={max(size, 64)}", "select.mode=all", "select.score=learnability",
        "write.samples_per_shard=1000", "write.report=false"])
    cfg = dataclasses.replace(cfg, input=data["pool_pattern"], reference=os.path.join(root, "reference"))
    tc = cfg.train
    t0 = time.perf_counter()
    train_from_shards(data["clean_pattern"], cfg.reference, tc.reference_model,
                      spec.get("reference_steps", 300), tc, size, role="reference")
    warm = os.path.join(root, "proxy_warmup")
    train_from_shards(data["pool_pattern"], warm, tc.proxy_model, tc.proxy_steps, tc, size,
                      sample=tc.proxy_sample, role="proxy")
    cached_dir = os.path.join(root, "cached")
    stats = curate(cfg, cached_dir, warm, "learnability")  # select.mode=all: every scored example
    judges_seconds = time.perf_counter() - t0
    pool = load_cached_pool(os.path.join(cached_dir, "*.tar"), size, task, tc.num_classes)
    log.info(f"[{args.dataset}] cached reference scores of {len(pool)} examples "
             f"({stats['kept']} kept of {stats['read']} read; {pool.missing} without)")
    truth = load_truth(os.path.join(root, "data", "truth.json"))
    labels = data.get("composition") or {k: ("clean" if v == "clean" else "noisy") for k, v in truth.items()}
    classes = data.get("classes") if args.dataset != "flickr" else None
    evaluator = Evaluator(data["test_pattern"], size, classes, task)
    if task == "retrieval":
        bank_images, bank_captions, _ = load_pairs(data["clean_pattern"], size, sample=args.bank, seed=args.seed + 7)
    learner_name, small_name = spec["learner"], spec["small"]
    probe_images, probe_targets = pool.images[:16], pool.targets[:16]
    learner_flops = forward_flops(new_model(learner_name, task, args.seed), probe_images, probe_targets)
    small_flops = forward_flops(new_model(small_name, task, args.seed), probe_images, probe_targets)
    arms = (args.arms.split(",") if args.arms else DEFAULT_ARMS[args.dataset])
    metric = spec["metric"]
    res = {"dataset": args.dataset, "seed": args.seed, "task": task, "learner": learner_name, "small": small_name,
           "metric": metric, "steps": steps, "batch_size": bs, "eval_every": spec["eval_every"], "pool": len(pool),
           "pool_composition": composition(range(len(pool)), pool.keys, labels), "arms": {},
           "flops": {"learner": learner_flops, "small": small_flops}}
    n = len(pool)
    order_sim = torch.sort(-pool.ref_sim, stable=True).indices
    learn = pool.extra["learnability"]
    order_learn = torch.sort(-torch.nan_to_num(learn, nan=-1e9), stable=True).indices
    for arm in arms:
        t0 = time.perf_counter()
        learner = new_model(learner_name, task, args.seed)
        sub, ratio, proxy, score = pool, 1, None, "learnability"
        if arm.startswith("clip") or arm.startswith("offline"):
            frac = int(arm.removeprefix("clip").removeprefix("offline")) / 100
            order = order_sim if arm.startswith("clip") else order_learn
            keep = order[: max(bs, int(round(frac * n)))]
            sub = pool.subset(keep)
        elif arm != "random":
            rest = arm
            if arm.startswith("pre"):  # pre50_learner_r2: online selection within the top 50% by ref_sim
                frac, rest = arm[3:].split("_", 1)
                sub = pool.subset(order_sim[: int(round(int(frac) / 100 * n))])
            kind, r = rest.split("_r")
            ratio = int(r)
            if kind == "easy":
                score = "easy"
            else:
                model = learner if kind == "learner" else new_model(small_name, task, args.seed + 1)
                bank = PairBank(bank_images, bank_captions) if task == "retrieval" else None
                proxy = (LearnerProxy(model, bank) if kind == "learner" else
                         OnlineModelProxy(model, bank, lr=args.lr, seed=args.seed,
                                          augment_fn=shift_augment if task == "classification" else None))
        if ratio * bs > len(sub):
            log.info(f"[{args.dataset} {arm}] skipped: a super-batch of {ratio * bs} > {len(sub)} examples")
            continue
        sub_labels = [labels.get(k, "unknown") for k in sub.keys]
        selector = OnlineSelector(bs, seed=args.seed, score=score, trace_every=max(10, steps // 10))
        batches = OnlineBatches(sub, bs, ratio, proxy, selector, seed=args.seed, labels=sub_labels)
        curve: list = []
        on_eval = lambda s, m: evaluator(s, m, curve)  # noqa: E731
        if task == "classification":
            train_classifier(learner, batches, steps, lr=args.lr, seed=args.seed, do_augment=tc.augment,
                             eval_every=spec["eval_every"], on_eval=on_eval, log_every=0)
        else:
            train_clip(learner, batches, steps, lr=args.lr, seed=args.seed, do_augment=tc.augment,
                       augment_kind=learner.cfg.augment, eval_every=spec["eval_every"], on_eval=on_eval,
                       log_every=0)
        per_step_scored = selector.counters.scored / max(1, selector.counters.steps)
        res["arms"][arm] = {"curve": curve, "seconds": time.perf_counter() - t0, "ratio": ratio,
                            "proxy": getattr(proxy, "kind", None), "score": score, "examples": len(sub),
                            "trained_on": selector.counters.as_dict()["picked_share"],
                            "distinct_trained": len(set(batches.picked)),
                            "scored_per_step": per_step_scored, "counters": {
                                k: v for k, v in selector.counters.as_dict().items() if k not in ("picked", "offered")}}
        log.info(f"[{args.dataset} {arm}] best {metric} {max(p[metric] for p in curve):.3f}, trained on "
                 f"{res['arms'][arm]['trained_on']} in {res['arms'][arm]['seconds']:.0f}s")
    res["speedup"] = speedup(res, metric, "random") if "random" in res["arms"] else None  # merged by --summarise
    res["budget_noise"] = budget_noise(pool, labels)
    ref_costs = judge_costs(cfg.reference, probe_images, probe_targets, bs)
    warm_costs = judge_costs(warm, probe_images, probe_targets, bs)
    res["compute"] = {"reference_train_flops": ref_costs["train_flops"],
                      "reference_forward_flops_per_example": ref_costs["forward_flops_per_example"],
                      "warmup_train_flops": warm_costs["train_flops"],
                      "warmup_forward_flops_per_example": warm_costs["forward_flops_per_example"],
                      "warmup_frozen_forward_flops_per_example": warm_costs["frozen_forward_flops_per_example"],
                      "shared_towers": ref_costs["frozen_forward_flops_per_example"] > 0
                      and warm_costs["frozen_forward_flops_per_example"] > 0,
                      "judges_seconds": judges_seconds}
    from learnsieve.evaluate.ground_truth import judge
    if args.dataset != "redundant":
        j = judge(os.path.join(cached_dir, "manifest.parquet"), truth)
        res["auroc"] = j["auroc"]
    res["wall_seconds"] = time.perf_counter() - t_start
    return res


def main(argv=None) -> int:
    args = parse_args(argv)
    from learnsieve.cli import setup_logging
    setup_logging(quiet=False)
    if args.summarise:
        from benchmarks.common import read_jsonl
        from benchmarks.online_report import plot_means, summarise
        results = read_jsonl(args.summarise)
        print("\n".join(summarise(results)))
        if args.plots:
            for path in plot_means(results, args.plots):
                print(f"wrote {path}")
        return 0
    from benchmarks.common import append_jsonl, workdir
    with workdir(args.work, f"bench_online_{args.dataset}_") as work:
        args.work = work
        res = run_seed(args)
        append_jsonl(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
