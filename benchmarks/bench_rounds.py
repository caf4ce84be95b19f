"""The learner as its own proxy: re-curation every few steps vs fixed curations (issue 13, point 4).

For one seed: build the pool from ``../shared/data`` (``cifar``: CIFAR-10 image-text with 40%
mismatched captions, 5% junk, 1% corrupt; ``redundant``: a clean CIFAR-10 pool of
near-duplicates and one over-represented class, ``learnsieve.datasets.redundant``; ``flickr``:
Flickr8k photos x 5 captions with the same noise), train the reference (``ls_clip_lit``, early
stopping) on a disjoint clean split, warm the proxy up on the pool (``learnsieve train-proxy``'s
code and defaults), and curate the pool once (``learnsieve curate``'s code: ``pipeline.run.run``).
Then train **the same learner** (architecture, initialisation, optimizer, lr schedule, seed,
batch size, step budget) on each arm, evaluated every ``--eval-every`` steps on a clean
held-out split:

- ``random``: a random subset of the pool of the kept size;
- ``ref_sim`` (CLIP-score, DataComp's filter), ``easy`` (-reference loss) and
  ``learnability_warmup`` (warm-up proxy loss - reference loss): the top ``--fraction`` of one
  curation, fixed for the whole run;
- ``learnability_learner``: **the learner's own checkpoint is the proxy**. At the start of each
  of ``--rounds`` equal parts of the step budget the learner as it is then (round 0: at
  initialisation) is saved as a learnsieve checkpoint (its negative bank: a fixed random sample
  of pool pairs) and the pool is re-curated with it as ``--proxy`` through ``pipeline.run.run``,
  starting from the first curation's score files, so only the learner runs over the pool (the
  reference's scores are reused: ``score/shards_proxy_only``); training continues, without a
  restart of the optimizer or the schedule, on that round's top ``--fraction`` by learnability.
  This is ``learnsieve rounds`` with the trainer in the same process.

Per arm: the curve, the steps to random's best (``learnsieve.evaluate.arms.speedup``), the noisy
share (``cifar``, ``flickr``) or the duplicate / over-represented share (``redundant``) of what
it trained on, and FLOPs (torch's FlopCounterMode on the real models): judges' training and
scoring, the learner-as-proxy's scoring passes, the learner's steps. Seeds run as separate
processes; ``--summarise`` prints the tables of their JSON lines:

    python benchmarks/bench_rounds.py --dataset cifar --seed 0 --json cifar.jsonl
    python benchmarks/bench_rounds.py --summarise cifar.jsonl
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import shutil
import statistics
import sys
import time
import types
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

log = logging.getLogger("learnsieve.bench_rounds")  # shown by learnsieve's log setup

DATASETS = {  # sizes chosen to run in well under an hour per seed on one CPU core
    "cifar": {"archive": "cifar10-jpg.tar.gz", "n_ref": 2000, "n_pool": 6000, "n_test": 1000,
              "image_size": 32, "metric": "zeroshot_top1", "learner": "ls_clip_small"},
    "redundant": {"archive": "cifar10-jpg.tar.gz", "n_ref": 2000, "n_pool": 6000, "n_test": 1000,
                  "image_size": 32, "metric": "zeroshot_top1", "learner": "ls_clip_small"},
    "flickr": {"archive": "flickr8k-1k.tar.gz", "n_ref": 600, "n_pool": 300, "n_test": 100,
               "image_size": 160, "metric": "mean_r@5", "learner": "ls_clip_lit",
               # heads on frozen towers learn 743 pairs in ~20 steps (docs/BENCHMARKS.md)
               "learner_steps": 100, "eval_every": 4, "batch_size": 64},
    # ClassAct: image-label shards, 40% flipped labels; classifiers trained from scratch
    "classact": {"archive": "cifar10-jpg.tar.gz", "n_ref": 4000, "n_pool": 6000, "n_test": 1000,
                 "image_size": 32, "metric": "top1", "learner": "ls_cls_tiny", "task": "classification",
                 "reference_model": "ls_cls_small", "proxy_model": "ls_cls_tiny", "reference_val_fraction": 0.0,
                 "reference_steps": 400, "proxy_steps": 100, "batch_size": 64},
}
FIXED = ("ref_sim", "easy", "learnability_warmup")
ONLINE = "learnability_learner"
# the same, with the learner-as-proxy's negative bank drawn from the clean split (as the
# reference's is) instead of from the pool: both losses then score against alike negatives, as in
# Evans et al., where both are computed on the same super-batch
ONLINE_CLEAN_BANK = "learnability_learner_cleanbank"
ONLINES = {ONLINE: "pool_pattern", ONLINE_CLEAN_BANK: "clean_pattern"}  # arm -> where its bank comes from


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="working folder (default: a temp dir, removed at the end)")
    ap.add_argument("--n-ref", type=int)
    ap.add_argument("--n-pool", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--learner", help="default: per dataset")
    ap.add_argument("--reference-model", help="default: ls_clip_lit (classact: ls_cls_small)")
    ap.add_argument("--reference-steps", type=int, help="default: 300 (classact: 400)")
    ap.add_argument("--learner-steps", type=int, help="default: 300 (flickr: 100)")
    ap.add_argument("--rounds", type=int, default=4, help="re-curations of the learner-as-proxy arm")
    ap.add_argument("--eval-every", type=int, help="default: 25 (flickr: 4)")
    ap.add_argument("--batch-size", type=int, help="default: 128 (classact: 64)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--arms", default="random,ref_sim,easy,learnability_warmup,learnability_learner,"
                    "learnability_learner_cleanbank", help="comma-separated; runs of one seed with other "
                    "arms are merged by --summarise")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="append this seed's result as one JSON line")
    ap.add_argument("--summarise", nargs="+", metavar="JSONL")
    ap.add_argument("--plots", metavar="DIR", help="with --summarise: write rounds_DATASET.png (the "
                    "curves, mean over seeds) here")
    args = ap.parse_args(argv)
    if not args.summarise and not args.dataset:
        ap.error("--dataset is required (or --summarise)")
    if args.dataset:
        spec = DATASETS[args.dataset]
        args.learner_steps = args.learner_steps or spec.get("learner_steps", 300)
        args.eval_every = args.eval_every or spec.get("eval_every", 25)
    if args.rounds < 1 or (args.learner_steps or 0) < args.rounds and not args.summarise:
        ap.error("--rounds must be >= 1 and at most --learner-steps")
    return args


def build(args, out: str) -> dict:
    spec = DATASETS[args.dataset]
    from benchmarks.common import shared_archive
    archive = shared_archive(spec["archive"])
    n_ref, n_pool, n_test = (args.n_ref or spec["n_ref"], args.n_pool or spec["n_pool"],
                             args.n_test or spec["n_test"])
    if args.dataset in ("cifar", "classact"):
        from learnsieve.datasets.cifar import build_cifar
        return build_cifar(archive, out, task=spec.get("task", "retrieval"), seed=args.seed, n_ref=n_ref,
                           n_pool=n_pool, n_test=n_test)
    if args.dataset == "redundant":
        from learnsieve.datasets.redundant import build_redundant
        return build_redundant(archive, out, seed=args.seed, n_ref=n_ref, n_pool=n_pool, n_test=n_test)
    from learnsieve.datasets.flickr import build_flickr
    return build_flickr(archive, out, seed=args.seed, n_ref_images=n_ref, n_pool_images=n_pool,
                        n_test_images=n_test, pool_captions_per_image=5, px=spec["image_size"])


def curate(cfg, out: str, proxy: str, score: str, scores_from: str = None) -> dict:
    """``learnsieve curate`` into ``out``; ``scores_from``: start from that run's score files."""
    from learnsieve.pipeline.run import run
    import torch
    threads = torch.get_num_threads()
    if scores_from and not os.path.exists(out):
        shutil.copytree(os.path.join(scores_from, "_scores"), os.path.join(out, "_scores"))
        shutil.copy2(os.path.join(scores_from, ".learnsieve-output"), out)
    stats = run(dataclasses.replace(cfg, output=out, proxy=proxy,
                                    select=dataclasses.replace(cfg.select, score=score)),
                incremental=True, progress_every=0)
    torch.set_num_threads(threads)  # the in-process runner's workers set 1 thread each
    return stats


