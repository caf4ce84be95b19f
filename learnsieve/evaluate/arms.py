"""learnsieve eval: does a curated set train a learner faster? (No Beam.)

The same learner (architecture, optimizer, seed, step budget) is trained on each arm, e.g. the
curated shards, a random subset of the pool of the same size, and the whole pool, and is
evaluated every N steps on a clean held-out set: image-text retrieval (recall@1/5 both ways) and,
where the test shards carry labels (``KEY.cls``) and class names are given, zero-shot top-1 from
class-name prompts; top-1 for the classification task. eval.json holds the curves, the final
metrics, the speed-up (the steps each arm needs to reach the reference arm's best metric; Evans
et al. report about 1.9x fewer steps than IID), the compute accounting
(``learnsieve.evaluate.accounting``) and, with ground truth, each score's AUROC
(``learnsieve.evaluate.ground_truth``); PNG plots are written beside it.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from learnsieve.config import TrainConfig
from learnsieve.core.decode import decode_sample
from learnsieve.core.loaders import decoded_examples, sample_shards
from learnsieve.core.tar_write import TarSink
from learnsieve.models.factory import create_model
from learnsieve.models.metrics import retrieval_recall, steps_to_reach
from learnsieve.models.train import train_clip
from learnsieve.train.clip import epoch_batches, load_pairs

log = logging.getLogger(__name__)

PRIMARY = {"retrieval": "mean_r@1", "classification": "top1"}


def random_subset(pattern: str, n: int, out_dir: str, seed: int = 0, per_shard: int = 1000) -> str:
    """A uniform random sample of ``n`` readable samples of the pool, written as shards (the
    'random' arm at equal kept size); returns its pattern."""
    reservoir = sample_shards(pattern, n, seed)
    os.makedirs(out_dir, exist_ok=True)
    names = []
    for start in range(0, len(reservoir), per_shard):
        name = os.path.join(out_dir, f"{len(names):05d}.tar")
        sink = TarSink(name)
        for s in reservoir[start:start + per_shard]:
            sink.write(s.key, s.files)
        sink.close()
        names.append(name)
    return names[0] if len(names) == 1 else os.path.join(out_dir, "{00000..%05d}.tar" % (len(names) - 1))


def load_test(pattern: str, image_size: int) -> Tuple[torch.Tensor, List[str], List[Optional[int]]]:
    """Held-out (images, captions, labels or None) for retrieval evaluation."""
    kept, _ = decoded_examples(pattern, lambda s: decode_sample(s, image_size, 64_000_000, 8192))
    if not kept:
        raise ValueError(f"no usable test pairs in {pattern}")
    labels = [int(d.label) if d.label is not None and d.label.lstrip("-").isdigit() else None for d in kept]
    return torch.stack([torch.from_numpy(d.image) for d in kept]), [d.caption for d in kept], labels


@torch.no_grad()
def zero_shot_top1(model, images: torch.Tensor, labels: Sequence[int], classes: Sequence[str],
                   prompts: Sequence[str]) -> float:
    """Top-1 of the class whose prompt embedding (averaged over ``prompts``) is nearest the image."""
    txt = torch.stack([model.encode_text([p.format(c) for p in prompts]).mean(0) for c in classes])
    pred = (model.encode_image(images) @ F.normalize(txt, dim=-1).T).argmax(1)
    return float((pred == torch.as_tensor(list(labels))).float().mean())


def retrieval_arm(pattern: str, test: tuple, learner: str, steps: int, eval_every: int,
                  cfg: TrainConfig, image_size: int, classes: Optional[Sequence[str]] = None,
                  prompts: Sequence[str] = ("a photo of a {}",)) -> dict:
    test_images, test_captions, test_labels = test
    labelled = classes is not None and all(label is not None for label in test_labels)
    images, captions, rejected = load_pairs(pattern, image_size)
    torch.manual_seed(cfg.seed)
    model = create_model(learner)
    curve, eval_seconds = [], [0.0]

    hits: Dict[str, List[float]] = {}  # per test example, at the last evaluation: for the bootstrap

    def on_eval(step, m):
        t0 = time.perf_counter()
        with torch.no_grad():
            img, txt = m.encode_image(test_images), m.encode_text(test_captions)
            point = {"step": step, **retrieval_recall(img, txt)}
            hits.clear()
            hits.update(per_example_recall(img, txt))
            if labelled:
                point["zeroshot_top1"] = zero_shot_top1(m, test_images, test_labels, classes, prompts)
                hits["zeroshot_top1"] = zero_shot_hits(m, test_images, test_labels, classes, prompts)
        curve.append(point)
        eval_seconds[0] += time.perf_counter() - t0

    t0 = time.perf_counter()
    train_clip(model, epoch_batches(images, captions, min(cfg.batch_size, len(captions)), cfg.seed),
               steps, lr=cfg.lr, seed=cfg.seed, do_augment=cfg.augment, augment_kind=model.cfg.augment,
               eval_every=eval_every, on_eval=on_eval)
    train_seconds = time.perf_counter() - t0 - eval_seconds[0]
    return {"examples": len(captions), "rejected": rejected, "curve": curve,
            "train_seconds": train_seconds, "seconds_per_step": train_seconds / steps,
            "learner_flops_per_example": learner_flops(model, images[:16], captions[:16]),
            "_hits": dict(hits)}


def per_example_recall(img: torch.Tensor, txt: torch.Tensor, ks=(1, 5)) -> Dict[str, List[float]]:
    """Each test pair's share of ``retrieval_recall``: for ``mean_r@k`` the mean of its
    image-to-text and text-to-image hit (their mean over the pairs is the metric)."""
    sims = img @ txt.T
    target = torch.arange(len(img))
    ranks = {name: (s > s[target, target][:, None]).sum(dim=1) for name, s in (("i2t", sims), ("t2i", sims.T))}
    out = {}
    for k in ks:
        for name in ranks:
            out[f"{name}_r@{k}"] = (ranks[name] < k).float().tolist()
        out[f"mean_r@{k}"] = [0.5 * (a + b) for a, b in zip(out[f"i2t_r@{k}"], out[f"t2i_r@{k}"])]
    return out


@torch.no_grad()
def zero_shot_hits(model, images, labels, classes, prompts) -> List[float]:
    txt = torch.stack([model.encode_text([p.format(c) for p in prompts]).mean(0) for c in classes])
    pred = (model.encode_image(images) @ F.normalize(txt, dim=-1).T).argmax(1)
    return (pred == torch.as_tensor(list(labels))).float().tolist()


def bootstrap(hits: Dict[str, Sequence[float]], reference: str, metric: str, resamples: int = 1000,
              seed: int = 0) -> dict:
    """95% bootstrap intervals (test examples resampled with replacement, the same resample for
    every arm) of each arm's final ``metric`` and of its difference to the ``reference`` arm;
    ``separated`` when the difference's interval excludes 0. ``warning``: the test set is too
    small (or the arms too close) for the metric to tell an arm from the reference arm."""
    import numpy as np
    arms = {name: np.asarray(h, dtype=np.float64) for name, h in hits.items()}
    n = len(next(iter(arms.values())))
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = {name: h[idx].mean(axis=1) for name, h in arms.items()}

    def ci(values):
        lo, hi = np.percentile(values, [2.5, 97.5])
        return [round(float(lo), 4), round(float(hi), 4)]

    out: dict = {"metric": metric, "test_examples": n, "resamples": resamples, "reference_arm": reference,
                 "arms": {name: {"value": round(float(h.mean()), 4), "ci95": ci(means[name])}
                          for name, h in arms.items()}, "vs_reference": {}}
    unseparated = []
    for name in arms:
        if name == reference:
            continue
        diff = means[name] - means[reference]
        lo, hi = ci(diff)
        separated = lo > 0 or hi < 0
        out["vs_reference"][name] = {"difference": round(float(arms[name].mean() - arms[reference].mean()), 4),
                                     "ci95": [lo, hi], "separated": separated}
        if not separated:
            unseparated.append(f"{name} {arms[name].mean():.3f} vs {arms[reference].mean():.3f} "
                               f"(difference 95% CI [{lo:+.3f}, {hi:+.3f}])")
    out["warning"] = None if not unseparated else (
        f"the test set ({n} examples) cannot tell these arms apart on {metric}: " + "; ".join(unseparated)
        + ": a larger --test set (or more steps) is needed before reading a speed-up into it")
    out["lines"] = bootstrap_lines(out)  # what eval prints and eval.html shows
    return out


def learner_flops(model, images, targets) -> float:
    """Forward FLOPs per example of ``model`` (put in eval mode) on ``images`` and their captions or
    labels ``targets``: what one learner step's forward costs (torch's FlopCounterMode)."""
    from learnsieve.evaluate.accounting import forward
    from learnsieve.models.flops import flops_per_example
    model.eval()
    return flops_per_example(forward(model, images, targets), images.shape[0])


def evaluate(arms: Dict[str, str], test: str, out: str, learner: str, steps: int, eval_every: int,
             cfg: TrainConfig, image_size: int, reference_arm: Optional[str] = None,
             task: str = "retrieval", metric: Optional[str] = None,
             classes: Optional[Sequence[str]] = None, prompts: Sequence[str] = ("a photo of a {}",)) -> dict:
    """Train ``learner`` on each arm, evaluate on ``test``; write and return eval.json's dict."""
    if task not in PRIMARY:
        raise ValueError(f"task must be one of {sorted(PRIMARY)}, not {task!r}")
    metric = metric or PRIMARY[task]
    results = {"task": task, "metric": metric, "learner": learner, "steps": steps,
               "eval_every": eval_every, "batch_size": cfg.batch_size, "seed": cfg.seed, "test": test,
               "arms": {}}
    if task == "retrieval":
        test_data = load_test(test, image_size)
        results["test_examples"] = len(test_data[1])
    for name, pattern in arms.items():
        t0 = time.perf_counter()
        if task == "retrieval":
            arm = retrieval_arm(pattern, test_data, learner, steps, eval_every, cfg, image_size,
                                classes, prompts)
        else:
            from learnsieve.evaluate.arms_cls import classification_arm
            arm = classification_arm(pattern, test, learner, steps, eval_every, cfg, image_size)
        if metric not in arm["curve"][-1]:
            raise ValueError(f"metric {metric!r} is not measured; have {sorted(arm['curve'][-1])}")
        arm.update(shards=pattern, final=arm["curve"][-1])
        results["arms"][name] = arm
        log.info(f"[eval] {name}: {arm['examples']} examples, final {metric} {arm['final'][metric]:.3f} "
            f"({time.perf_counter() - t0:.0f}s)")
    if task == "classification":
        results["num_classes"] = cfg.num_classes
        flops = _classifier_flops(learner, test, image_size, cfg.num_classes)
        for arm in results["arms"].values():
            arm.setdefault("learner_flops_per_example", flops)
    results["speedup"] = speedup(results, metric, reference_arm)
    hits = {name: arm.pop("_hits", {}).get(metric) for name, arm in results["arms"].items()}
    if len(hits) > 1 and all(h for h in hits.values()):
        results["bootstrap"] = bootstrap(hits, results["speedup"]["reference_arm"], metric, seed=cfg.seed)
        if results["bootstrap"]["warning"]:
            log.warning(f"[eval] {results['bootstrap']['warning']}")
    write_json(results, out)
    return results


