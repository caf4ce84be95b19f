"""learnsieve rounds: re-curation with an online proxy (Evans et al.'s loop, offline).

Round r curates the pool with the current proxy, then trains the proxy further on what round r
kept, so the next round's learnability reflects what the learner has already learnt. Each
round has its own output folder; a new proxy changes the model hash, so every round re-scores.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from typing import List, Optional

from learnsieve.pipeline.run import run

from learnsieve.config import Config
from learnsieve.train.clip import train_from_shards

log = logging.getLogger(__name__)


def rounds(cfg: Config, n_rounds: int, steps: int, pipeline_args: Optional[List[str]] = None) -> List[dict]:
    if n_rounds < 1:
        raise ValueError("rounds must be >= 1")
    proxy = cfg.proxy
    history = []
    for r in range(n_rounds):
        out = os.path.join(cfg.output, f"round{r}")
        stats = run(dataclasses.replace(cfg, output=out, proxy=proxy), pipeline_args, overwrite=True)
        history.append({"round": r, "proxy": proxy, "output": out, **{k: stats[k] for k in
                        ("read", "kept", "filtered", "rejected", "output_shards")}})
        log.info(f"[round {r}] kept {stats['kept']} of {stats['read']} with proxy {proxy}")
        if r == n_rounds - 1 or stats["output_shards"] == 0:
            break
        pattern = os.path.join(out, "{%05d..%05d}.tar" % (0, stats["output_shards"] - 1)) \
            if stats["output_shards"] > 1 else os.path.join(out, "00000.tar")
        proxy = os.path.join(cfg.output, f"proxy{r + 1}")
        train_from_shards(pattern, proxy, "", steps, cfg.train, cfg.score.image_size, role="proxy", init=history[-1]["proxy"])
    return history