def kept_keys(out: str) -> list:
    import pyarrow.parquet as pq
    t = pq.read_table(os.path.join(out, "manifest.parquet"), columns=["key", "decision"]).to_pylist()
    return [r["key"] for r in t if r["decision"] == "kept"]


def spearman(a, b) -> float:
    import numpy as np
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def round_stats(out: str, labels: dict) -> dict:
    """Why learnability ranks as it does in one round: the spread of each model's loss over the
    scored pool, and the rank correlation of learnability with -reference loss (1.0: it is
    CLIP-score filtering under another name) and with the proxy's loss."""
    import numpy as np
    import pyarrow.parquet as pq
    rows = [r for r in pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
            if r.get("learnability") is not None]
    pl = np.array([r["proxy_loss"] for r in rows])
    rl = np.array([r["ref_loss"] for r in rows])
    lb = np.array([r["learnability"] for r in rows])
    bad = np.array([labels.get(r["key"], "clean") not in ("clean", "unique") for r in rows])
    out = {"proxy_loss_std": float(pl.std()), "ref_loss_std": float(rl.std()),
           "rho_learnability_minus_ref_loss": spearman(lb, -rl), "rho_learnability_proxy_loss": spearman(lb, pl)}
    if bad.any() and (~bad).any():
        out["proxy_loss_gap"] = float(pl[bad].mean() - pl[~bad].mean())  # noisy / redundant minus the rest
    return out