def _classifier_flops(learner: str, test: str, image_size: int, num_classes: int) -> float:
    from learnsieve.evaluate.arms_cls import load_test as load_labelled_test
    from learnsieve.models.classifier import create_classifier
    images, labels = load_labelled_test(test, image_size, num_classes)
    model = create_classifier(learner, num_classes=num_classes)
    return learner_flops(model, images[:16], labels[:16])


def speedup(results: dict, metric: str, reference_arm: Optional[str] = None) -> dict:
    """Steps each arm needs to reach the reference (IID) arm's best metric, and the ratio to the
    steps the reference arm itself needed. The best, not the last, point: a small arm can overfit
    and end below its peak, and a falling last point would make any arm "reach" it at once."""
    arms = results["arms"]
    ref = reference_arm or ("random" if "random" in arms else next(iter(arms)))
    target = max(p[metric] for p in arms[ref]["curve"])

    def reach(arm):
        return steps_to_reach([(p["step"], p[metric]) for p in arm["curve"]], target)

    ref_steps = reach(arms[ref])
    out = {"reference_arm": ref, "metric": metric, "target": target, "target_rule": "best of reference arm",
           "reference_steps": ref_steps, "arms": {}}
    for name, arm in arms.items():
        reached = reach(arm)
        out["arms"][name] = {"steps_to_target": reached,
                             "speedup_vs_reference": (ref_steps / reached) if reached else None}
    return out


def write_json(results: dict, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)


def bootstrap_lines(b: Optional[dict]) -> List[str]:
    """eval's text (table, eval.html) of ``bootstrap``'s intervals: one line, and its warning."""
    if not b:
        return []
    if "lines" in b:
        return list(b["lines"])
    arms = ", ".join(f"{name} {a['value']:.3f} [{a['ci95'][0]:.3f}, {a['ci95'][1]:.3f}]"
                     for name, a in b["arms"].items())
    lines = [f"95% bootstrap intervals of final {b['metric']} ({b['test_examples']} test examples, "
             f"{b['resamples']} resamples): {arms}"]
    if b.get("warning"):
        lines.append(f"warning: {b['warning']}")
    return lines
