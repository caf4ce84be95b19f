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
    python benchmarks/bench_rounds.py --dataset cifar --n-ref 40 --n-pool 60 --n-test 20 --learner ls_clip_test \
        --reference-model ls_clip_test --reference-steps 2 --proxy-model ls_clip_test --proxy-steps 2 \
        --learner-steps 4 --rounds 2 --eval-every 2 --batch-size 16 --large-learners none   # a quick check
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import os
import sys
import time
import types
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # for benchmarks.*; after the installed learnsieve

from benchmarks.rounds_report import plot_means, round_stats, summarise  # noqa: E402
from benchmarks.rounds_spec import DATASETS, ONLINE, ONLINES  # noqa: E402

log = logging.getLogger("learnsieve.bench_rounds")  # shown by learnsieve's log setup

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS))
    ap.add_argument("--seed", type=int, default=0)
    from benchmarks.common import add_pool_flags
    add_pool_flags(ap)
    ap.add_argument("--work", help="working folder (default: a temp dir, removed at the end)")
    ap.add_argument("--learner", help="default: per dataset")
    from benchmarks.common import add_judge_flags
    add_judge_flags(ap)
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
    ap.add_argument("--large-learners", help="comma-separated architectures of the "
                    "accounting with a larger learner (default: rounds_report.LARGE_LEARNERS; 'none': skip it)")
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
    from benchmarks.common import build_from_args
    return build_from_args(args, DATASETS[args.dataset], out)


def curate(cfg, out: str, proxy: str, score: str, scores_from: str = None) -> dict:
    """``learnsieve curate`` into ``out``; ``scores_from``: start from that run's score files."""
    import torch

    from learnsieve.pipeline.run import run
    threads = torch.get_num_threads()
    if scores_from and not os.path.exists(out):
        from benchmarks.common import reuse_scores
        reuse_scores(scores_from, out)
    stats = run(dataclasses.replace(cfg, output=out, proxy=proxy,
                                    select=dataclasses.replace(cfg.select, score=score)),
                incremental=True, progress_every=0)
    torch.set_num_threads(threads)  # the in-process runner's workers set 1 thread each
    return stats


def kept_keys(out: str) -> list:
    import pyarrow.parquet as pq
    t = pq.read_table(os.path.join(out, "manifest.parquet"), columns=["key", "decision"]).to_pylist()
    return [r["key"] for r in t if r["decision"] == "kept"]


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
    import torch

    from learnsieve.config import load_config
    from learnsieve.evaluate.accounting import judge_costs
    from learnsieve.evaluate.arms import random_subset, speedup
    from learnsieve.evaluate.ground_truth import judge, load_truth
    from learnsieve.train.clip import train_from_shards
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
    proxy_model, proxy_steps = args.proxy_model or spec.get("proxy_model"), args.proxy_steps or spec.get("proxy_steps")
    extra = [f"train.proxy_model={proxy_model}"] if proxy_model else []
    extra += [f"train.proxy_steps={proxy_steps}"] if proxy_steps else []
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
    from learnsieve.evaluate.arms import learner_flops
    learner_fwd = learner_flops(new_learner(args, tc), images, captions)
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

def main(argv=None) -> int:
    args = parse_args(argv)
    from learnsieve.cli import setup_logging
    setup_logging(quiet=False)
    large = None if args.large_learners is None else [a for a in args.large_learners.split(",")
                                                      if a and a != "none"]
    if args.summarise:
        from benchmarks.common import read_jsonl
        results = read_jsonl(args.summarise)
        print("\n".join(summarise(results, large)))
        if args.plots:
            for path in plot_means(results, args.plots):
                print(f"wrote {path}")
        return 0
    from benchmarks.common import append_jsonl, workdir
    with workdir(args.work, f"bench_rounds_{args.dataset}_") as work:
        args.work = work
        res = run_seed(args)
        append_jsonl(args.json, res)  # first: the summary of one run may lack arms another run adds
        print("\n".join(summarise([res], large)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
