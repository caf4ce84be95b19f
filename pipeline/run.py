"""build(p, cfg): read | decode | score | select | write, and run() with fail-fast pre-flight."""
from __future__ import annotations

import json
from typing import List, Optional, Sequence

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from models.checkpoint import read_checkpoint_meta
from models.scores import score_names
from pipeline.config import Config, ConfigError, to_dict
from pipeline.decode import DecodeExamples
from pipeline.read import ReadShards
from pipeline.score import ScoreExamples
from pipeline.select import SelectExamples
from pipeline.shards import expand_pattern
from pipeline.write import TMP, WriteShards, _join

FNAPI = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


class BadInputError(RuntimeError):
    pass


def build(p: beam.Pipeline, cfg: Config, shards: Sequence[str], models: tuple = ("", "")):
    """The curation graph; returns the PCollection holding the final stats dict."""
    read = p | "ReadShards" >> ReadShards(shards, cfg.score.max_member_bytes)
    decoded = read.samples | "DecodeExamples" >> DecodeExamples(
        cfg.score.image_size, cfg.score.max_pixels, cfg.score.max_caption_bytes)
    scored = decoded.decoded | "ScoreExamples" >> ScoreExamples(
        cfg.reference, cfg.proxy, cfg.score.batch_size, cfg.score.device)
    decisions = scored.scored | "SelectExamples" >> SelectExamples(cfg.select)
    dead = (read.dead, decoded.dead, scored.dead) | "DeadLetters" >> beam.Flatten()
    return {"decisions": decisions, "dead": dead} | "WriteShards" >> WriteShards(
        cfg.output, cfg.select.score, cfg.write.samples_per_shard, cfg.select.ranked, score_names(),
        models, extra_stats={"input_shards": len(shards), "select": to_dict(cfg)["select"]})


def preflight(cfg: Config, overwrite: bool = False):
    """Everything that is not data fails here, before any work, with a one-line message."""
    for field in ("input", "output", "reference", "proxy"):
        if not getattr(cfg, field):
            raise ConfigError(f"missing {field}: pass --{field} (or set it in the config file)")
    shards = expand_pattern(cfg.input)
    ref_meta = read_checkpoint_meta(cfg.reference)
    proxy_meta = read_checkpoint_meta(cfg.proxy)
    fs, root = fsspec.core.url_to_fs(cfg.output)
    if fs.exists(_join(root, "stats.json")) or fs.exists(_join(root, "sizes.json")):
        if not overwrite:
            raise ConfigError(f"output {cfg.output} already holds a curation run; pass --overwrite "
                              f"or choose another --output")
        for path in fs.glob(_join(root, "*.tar")) + fs.glob(_join(root, "*_stats.json")):
            fs.rm(path)
        for path in ("sizes.json", "stats.json", "manifest.parquet", "rejected", TMP):
            if fs.exists(_join(root, path)):
                fs.rm(_join(root, path), recursive=True)
    fs.makedirs(_join(root, TMP), exist_ok=True)
    return shards, (ref_meta["sha256"], proxy_meta["sha256"])


def pipeline_options(pipeline_args: Optional[List[str]]) -> PipelineOptions:
    options = PipelineOptions(pipeline_args or [])
    if not options.view_as(StandardOptions).runner:
        # The in-process runner that DirectRunner uses for batch; named explicitly so that
        # Beam does not first try (and fail offline) to fetch the Prism runner.
        options.view_as(StandardOptions).runner = FNAPI
    return options


def run(cfg: Config, pipeline_args: Optional[List[str]] = None, test_pipeline=None,
        overwrite: bool = False) -> dict:
    """Curate ``cfg.input`` into ``cfg.output``; returns stats (read/kept/filtered/rejected)."""
    shards, models = preflight(cfg, overwrite)
    p = test_pipeline or beam.Pipeline(options=pipeline_options(pipeline_args))
    build(p, cfg, shards, models)
    result = p.run()
    result.wait_until_finish()
    fs, root = fsspec.core.url_to_fs(cfg.output)
    with fs.open(_join(root, "stats.json")) as f:
        stats = json.load(f)
    if stats["read"] and stats["rejected"] / stats["read"] > cfg.max_bad_fraction:
        raise BadInputError(
            f"{stats['rejected']} of {stats['read']} inputs rejected "
            f"({stats['rejected'] / stats['read']:.0%} > max_bad_fraction {cfg.max_bad_fraction:.0%}); "
            f"check the input pattern and format; reasons: {stats['rejected_by_reason']}")
    return stats
