"""The ``learnsieve`` command."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import logging
import sys
from typing import List, Optional, Sequence, Tuple

from learnsieve.config import ConfigError, load_config

EPILOG = ("Config: YAML from --config (default: built-in defaults) with --set section.key=value "
          "overrides. curate, rounds and demo also take Beam's pipeline flags (--runner, "
          "--direct_num_workers, Dataflow flags); any other flag is refused.")
BEAM_COMMANDS = ("curate", "demo", "rounds")
QUOTE_HINT = "quote glob and brace patterns ('dir/*.tar') so that the shell does not expand them"


class _Patterns(argparse.Action):
    """One or more paths or patterns (as an unquoted glob expanded by the shell gives them),
    joined with ``::``, which ``expand_pattern`` splits on."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, "::".join(values))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr (errors still)")
    p.add_argument("--config", help="YAML config file, e.g. configs/default.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set select.fraction=0.3 (repeatable)")


def parser() -> argparse.ArgumentParser:
    from learnsieve import __version__
    ap = argparse.ArgumentParser(prog="learnsieve", description=(
        "Curate noisy image-text WebDataset shards by learnability (proxy loss - reference loss)."),
        epilog=EPILOG, allow_abbrev=False)
    ap.add_argument("--version", action="version", version=f"learnsieve {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate synthetic noisy data, train both models, curate, report",
                       epilog=EPILOG)
    p.add_argument("--out", default="runs/demo", help="folder for data, checkpoints and output")
    p.add_argument("--pool", type=int, default=3000, help="examples in the noisy pool")
    p.add_argument("--clean", type=int, default=1500, help="examples in the clean reference split")
    p.add_argument("--shards", type=int, default=6, help="input shards of the pool")
    _common(p)

    for name, role in (("train-reference", "reference"), ("train-proxy", "proxy")):
        p = sub.add_parser(name, help=f"train the {role} model on shards", epilog=EPILOG)
        p.add_argument("--data", required=True, nargs="+", action=_Patterns, metavar="PATTERN",
                       help="shards: brace pattern or glob, local or gs:// (several: joined)")
        p.add_argument("--out", required=True, help="checkpoint directory (safetensors + config.json)")
        p.add_argument("--model", help="registered model name (default from train.*_model)")
        p.add_argument("--steps", type=int, help="optimizer steps (default from config)")
        if role == "proxy":
            p.add_argument("--sample", type=int, help="random sample of the pool to warm up on")
        _common(p)

    p = sub.add_parser("curate", help="score, select and write curated shards (Beam)", epilog=EPILOG)
    p.add_argument("--input", nargs="+", action=_Patterns, metavar="PATTERN",
                   help="input shards: brace pattern or glob, local or gs:// (several: joined)")
    p.add_argument("--output", help="output folder (local or gs://)")
    p.add_argument("--reference", help="reference checkpoint directory, or open_clip:ARCH:PATH (a "
                   "checkpoint of open_clip's trainer or a weights file)")
    p.add_argument("--proxy", help="proxy checkpoint directory (e.g. the trainer's latest), or "
                   "open_clip:ARCH:PATH, e.g. open_clip:ViT-B-32:logs/run/checkpoints/epoch_10.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --output, re-scoring everything")
    p.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                   help="a progress line on stderr every SECONDS while scoring (0: none; default 10)")
    p.add_argument("--incremental", action="store_true",
                   help="re-curate a finished run: score only input shards without valid cached scores "
                        "(new shards, or all of them when a model changed) and merge with the rest")
    p.add_argument("--report-scores", nargs="+", metavar="SCORE",
                   help="score columns report.html plots and shows (default: the selection score); "
                        "= --set write.report_scores=[...]")
    _dry_run_flag(p)
    _common(p)

    p = sub.add_parser("export", help="the kept examples of a curate output in other tools' formats")
    p.add_argument("--output", required=True, help="the output folder of a finished curate run")
    p.add_argument("--uids", required=True, metavar="OUT.npy",
                   help="write a DataComp subset file: the kept examples' uids (from KEY.json) as a "
                        "sorted numpy array of dtype u8,u8, for DataComp's resharder --subset_file")

    p = sub.add_parser("rounds", help="alternate curation and proxy training for several rounds",
                       epilog=EPILOG)
    p.add_argument("--input", nargs="+", action=_Patterns, metavar="PATTERN",
                   help="input shards: brace pattern or glob, local or gs:// (several: joined)")
    p.add_argument("--output", help="output folder: round0/, round1/, ... and proxy1/, ...")
    p.add_argument("--reference", help="reference checkpoint directory, or open_clip:ARCH:PATH")
    p.add_argument("--proxy", help="initial proxy checkpoint directory, or open_clip:ARCH:PATH")
    p.add_argument("--rounds", type=int, default=3, help="number of curation rounds")
    p.add_argument("--steps", type=int, default=100, help="proxy training steps between rounds")
    p.add_argument("--train-cmd", metavar="CMD",
                   help="train the proxy between rounds with your own trainer instead, e.g. 'python -m "
                        "open_clip_train.main --train-data {shards} --train-num-samples {num_samples} "
                        "--name r{round} ...' ({shards} {num_samples} {round} {output} {proxy} are "
                        "filled in; run without a shell); its newest checkpoint is the next proxy")
    p.add_argument("--checkpoints-glob", default="logs/*/checkpoints/epoch_*.pt", metavar="GLOB",
                   help="where --train-cmd writes checkpoints (placeholders filled; default: "
                        "open_clip's logs/*/checkpoints/epoch_*.pt); the newest written in the round wins")
    p.add_argument("--proxy-arch", metavar="ARCH",
                   help="open_clip architecture of --train-cmd's checkpoints (default: ARCH of an "
                        "open_clip:ARCH:PATH --proxy)")
    _dry_run_flag(p)
    _common(p)

    p = sub.add_parser("eval", help="train the same learner on several arms, compare retrieval curves",
                       epilog=EPILOG)
    p.add_argument("--arm", action="append", default=[], metavar="NAME=PATTERN", required=True,
                   help="an arm to train on, e.g. curated='out/{00000..00003}.tar' (repeatable)")
    p.add_argument("--random-from", metavar="PATTERN",
                   help="also train on a random subset of this pool, as large as the first arm")
    p.add_argument("--test", required=True, help="clean held-out shards for evaluation")
    p.add_argument("--out", default="eval.json", help="where to write eval.json")
    p.add_argument("--learner", default="ls_clip_small", help="registered model to train on every arm")
    p.add_argument("--steps", type=int, default=300, help="step budget per arm")
    p.add_argument("--eval-every", type=int, default=50, help="evaluate every N steps")
    p.add_argument("--metric", help="metric for the speed-up (default: mean_r@1, or top1 for "
                   "classification; zeroshot_top1 where --classes is given)")
    p.add_argument("--classes", help="JSON list of class names: zero-shot top-1 on labelled test shards")
    p.add_argument("--prompt", action="append", default=[], help="zero-shot prompt template with {} "
                   "for the class name (repeatable; default 'a photo of a {}')")
    p.add_argument("--manifest", help="the curation's manifest.parquet, for each score's AUROC ...")
    p.add_argument("--truth", help="... against this ground truth JSON {key: clean|noise kind}")
    p.add_argument("--reference", help="reference checkpoint, for compute accounting (with --proxy)")
    p.add_argument("--proxy", help="proxy checkpoint, for compute accounting")
    p.add_argument("--scored", type=int, help="examples the curation scored (default: the "
                   "--random-from pool's size)")
    p.add_argument("--scoring-seconds", type=float, help="measured wall time of the curation run "
                   "(default: estimated from the models' forward time)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _common(p)

    sub.add_parser("models", help="list registered models and scores")

    p = sub.add_parser("config", help="print the config: the shipped default.yaml (--default), or "
                       "the one --config and --set make", epilog=EPILOG)
    p.add_argument("--default", action="store_true",
                   help="print the shipped configs/default.yaml (every key, commented)")
    _common(p)
    for p in sub.choices.values():
        p.allow_abbrev = False  # --out is not --output: a flag is spelt out or refused
    return ap


def _dry_run_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="check paths and checkpoints, build the graph and print its summary; run "
                        "and write nothing (Beam's --dry_run=True too)")


