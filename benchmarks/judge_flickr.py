"""How well do the reference and proxy judge real photos? Flickr8k, clean vs mismatched captions.

Builds the Flickr pool and reference split with ``learnsieve.datasets.flickr.build_flickr``
(into a temp dir; 700 reference photos x 5 captions, 300 pool photos with 40% of captions moved to
other pool photos, 5% junk, 1% corrupt), trains the reference on the clean split and the proxy on
the pool (``learnsieve.train.clip.train_from_shards``, as ``learnsieve train-reference/train-proxy``
do), reloads both checkpoints, scores the pool as the pipeline does
(``learnsieve.core.scoring.score_decoded``), and prints the AUROC of clean vs mismatched pairs for
ref_sim, -ref_loss, learnability and proxy_sim (and of learnability for clean vs any noise), with
seconds, for each configuration named on the command line.

    .venv/bin/python benchmarks/judge_flickr.py --configs baseline,photo --seed 0
    .venv/bin/python benchmarks/judge_flickr.py --configs baseline --n-ref-images 10 --n-pool-images 10 \
        --ref-steps 2 --proxy-steps 2   # a quick check
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict

sys.path.append(str(Path(__file__).resolve().parents[1]))  # for benchmarks.*; after the installed learnsieve

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


def run_config(name: str, spec: dict, data: dict, root: str, seed: int) -> dict:
    """Train ``spec``'s reference and proxy on ``data``, score its pool; the AUROCs and seconds."""
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
    from benchmarks.common import decoded_pool, score_examples
    scores = score_examples(ref, proxy, decoded_pool(data["pool_pattern"], spec["size"]))
    out["score_s"] = round(time.perf_counter() - t0, 1)
    keys = sorted(scores)
    cols = {col: [scores[k][col] for k in keys] for col in ("ref_sim", "ref_loss", "learnability", "proxy_sim")}
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


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="baseline,photo", help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--data", default=str(FLICKR))
    ap.add_argument("--json", default="", help="append results as JSON lines to this file")
    ap.add_argument("--n-ref-images", type=int, default=700, help="clean reference photos (5 captions each)")
    ap.add_argument("--n-pool-images", type=int, default=300, help="pool photos (one caption each)")
    ap.add_argument("--ref-steps", type=int, help="every config's reference steps (default: the config's)")
    ap.add_argument("--proxy-steps", type=int, help="every config's proxy steps (default: the config's)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from benchmarks.common import append_jsonl, pick
    names = pick(args.configs, CONFIGS, ap, "configs")
    from learnsieve.datasets.flickr import build_flickr
    register_variants()
    print("| " + " | ".join(COLUMNS) + " |", flush=True)
    with tempfile.TemporaryDirectory() as root:
        data = build_flickr(args.data, os.path.join(root, "data"), seed=args.seed, n_ref_images=args.n_ref_images,
                            n_pool_images=args.n_pool_images, mismatch=0.4, junk=0.05, corrupt=0.01, shards=4,
                            px=max([112] + [CONFIGS[n]["size"] for n in names]))
        rows = []
        for name in names:
            spec = dict(CONFIGS[name])
            spec.update({k: getattr(args, k) for k in ("ref_steps", "proxy_steps") if getattr(args, k)})
            res = run_config(name, spec, data, root, args.seed)
            res["seed"] = args.seed
            print("| " + " | ".join(str(res[c]) for c in COLUMNS) + " |", flush=True)
            append_jsonl(args.json, res)
            rows.append(res)
    return rows


if __name__ == "__main__":
    main()
