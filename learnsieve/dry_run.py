"""``--dry-run`` of curate and rounds: the read-only checks of a real run (paths, checkpoints,
the output folder's state, which shards' scores would be reused), then the graph built on an
unrun pipeline and summarised; nothing is run or written."""
from __future__ import annotations

import dataclasses
import os

from learnsieve.config import ConfigError


def dry_run(args, cfg, beam_args) -> int:
    """Everything a run checks before it starts, and the graph it would run, without running
    it or writing anything: a summary on stdout."""

    import apache_beam as beam
    import fsspec
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from learnsieve.config import effective_score
    from learnsieve.core.output import check_lock, inspect_output, probe_writable
    from learnsieve.core.paths import expand_pattern, join
    from learnsieve.core.score_file import cache_path, cache_valid, score_settings
    from learnsieve.models.checkpoint import check_roles
    from learnsieve.pipeline.run import build
    from learnsieve.preflight import preflight_paths, score_stamps, task_classes, verify_model

    preflight_paths(cfg)
    rounds = args.command == "rounds"
    if rounds:  # what round 0 curates into (pipeline/rounds.py); later rounds re-score all
        cfg = dataclasses.replace(cfg, output=os.path.join(cfg.output, "round0"))
    overwrite = rounds or args.overwrite
    incremental = not rounds and args.incremental
    shards = expand_pattern(cfg.input)
    metas = [verify_model(cfg.reference), verify_model(cfg.proxy)]  # as a real run: sha256, header, towers
    check_roles(cfg.reference, metas[0], cfg.proxy, metas[1])
    models = tuple(m["sha256"] for m in metas)
    settings = score_settings(cfg.score, task_classes(cfg))  # task_classes also checks the task
    out = inspect_output(cfg.output, cfg.input, shards, overwrite)  # read-only: foreign folder, input, file
    check_lock(out)  # another live run writing there: the real run would be refused
    probe_writable(out)  # a read-only mount, a full disk: refused as the real run refuses them
    fs, root = fsspec.core.url_to_fs(cfg.output)
    finished = fs.exists(join(root, "stats.json"))
    if finished and not (overwrite or incremental):
        raise ConfigError(f"output {cfg.output} already holds a finished curation run; a real run "
                          f"needs --incremental, --overwrite or another --output")
    cached = [] if overwrite else [i for i, url in enumerate(shards) if cache_valid(
        cache_path(cfg.output, url), url, score_stamps(cfg, models), settings)]
    state = ("holds a finished run: replaced" if overwrite else "holds a finished run: "
             "re-curated incrementally") if finished else \
        "holds an interrupted run: resumed" if cached else "new"
    p = beam.Pipeline(options=PipelineOptions([]))  # never run: only the graph is built
    build(p, cfg, shards, models, cached)
    stages = [t.full_label for t in p.transforms_stack[0].parts]  # top-level, in order applied
    runner = PipelineOptions(beam_args).view_as(StandardOptions).runner or "DirectRunner (default)"
    s = cfg.select
    print(f"dry run of {args.command}: nothing was run or written")
    print(f"input: {len(shards)} shards ({cfg.input})")
    print(f"output: {cfg.output} ({state})")
    print(f"scoring: {len(shards) - len(cached)} shards to score, {len(cached)} reused from the score cache")
    print(f"models: reference {cfg.reference} ({models[0][:12]}), proxy {cfg.proxy} ({models[1][:12]})")
    print(f"select: {select_policy(s, effective_score(s))}")
    print(f"runner: {runner}")
    if rounds:
        between = f"--train-cmd {args.train_cmd!r} (checkpoints: {args.checkpoints_glob})" \
            if args.train_cmd else f"{args.steps} proxy steps"
        print(f"rounds: {args.rounds}, {between} between rounds; the graph of round 0:")
    print("stages: " + " -> ".join(stages))
    return 0


def select_policy(s, score: str) -> str:
    """One line for the selection policy of a SelectConfig ranking by ``score``."""
    mode = s.mode
    if mode == "top_k":
        parts = [f"top_k k={s.k}"]
    elif mode == "threshold":
        parts = [f"threshold >= {s.threshold:g}"]
    elif mode == "all":
        parts = ["all"]
    else:
        parts = [f"{mode} fraction={s.fraction:g}"]
        if mode == "per_batch":
            parts.append(f"batch={s.batch}")
        if mode in ("per_cluster", "coreset"):
            parts.append(f"clusters={s.clusters}")
    parts[0] += f" by {score}"
    parts.append(f"sampling={s.sampling}" + (f" T={s.temperature:g}" if s.sampling == "gumbel" else ""))
    if s.dedup != "none":
        parts.append(f"dedup={s.dedup}" + (f" eps={s.semdedup_eps:g}" if s.dedup == "semantic" else ""))
    if s.seeds:
        parts.append(f"seeds={len(s.seeds)} queries")
    if s.ranked:
        parts.append("ranked")
    return ", ".join(parts)
