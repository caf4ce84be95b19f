"""learnsieve eval: does a curated set train a learner faster? (No Beam.)

The same learner (architecture, optimizer, seed, step budget) is trained on each arm, e.g. the
curated shards, a random subset of the pool of the same size, and the whole pool, and is
evaluated every N steps on a clean held-out set by image-text retrieval (recall@1/5 both ways).
eval.json holds the curves, the final metrics and the speed-up: the steps each arm needs to reach
the reference arm's final metric (Evans et al. report about 1.9x fewer steps than IID).
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Callable, Dict, Optional

import torch

from models.metrics import retrieval_recall, steps_to_reach
from models.registry import create_model
from models.train import train_clip
from pipeline.config import TrainConfig
from pipeline.example import Sample
from pipeline.shards import TarSink, expand_pattern, iter_shard
from pipeline.training import epoch_batches, load_pairs


def random_subset(pattern: str, n: int, out_dir: str, seed: int = 0, per_shard: int = 1000) -> str:
    """A uniform random sample of ``n`` readable samples of the pool, written as shards (the
    'random' arm at equal kept size); returns its pattern."""
    rng = random.Random(seed)
    reservoir, seen = [], 0
    for shard_index, url in enumerate(expand_pattern(pattern)):
        for item in iter_shard(url, shard_index):
            if not isinstance(item, Sample):
                continue
            seen += 1
            if len(reservoir) < n:
                reservoir.append(item)
            elif (j := rng.randrange(seen)) < n:
                reservoir[j] = item
    reservoir.sort(key=lambda s: (s.shard_index, s.index))
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


def evaluate(arms: Dict[str, str], test: str, out: str, learner: str, steps: int, eval_every: int,
             cfg: TrainConfig, image_size: int, reference_arm: Optional[str] = None,
             log: Callable[[str], None] = print) -> dict:
    test_images, test_captions, _ = load_pairs(test, image_size)
    results = {"learner": learner, "steps": steps, "eval_every": eval_every, "test": test,
               "test_pairs": len(test_captions), "arms": {}}
    for name, pattern in arms.items():
        t0 = time.perf_counter()
        images, captions, rejected = load_pairs(pattern, image_size)
        torch.manual_seed(cfg.seed)
        model = create_model(learner)
        curve = []

        def on_eval(step, m):
            with torch.no_grad():
                metrics = retrieval_recall(m.encode_image(test_images), m.encode_text(test_captions))
            curve.append({"step": step, **metrics})

        train_clip(model, epoch_batches(images, captions, min(cfg.batch_size, len(captions)), cfg.seed),
                   steps, lr=cfg.lr, seed=cfg.seed, do_augment=cfg.augment, eval_every=eval_every,
                   on_eval=on_eval)
        seconds = time.perf_counter() - t0
        results["arms"][name] = {"shards": pattern, "pairs": len(captions), "rejected": rejected,
                                 "curve": curve, "final": curve[-1], "train_seconds": round(seconds, 1)}
        log(f"[eval] {name}: {len(captions)} pairs, final mean R@1 {curve[-1]['mean_r@1']:.3f} "
            f"({seconds:.0f}s)")
    ref = reference_arm or ("random" if "random" in arms else next(iter(arms)))
    target = results["arms"][ref]["final"]["mean_r@1"]
    def reach(arm):
        return steps_to_reach([(p["step"], p["mean_r@1"]) for p in arm["curve"]], target)

    ref_steps = reach(results["arms"][ref])  # first step the reference arm reaches its final metric
    results["speedup"] = {"reference_arm": ref, "metric": "mean_r@1", "target": target,
                          "reference_steps": ref_steps, "arms": {}}
    for name, arm in results["arms"].items():
        reached = reach(arm)
        results["speedup"]["arms"][name] = {
            "steps_to_target": reached,
            "speedup_vs_reference": (ref_steps / reached) if reached else None}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(results, f, indent=2)
    return results