def shares(keys, labels: dict) -> dict:
    c = Counter(labels.get(k, "unknown") for k in keys)
    return {kind: n / max(1, len(keys)) for kind, n in sorted(c.items())}


class Evaluator:
    """The held-out evaluation every arm uses (``learnsieve eval``'s metrics)."""

    def __init__(self, test_pattern: str, image_size: int, classes, task: str = "retrieval"):
        self.task = task
        if task == "classification":
            from learnsieve.evaluate.arms_cls import load_test as load_labelled_test
            self.images, self.labels = load_labelled_test(test_pattern, image_size, len(classes))
            self.captions = self.labels  # the scoring targets of a classifier
            return
        from learnsieve.evaluate.arms import load_test
        self.images, self.captions, self.labels = load_test(test_pattern, image_size)
        self.classes = classes if classes and all(x is not None for x in self.labels) else None

    def __call__(self, step, m, curve):
        import torch
        if self.task == "classification":
            from learnsieve.models.classifier import top1
            curve.append({"step": step, "top1": top1(m, self.images, self.labels)})
            return
        from learnsieve.evaluate.arms import zero_shot_top1
        from learnsieve.models.metrics import retrieval_recall
        with torch.no_grad():
            point = {"step": step, **retrieval_recall(m.encode_image(self.images), m.encode_text(self.captions))}
            if self.classes:
                point["zeroshot_top1"] = zero_shot_top1(m, self.images, self.labels, self.classes,
                                                        ("a photo of a {}",))
        curve.append(point)


def train_arm(args, tc, size: int, batches, evaluator) -> dict:
    """``learnsieve eval``'s training loop for one arm; ``batches`` may switch data mid-run."""
    curve: list = []
    model = new_learner(args, tc)
    t0 = time.perf_counter()
    data = batches(model) if callable(batches) else batches
    if tc.task == "classification":
        from learnsieve.models.train_cls import train_classifier
        train_classifier(model, data, args.learner_steps, lr=tc.lr, seed=tc.seed, do_augment=tc.augment,
                         eval_every=args.eval_every, on_eval=lambda s, m: evaluator(s, m, curve), log_every=100)
    else:
        from learnsieve.models.train import train_clip
        train_clip(model, data, args.learner_steps, lr=tc.lr, seed=tc.seed, do_augment=tc.augment,
                   augment_kind=model.cfg.augment, eval_every=args.eval_every,
                   on_eval=lambda s, m: evaluator(s, m, curve), log_every=100)
    return {"curve": curve, "seconds": time.perf_counter() - t0}


def new_learner(args, tc):
    """The learner at its initialisation: the same for every arm (seeded)."""
    import torch
    torch.manual_seed(tc.seed)
    if tc.task == "classification":
        from learnsieve.models.classifier import create_classifier
        return create_classifier(args.learner, num_classes=tc.num_classes)
    from learnsieve.models.factory import create_model
    return create_model(args.learner)


def pairs_of(pattern: str, size: int, tc):
    """(images, captions) or, for classification, (images, labels)."""
    if tc.task == "classification":
        from learnsieve.train.classifier import load_labelled
        images, labels, _ = load_labelled(pattern, size, tc.num_classes)
        return images, labels
    from learnsieve.train.clip import load_pairs
    images, captions, _ = load_pairs(pattern, size)
    return images, captions


def batches_of(images, targets, tc, seed: int):
    if tc.task == "classification":
        from learnsieve.models.train_cls import label_batches
        return label_batches(images, targets, tc.batch_size, seed)
    from learnsieve.train.clip import epoch_batches
    return epoch_batches(images, targets, min(tc.batch_size, len(targets)), seed)


def fixed_batches(pattern: str, size: int, tc):
    images, targets = pairs_of(pattern, size, tc)
    return batches_of(images, targets, tc, tc.seed), len(targets)


def online_batches(args, cfg, tc, size: int, root: str, first: str, bank, record: list, labels: dict,
                   arm: str = ONLINE):
    """A learner-as-proxy arm's data: re-curated with the learner itself at each round."""
    from learnsieve.models.checkpoint import save_checkpoint
    per_round = args.learner_steps // args.rounds

    def gen(model):
        step = 0
        for r in range(args.rounds):
            t0 = time.perf_counter()
            proxy = copy.deepcopy(model).eval()
            if bank is not None:  # a dual encoder's fixed negative bank (a classifier has none)
                proxy.set_bank(*bank)
            tag = "" if arm == ONLINE else "_cleanbank"
            path = os.path.join(root, f"learner_proxy{tag}_r{r}")
            save_checkpoint(proxy, path, extra={"role": "proxy", "learner_step": step})
            out = os.path.join(root, f"curated_{arm}_r{r}")
            stats = curate(cfg, out, path, "learnability", scores_from=first)
            images, targets = pairs_of(os.path.join(out, "*.tar"), size, tc)
            seconds = time.perf_counter() - t0
            proxy_only = stats["counters"].get("score/shards_proxy_only", 0)
            record.append({"round": r, "step": step, "kept": stats["kept"], "output": out,
                           "stats": round_stats(out, labels),
                           "proxy_only_shards": proxy_only, "input_shards": stats["input_shards"],
                           "seconds": seconds, "keys": kept_keys(out)})
            log.info(f"[{arm}] round {r} at step {step}: kept {stats['kept']} "
                     f"(proxy only on {proxy_only}/{stats['input_shards']} shards) in {seconds:.0f}s")
            n = per_round if r < args.rounds - 1 else args.learner_steps - step
            it = batches_of(images, targets, tc, tc.seed + r)
            for _ in range(n):
                yield next(it)
            step += n
    return gen


