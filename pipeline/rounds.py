"""learnsieve rounds: re-curation with an online proxy (Evans et al.'s loop, offline).

Round r curates the pool with the current proxy, then trains the proxy further on what round r
kept, so the next round's learnability reflects what the learner has already learnt. Each
round has its own output folder, ``OUTPUT/roundR``, started from the previous round's score
files (``_scores/``, copied with the folder's marker): the reference's columns stay valid, so
round r > 0 runs only the new proxy over the pool (counter ``score/shards_proxy_only``), never
the reference. A rerun into the same ``OUTPUT`` reuses what still matches (``--incremental``).

With ``train_cmd`` the proxy is trained by the user's own trainer instead (e.g. open_clip's
``python -m open_clip_train.main ... --train-data {shards}``): the command is split with shlex
and run without a shell, ``{shards}`` (the round's curated shard pattern), ``{num_samples}``
(examples kept), ``{round}``, ``{output}`` (the round's folder) and ``{proxy}`` (the current
proxy's file) filled in each argument; its output is streamed to the log. The newest file
matching ``checkpoints_glob`` (placeholders filled too) written since the round started becomes
the next proxy, ``open_clip:ARCH:FILE``.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import logging
import os
import re
import shlex
import shutil
import subprocess
import time
from typing import Dict, List, Optional

from learnsieve.config import Config, ConfigError
from learnsieve.errors import LearnsieveError
from learnsieve.models.spec import is_open_clip, make_spec, model_file, split_spec
from learnsieve.pipeline.run import run
from learnsieve.train.clip import train_from_shards

log = logging.getLogger(__name__)

DEFAULT_CHECKPOINTS_GLOB = "logs/*/checkpoints/epoch_*.pt"  # open_clip_train's --logs ./logs
PLACEHOLDERS = ("shards", "num_samples", "round", "output", "proxy")


class TrainCommandError(LearnsieveError, RuntimeError):
    """The user's training command failed or wrote no checkpoint; the message is one line."""


def _fill(text: str, values: Dict[str, str]) -> str:
    """``{shards}`` etc. replaced in one pass; other braces (brace patterns) are left alone."""
    return re.sub(r"\{(%s)\}" % "|".join(PLACEHOLDERS), lambda m: values[m.group(1)], text)


def _model_file(spec: str) -> str:
    return model_file(spec) or spec


