"""build(p, cfg): list shards | score shards (read, decode, score, score file) | select | write,
and run(): the run plan (learnsieve/core/plan.py: every check before any work),
the pipeline, then the run's summary."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Optional, Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from learnsieve.config import (
    Config,
    effective_score,
    needs_clusters,
    to_dict,
)
from learnsieve.core.modes import MODES
from learnsieve.core.output import mark_failed, release_lock
from learnsieve.core.paths import join
from learnsieve.core.plan import plan_run, score_stamps, task_classes
from learnsieve.core.progress import Progress
from learnsieve.core.records import CLUSTER_SCORES, DeadLetter, Scored, manifest_schema
from learnsieve.core.score_file import score_settings
from learnsieve.core.shard_select import SelectionValue
from learnsieve.errors import LearnsieveError
from learnsieve.models.scores import score_names
from learnsieve.pipeline.cluster import (
    ClusterExamples,
    DeduplicateExamples,
)
from learnsieve.pipeline.manifest import FinishOutput, WriteManifest
from learnsieve.pipeline.options import check_pipeline_args, resolve_runner
from learnsieve.pipeline.read import ListShards
from learnsieve.pipeline.score import ScoreShardFn, ScoreShards
from learnsieve.pipeline.score_cache import ReadCachedScores
from learnsieve.pipeline.select import SelectExamples
from learnsieve.pipeline.select_shards import SelectShards
from learnsieve.pipeline.write import WriteShardGroups, WriteShards
from learnsieve.report.html import write_report

# Beam's in-process FnApiRunner with its split-element fault fixed (pipeline/local_runner.py)
FNAPI = "learnsieve.pipeline.local_runner.LocalRunner"


class BadInputError(LearnsieveError, RuntimeError):
    pass


def build(p: beam.Pipeline, cfg: Config, shards: Sequence[str], models: tuple = ("", ""),
          cached: Sequence[int] = ()):
    """The curation graph; returns the PCollection holding the final stats dict.

    ``cached`` lists the indexes of input shards whose scores are read from the score cache
    (resume, incremental runs) instead of being read, decoded and scored again.
    """
    names = score_names()
    stamps = score_stamps(cfg, models)  # score files: sha256 (+ ARCH for open_clip); manifest: sha256
    cached_set = set(cached)
    to_score = [(i, u) for i, u in enumerate(shards) if i not in cached_set]
    num_classes = task_classes(cfg) if cfg.task == "classification" else 0
    extra_stats = {"input_shards": len(shards), "rescored_shards": len(to_score),
                   "select": to_dict(cfg)["select"]}
    value = SelectionValue(cfg.select) if streaming(cfg) else None
    score_args = (cfg.score, cfg.reference, cfg.proxy, cfg.output, stamps, num_classes)
    records = (p
               | "ListShards" >> ListShards(to_score)
               | "ScoreShards" >> ScoreShards(*score_args, value=value))
    if cached_set:  # skip the branch (and its stages) when nothing is cached
        reused = p | "ReadCachedScores" >> ReadCachedScores(
            [(i, shards[i]) for i in sorted(cached_set)], cfg.output, stamps,
            score_settings(cfg.score, num_classes), ScoreShardFn(*score_args, value=value), value=value)
        records = (records, reused) | "AllRecords" >> beam.Flatten()
    if value is not None:  # one ShardScores per input shard crosses each stage, never a record
        schema = manifest_schema(names + list(CLUSTER_SCORES))
        plan = records | "SelectShards" >> SelectShards(cfg.select, cfg.write.samples_per_shard)
        groups = {"shards": records, "plan": plan} | "WriteShardGroups" >> WriteShardGroups(
            cfg.output, cfg.write, cfg.select, models, schema)
        return groups | "FinishOutput" >> FinishOutput(cfg.output, schema, extra_stats)
    sel = cfg.select
    scored_all = records | "ScoredOnly" >> beam.Filter(lambda r: isinstance(r, Scored))
    if not (needs_clusters(sel) or sel.seeds or sel.dedup != "none"):
        # nothing downstream reads the embeddings: don't carry 512 B per example through every stage
        scored_all = scored_all | "DropEmbeddings" >> beam.Map(lambda s: dataclasses.replace(s, embedding=None))
    if needs_clusters(sel):
        scored_all = scored_all | "ClusterExamples" >> ClusterExamples(sel)
    if sel.seeds:
        from learnsieve.pipeline.candidates import RestrictCandidates, encode_seeds
        scored_all = scored_all | "RestrictCandidates" >> RestrictCandidates(
            encode_seeds(cfg.reference, sel.seeds), sel)
    if sel.dedup != "none":
        scored_all = scored_all | "DeduplicateExamples" >> DeduplicateExamples(sel)
    decisions = scored_all | "SelectExamples" >> SelectExamples(sel)
    dead = records | "DeadOnly" >> beam.Filter(lambda r: isinstance(r, DeadLetter))
    written = {"decisions": decisions, "dead": dead} | "WriteShards" >> WriteShards(
        cfg.output, cfg.write, sel, models)
    return written | "WriteManifest" >> WriteManifest(cfg.output, names + list(CLUSTER_SCORES), extra_stats=extra_stats)


def streaming(cfg: Config) -> bool:
    """Whether the run takes the streaming graph (one summary per input shard between stages,
    memory flat in the pool size): every selection decided per shard or by a global cut, and
    nothing that compares examples across shards (clusters, dedup, SEALS, ranked output)."""
    sel = cfg.select
    return (MODES.get(sel.mode).streaming and not sel.ranked and not needs_clusters(sel)
            and not sel.seeds and sel.dedup == "none")


def pipeline_options(pipeline_args: Optional[List[str]]) -> PipelineOptions:
    """Beam's options from the runner flags. With no runner flag: the in-process runner (what
    DirectRunner uses for batch; named explicitly so that Beam does not first try, and fail
    offline, to fetch Prism; learnsieve's LocalRunner, which fixes its crash on large pools) with
    one worker thread per core, unless the flags say otherwise.
    ``--runner DaskRunner`` (or ``dask``) is learnsieve's fixed Dask runner (docs/DASK.md)."""
    pipeline_args = resolve_runner(pipeline_args)
    options = PipelineOptions(pipeline_args)
    std = options.view_as(StandardOptions)
    if not std.runner:
        std.runner = FNAPI
        direct = options.view_as(DirectOptions)
        if not _given(pipeline_args, "direct_num_workers"):
            direct.direct_num_workers = local_workers()
        if not _given(pipeline_args, "direct_running_mode"):
            direct.direct_running_mode = "multi_threading"
    return options