def flops(model_or_path, images, captions) -> float:
    """Forward FLOPs per example (a scoring pass: both towers + the bank)."""
    from learnsieve.evaluate.accounting import scoring_forward
    from learnsieve.models.checkpoint import load_checkpoint
    from learnsieve.models.flops import flops_per_example
    from learnsieve.models.frozen import uncached
    model = load_checkpoint(model_or_path)[0] if isinstance(model_or_path, str) else model_or_path
    with uncached():
        return flops_per_example(scoring_forward(model, images, captions), images.shape[0])


def run_seed(args) -> dict:
    from learnsieve.config import load_config
    from learnsieve.evaluate.accounting import judge_costs
    from learnsieve.evaluate.arms import random_subset, speedup
    from learnsieve.evaluate.ground_truth import judge, load_truth
    from learnsieve.train.clip import train_from_shards
    import torch
    spec = DATASETS[args.dataset]
    args.learner = args.learner or spec["learner"]
    args.reference_model = args.reference_model or spec.get("reference_model", "ls_clip_lit")
    args.reference_steps = args.reference_steps or spec.get("reference_steps", 300)
    args.batch_size = args.batch_size or spec.get("batch_size", 128)
    task = spec.get("task", "retrieval")
    size = spec["image_size"]
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    root = os.path.join(args.work, f"{args.dataset}_seed{args.seed}")
    data = build(args, os.path.join(root, "data"))
    extra = [f"train.proxy_model={spec['proxy_model']}"] if "proxy_model" in spec else []
    extra += [f"train.proxy_steps={spec['proxy_steps']}"] if "proxy_steps" in spec else []
    cfg = load_config(None, extra + [f"task={task}", f"train.reference_model={args.reference_model}",
                             f"train.batch_size={args.batch_size}",
                             f"train.lr={args.lr}", f"train.seed={args.seed}", f"train.torch_threads={args.threads}",
                             f"train.reference_val_fraction={spec.get('reference_val_fraction', 0.1)}",
                             "train.val_every=10",
                             f"score.image_size={max(size, 64)}", "select.mode=top_fraction",
                             f"select.fraction={args.fraction}", "write.samples_per_shard=1000", "write.report=false"])
    cfg = dataclasses.replace(cfg, input=data["pool_pattern"], reference=os.path.join(root, "reference"))
    # the learner's settings: train.* and the task (classification: ClassAct's classifiers)
    tc = types.SimpleNamespace(**dataclasses.asdict(cfg.train), task=task)
    train_from_shards(data["clean_pattern"], cfg.reference, tc.reference_model, args.reference_steps, cfg.train, size,
                      role="reference")
    warm = os.path.join(root, "proxy_warmup")
    train_from_shards(data["pool_pattern"], warm, tc.proxy_model, tc.proxy_steps, cfg.train, size,
                      sample=tc.proxy_sample, role="proxy")
    arms = [a for a in args.arms.split(",") if a]
    first = os.path.join(root, "curated_learnability_warmup")
    t0 = time.perf_counter()
    stats = curate(cfg, first, warm, "learnability")
    first_seconds = time.perf_counter() - t0
    kept = stats["kept"]
    patterns = {"learnability_warmup": os.path.join(first, "*.tar")}
    for policy in ("ref_sim", "easy"):
        out = os.path.join(root, f"curated_{policy}")
        curate(cfg, out, warm, policy, scores_from=first)
        patterns[policy] = os.path.join(out, "*.tar")
    patterns["random"] = random_subset(data["pool_pattern"], kept, os.path.join(root, "random"), seed=args.seed)

    truth = load_truth(os.path.join(root, "data", "truth.json"))
    labels = data.get("composition") or {k: ("clean" if v == "clean" else "noisy") for k, v in truth.items()}
    judged = judge(os.path.join(first, "manifest.parquet"), truth) if args.dataset != "redundant" else None
    classes = data.get("classes") if args.dataset != "flickr" else None
    evaluator = Evaluator(data["test_pattern"], size, classes, task)
    res = {"dataset": args.dataset, "seed": args.seed, "learner": args.learner, "metric": spec["metric"],
           "reference_model": args.reference_model,
           "steps": args.learner_steps, "batch_size": args.batch_size, "rounds": args.rounds,
           "eval_every": args.eval_every, "fraction": args.fraction, "pool": data["pool_count"],
           "arms": {}, "task": task}
    for arm in arms:
        if arm in ONLINES:
            continue
        batches, n = fixed_batches(patterns[arm], size, tc)
        out = train_arm(args, tc, size, batches, evaluator)
        keys = kept_keys(os.path.dirname(patterns[arm])) if arm != "random" else None
        if arm == "random":
            keys = random_arm_keys(patterns[arm])
        res["arms"][arm] = {"examples": n, **out, "composition": shares(keys, labels)}
        log.info(f"[{arm}] {n} examples; best {spec['metric']} "
                 f"{max(p[spec['metric']] for p in out['curve']):.3f} in {out['seconds']:.0f}s")
    for arm, bank_from in ONLINES.items():
        if arm not in arms or (task != "retrieval" and arm != ONLINE):  # a classifier has no bank
            continue
        record: list = []
        bank = bank_pairs(data[bank_from], size, args.seed) if task == "retrieval" else None
        gen = online_batches(args, cfg, tc, size, root, first, bank, record, labels, arm)
        out = train_arm(args, tc, size, gen, evaluator)
        trained = [k for r in record for k in r["keys"]]
        res["arms"][arm] = {"examples": record[0]["kept"], **out, "composition": shares(trained, labels),
                            "bank_from": bank_from,
                            "rounds": [{k: v for k, v in r.items() if k != "keys"} for r in record],
                            "overlap_with_round0": [len(set(r["keys"]) & set(record[0]["keys"])) /
                                                    max(1, len(record[0]["keys"])) for r in record]}
        log.info(f"[{arm}] best {spec['metric']} {max(p[spec['metric']] for p in out['curve']):.3f}")
    res["speedup"] = speedup(res, spec["metric"], "random" if "random" in res["arms"] else None)
    res["judges"] = ({"auroc": judged["auroc"], "kept_noise": judged["kept_noise"], "pool_noise": judged["pool_noise"]}
                     if judged else None)
    res["pool_composition"] = shares(list(labels), labels)
    # compute: FLOPs per example of each model's scoring pass, of the learner's training step
    images, captions = evaluator.images[:16], evaluator.captions[:16]
    proxies = [os.path.join(root, "learner_proxy_r0"), os.path.join(root, "learner_proxy_cleanbank_r0")]
    ref_costs = judge_costs(cfg.reference, images, captions, args.batch_size)
    warm_costs = judge_costs(warm, images, captions, args.batch_size)
    from learnsieve.evaluate.arms import _learner_flops
    learner_fwd = _learner_flops(new_learner(args, tc), images, captions)
    res["compute"] = {"reference_train_flops": ref_costs["train_flops"],
                      "reference_forward_flops_per_example": ref_costs["forward_flops_per_example"],
                      "warmup_train_flops": warm_costs["train_flops"],
                      "warmup_forward_flops_per_example": warm_costs["forward_flops_per_example"],
                      "reference_frozen_forward_flops_per_example": ref_costs["frozen_forward_flops_per_example"],
                      "warmup_frozen_forward_flops_per_example": warm_costs["frozen_forward_flops_per_example"],
                      "shared_towers": ref_costs["frozen_forward_flops_per_example"] > 0
                      and warm_costs["frozen_forward_flops_per_example"] > 0,
                      "learner_forward_flops_per_example": learner_fwd,
                      "learner_proxy_forward_flops_per_example": flops(
                          next(p for p in proxies if os.path.exists(p)), images, captions)
                      if any(os.path.exists(p) for p in proxies) else None,
                      "first_curation_seconds": first_seconds}
    res["wall_seconds"] = time.perf_counter() - t_start
    return res