def setup_logging(quiet: bool) -> None:
    """learnsieve's own messages (progress, training steps) on stderr as ``learnsieve: ...``;
    Beam's and other libraries' INFO chatter stays off."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("learnsieve: %(message)s"))
    root = logging.getLogger("learnsieve")
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING if quiet else logging.INFO)
    root.propagate = False


def main(argv: Optional[List[str]] = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    ap = parser()
    args, extra = ap.parse_known_args(argv)
    setup_logging(getattr(args, "quiet", False))
    try:
        beam_args = check_flags(ap, args, extra, sys.argv[1:] if argv is None else argv)
    except FlagError as exc:
        print(f"learnsieve {args.command}: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _dispatch(args, beam_args)
    except ConfigError as exc:
        print(f"learnsieve: config error: {exc}", file=sys.stderr)
    except Exception as exc:  # a one-line message for what is not data; tracebacks need --debug
        from learnsieve.core.paths import InputError
        from learnsieve.core.remote import RemoteError
        if not isinstance(exc, (InputError, RemoteError)):  # these without importing torch and Beam
            from learnsieve.models.checkpoint import CheckpointError
            from learnsieve.pipeline.rounds import TrainCommandError
            from learnsieve.pipeline.run import BadInputError
            if not isinstance(exc, (CheckpointError, BadInputError, TrainCommandError)):
                raise
        print(f"learnsieve: error: {exc}", file=sys.stderr)
    return 2


class FlagError(ValueError):
    """A flag that neither learnsieve nor Beam knows, or a stray argument; one line."""


class _BeamFlagError(Exception):
    pass


def beam_flag_parser() -> argparse.ArgumentParser:
    """Every flag of every PipelineOptions subclass (Beam's own and any imported so far), parsed
    as Beam parses them; errors raise instead of exiting."""
    from apache_beam.options.pipeline_options import (
        PipelineOptions,
        _BeamArgumentParser,
    )

    class Parser(_BeamArgumentParser):
        def error(self, message):
            raise _BeamFlagError(message)

    parser = Parser(allow_abbrev=False, add_help=False, conflict_handler="resolve")
    seen, todo = set(), list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop(0)
        if cls in seen:
            continue
        seen.add(cls)
        todo.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)  # pylint: disable=protected-access
        except Exception:
            pass
    return parser


def _option_strings(p: argparse.ArgumentParser) -> List[str]:
    return [o for a in p._actions for o in a.option_strings]  # pylint: disable=protected-access


def _pop_dry_run(extra: Sequence[str]) -> Tuple[List[str], Optional[bool]]:
    """Beam's ``--dry_run`` (``--dry_run``, ``--dry_run=True``, ``--dry_run False``) is
    learnsieve's: removed from the Beam flags, returned as a bool (None when absent)."""
    yes, no = ("true", "1", "yes"), ("false", "0", "no")
    out: List[str] = []
    dry: Optional[bool] = None
    i = 0
    while i < len(extra):
        a = extra[i]
        if a == "--dry_run":
            nxt = extra[i + 1].lower() if i + 1 < len(extra) else ""
            dry = nxt not in no
            i += 2 if nxt in yes + no else 1
            continue
        if a.startswith("--dry_run="):
            value = a.split("=", 1)[1].lower()
            if value not in yes + no:
                raise FlagError(f"{a}: expected --dry_run=True or --dry_run=False")
            dry = value in yes
        else:
            out.append(a)
        i += 1
    return out, dry


def check_flags(ap: argparse.ArgumentParser, args, extra: Sequence[str],
                argv: Sequence[str]) -> List[str]:
    """The Beam flags among ``extra`` (what learnsieve's parser did not take); anything else is
    refused, naming the flag and the closest known one, or the stray argument."""
    sub = ap._subparsers._group_actions[0].choices[args.command]  # pylint: disable=protected-access
    known = _option_strings(sub) + ["--version"]
    beam_known: List[str] = []
    left = list(extra)
    if args.command in BEAM_COMMANDS:
        extra, dry = _pop_dry_run(extra)
        if dry is not None:
            args.dry_run = bool(getattr(args, "dry_run", False) or dry)
        if args.command == "demo" and dry:
            raise FlagError("--dry_run: demo makes its own data and checkpoints first; dry-run "
                            "`learnsieve curate` instead")
        beam = beam_flag_parser()
        beam_known = _option_strings(beam)
        try:
            _, left = beam.parse_known_args(list(extra))
        except _BeamFlagError as exc:
            raise FlagError(f"Beam flag: {exc}") from None
    if not left:
        return list(extra)
    unknown = [a.split("=", 1)[0] for a in left if a.startswith("-") and len(a) > 1]
    if unknown:
        if args.command not in BEAM_COMMANDS:
            beam_known = _option_strings(beam_flag_parser())
        reasons = []
        for name in dict.fromkeys(unknown):
            if name in beam_known and args.command not in BEAM_COMMANDS:
                reasons.append(f"{name} is a Beam pipeline flag; {args.command} runs no pipeline "
                               f"(only {', '.join(BEAM_COMMANDS)} do)")
                continue
            close = difflib.get_close_matches(name, known + beam_known, n=1, cutoff=0.6)
            reasons.append(f"unknown flag {name}" + (f" (did you mean {close[0]}?)" if close else ""))
        raise FlagError("; ".join(reasons))
    stray = left[0]
    after = _flag_before(argv, stray)
    where = f" after {after}" if after else ""
    several = "; --input takes several paths" if any(o == "--input" for o in known) else ""
    raise FlagError(f"unexpected argument {stray!r}{where}: {QUOTE_HINT}{several}")


def _flag_before(argv: Sequence[str], token: str) -> Optional[str]:
    """The flag that ``token`` follows in ``argv`` (for the hint), if any."""
    argv = list(argv)
    if token not in argv:
        return None
    for a in reversed(argv[:argv.index(token)]):
        if a.startswith("--"):
            return a.split("=", 1)[0]
    return None


def _dispatch(args, beam_args) -> int:
    if args.command == "models":
        from learnsieve.models.registry import list_models
        from learnsieve.models.scores import SCORERS
        print("models:", ", ".join(list_models()))
        print("scores:", ", ".join(SCORERS.names()))
        return 0
    if args.command == "config":
        return _config(args)
    if args.command == "export":
        from learnsieve.export import export_uids
        n = export_uids(args.output, args.uids)
        print(f"wrote {args.uids}: {n} uids of kept examples (DataComp subset, numpy u8,u8, sorted)")
        return 0
    if getattr(args, "report_scores", None):
        names = [n for v in args.report_scores for n in v.split(",") if n]
        args.set = list(args.set) + [f"write.report_scores=[{', '.join(names)}]"]
    from learnsieve.core.remote import check_remote, targets_for
    # Remote paths are checked before any work, in ~10 s at most: the flags' before the config
    # is loaded (it imports torch), then those that only the config file names.
    early = [("--config", args.config, False)] + targets_for(args.command, args, None, beam_args)
    check_remote(early)
    cfg = load_config(args.config, args.set)
    if args.command in ("curate", "rounds"):
        cfg = dataclasses.replace(cfg, **{k: getattr(args, k) for k in ("input", "output", "reference",
                                                                        "proxy") if getattr(args, k)})
        check_remote([t for t in targets_for(args.command, args, cfg, beam_args) if t not in early])
    if getattr(args, "dry_run", False):
        return _dry_run(args, cfg, beam_args)
    if args.command == "eval":
        return _eval(args, cfg)
    if args.command == "demo":
        from learnsieve.demo import demo
        demo(args.out, cfg, pool=args.pool, clean=args.clean, shards=args.shards, pipeline_args=beam_args)
        return 0
    if args.command in ("train-reference", "train-proxy"):
        from learnsieve.train.clip import train_from_shards
        role = args.command.split("-")[1]
        tc = cfg.train
        model = args.model or (tc.reference_model if role == "reference" else tc.proxy_model)
        steps = args.steps or (tc.reference_steps if role == "reference" else tc.proxy_steps)
        sample = getattr(args, "sample", None) or (tc.proxy_sample if role == "proxy" else None)
        train_from_shards(args.data, args.out, model, steps, tc, cfg.score.image_size, sample=sample,
                          role=role)
        return 0
    from learnsieve.core.summary import format_summary
    from learnsieve.pipeline.run import run
    if args.command == "rounds":
        from learnsieve.pipeline.rounds import rounds
        from learnsieve.preflight import preflight_paths
        preflight_paths(cfg)
        for h in rounds(cfg, args.rounds, args.steps, beam_args, train_cmd=args.train_cmd,
                        checkpoints_glob=args.checkpoints_glob, proxy_arch=args.proxy_arch):
            print(f"round {h['round']}: kept {h['kept']} / read {h['read']} -> {h['output']}")
        return 0
    stats = run(cfg, beam_args, overwrite=args.overwrite, incremental=args.incremental,
                progress_every=0 if getattr(args, "quiet", False) else args.progress_every)
    print(format_summary(stats))
    return 0


def _config(args) -> int:
    """``config --default``: the shipped default.yaml as it is; ``config``: the config that
    --config and --set make, validated, as YAML."""
    if args.default:
        if args.config or args.set:
            raise ConfigError("config --default prints the shipped defaults; it takes no --config or --set")
        from learnsieve.configs import config_path
        sys.stdout.write(config_path("default").read_text())
        return 0
    import yaml

    from learnsieve.config import to_dict
    from learnsieve.core.remote import check_remote
    check_remote([("--config", args.config, False)])
    def plain(v):  # tuples as YAML lists
        return {k: plain(x) for k, x in v.items()} if isinstance(v, dict) else \
            [plain(x) for x in v] if isinstance(v, (list, tuple)) else v
    sys.stdout.write(yaml.safe_dump(plain(to_dict(load_config(args.config, args.set))), sort_keys=False))
    return 0


def _dry_run(args, cfg, beam_args) -> int:
    """Everything a run checks before it starts, and the graph it would run, without running
    it or writing anything: a summary on stdout."""
    import os

    import apache_beam as beam
    import fsspec
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    from learnsieve.config import effective_score
    from learnsieve.core.paths import expand_pattern, join
    from learnsieve.core.score_file import cache_path, cache_valid, score_settings
    from learnsieve.models.checkpoint import read_checkpoint_meta
    from learnsieve.pipeline.run import build
    from learnsieve.preflight import preflight_paths, task_classes

    preflight_paths(cfg)
    rounds = args.command == "rounds"
    if rounds:  # what round 0 curates into (pipeline/rounds.py); later rounds re-score all
        cfg = dataclasses.replace(cfg, output=os.path.join(cfg.output, "round0"))
    overwrite = rounds or args.overwrite
    incremental = not rounds and args.incremental
    shards = expand_pattern(cfg.input)
    metas = [read_checkpoint_meta(cfg.reference), read_checkpoint_meta(cfg.proxy)]
    models = tuple(m["sha256"] for m in metas)
    settings = score_settings(cfg.score, task_classes(cfg))  # task_classes also checks the task
    fs, root = fsspec.core.url_to_fs(cfg.output)
    finished = fs.exists(join(root, "stats.json"))
    if finished and not (overwrite or incremental):
        raise ConfigError(f"output {cfg.output} already holds a finished curation run; a real run "
                          f"needs --incremental, --overwrite or another --output")
    cached = [] if overwrite else [i for i, url in enumerate(shards) if cache_valid(
        cache_path(cfg.output, url), url, models, settings)]
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


def _eval(args, cfg) -> int:
    import json
    import os

    from learnsieve.core.paths import expand_pattern
    from learnsieve.core.records import Sample
    from learnsieve.core.tar import iter_shard
    from learnsieve.evaluate.arms import evaluate, random_subset
    from learnsieve.evaluate.report import finish

    def count(pattern):
        return sum(isinstance(s, Sample) for i, u in enumerate(expand_pattern(pattern))
                   for s in iter_shard(u, i))

    arms = {}
    for spec in args.arm:
        name, sep, pattern = spec.partition("=")
        if not sep or not name or not pattern:
            raise ConfigError(f"--arm {spec!r} must look like NAME=PATTERN")
        expand_pattern(pattern)  # fail fast on a bad path
        arms[name] = pattern
    if args.random_from:
        out_dir = os.path.join(os.path.dirname(os.path.abspath(args.out)), "random_arm")
        arms["random"] = random_subset(args.random_from, count(next(iter(arms.values()))), out_dir,
                                       seed=cfg.train.seed)
    classes = None
    if args.classes:
        with open(args.classes) as f:
            classes = json.load(f)
    task = getattr(cfg, "task", "retrieval")
    metric = args.metric or ("zeroshot_top1" if classes and task == "retrieval" else None)
    result = evaluate(arms, args.test, args.out, args.learner, args.steps, args.eval_every, cfg.train,
                      cfg.score.image_size, task=task, metric=metric, classes=classes,
                      prompts=args.prompt or ("a photo of a {}",))
    scored = args.scored or (count(args.random_from) if args.random_from else None)
    finish(result, args.out, cfg.score.image_size, cfg.train.batch_size, manifest=args.manifest,
           truth=args.truth, reference=args.reference, proxy=args.proxy, scored=scored,
           scoring_seconds=args.scoring_seconds, plots=not args.no_plots)
    from learnsieve.evaluate.report import table
    print("\n".join(table(result)))  # the result, on stdout
    print(f"wrote {args.out} and {result['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
