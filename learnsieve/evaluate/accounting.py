"""Compute accounting for ``learnsieve eval``: is curation compute-positive?

Costs are counted two ways, side by side: FLOPs (torch's FlopCounterMode on the real models, a
training step = 3x forward) and seconds measured on this machine. The curated run's cost to reach
the IID (random) arm's best metric (its peak, not its last point) is reference training + proxy
training + scoring the pool + the learner's steps on the curated set; the IID cost is the
learner's steps on the random set to the same metric. The reference is often trained once and
reused across many curations, so the totals are also given without it (``amortised``).
Scoring is counted as the pipeline runs it: both models on each batch inside
``shared_inputs()``, so frozen towers they share count once.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch

from learnsieve.models.checkpoint import load_checkpoint
from learnsieve.models.flops import TRAIN_MULTIPLIER, flops_per_example
from learnsieve.models.frozen import uncached


def forward(model, images: torch.Tensor, targets) -> Callable[[], object]:
    """The forward pass a training step / a scoring call runs, as a thunk."""
    if hasattr(model, "encode_text"):  # dual encoder: both towers (scoring adds a small bank matmul)
        return lambda: (model.encode_image(images), model.encode_text(targets))
    return lambda: model.score_batch(images, targets)


def scoring_forward(model, images: torch.Tensor, targets) -> Callable[[], object]:
    if hasattr(model, "bank_filled") and bool(model.bank_filled):
        return lambda: model.score_batch(images, targets)
    return forward(model, images, targets)


@torch.no_grad()
def seconds_per_example(fn: Callable[[], object], batch: int, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / batch


def judge_costs(path: str, images: torch.Tensor, targets, batch_size: int) -> dict:
    """A scoring model's training cost (from its checkpoint's metadata) and per-example scoring
    cost (measured here on ``images``). Frozen pretrained towers cost one forward per distinct
    training example (their features are cached), the trainable rest 3x forward per step; scoring
    a fresh pool runs every tower on every example. Held-out evaluations for early stopping
    (``val_pairs`` x ``val_curve`` in the metadata) count as forwards; every trained step counts,
    also those after the step that was kept. An ``open_clip:ARCH:PATH`` model's training cost
    is unknown (``train_cost_known`` false, counted as 0): only its scoring cost is measured."""
    model, meta = load_checkpoint(path)
    n = images.shape[0]
    with uncached():
        fwd = flops_per_example(scoring_forward(model, images, targets), n)
        train_fwd = flops_per_example(forward(model, images, targets), n)
        score_s = seconds_per_example(scoring_forward(model, images, targets), n)
    with torch.no_grad():
        forward(model, images, targets)()  # fills the frozen towers' caches
    trainable_fwd = flops_per_example(forward(model, images, targets), n)
    frozen_fwd = max(0.0, train_fwd - trainable_fwd)
    steps = int(meta.get("steps") or 0)
    batch = int(meta.get("batch_size") or batch_size)
    seen = min(int(meta.get("pairs") or batch * steps), batch * steps)
    val_pairs, val_evals = int(meta.get("val_pairs") or 0), len(meta.get("val_curve") or [])
    val_flops = val_pairs * (frozen_fwd + trainable_fwd * val_evals) if val_evals else 0.0
    return {"checkpoint": path, "model": meta.get("config", {}).get("name"), "steps": steps,
            "batch_size": batch, "forward_flops_per_example": fwd,
            "frozen_forward_flops_per_example": frozen_fwd,
            "train_flops": frozen_fwd * seen + TRAIN_MULTIPLIER * trainable_fwd * batch * steps + val_flops,
            "validation_flops": val_flops,
            "train_seconds": meta.get("seconds"), "score_seconds_per_example": score_s,
            # an open_clip:ARCH:PATH model was trained by its own trainer: its cost is not known here
            "train_cost_known": meta.get("format") != "open_clip"}


def joint_scoring_flops(reference: str, proxy: str, images: torch.Tensor, targets) -> float:
    """FLOPs per example of scoring with both models as the pipeline does: inside
    ``shared_inputs()``, so frozen towers the two share run once (``core/scoring.py``)."""
    from learnsieve.models.frozen import shared_inputs
    ref, _ = load_checkpoint(reference)
    prx, _ = load_checkpoint(proxy)
    fns = (scoring_forward(ref, images, targets), scoring_forward(prx, images, targets))

    def both():
        with shared_inputs():
            return [fn() for fn in fns]
    with uncached():
        return flops_per_example(both, images.shape[0])


def account(results: dict, learner_forward_flops: float, batch_size: int, reference: str, proxy: str,
            scored: int, images: torch.Tensor, targets, curated_arm: str = "curated",
            scoring_seconds: Optional[float] = None) -> dict:
    """Total cost of the curated arm to the reference (IID) arm's best metric vs the IID arm's
    cost to the same metric, in FLOPs and in seconds."""
    ref = judge_costs(reference, images, targets, batch_size)
    prx = judge_costs(proxy, images, targets, batch_size)
    step_flops = TRAIN_MULTIPLIER * learner_forward_flops * batch_size
    score_flops = scored * joint_scoring_flops(reference, proxy, images, targets)
    measured_scoring = scoring_seconds is not None
    if scoring_seconds is None:
        scoring_seconds = scored * (ref["score_seconds_per_example"] + prx["score_seconds_per_example"])
    out = {"learner_step_flops": step_flops, "scored_examples": scored, "reference": ref, "proxy": prx,
           "scoring_flops": score_flops, "scoring_seconds": scoring_seconds,
           "scoring_seconds_source": "measured curation run" if measured_scoring
           else "estimated: measured forward time x examples", "curated_arm": curated_arm}
    return totals(out, results)


def totals(costs: dict, results: dict) -> dict:
    """The step-dependent part of the accounting, from ``costs`` (``account``'s fixed costs) and
    ``results``' speed-up: recomputable from eval.json alone."""
    out = {k: v for k, v in costs.items() if k not in TOTALS}
    speed, curated_arm = results["speedup"], costs["curated_arm"]
    iid_arm = speed["reference_arm"]
    out.update(target_metric=speed["metric"], target=speed["target"], iid_arm=iid_arm)
    c_steps = speed["arms"].get(curated_arm, {}).get("steps_to_target")
    i_steps = speed["reference_steps"]
    out["curated_steps"], out["iid_steps"] = c_steps, i_steps
    if c_steps is None or i_steps is None:
        out["compute_positive"] = None
        out["note"] = f"{curated_arm} did not reach {iid_arm}'s best {speed['metric']} within the budget"
        return out
    ref, prx, step_flops = costs["reference"], costs["proxy"], costs["learner_step_flops"]
    c_sps = results["arms"][curated_arm]["seconds_per_step"]
    i_sps = results["arms"][iid_arm]["seconds_per_step"]
    fl = {"curated_learner": c_steps * step_flops, "iid_learner": i_steps * step_flops}
    fl["curated_total"] = fl["curated_learner"] + costs["scoring_flops"] + prx["train_flops"] + ref["train_flops"]
    fl["curated_total_amortised"] = fl["curated_total"] - ref["train_flops"]
    sec = {"curated_learner": c_steps * c_sps, "iid_learner": i_steps * i_sps}
    judge_s = (prx["train_seconds"] or 0.0) + costs["scoring_seconds"]
    sec["curated_total"] = sec["curated_learner"] + judge_s + (ref["train_seconds"] or 0.0)
    sec["curated_total_amortised"] = sec["curated_learner"] + judge_s
    out["flops"], out["seconds"] = fl, sec
    out["flops_ratio"] = fl["curated_total"] / fl["iid_learner"]
    out["flops_ratio_amortised"] = fl["curated_total_amortised"] / fl["iid_learner"]
    out["seconds_ratio"] = sec["curated_total"] / sec["iid_learner"]
    out["compute_positive"] = out["flops_ratio"] < 1.0
    out["compute_positive_amortised"] = out["flops_ratio_amortised"] < 1.0
    out.update(break_even(out))
    return out


TOTALS = ("target_metric", "target", "iid_arm", "curated_steps", "iid_steps", "compute_positive", "note",
          "flops", "seconds", "flops_ratio", "flops_ratio_amortised", "seconds_ratio",
          "compute_positive_amortised", "break_even_iid_steps", "break_even_iid_steps_amortised")


def break_even(c: dict) -> dict:
    """Extrapolation, labelled as such: if the measured speed-up s = iid_steps / curated_steps held
    for longer runs, curation (a fixed judge cost J: reference + proxy training + scoring) pays for
    itself once IID training needs more than J / (learner step cost x (1 - 1/s)) steps."""
    if not c.get("curated_steps") or not c.get("iid_steps") or c["iid_steps"] <= c["curated_steps"]:
        return {"break_even_iid_steps": None, "break_even_iid_steps_amortised": None}
    per_step = c["learner_step_flops"] * (1 - c["curated_steps"] / c["iid_steps"])
    judge = c["scoring_flops"] + c["proxy"]["train_flops"]
    return {"break_even_iid_steps": (judge + c["reference"]["train_flops"]) / per_step,
            "break_even_iid_steps_amortised": judge / per_step}


def compute_summary(c: dict) -> str:
    """One line: curated total / IID cost to the IID arm's best metric, and the break-even."""
    if c.get("compute_positive") is None:
        return c.get("note", "not measured")
    c = {**c, **break_even(c)}
    line = (f"curated total / IID to {c['iid_arm']}'s best {c['target_metric']} = {c['flops_ratio']:.2f} "
            f"in FLOPs ({c['flops_ratio_amortised']:.2f} with the reference amortised), "
            f"{c['seconds_ratio']:.2f} in seconds; compute positive: {c['compute_positive']}")
    if c.get("break_even_iid_steps"):
        line += (f"; at this speed-up curation pays for itself once IID training needs more than "
                 f"{c['break_even_iid_steps']:.0f} learner steps ({c['break_even_iid_steps_amortised']:.0f} "
                 f"with the reference amortised)")
    return line