def random_arm_keys(pattern: str) -> list:
    import tarfile

    from learnsieve.core.paths import expand_pattern
    keys = []
    for url in expand_pattern(pattern) if "{" in pattern else [pattern]:
        with tarfile.open(url) as tar:
            keys += sorted({m.name.split(".", 1)[0] for m in tar.getmembers()})
    return keys


def bank_pairs(pattern: str, size: int, seed: int, n: int = 512):
    """The learner-as-proxy's negative bank: a fixed random sample of pool pairs."""
    from learnsieve.train.clip import load_pairs
    images, captions, _ = load_pairs(pattern, size, sample=n, seed=seed + 7)
    return images, captions


# ----------------------------------------------------------------------------------- summary

def pool_labels(r: dict, round_output: str) -> dict:
    """The pool's ground truth of a finished run, from its data folder (beside the round's)."""
    data = os.path.join(os.path.dirname(round_output), "data")
    for name in ("composition.json", "truth.json"):
        path = os.path.join(data, name)
        if os.path.exists(path):
            with open(path) as f:
                labels = json.load(f)
            return labels if name == "composition.json" else {
                k: ("clean" if v == "clean" else "noisy") for k, v in labels.items()}
    return {}


def steps_to(arm: dict, metric: str, target: float):
    from learnsieve.models.metrics import steps_to_reach
    return steps_to_reach([(p["step"], p[metric]) for p in arm["curve"]], target)


