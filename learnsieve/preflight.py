"""Everything that is not data fails here, before any work, in one line: paths, checkpoints,
the task, the output folder (what an earlier run left in it), and which shards' scores can be
reused. No Beam."""
from __future__ import annotations

import fsspec

from learnsieve.config import Config, ConfigError
from learnsieve.core.layout import MANIFEST_PARTS, TMP
from learnsieve.core.paths import expand_pattern, join
from learnsieve.core.score_file import CACHE_DIR, cache_path, cache_valid
from learnsieve.models.checkpoint import read_checkpoint_meta
from learnsieve.models.scores import score_names


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


def preflight_paths(cfg: Config) -> None:
    for field in ("input", "output", "reference", "proxy"):
        if not getattr(cfg, field):
            raise ConfigError(f"missing {field}: pass --{field} (or set it in the config file)")


OUTPUTS = ("sizes.json", "stats.json", "manifest.parquet", "rejected", TMP, MANIFEST_PARTS)


def preflight(cfg: Config, overwrite: bool = False, incremental: bool = False):
    """Everything that is not data fails here, before any work, with a one-line message.

    Returns (shards, model hashes, indexes of shards whose scores can be reused). An output
    folder without ``stats.json`` holds an interrupted run: it is resumed, reusing the score
    files of input shards that were fully scored. A finished run is replaced only with
    ``overwrite`` (from scratch) or ``incremental`` (reusing scores where the models match).
    """
    preflight_paths(cfg)
    shards = expand_pattern(cfg.input)
    models = (read_checkpoint_meta(cfg.reference)["sha256"], read_checkpoint_meta(cfg.proxy)["sha256"])
    task_classes(cfg)
    fs, root = fsspec.core.url_to_fs(cfg.output)
    if fs.exists(join(root, "stats.json")) and not (overwrite or incremental):
        raise ConfigError(f"output {cfg.output} already holds a finished curation run; pass "
                          f"--incremental (reuse its scores), --overwrite, or another --output")
    if overwrite and fs.exists(join(root, CACHE_DIR)):
        fs.rm(join(root, CACHE_DIR), recursive=True)
    # Final outputs of an earlier or interrupted run go; the score cache stays.
    for path in fs.glob(join(root, "*.tar")) + fs.glob(join(root, "*_stats.json")):
        fs.rm(path)
    for path in OUTPUTS:
        if fs.exists(join(root, path)):
            fs.rm(join(root, path), recursive=True)
    fs.makedirs(join(root, TMP), exist_ok=True)
    names = score_names()
    cached = [i for i, url in enumerate(shards)
              if cache_valid(cache_path(cfg.output, url), url, models, names)]
    return shards, models, cached


