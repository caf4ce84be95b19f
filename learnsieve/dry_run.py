"""``--dry-run`` of curate and rounds: the real run's plan (learnsieve/core/plan.py: paths,
checkpoints, the output folder's state, which shards' scores would be reused), checked read-only
and printed, then the graph built on an unrun pipeline and summarised; nothing is run or written."""
from __future__ import annotations

import dataclasses
import os


def dry_run(args, cfg, beam_args) -> int:
    """Everything a run checks before it starts, and the graph it would run, without running
    it or writing anything: a summary on stdout."""

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from learnsieve.config import effective_score
    from learnsieve.core.plan import plan_run
    from learnsieve.pipeline.options import check_pipeline_args
    from learnsieve.pipeline.run import build
    check_pipeline_args(beam_args)  # the runner and the flags it needs, as the real run checks them
    rounds = args.command == "rounds"
    if rounds:  # what round 0 curates into (pipeline/rounds.py); later rounds re-score all
        cfg = dataclasses.replace(cfg, output=os.path.join(cfg.output, "round0"))
    plan = plan_run(cfg, overwrite=rounds or args.overwrite, incremental=not rounds and args.incremental,
                    claim_output=False)  # the real run's checks, read-only
    shards, models, cached = list(plan.shards), plan.models, list(plan.cached)
    p = beam.Pipeline(options=PipelineOptions([]))  # never run: only the graph is built
    build(p, cfg, shards, models, cached)
    stages = [t.full_label for t in p.transforms_stack[0].parts]  # top-level, in order applied
    runner = PipelineOptions(beam_args).view_as(StandardOptions).runner or "DirectRunner (default)"
    s = cfg.select
    print(f"dry run of {args.command}: nothing was run or written")
    for line in plan.lines(cfg):
        print(line)
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
    from learnsieve.core.modes import MODES
    uses = MODES.get(s.mode).uses  # the select.* keys the mode reads
    parts = [" ".join([s.mode] + [f"{k}={getattr(s, k):g}" if isinstance(getattr(s, k), float)
                                  else f"{k}={getattr(s, k)}" for k in uses])]
    parts[0] += f" by {score}"
    parts.append(f"sampling={s.sampling}" + (f" T={s.temperature:g}" if s.sampling == "gumbel" else ""))
    if s.dedup != "none":
        parts.append(f"dedup={s.dedup}" + (f" eps={s.semdedup_eps:g}" if s.dedup == "semantic" else ""))
    if s.seeds:
        parts.append(f"seeds={len(s.seeds)} queries")
    if s.ranked:
        parts.append("ranked")
    return ", ".join(parts)