def accounting(r: dict, arm: str, reuse: int = 1, learner_forward: float = None) -> dict:
    """FLOPs of ``arm`` to random's best vs random's own (IID) FLOPs to it.

    ``reuse``: the fixed curation (reference training, its scoring of the pool, and for
    learnability_warmup the warm-up's training and heads) is
    shared by ``reuse`` training runs; the learner-as-proxy's own scoring passes are not (they are
    the learner's trajectory). ``learner_forward``: another learner's forward FLOPs per example (a
    learner much larger than the one trained here; also what its scoring passes cost as the
    proxy), with the measured steps kept: an extrapolation, labelled as one in the table."""
    c, sp = r["compute"], r["speedup"]
    steps, iid = sp["arms"][arm]["steps_to_target"], sp["reference_steps"]
    if not steps or not iid:
        return {}
    fwd = learner_forward or c["learner_forward_flops_per_example"]
    step_flops = 3 * fwd * r["batch_size"]
    pool = r["pool"]
    judges = c["reference_train_flops"] + pool * c["reference_forward_flops_per_example"]
    # the warm-up proxy scores in the same pass as the reference: on the same frozen towers it
    # adds only its heads (core/scoring.py runs each tower once per batch for both models)
    warm_scoring = c["warmup_forward_flops_per_example"] - (
        c.get("warmup_frozen_forward_flops_per_example", 0.0) if c.get("shared_towers") else 0.0)
    warm = c["warmup_train_flops"] + pool * warm_scoring
    online = 0.0
    if arm in ONLINES:  # this arm uses only the reference's scores, then the learner's own
        used = [x for x in r["arms"][arm]["rounds"] if x["step"] < steps]
        online = len(used) * pool * (learner_forward or c["learner_proxy_forward_flops_per_example"])
    elif arm == "learnability_warmup":  # ref_sim and easy need the reference alone
        judges += warm
    total = (0.0 if arm == "random" else judges / reuse) + online + steps * step_flops
    fixed = (judges / reuse + online)
    saved_per_step = step_flops * (1 - steps / iid) if iid > steps else 0.0
    return {"ratio": total / (iid * step_flops),
            "break_even_iid_steps": fixed / saved_per_step if saved_per_step else None}


def online_lines(rs: list, online: str) -> list:
    """A learner-as-proxy arm's rounds: overlap with round 0, reuse, and the loss spreads."""
    on = [r["arms"].get(online) for r in rs]
    if not all(on):
        return []
    lines: list = []
    lines += ["", f"{online}: rounds at steps {', '.join(str(x['step']) for x in on[0]['rounds'])}; "
              "share of round 0's selection still kept, per round (per seed): " + "; ".join(
                  ", ".join(f"{v:.2f}" for v in o["overlap_with_round0"]) for o in on) +
              "; shards scored by the learner alone (reference reused), per round: " + "; ".join(
                  ", ".join(f"{x['proxy_only_shards']}/{x['input_shards']}" for x in o["rounds"]) for o in on) + "."]
    rows = []
    for r, o in zip(rs, on):
        for x in o["rounds"]:
            st = x.get("stats")
            if st is None and os.path.exists(os.path.join(x["output"], "manifest.parquet")):
                labels = pool_labels(r, x["output"])
                st = x["stats"] = round_stats(x["output"], labels)
            if st:
                rows.append((r["seed"], x["round"], st))
    if rows:
        lines += ["", "| seed | round | std of proxy (learner) loss | std of reference loss | "
                  "Spearman(learnability, -ref loss) | Spearman(learnability, learner loss) | "
                  "learner loss, noisy/redundant minus the rest |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {sd} | {rd} | {st['proxy_loss_std']:.2f} | {st['ref_loss_std']:.2f} | "
                  f"{st['rho_learnability_minus_ref_loss']:.2f} | {st['rho_learnability_proxy_loss']:.2f} | "
                  f"{st.get('proxy_loss_gap', float('nan')):+.2f} |" for sd, rd, st in rows]
    return lines


def reference_of(r: dict) -> str:
    """The reference model of a result (runs made before it was recorded: the dataset's)."""
    return r.get("reference_model") or DATASETS[r["dataset"]].get("reference_model", "ls_clip_lit")


