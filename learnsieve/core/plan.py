"""The run plan: everything that is not data fails here, before any work, in one line (paths,
checkpoints, the task, the output folder and what an earlier run left in it), and what the run
will do (which shards are scored, which reuse their score files). ``preflight`` claims the output
for a real run; ``plan_run(..., claim=False)`` checks the same read-only for ``--dry-run``, which
prints the plan (``RunPlan.lines``). No Beam; the Beam job (pipeline/run.py) and the CLI both
start from a plan.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Tuple

from learnsieve.config import Config, ConfigError
from learnsieve.core.layout import TMP
from learnsieve.core.output import check_lock, claim, inspect_output, probe_writable, release_lock
from learnsieve.core.paths import expand_pattern, join
from learnsieve.core.score_file import cache_path, cache_valid, score_settings
from learnsieve.models.checkpoint import (
    check_roles,
    read_checkpoint_meta,
    verify_checkpoint,
)
from learnsieve.models.spec import is_open_clip, split_spec


@dataclass(frozen=True)
class RunPlan:
    """What a curation run will do, checked before any work."""
    shards: Tuple[str, ...]          # input shard URLs, in input order
    models: Tuple[str, str]          # the reference's and the proxy's sha256 (the manifest's stamps)
    stamps: Tuple[str, str]          # what score files are stamped with (sha256, + ARCH for open_clip)
    settings: str                    # score settings (core/score_file.score_settings)
    num_classes: int                 # classification: the class count both models share; else 0
    state: str                       # the output folder: new | interrupted | finished
    cached: Tuple[int, ...]          # indexes of the shards whose score files are reused
    overwrite: bool = False
    incremental: bool = False

    @property
    def to_score(self) -> List[str]:
        reused = set(self.cached)
        return [u for i, u in enumerate(self.shards) if i not in reused]

    def describe_output(self) -> str:
        if self.state == "finished":
            return "holds a finished run: " + ("replaced" if self.overwrite else "re-curated incrementally")
        if self.state == "interrupted":
            return "holds an interrupted run: resumed" + ("" if self.cached else " (no score file reusable)")
        return "new"

    def lines(self, cfg: Config) -> List[str]:
        """The plan as the dry run prints it."""
        return [f"input: {len(self.shards)} shards ({cfg.input})",
                f"output: {cfg.output} ({self.describe_output()})",
                f"scoring: {len(self.shards) - len(self.cached)} shards to score, {len(self.cached)} reused "
                f"from the score cache",
                f"models: reference {cfg.reference} ({self.models[0][:12]}), proxy {cfg.proxy} "
                f"({self.models[1][:12]})"]


def task_classes(cfg: Config) -> int:
    """Both checkpoints must be of the config's task; for classification, returns the class
    count they share (labels outside it are dead letters), else 0."""
    from learnsieve.models.classifier import FORMAT as CLASSIFIER_FORMAT
    want = cfg.task == "classification"
    classes = set()
    for role in ("reference", "proxy"):
        meta = read_checkpoint_meta(getattr(cfg, role))
        if (meta["format"] == CLASSIFIER_FORMAT) != want:
            kind = "an image-text model" if want else "an image classifier"
            other = "retrieval" if want else "classification"
            raise ConfigError(f"{role} checkpoint {getattr(cfg, role)} is {kind}, but task is "
                              f"{cfg.task}; train one for this task or set task: {other}")
        classes.add(int(meta["config"].get("num_classes", 0)))
    if want and len(classes) != 1:
        raise ConfigError(f"reference and proxy classify different numbers of classes: {sorted(classes)}")
    return classes.pop() if want else 0


def verify_model(path: str) -> dict:
    """``verify_checkpoint``, or for ``open_clip:ARCH:PATH`` the adapter's check (the file read
    with weights_only=True, the weights fitting ARCH, the tokenizer, the bank)."""
    if is_open_clip(path):
        from learnsieve.models.open_clip_adapter import verify
        return verify(path)
    return verify_checkpoint(path)


def score_stamps(cfg: Config, models: Tuple[str, str]) -> Tuple[str, str]:
    """The model identities the score files are stamped with: the weights' sha256, and for an
    ``open_clip:ARCH:PATH`` model also ARCH (one file can load into two architectures, e.g.
    ``ViT-B-32`` and ``ViT-B-32-quickgelu``, which score differently). The manifest records the
    sha256 alone."""
    def stamp(spec: str, digest: str) -> str:
        found = split_spec(spec)
        return f"{digest}:{found[0]}" if found else digest
    return stamp(cfg.reference, models[0]), stamp(cfg.proxy, models[1])


def preflight_paths(cfg: Config) -> None:
    for field in ("input", "output", "reference", "proxy"):
        if not getattr(cfg, field):
            raise ConfigError(f"missing {field}: pass --{field} (or set it in the config file)")


def plan_run(cfg: Config, overwrite: bool = False, incremental: bool = False, claim_output: bool = True) -> RunPlan:
    """Everything that is not data fails here, before any work and before the output folder is
    created, with a one-line message; returns the plan.

    With ``claim_output`` (a real run) the output is claimed and its lock held
    (``learnsieve.core.output``; the caller releases it with ``release_lock``); without (the dry
    run) nothing is written and a live run's lock is only checked. An output folder with
    learnsieve's marker but without ``stats.json`` holds an interrupted run: it is resumed,
    reusing the score files of input shards that were fully scored and have not changed since. A
    finished run is replaced only with ``overwrite`` (from scratch) or ``incremental`` (reusing
    scores where the models and shards match). Only learnsieve's own files are ever removed.
    """
    preflight_paths(cfg)
    shards = expand_pattern(cfg.input)
    metas = {role: verify_model(getattr(cfg, role)) for role in ("reference", "proxy")}
    check_roles(cfg.reference, metas["reference"], cfg.proxy, metas["proxy"])
    models = (metas["reference"]["sha256"], metas["proxy"]["sha256"])
    num_classes = task_classes(cfg)  # also checks the task
    settings = score_settings(cfg.score, num_classes)
    out = inspect_output(cfg.output, cfg.input, shards, overwrite)  # a foreign folder, the input, a file
    finished = out.owned and "stats.json" in out.entries
    if finished and not (overwrite or incremental):
        raise ConfigError(f"output {cfg.output} already holds a finished curation run; pass "
                          f"--incremental (reuse its scores), --overwrite, or another --output")
    state = "finished" if finished else "interrupted" if out.owned and out.entries else "new"
    if not claim_output:
        check_lock(out)  # another live run writing there: the real run would be refused
    probe_writable(out)  # a read-only mount, a full disk: one line now, not a traceback mid-run
    stamps = score_stamps(cfg, models)
    if not claim_output:
        cached = () if overwrite else tuple(_cached(cfg, shards, stamps, settings))
        return RunPlan(tuple(shards), models, stamps, settings, num_classes, state, cached, overwrite, incremental)
    # Final outputs of an earlier or interrupted run go; the score files stay unless overwrite.
    claim(out, {"input": cfg.input, "output": cfg.output, "reference": cfg.reference,
                "proxy": cfg.proxy, "models": list(models)}, scores=overwrite)
    try:
        out.fs.makedirs(join(out.root, TMP), exist_ok=True)
        cached = tuple(_cached(cfg, shards, stamps, settings))
    except BaseException:
        release_lock(cfg.output)
        raise
    return RunPlan(tuple(shards), models, stamps, settings, num_classes, state, cached, overwrite, incremental)


def _cached(cfg: Config, shards, stamps: Tuple[str, str], settings: str):
    """Indexes of the shards whose score file is valid, checked a few at a time: with
    ``score.fingerprint: full`` each check hashes a local shard whole (hashlib releases the GIL)
    or asks an object store for its checksum (a request each)."""
    from concurrent.futures import ThreadPoolExecutor

    def valid(url: str) -> bool:
        return cache_valid(cache_path(cfg.output, url), url, stamps, settings)

    if len(shards) <= 1:
        return [i for i, url in enumerate(shards) if valid(url)]
    with ThreadPoolExecutor(min(8, len(shards), 2 * (os.cpu_count() or 1))) as pool:
        return [i for i, ok in enumerate(pool.map(valid, shards)) if ok]