def local_workers() -> int:
    """Worker threads of a local run with no runner flags: one per core."""
    return max(1, os.cpu_count() or 1)


def _given(args: Optional[List[str]], flag: str) -> bool:
    return any(a == f"--{flag}" or a.startswith(f"--{flag}=") for a in (args or []))


def worker_threads(cfg: Config, options: PipelineOptions) -> Config:
    """Several worker threads share one process: one torch thread and one decode thread each
    (where the config leaves them at 0 = auto), so cores are not oversubscribed (OpenMP threads
    spinning against each other collapse throughput on a loaded machine)."""
    direct = options.view_as(DirectOptions)
    workers = direct.direct_num_workers or 1
    if workers <= 1:  # (direct_num_workers only affects the local runners)
        return cfg
    score = cfg.score
    return dataclasses.replace(cfg, score=dataclasses.replace(
        score, torch_threads=score.torch_threads or 1, decode_threads=score.decode_threads or 1))


def counters(result) -> dict:
    """The job's Beam counters as {"namespace/name": value} (committed where the runner has them)."""
    try:
        found = result.metrics().query()["counters"]
    except Exception:  # a runner without metrics support
        return {}
    out: dict = {}
    for c in found:
        value = c.committed if c.committed is not None else c.attempted
        key = f"{c.key.metric.namespace}/{c.key.metric.name}"
        out[key] = out.get(key, 0) + (value or 0)
    return dict(sorted(out.items()))


def run(cfg: Config, pipeline_args: Optional[List[str]] = None, test_pipeline=None,
        overwrite: bool = False, incremental: bool = False, progress_every: float = 10.0) -> dict:
    """Curate ``cfg.input`` into ``cfg.output``; returns stats (read/kept/filtered/rejected) and
    the job's counters. A progress line is logged every ``progress_every`` seconds (0: never)."""
    check_pipeline_args(pipeline_args)  # the runner and the flags it needs, before the output is claimed
    plan = plan_run(cfg, overwrite, incremental)  # holds the output's lock
    shards, models, cached = list(plan.shards), plan.models, list(plan.cached)
    try:
        options = pipeline_options(pipeline_args)
        cfg = worker_threads(cfg, options) if test_pipeline is None else cfg
        p = test_pipeline or beam.Pipeline(options=options)
        build(p, cfg, shards, models, cached)
        to_score = [u for i, u in enumerate(shards) if i not in set(cached)]
        with Progress(cfg.output, to_score, reused=len(cached), interval=progress_every) as progress:
            result = p.run()
            result.wait_until_finish()
        if progress_every > 0:
            progress.report()
        fs, root = fsspec.core.url_to_fs(cfg.output)
        with fs.open(join(root, "stats.json")) as f:
            stats = json.load(f)
        if cfg.write.report:  # report.html: counts, histograms, thumbnails (never fails the run)
            write_report(cfg.output, effective_score(cfg.select), cfg.write.report_scores,
                         cfg.write.report_examples)
        if stats["read"] and stats["rejected"] / stats["read"] > cfg.max_bad_fraction:
            mark_failed(cfg.output)  # not a finished run: the same command runs again once fixed
            raise BadInputError(
                f"{stats['rejected']} of {stats['read']} inputs rejected "
                f"({stats['rejected'] / stats['read']:.0%} > max_bad_fraction {cfg.max_bad_fraction:.0%}); "
                f"check the input pattern and format; reasons: {stats['rejected_by_reason']}")
    finally:
        release_lock(cfg.output)
    return {**stats, "counters": counters(result)}