def merge_runs(results: list) -> list:
    """Runs of the same dataset, seed and budget with different ``--arms`` as one result each
    (the data, the judges and every arm's initialisation are the same: all seeded)."""
    merged: dict = {}
    for r in results:
        key = (r["dataset"], r["seed"], r["fraction"], r["steps"], r["rounds"], r["batch_size"], r["pool"],
               reference_of(r))
        if key not in merged:
            merged[key] = r
            continue
        for arm, v in r["arms"].items():
            merged[key]["arms"].setdefault(arm, v)
        if merged[key]["compute"].get("learner_proxy_forward_flops_per_example") is None:
            merged[key]["compute"] = r["compute"]
    return list(merged.values())


def summarise(results: list) -> list:
    results = merge_runs(results)
    lines = []
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    by = {}
    for r in results:  # one table per dataset, reference and budget
        by.setdefault((r["dataset"], reference_of(r), r["fraction"]), []).append(r)
    from learnsieve.evaluate.arms import speedup
    for (ds, ref_model, _), rs in by.items():
        metric = rs[0]["metric"]
        rs = [r for r in rs if "random" in r["arms"]]  # a run of other arms alone, not merged
        if not rs:
            continue
        for r in rs:
            r["speedup"] = speedup(r, metric, "random")
        seeds = [r["seed"] for r in rs]
        lines += [f"#### {ds}: seeds {', '.join(map(str, seeds))}; reference {ref_model}, learner {rs[0]['learner']}, {rs[0]['steps']} "
                  f"steps of {rs[0]['batch_size']}, {rs[0]['rounds']} rounds, keep {rs[0]['fraction']:.0%} of "
                  f"{rs[0]['pool']}", ""]
        kinds = sorted({k for r in rs for a in r["arms"].values() for k in a["composition"]})
        lines += ["| arm | best " + metric + " (per seed) | final (per seed) | steps to random's best (per seed) | "
                  "speed-up vs random | vs ref_sim (steps) | " + " | ".join(f"{k} share" for k in kinds) + " | "
                  "FLOPs / IID | FLOPs / IID, curation reused by 10 runs |",
                  "|---|---|---|---|---|---|" + "---|" * len(kinds) + "---|---|"]
        for arm in rs[0]["arms"]:
            best = [max(p[metric] for p in r["arms"][arm]["curve"]) for r in rs]
            final = [r["arms"][arm]["curve"][-1][metric] for r in rs]
            steps = [r["speedup"]["arms"][arm]["steps_to_target"] for r in rs]
            ups = [r["speedup"]["arms"][arm]["speedup_vs_reference"] for r in rs]
            vs = []
            for r in rs:
                a, b = r["speedup"]["arms"][arm]["steps_to_target"], r["speedup"]["arms"].get("ref_sim", {}).get("steps_to_target")
                vs.append(b / a if a and b else None)
            fl = [accounting(r, arm).get("ratio") for r in rs]
            fl10 = [accounting(r, arm, reuse=10).get("ratio") for r in rs]
            fmt = lambda xs, f="{:.3f}": ", ".join(f.format(x) if x is not None else "-" for x in xs)  # noqa: E731
            up = f"{mean(ups):.2f}x" if all(ups) else "not reached in every seed"
            vsr = f"{mean(vs):.2f}x ({fmt(vs, '{:.2f}')})" if all(v is not None for v in vs) else fmt(vs, "{:.2f}")
            comp = " | ".join(f"{mean([r['arms'][arm]['composition'].get(k, 0.0) for r in rs]):.1%}" for k in kinds)
            lines.append(f"| {arm} | {mean(best):.3f} ({fmt(best)}) | {mean(final):.3f} ({fmt(final)}) | "
                         f"{', '.join(str(s) if s else 'not reached' for s in steps)} | {up} | {vsr} | {comp} | "
                         f"{fmt(fl, '{:.2f}')} | {fmt(fl10, '{:.2f}')} |")
        pool = " | ".join(f"{mean([r['pool_composition'].get(k, 0.0) for r in rs]):.1%}" for k in kinds)
        lines.append(f"| (pool) | | | | | | {pool} | | |")
        if rs[0].get("judges"):
            au = rs[0]["judges"]["auroc"]
            lines += ["", "AUROC true vs noisy of the first curation's scores (mean over seeds): " + ", ".join(
                f"{s} {mean([r['judges']['auroc'][s] for r in rs]):.3f}" for s in
                ("learnability", "ref_sim", "easy", "proxy_sim") if s in au) + "."]
        for online in ONLINES:
            lines += online_lines(rs, online)
        c = rs[0]["compute"]
        lines += ["", f"FLOPs per example (seed {rs[0]['seed']}): reference scoring {c['reference_forward_flops_per_example'] / 1e6:.1f} M, "
                  f"warm-up proxy scoring {c['warmup_forward_flops_per_example'] / 1e6:.1f} M, learner forward "
                  f"{c['learner_forward_flops_per_example'] / 1e6:.1f} M (a training step 3x); reference training "
                  f"{c['reference_train_flops'] / 1e12:.2f} TFLOPs, warm-up {c['warmup_train_flops'] / 1e12:.2f} TFLOPs."]
        lines += large_learner_lines(rs) + [""]
    return lines


