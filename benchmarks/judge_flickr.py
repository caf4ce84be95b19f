"""How well do the reference and proxy judge real photos? Flickr8k, clean vs mismatched captions.

Builds the Flickr pool and reference split with ``pipeline.realdata.build_flickr`` (into a temp
dir; 700 reference photos x 5 captions, 300 pool photos with 40% of captions moved to other pool
photos, 5% junk, 1% corrupt), trains the reference on the clean split and the proxy on the pool
(``pipeline.training.train_from_shards``, as ``learnsieve train-reference/train-proxy`` do),
reloads both checkpoints, scores the pool, and prints the AUROC of clean vs mismatched pairs for
ref_sim, -ref_loss, learnability and proxy_sim (and of learnability for clean vs any noise), with
seconds, for each configuration named on the command line.

    .venv/bin/python benchmarks/judge_flickr.py --configs baseline,photo --seed 0
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

FLICKR = Path(__file__).resolve().parents[2] / "shared/data/flickr8k-1k.tar.gz"

# name: reference / proxy model (registered, or a variant defined in VARIANTS), decode size,
# steps, lr, batch, and whether batches hold one caption per image.
CONFIGS: Dict[str, dict] = {
    "baseline": dict(reference="ls_clip_small", proxy="ls_clip_tiny", size=64, ref_steps=250,
                     proxy_steps=20, lr=2e-3, batch=64, grouped=False),
    "baseline_grouped": dict(reference="ls_clip_small", proxy="ls_clip_tiny", size=64, ref_steps=250,
                             proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    "minilm_shift": dict(reference="ls_clip_photo_shift", proxy="ls_clip_photo_tiny_shift", size=64,
                         ref_steps=250, proxy_steps=20, lr=2e-3, batch=64, grouped=False),
    "photo": dict(reference="ls_clip_photo", proxy="ls_clip_photo_tiny", size=64, ref_steps=250,
                  proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    "photo_500": dict(reference="ls_clip_photo", proxy="ls_clip_photo_tiny", size=64, ref_steps=500,
                      proxy_steps=40, lr=2e-3, batch=64, grouped=True),
    "photo_96": dict(reference="ls_clip_photo_96", proxy="ls_clip_photo_tiny", size=96, ref_steps=250,
                     proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    "photo_mlp": dict(reference="ls_clip_photo_mlp", proxy="ls_clip_photo_tiny", size=64, ref_steps=250,
                      proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    "photo_lr1e-3": dict(reference="ls_clip_photo", proxy="ls_clip_photo_tiny", size=64, ref_steps=250,
                         proxy_steps=20, lr=1e-3, batch=64, grouped=True),
    "photo_resnet10t": dict(reference="ls_clip_photo_resnet10t", proxy="ls_clip_photo_tiny", size=64,
                            ref_steps=250, proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    # pretrained judges: frozen ImageNet EfficientNet-Lite0 + frozen MiniLM, linear heads only
    "lit": dict(reference="ls_clip_lit", proxy="ls_clip_photo_tiny", size=160, ref_steps=300,
                proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    "lit_96": dict(reference="ls_clip_lit_96", proxy="ls_clip_photo_tiny", size=96, ref_steps=300,
                   proxy_steps=20, lr=2e-3, batch=64, grouped=True),
    # + early stopping: 10% of the reference photos held out, the lowest held-out loss kept
    "lit_es": dict(reference="ls_clip_lit", proxy="ls_clip_photo_tiny", size=160, ref_steps=300,
                   proxy_steps=20, lr=2e-3, batch=64, grouped=True, val=0.1),
}

# Variants of the registered photo configs, registered here for the runs only.
VARIANTS = {
    "ls_clip_photo_shift": ("ls_clip_photo", dict(augment="shift")),
    "ls_clip_photo_tiny_shift": ("ls_clip_photo_tiny", dict(augment="shift")),
    "ls_clip_photo_96": ("ls_clip_photo", dict(image_size=96)),
    "ls_clip_photo_mlp": ("ls_clip_photo", dict(text_head_hidden=256)),
    "ls_clip_photo_resnet10t": ("ls_clip_photo", dict(image_tower="resnet10t")),
    "ls_clip_lit_96": ("ls_clip_lit", dict(image_size=96)),
}


def register_variants() -> None:
    from learnsieve.models.registry import MODELS, model_config
    for name, (base, overrides) in VARIANTS.items():
        if name not in MODELS:
            cfg = dataclasses.replace(model_config(base), name=name, **overrides)
            MODELS.register(name)(lambda cfg=cfg: cfg)


def pool_pairs(pattern: str, size: int):
    """Decoded pool pairs with their keys (bad records skipped, as the pipeline rejects them)."""
    from learnsieve.core.decode import decode_sample
    from learnsieve.core.paths import expand_pattern
    from learnsieve.core.records import DeadLetter
    from learnsieve.core.tar import iter_shard
    keys, images, captions = [], [], []
    for i, url in enumerate(expand_pattern(pattern)):
        for item in iter_shard(url, i):
            d = item if isinstance(item, DeadLetter) else decode_sample(item, size, 64_000_000, 8192)
            if not isinstance(d, DeadLetter):
                keys.append(d.key)
                images.append(torch.from_numpy(d.image))
                captions.append(d.caption)
    return keys, torch.stack(images), captions


def score_pool(ref, proxy, images: torch.Tensor, captions: List[str], batch: int = 64) -> Dict[str, List[float]]:
    from learnsieve.models.scores import compute_scores
    cols: Dict[str, List[float]] = {}
    for s in range(0, len(captions), batch):
        r = ref.pair_scores(images[s:s + batch], captions[s:s + batch])
        p = proxy.pair_scores(images[s:s + batch], captions[s:s + batch])
        q = compute_scores(_quantities(r, p))
        for k in ("ref_sim", "ref_loss", "learnability", "proxy_sim", "proxy_loss"):
            cols.setdefault(k, []).extend(q[k].tolist())
    return cols


def _quantities(r, p):
    return {"ref_loss": r["loss"], "proxy_loss": p["loss"], "ref_sim": r["sim"], "proxy_sim": p["sim"],
            "proxy_entropy": p["entropy"], "proxy_margin": p["margin"],
            "proxy_least_confidence": p["least_confidence"]}


def run_config(name: str, spec: dict, data: dict, root: str, seed: int) -> dict:
    from learnsieve.config import TrainConfig
    from learnsieve.models.checkpoint import load_checkpoint
    from learnsieve.models.metrics import auroc
    from learnsieve.train.clip import train_from_shards
    tc = dataclasses.replace(TrainConfig(), batch_size=spec["batch"], lr=spec["lr"], seed=seed,
                             torch_threads=1, reference_val_fraction=spec.get("val", 0.0), val_every=10)
    out: Dict[str, object] = {"config": name, **spec}
    dirs = {}
    for role, pattern, steps, sample in (("reference", data["clean_pattern"], spec["ref_steps"], None),
                                         ("proxy", data["pool_pattern"], spec["proxy_steps"], 300)):
        t0 = time.perf_counter()
        dirs[role] = os.path.join(root, f"{name}-{role}")
        train_from_shards(pattern, dirs[role], spec[role], steps, tc, spec["size"], sample=sample,
                          role=role, group_by_image=spec["grouped"])
        out[f"{role}_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    ref, meta = load_checkpoint(dirs["reference"])
    out["ref_kept_step"] = meta.get("best_step") or spec["ref_steps"]
    proxy, _ = load_checkpoint(dirs["proxy"])
    keys, images, captions = pool_pairs(data["pool_pattern"], spec["size"])
    cols = score_pool(ref, proxy, images, captions)
    out["score_s"] = round(time.perf_counter() - t0, 1)
    truth = data["truth"]
    judged = [i for i, k in enumerate(keys) if truth[k] in ("clean", "mismatch")]
    clean = [truth[keys[i]] == "clean" for i in judged]
    signed = {"ref_sim": 1, "ref_loss": -1, "learnability": 1, "proxy_sim": 1}
    for col, sign in signed.items():
        label = col if sign > 0 else "-" + col
        out[f"auroc_{label}"] = round(auroc([sign * cols[col][i] for i in judged], clean), 3)
    noisy = [i for i, k in enumerate(keys) if truth[k] in ("clean", "mismatch", "junk")]
    out["auroc_learnability_any_noise"] = round(
        auroc([cols["learnability"][i] for i in noisy], [truth[keys[i]] == "clean" for i in noisy]), 3)
    return out


COLUMNS = ("config", "reference", "proxy", "size", "ref_steps", "ref_kept_step", "auroc_ref_sim", "auroc_-ref_loss",
           "auroc_learnability", "auroc_proxy_sim", "auroc_learnability_any_noise", "reference_s",
           "proxy_s", "score_s")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="baseline,photo", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--data", default=str(FLICKR))
    ap.add_argument("--json", default="", help="append results as JSON lines to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from benchmarks.common import append_jsonl, pick
    names = pick(args.configs, CONFIGS, ap, "configs")
    from learnsieve.datasets.flickr import build_flickr
    register_variants()
    print("| " + " | ".join(COLUMNS) + " |", flush=True)
    with tempfile.TemporaryDirectory() as root:
        data = build_flickr(args.data, os.path.join(root, "data"), seed=args.seed, n_ref_images=700,
                            n_pool_images=300, mismatch=0.4, junk=0.05, corrupt=0.01, shards=4,
                            px=max([112] + [CONFIGS[n]["size"] for n in names]))
        for name in names:
            res = run_config(name, CONFIGS[name], data, root, args.seed)
            res["seed"] = args.seed
            print("| " + " | ".join(str(res[c]) for c in COLUMNS) + " |", flush=True)
            append_jsonl(args.json, res)


if __name__ == "__main__":
    main()