class TrainCommand:
    """The user's trainer between rounds: ``argv`` from shlex, run without a shell."""

    def __init__(self, cmd: str, checkpoints_glob: str, arch: str):
        try:
            self.argv = shlex.split(cmd)
        except ValueError as exc:
            raise ConfigError(f"--train-cmd {cmd!r}: {exc}") from None
        if not self.argv:
            raise ConfigError("--train-cmd is empty")
        if not checkpoints_glob:
            raise ConfigError("--checkpoints-glob is empty")
        if not arch:
            raise ConfigError("--train-cmd needs the architecture of the checkpoints it writes: pass "
                              "--proxy-arch ARCH (e.g. ViT-B-32) or --proxy open_clip:ARCH:PATH")
        from learnsieve.models.open_clip_adapter import known_arch
        known_arch(f"--proxy-arch {arch}", arch)
        self.checkpoints_glob, self.arch = checkpoints_glob, arch

    def __call__(self, r: int, shards: str, output: str, num_samples: int, proxy: str,
                 started: float) -> str:
        """Train on round ``r``'s shards; the next proxy, ``open_clip:ARCH:CHECKPOINT``."""
        values = {"shards": shards, "num_samples": str(num_samples), "round": str(r), "output": output,
                  "proxy": _model_file(proxy)}
        argv = [_fill(a, values) for a in self.argv]
        log.info(f"[round {r}] training the proxy: {shlex.join(argv)}")
        tail: collections.deque = collections.deque(maxlen=20)
        t0 = time.time()
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    errors="replace", bufsize=1)
        except OSError as exc:
            raise TrainCommandError(f"--train-cmd cannot start {argv[0]!r}: {exc.strerror or exc}") from None
        try:
            for line in proc.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                    log.info(f"[round {r} train] {line}")
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            last = tail[-1] if tail else "no output"
            raise TrainCommandError(f"--train-cmd failed in round {r} with exit code {rc}: {last}"[:500])
        pattern = _fill(self.checkpoints_glob, values)
        found = [(os.path.getmtime(p), p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        fresh = [x for x in found if x[0] >= started]
        if not fresh:
            seen = f"{len(found)} older file(s) match" if found else "no file matches"
            raise TrainCommandError(f"--train-cmd wrote no checkpoint matching {pattern!r} in round {r} "
                                    f"({seen}); pass --checkpoints-glob where the trainer saves")
        checkpoint = os.path.abspath(max(fresh)[1])
        log.info(f"[round {r}] trained in {time.time() - t0:.0f} s: next proxy {checkpoint}")
        return make_spec(self.arch, checkpoint)


def seed_scores(previous: str, out: str) -> int:
    """Start round folder ``out`` from ``previous``'s score files (and its marker, so the folder
    is learnsieve's): the reference's scores are reused, only the new proxy runs. Nothing is done
    where ``out`` already has score files or anything else (a rerun keeps its own); returns the
    number of files copied. Local folders only; elsewhere the round scores in full."""
    from learnsieve.core.output import MARKER, SCORES
    src, dst = os.path.join(previous, SCORES), os.path.join(out, SCORES)
    if "://" in previous or "://" in out or not os.path.isdir(src) \
            or not os.path.isfile(os.path.join(previous, MARKER)):
        return 0
    if os.path.isdir(out) and os.listdir(out):
        return 0
    os.makedirs(dst)
    names = [n for n in sorted(os.listdir(src)) if n.endswith(".parquet")]
    for name in names:
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    shutil.copy2(os.path.join(previous, MARKER), os.path.join(out, MARKER))
    return len(names)


def rounds(cfg: Config, n_rounds: int, steps: int, pipeline_args: Optional[List[str]] = None,
           train_cmd: Optional[str] = None, checkpoints_glob: str = DEFAULT_CHECKPOINTS_GLOB,
           proxy_arch: Optional[str] = None) -> List[dict]:
    if n_rounds < 1:
        raise ValueError("rounds must be >= 1")
    proxy = cfg.proxy
    trainer = None
    if train_cmd:
        arch = proxy_arch or (split_spec(proxy) or (None,))[0]
        trainer = TrainCommand(train_cmd, checkpoints_glob, arch)
    elif n_rounds > 1 and is_open_clip(proxy):
        raise ConfigError(f"--proxy {proxy} is an open_clip model, which learnsieve's trainer does not "
                          f"train: pass --train-cmd with its own trainer (see README 'With open_clip's trainer')")
    history = []
    for r in range(n_rounds):
        started = time.time()
        out = os.path.join(cfg.output, f"round{r}")
        if r > 0 and seed_scores(history[-1]["output"], out):
            log.info(f"[round {r}] reusing round {r - 1}'s score files: only the new proxy scores the pool")
        stats = run(dataclasses.replace(cfg, output=out, proxy=proxy), pipeline_args, incremental=True)
        history.append({"round": r, "proxy": proxy, "output": out, **{k: stats[k] for k in
                        ("read", "kept", "filtered", "rejected", "output_shards")},
                        "proxy_only_shards": stats.get("counters", {}).get("score/shards_proxy_only", 0)})
        log.info(f"[round {r}] kept {stats['kept']} of {stats['read']} with proxy {proxy}")
        if r == n_rounds - 1 or stats["output_shards"] == 0:
            break
        pattern = os.path.join(out, "{%05d..%05d}.tar" % (0, stats["output_shards"] - 1)) \
            if stats["output_shards"] > 1 else os.path.join(out, "00000.tar")
        if trainer is not None:
            proxy = trainer(r, pattern, out, stats["kept"], proxy, started)
            continue
        proxy = os.path.join(cfg.output, f"proxy{r + 1}")
        train_from_shards(pattern, proxy, "", steps, cfg.train, cfg.score.image_size, role="proxy",
                          init=history[-1]["proxy"])
    return history