def plot_means(results: list, folder: str) -> list:
    """Per dataset, each arm's curve averaged over the seeds (the same evaluation steps)."""
    from learnsieve.evaluate.plots import plot_curves
    os.makedirs(folder, exist_ok=True)
    by: dict = {}
    for r in merge_runs(results):
        ref, frac = reference_of(r), r["fraction"]
        name = r["dataset"] + ("" if ref == DATASETS[r["dataset"]].get("reference_model", "ls_clip_lit")
                               else f"_{ref}") + ("" if frac == 0.5 else f"_f{frac:g}")
        by.setdefault(name, []).append(r)
    paths = []
    for ds, rs in by.items():
        arms = {}
        for arm in rs[0]["arms"]:
            curves = [r["arms"][arm]["curve"] for r in rs]
            arms[arm] = {"curve": [{"step": pts[0]["step"], **{m: statistics.fmean(p[m] for p in pts)
                                                              for m in pts[0] if m != "step"}}
                                   for pts in zip(*curves)]}
        metric = rs[0]["metric"]
        path = os.path.join(folder, f"rounds_{ds}.png")
        plot_curves(arms, [metric], path, title=f"{ds}: {rs[0]['learner']}, mean of {len(rs)} seeds")
        paths.append(path)
    return paths


LARGE_LEARNERS = {"retrieval": ("ViT-S-32", "ViT-B-32", "ViT-B-16"),  # open_clip, 224 px
                  "classification": ("resnet50", "vit_base_patch16_224")}  # timm, 224 px


def large_forward_flops(arch: str, task: str) -> float:
    """Forward FLOPs per example of an open_clip architecture (image + text) or, for
    classification, a timm classifier (random weights, nothing downloaded; FlopCounterMode as
    for learnsieve's models)."""
    import torch
    from learnsieve.models.flops import flops_per_example
    if task == "classification":
        import timm
        m = timm.create_model(arch, pretrained=False, num_classes=10).eval()
        images = torch.randn(2, 3, 224, 224)
        return flops_per_example(lambda: m(images), 2)
    import open_clip
    m = open_clip.create_model(arch).eval()
    size = m.visual.image_size
    size = size if isinstance(size, int) else size[0]
    images, text = torch.randn(2, 3, size, size), open_clip.get_tokenizer(arch)(["a photo of a cat", "a dog"])
    return flops_per_example(lambda: (m.encode_image(images), m.encode_text(text)), 2)


def large_learner_lines(rs: list) -> list:
    """Issue 13 point 5: the same measured step counts, accounted with a learner much larger than
    the judges. An extrapolation (a larger learner's steps to target are not measured here)."""
    try:
        large = {a: large_forward_flops(a, rs[0].get("task", "retrieval"))
                 for a in LARGE_LEARNERS[rs[0].get("task", "retrieval")]}
    except ImportError:
        return ["", "(open_clip / timm is not installed: the larger-learner accounting is skipped)"]
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    small = rs[0]["compute"]["learner_forward_flops_per_example"]
    cols = [(rs[0]["learner"], None)] + list(large.items())
    lines = ["", "FLOPs / IID to random's best with the measured step counts and a learner of each size "
             "(forward GFLOPs per example: " + ", ".join(f"{n} {(k or small) / 1e9:.3f}" for n, k in cols) +
             "); per cell: curation used once / reused by 10 training runs; break-even IID steps (used "
             "once) in brackets. Columns other than the first are extrapolations.", "",
             "| arm | " + " | ".join(n for n, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for arm in rs[0]["arms"]:
        if arm == "random":
            continue
        cells = []
        for _, k in cols:
            one = [accounting(r, arm, 1, k) for r in rs]
            ten = [accounting(r, arm, 10, k) for r in rs]
            if not all(one):
                cells.append("not reached in every seed")
                continue
            be = [o["break_even_iid_steps"] for o in one]
            cells.append(f"{mean([o['ratio'] for o in one]):.2f} / {mean([t['ratio'] for t in ten]):.2f}"
                         + (f" ({mean(be):.0f})" if all(b is not None for b in be) else ""))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    from learnsieve.cli import setup_logging
    setup_logging(quiet=False)
    if args.summarise:
        from benchmarks.common import read_jsonl
        results = read_jsonl(args.summarise)
        print("\n".join(summarise(results)))
        if args.plots:
            for path in plot_means(results, args.plots):
                print(f"wrote {path}")
        return 0
    from benchmarks.common import append_jsonl, workdir
    with workdir(args.work, f"bench_rounds_{args.dataset}_") as work:
        args.work = work
        res = run_seed(args)
        append_jsonl(args.json, res)  # first: the summary of one run may lack arms another run adds
        print("\n".join(summarise([res])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
