"""The ``learnsieve`` command."""
from __future__ import annotations

import argparse
import dataclasses
import errno
import logging
import os
import signal
import sys
import threading
from typing import List, Optional

from learnsieve.config import ConfigError, load_config
from learnsieve.flags import FlagError, check_flags

EPILOG = ("Config: YAML from --config (default: built-in defaults) with --set section.key=value "
          "overrides. curate, rounds and demo also take Beam's pipeline flags (--runner, "
          "--direct_num_workers, Dataflow flags); any other flag is refused.")


class _Patterns(argparse.Action):
    """One or more paths or patterns (as an unquoted glob expanded by the shell gives them),
    joined with ``::``, which ``expand_pattern`` splits on."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, "::".join(values))


class _Help(argparse.HelpFormatter):
    """Help that shows each flag's default where it has one (not for switches, nor for flags
    whose help already says where the default comes from)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (default in (None, False, [], argparse.SUPPRESS) or "%(default)" in text or "default" in text
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr (errors still)")
    p.add_argument("--config", help="YAML config file, e.g. configs/default.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set select.fraction=0.3 (repeatable)")


def parser() -> argparse.ArgumentParser:
    from learnsieve import __version__
    ap = argparse.ArgumentParser(prog="learnsieve", description=(
        "Curate noisy image-text WebDataset shards with a reference and a proxy model: CLIP score "
        "(ref_sim, the default), learnability (proxy loss - reference loss) and more."),
        epilog=EPILOG, allow_abbrev=False)
    ap.add_argument("--version", action="version", version=f"learnsieve {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add(*a, formatter_class=_Help, **kw)  # defaults in every --help
    from learnsieve.config import TrainConfig
    tc = TrainConfig()

    p = sub.add_parser("demo", help="generate synthetic noisy data, train both models, curate, report",
                       epilog=EPILOG)
    p.add_argument("--out", default="runs/demo", help="folder for data, checkpoints and output")
    p.add_argument("--pool", type=int, default=3000, help="examples in the noisy pool")
    p.add_argument("--clean", type=int, default=1500, help="examples in the clean reference split")
    p.add_argument("--shards", type=int, default=6, help="input shards of the pool")
    p.add_argument("--retrain", action="store_true",
                   help="train both models again even where --out holds ones trained on the same data "
                        "and settings (reused otherwise)")
    _common(p)

    p = sub.add_parser("shards", help="WebDataset shards from your images and captions (img2dataset's layout)",
                       epilog="e.g. learnsieve shards --images photos/ --table captions.csv --output shards/ "
                              "--clean-fraction 0.2")
    p.add_argument("--images", metavar="DIR", help="a folder of images (jpg, png, webp); captions from "
                   "--table, else from NAME.txt beside each image")
    p.add_argument("--table", metavar="FILE", help="captions table: CSV, TSV, parquet or JSON lines, one row "
                   "per example; its image column holds paths (relative to --images or to the table's "
                   "folder) or http(s):// / gs:// URLs")
    p.add_argument("--caption-column", default="caption", help="the table's caption column")
    p.add_argument("--image-column", help="the table's image column (default: the first of image, url, "
                   "path, file, filename)")
    p.add_argument("--output", help="folder for the shards (required)")
    p.add_argument("--samples-per-shard", type=int, default=1000, help="examples per shard")
    p.add_argument("--clean-fraction", type=float, default=0.0, metavar="F",
                   help="also split: a seeded share F of the distinct images (all their captions) into "
                        "OUTPUT/clean/ (to train the reference on), the rest into OUTPUT/pool/ (0: no split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --clean-fraction split")
    p.add_argument("--resize", type=int, default=0, metavar="PX",
                   help="re-encode each image as JPEG with its short side at PX (never upscaled); 0 keeps "
                        "the original bytes")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS", help="per download of a URL")
    p.add_argument("--overwrite", action="store_true",
                   help="replace shards an earlier `learnsieve shards` wrote there (nothing else is touched)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr (errors still)")

    for name, role in (("train-reference", "reference"), ("train-proxy", "proxy")):
        p = sub.add_parser(name, help=f"train the {role} model on shards", epilog=EPILOG)
        p.add_argument("--data", nargs="+", action=_Patterns, metavar="PATTERN",
                       help="shards: brace pattern or glob, local or gs:// (several: joined; required)")
        p.add_argument("--out", help="checkpoint folder (model.safetensors + config.json; required)")
        p.add_argument("--model", help=f"registered model name (default: train.{role}_model, "
                       f"{getattr(tc, role + '_model')}; `learnsieve models` lists them)")
        p.add_argument("--steps", type=int, help=f"optimizer steps (default: train.{role}_steps, "
                       f"{getattr(tc, role + '_steps')}; early stopping may end sooner: train.patience)")
        if role == "proxy":
            p.add_argument("--sample", type=int, help=f"random sample of the pool to warm up on (default: "
                           f"train.proxy_sample, {tc.proxy_sample})")
        p.add_argument("--overwrite", action="store_true",
                       help="replace the checkpoint in --out (only its model.safetensors and config.json)")
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
    p.add_argument("--output", help="the output folder of a finished curate run (required)")
    p.add_argument("--uids", metavar="OUT.npy",
                   help="write a DataComp subset file: the kept examples' uids (from KEY.json) as a "
                        "sorted numpy array of dtype u8,u8, for DataComp's resharder --subset_file (required)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.npy")

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
    p.add_argument("--arm", action="append", default=[], metavar="NAME=PATTERN",
                   help="an arm to train on, e.g. curated='out/{00000..00003}.tar' (repeatable; required)")
    p.add_argument("--random-from", metavar="PATTERN",
                   help="also train on a random subset of this pool, as large as the first arm")
    p.add_argument("--test", help="clean held-out shards for evaluation (required)")
    p.add_argument("--out", metavar="DIR", help="folder for eval.json, eval.html, the plots and the random "
                   "arm's shards (default: a new folder runs/eval-YYYYmmdd-HHMMSS)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier eval in --out (only eval's own files)")
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


INTERRUPTED = "interrupted; run the same command to resume"
RESUMABLE = ("curate", "rounds")  # commands whose rerun picks up what an interrupted one did


def main(argv: Optional[List[str]] = None) -> int:
    previous, excepthook = _install_sigint(), threading.excepthook
    held = _hold_beam_errors()
    try:
        rc = _main(argv)
        if rc == 0:
            held.release()
        return rc  # a one-line failure: what Beam logged of it is dropped
    except BaseException:
        held.release()  # an unexpected failure: Beam's own log of it comes before the traceback
        raise
    finally:
        held.close()
        threading.excepthook = excepthook
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: Optional[List[str]]) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # progress lines appear as they happen
    args = argparse.Namespace(command=None)
    try:
        ap = parser()
        args, extra = ap.parse_known_args(argv)
        setup_logging(getattr(args, "quiet", False))
        try:
            beam_args = check_flags(ap, args, extra, sys.argv[1:] if argv is None else argv)
        except FlagError as exc:
            print(f"learnsieve {args.command}: error: {exc}", file=sys.stderr)
            return 2
        return _dispatch(args, beam_args)
    except KeyboardInterrupt:
        return _interrupted(args.command)
    except ConfigError as exc:
        print(f"learnsieve: config error: {exc}", file=sys.stderr)
    except Exception as exc:  # one line for a LearnsieveError or a storage fault; a bug's traceback
        from learnsieve.core.output import storage_fault
        from learnsieve.core.paths import InputError
        from learnsieve.core.remote import RemoteError
        fault = None if isinstance(exc, (InputError, RemoteError)) else storage_fault(exc)
        if fault is not None:  # a full disk, a read-only mount, a refused permission, mid-run
            resume = ", then run the same command to resume (finished shards are kept)" \
                if args.command in RESUMABLE else ", then run the command again"
            hint = STORAGE_HINTS.get(fault.errno, "fix that")
            print(f"learnsieve: error: {fault.describe(getattr(args, 'output_folder', None))}: "
                  f"{hint}{resume}", file=sys.stderr)
            return 1
        from learnsieve.errors import LearnsieveError
        if not isinstance(exc, LearnsieveError):  # a bug: its traceback
            raise
        print(f"learnsieve: error: {exc}", file=sys.stderr)
    return 2


STORAGE_HINTS = {errno.ENOSPC: "free space there or choose another --output",
                 errno.EDQUOT: "free space or raise the quota, or choose another --output",
                 errno.EROFS: "remount it writable or choose another --output",
                 errno.EACCES: "give this user access to it",
                 errno.EPERM: "give this user access to it"}


def _interrupted(command: Optional[str]) -> int:
    """Ctrl-C: one line and status 130 (128 + SIGINT). The run's ``finally`` blocks have
    released its lock by now; Beam's in-process worker threads cannot be stopped from outside,
    and waiting for them at exit would finish their bundles (or abort the process in native
    code), so when any are left the process ends here, at once."""
    line = INTERRUPTED if command in RESUMABLE else "interrupted"
    print(f"learnsieve: {line}", file=sys.stderr)
    if threading.active_count() > 1 and threading.current_thread() is threading.main_thread():
        _exit_now()
    return 130


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(130)


def _install_sigint():
    """Ctrl-C raises KeyboardInterrupt once (the clean stop above); a second Ctrl-C while that
    stop runs ends the process at once. Returns the handler it replaced (None outside the main
    thread, where signals cannot be set)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def again(signum, frame):
        os.write(2, f"learnsieve: {INTERRUPTED}\n".encode())
        os._exit(130)

    def first(signum, frame):
        signal.signal(signal.SIGINT, again)
        # runner threads failing because their workers stopped are the fallout of this stop,
        # not news (e.g. "Worker subprocess exited with return code -2")
        threading.excepthook = lambda hook_args: None
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, first)


class _Held(logging.Filter):
    """What Beam writes about a failed bundle before its runner raises the failure: its log
    records at ERROR (a traceback each) and the traceback its SDK worker thread prints on
    stderr, 200+ lines for one full disk. Where learnsieve answers the failure in one line (a
    storage error, Ctrl-C) they are dropped; after a success, or before an unexpected
    traceback, they are written as they would have been. The log handler is only installed
    where nothing else set up logging (the command line; tests keep their own handlers)."""

    def __init__(self):
        super().__init__()
        self.handler: Optional[logging.Handler] = None
        self.records: List[logging.LogRecord] = []
        self.texts: List[str] = []
        self.stderr = None  # the stream the _HeldStderr in sys.stderr writes through to

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("apache_beam") and record.levelno >= logging.ERROR:
            self.records.append(record)
            return False
        return True

    def release(self) -> None:
        records, texts, self.records, self.texts = self.records, self.texts, [], []
        if self.handler is not None:
            for record in records:
                logging.StreamHandler.emit(self.handler, record)
        if self.stderr is not None:
            for text in texts:
                self.stderr.write(text)

    def close(self) -> None:
        if isinstance(sys.stderr, _HeldStderr) and sys.stderr._held is self:
            sys.stderr = self.stderr
        if self.handler is not None:
            self.handler.removeFilter(self)


class _HeldStderr:
    """sys.stderr, except a traceback a thread other than the main one prints (Beam's SDK
    worker prints each failed bundle's), which goes to ``held.texts``."""

    def __init__(self, stream, held: _Held):
        self._stream, self._held = stream, held
        self._after: set = set()  # threads whose traceback's trailing newline is still to come

    def write(self, text: str) -> int:
        me = threading.get_ident()
        if threading.current_thread() is not threading.main_thread():
            # a whole traceback in one write, as print(traceback.format_exc()) makes it (not
            # traceback.print_exception's line-by-line writes, e.g. of threading.excepthook)
            if text.startswith("Traceback (most recent call last):") and text.count("\n") > 1:
                self._held.texts.append(text)
                self._after.add(me)
                return len(text)
            if me in self._after and text == "\n":  # print()'s end
                self._after.discard(me)
                self._held.texts.append(text)
                return len(text)
        self._after.discard(me)
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _hold_beam_errors() -> _Held:
    held = _Held()
    held.stderr = sys.stderr
    sys.stderr = _HeldStderr(sys.stderr, held)
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(held.stderr)  # what Beam's logging.basicConfig() would add
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        handler.addFilter(held)
        root.addHandler(handler)
        held.handler = handler
    return held


def _dispatch(args, beam_args) -> int:
    if args.command == "models":
        from learnsieve.config import EXTRA_SCORES
        from learnsieve.models.registry import list_models
        from learnsieve.models.scores import SCORERS
        print("models:", ", ".join(list_models()))
        print("scores:", ", ".join(list(SCORERS.names()) + [n for n in EXTRA_SCORES if n not in SCORERS.names()]))
        print("  (prototype scores need k-means clusters on the reference's embeddings: select.clusters; "
              "prototype picks proto_easy or proto_hard by select.prototype_regime)")
        return 0
    if args.command == "config":
        return _config(args)
    if args.command == "export":
        from learnsieve.export import export_uids
        n = export_uids(args.output, args.uids, overwrite=args.overwrite)
        print(f"wrote {args.uids}: {n} uids of kept examples (DataComp subset, numpy u8,u8, sorted)")
        return 0
    if args.command == "shards":
        return _shards(args)
    if getattr(args, "report_scores", None):
        names = [n for v in args.report_scores for n in v.split(",") if n]
        args.set = list(args.set) + [f"write.report_scores=[{', '.join(names)}]"]
    from learnsieve.core.remote import check_remote
    from learnsieve.flags import targets_for
    # Remote paths are checked before any work, in ~10 s at most: the flags' before the config
    # is loaded (it imports torch), then those that only the config file names.
    early = [("--config", args.config, False)] + targets_for(args.command, args, None, beam_args)
    check_remote(early)
    cfg = load_config(args.config, args.set)
    if args.command in ("curate", "rounds"):
        cfg = dataclasses.replace(cfg, **{k: getattr(args, k) for k in ("input", "output", "reference",
                                                                        "proxy") if getattr(args, k)})
        args.output_folder = cfg.output  # named by a storage error that names no path (a full disk)
        check_remote([t for t in targets_for(args.command, args, cfg, beam_args) if t not in early])
    if getattr(args, "dry_run", False):
        from learnsieve.dry_run import dry_run
        return dry_run(args, cfg, beam_args)
    if args.command == "eval":
        return _eval(args, cfg)
    if args.command == "demo":
        from learnsieve.demo import demo
        demo(args.out, cfg, pool=args.pool, clean=args.clean, shards=args.shards, pipeline_args=beam_args,
             retrain=args.retrain)
        return 0
    if args.command in ("train-reference", "train-proxy"):
        from learnsieve.core.output import FOLDER_KINDS, owned_folder
        from learnsieve.train.clip import train_from_shards
        role = args.command.split("-")[1]
        tc = cfg.train
        model = args.model or (tc.reference_model if role == "reference" else tc.proxy_model)
        steps = args.steps or (tc.reference_steps if role == "reference" else tc.proxy_steps)
        sample = getattr(args, "sample", None) or (tc.proxy_sample if role == "proxy" else None)
        from learnsieve.core.paths import expand_pattern
        expand_pattern(args.data)  # a missing input: one line before the folder is claimed
        with owned_folder(args.out, FOLDER_KINDS["checkpoint"], args.overwrite,
                          {"data": args.data, "model": model, "role": role}):
            digest = train_from_shards(args.data, args.out, model, steps, tc, cfg.score.image_size,
                                       sample=sample, role=role)
        print(f"wrote {role} checkpoint {args.out} (sha256 {digest[:12]}): curate --{role} {args.out}")
        return 0
    from learnsieve.core.summary import format_summary
    from learnsieve.pipeline.run import run
    if args.command == "rounds":
        from learnsieve.core.plan import preflight_paths
        from learnsieve.pipeline.rounds import rounds
        preflight_paths(cfg)
        for h in rounds(cfg, args.rounds, args.steps, beam_args, train_cmd=args.train_cmd,
                        checkpoints_glob=args.checkpoints_glob, proxy_arch=args.proxy_arch):
            reused = f" (the reference's scores reused: only the proxy ran on {h['proxy_only_shards']} " \
                f"shard(s))" if h.get("proxy_only_shards") else ""
            print(f"round {h['round']}: kept {h['kept']} / read {h['read']} -> {h['output']}{reused}")
        return 0
    stats = run(cfg, beam_args, overwrite=args.overwrite, incremental=args.incremental,
                progress_every=0 if getattr(args, "quiet", False) else args.progress_every)
    print(format_summary(stats))
    print(train_data_hint(cfg.output, stats.get("output_shards", 0)))
    return 0


def train_data_hint(output: str, shards: int) -> str:
    """The line that tells a user how open_clip's trainer reads the output."""
    if not shards:
        return f"no examples kept: nothing in {output} to train on"
    last = f"{shards - 1:05d}"
    pattern = f"{output.rstrip('/')}/" + ("00000.tar" if shards == 1 else f"{{00000..{last}}}.tar")
    return f"open_clip: python -m open_clip_train.main --dataset-type webdataset --train-data '{pattern}' ..."


def _shards(args) -> int:
    from learnsieve.core.output import FOLDER_KINDS, owned_folder
    from learnsieve.datasets.shards import build_shards, describe
    with owned_folder(args.output, FOLDER_KINDS["shards"], args.overwrite,
                      {"images": args.images, "table": args.table}):
        stats = build_shards(args.output, images=args.images, table=args.table,
                             caption_column=args.caption_column, image_column=args.image_column,
                             samples_per_shard=args.samples_per_shard, clean_fraction=args.clean_fraction,
                             seed=args.seed, resize=args.resize, timeout=args.timeout,
                             progress_every=0 if args.quiet else 10.0)
    print("\n".join(describe(stats)))
    if stats["failed"]:
        print(f"{stats['failed']} of {stats['rows']} rows failed ("
              + ", ".join(f"{k} {v}" for k, v in stats["failed_by_reason"].items())
              + f"): named in {args.output.rstrip('/')}/_stats.json")
    parts = stats["parts"]
    if "clean" in parts:
        print(f"next: learnsieve train-reference --data '{parts['clean']['pattern']}' --out ckpt/reference")
        print(f"      learnsieve train-proxy --data '{parts['pool']['pattern']}' --out ckpt/proxy")
    if not stats["successes"]:
        from learnsieve.datasets.shards import ShardsError
        raise ShardsError(f"no example could be written ({stats['failed']} failed): see "
                          f"{args.output.rstrip('/')}/_stats.json")
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


def _eval(args, cfg) -> int:
    import os

    from learnsieve.core.paths import expand_pattern
    from learnsieve.core.records import Sample
    from learnsieve.core.tar import iter_shard

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
    from learnsieve.core.output import FOLDER_KINDS, owned_folder
    folder = args.out or _new_eval_folder()
    if folder.endswith(".json"):
        raise ConfigError(f"--out {folder}: eval's --out is a folder (eval.json, eval.html, the plots and "
                          f"random_arm/ go in it); pass --out {os.path.splitext(folder)[0]}/")
    with owned_folder(folder, FOLDER_KINDS["eval"], args.overwrite, {"arms": args.arm, "test": args.test}):
        return _eval_into(args, cfg, arms, folder, count)


def _new_eval_folder() -> str:
    import time
    base = os.path.join("runs", "eval-" + time.strftime("%Y%m%d-%H%M%S"))
    folder, n = base, 1
    while os.path.exists(folder):
        n += 1
        folder = f"{base}-{n}"
    return folder


def _eval_into(args, cfg, arms, folder, count) -> int:
    import json
    import os

    from learnsieve.evaluate.arms import evaluate, random_subset
    from learnsieve.evaluate.report import finish
    out = os.path.join(folder, "eval.json")
    if args.random_from:
        out_dir = os.path.join(folder, "random_arm")
        arms["random"] = random_subset(args.random_from, count(next(iter(arms.values()))), out_dir,
                                       seed=cfg.train.seed)
    classes = None
    if args.classes:
        with open(args.classes) as f:
            classes = json.load(f)
    task = getattr(cfg, "task", "retrieval")
    metric = args.metric or ("zeroshot_top1" if classes and task == "retrieval" else None)
    result = evaluate(arms, args.test, out, args.learner, args.steps, args.eval_every, cfg.train,
                      cfg.score.image_size, task=task, metric=metric, classes=classes,
                      prompts=args.prompt or ("a photo of a {}",))
    scored = args.scored or (count(args.random_from) if args.random_from else None)
    finish(result, out, cfg.score.image_size, cfg.train.batch_size, manifest=args.manifest,
           truth=args.truth, reference=args.reference, proxy=args.proxy, scored=scored,
           scoring_seconds=args.scoring_seconds, plots=not args.no_plots)
    from learnsieve.evaluate.report import table
    print("\n".join(table(result)))  # the result, on stdout
    print(f"wrote {out} and {result['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
