"""learnsieve demo: the whole loop on the embedded synthetic dataset, no downloads."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from typing import List, Optional

from learnsieve.config import Config
from learnsieve.core.paths import shard_pattern
from learnsieve.core.summary import format_summary
from learnsieve.datasets.synthetic import generate
from learnsieve.evaluate.ground_truth import judge
from learnsieve.pipeline.run import run
from learnsieve.train.clip import train_from_shards

log = logging.getLogger(__name__)


def train_fingerprint(pattern: str, model: str, steps: int, tc, image_size: int, sample: Optional[int],
                      role: str) -> str:
    """What a trained model depends on: the shards' bytes, the model, steps and every training
    setting, and learnsieve's version (a new version may train differently)."""
    from learnsieve import __version__
    from learnsieve.core.paths import expand_pattern
    other = "proxy_" if role == "reference" else "reference_"  # the other model's settings do not matter
    train = {k: v for k, v in dataclasses.asdict(tc).items() if not k.startswith(other)}
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({"model": model, "steps": steps, "train": train, "image_size": image_size,
                         "sample": sample, "role": role, "learnsieve": __version__}, sort_keys=True).encode())
    for url in expand_pattern(pattern):
        with open(url, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def reusable(ckpt: str, fingerprint: str) -> bool:
    """Whether ``ckpt`` is a sound checkpoint trained with ``fingerprint``."""
    from learnsieve.models.checkpoint import verify_checkpoint
    try:
        meta = verify_checkpoint(ckpt)
    except Exception:  # missing, incomplete or damaged: train it
        return False
    return meta.get("train_fingerprint") == fingerprint


def demo(out: str, cfg: Config, pool: int = 3000, clean: int = 1500, shards: int = 6,
         pipeline_args: Optional[List[str]] = None, retrain: bool = False) -> dict:
    """The whole loop on the synthetic dataset in ``out``. A model already in ``out`` that was
    trained on the same data with the same settings is reused, unless ``retrain``."""
    t0 = time.perf_counter()
    os.makedirs(out, exist_ok=True)
    data = generate(os.path.join(out, "data"), pool=pool, clean=clean, shards=shards, seed=cfg.train.seed)
    log.info(f"[data] synthetic pool of {pool} examples in {shards} shards, clean split of {clean} "
             f"under {out}/data ({time.perf_counter() - t0:.1f}s)")
    clean_pat = shard_pattern(data["clean"], data["clean_shards"])
    pool_pat = shard_pattern(data["pool"], data["pool_shards"])
    ref_dir, proxy_dir = os.path.join(out, "reference"), os.path.join(out, "proxy")
    tc = cfg.train
    for role, pattern, ckpt, model, steps, sample in (
            ("reference", clean_pat, ref_dir, tc.reference_model, tc.reference_steps, None),
            ("proxy", pool_pat, proxy_dir, tc.proxy_model, tc.proxy_steps, tc.proxy_sample)):
        fingerprint = train_fingerprint(pattern, model, steps, tc, cfg.score.image_size, sample, role)
        if not retrain and reusable(ckpt, fingerprint):
            log.info(f"[{role}] reusing {ckpt}: trained on the same data with the same settings "
                     f"(--retrain trains it again)")
            continue
        train_from_shards(pattern, ckpt, model, steps, tc, cfg.score.image_size, sample=sample, role=role,
                          extra={"train_fingerprint": fingerprint})
    cfg = dataclasses.replace(cfg, input=pool_pat, output=os.path.join(out, "curated"),
                              reference=ref_dir, proxy=proxy_dir)
    t1 = time.perf_counter()
    stats = run(cfg, pipeline_args, overwrite=True)
    log.info(f"[curate] {stats['read']} examples in {time.perf_counter() - t1:.1f}s -> {cfg.output}")
    q = judge(os.path.join(cfg.output, "manifest.parquet"), data["truth"],
              ["learnability", "ref_sim", "hard", "easy"], unknown_clean=True)
    q.pop("values")  # raw scores by kind, for eval's histograms
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"stats": stats, "quality": q}, f, indent=2)
    print(format_summary(stats, q))  # the result, on stdout; progress went to stderr
    print(f"done in {time.perf_counter() - t0:.0f}s; open_clip: --train-data "
          f"'{cfg.output}/{{00000..{stats['output_shards'] - 1:05d}}}.tar'")
    return {"stats": stats, "quality": q}
