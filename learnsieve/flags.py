"""Flag checking for the ``learnsieve`` command: every flag must be learnsieve's or one of Beam's
PipelineOptions (refused in one line, naming the closest known flag); stray arguments are refused
with a hint to quote the pattern; Beam's ``--dry_run`` becomes learnsieve's. ``--runner DaskRunner``
(or ``dask``, or Beam's own full name) names learnsieve's fixed Dask runner, whose flags
(``--dask_client_address``, ``--dask_partition_size``, ...) are known once dask is installed."""
from __future__ import annotations

import argparse
import difflib
from typing import List, Optional, Sequence, Tuple

from learnsieve.core.runners import DASK_NAMES as _DASK_NAMES
from learnsieve.core.runners import DASK_RUNNER, resolve_runner  # noqa: F401  (the flag checks' names)
from learnsieve.errors import LearnsieveError

BEAM_COMMANDS = ("curate", "demo", "rounds")
DASK_EXTRA = "pip install 'learnsieve[dask]'"
QUOTE_HINT = "quote glob and brace patterns ('dir/*.tar') so that the shell does not expand them"


class FlagError(LearnsieveError, ValueError):
    """A flag that neither learnsieve nor Beam knows, or a stray argument; one line."""


class _BeamFlagError(Exception):
    pass


def _dask_options_known(extra: Sequence[str]) -> bool:
    """Registers the Dask runner's PipelineOptions (``--dask_*``) when a flag mentions dask and
    dask is installed (importing it costs a second, so not otherwise); False when not installed."""
    if not any("dask" in a.lower() for a in extra):
        return True
    try:
        import apache_beam.runners.dask.dask_runner  # noqa: F401  (DaskOptions)
    except ImportError:  # dask (or dask.distributed) is not installed
        return False
    return True


def _check_runner(extra: Sequence[str], dask_ok: bool) -> None:
    """A ``--runner`` value that Beam cannot resolve is refused now (Beam would refuse it only
    after preflight), naming the closest known runner; so is the Dask runner without dask."""
    names = [extra[i + 1] for i, a in enumerate(extra[:-1]) if a == "--runner"]
    names += [a.split("=", 1)[1] for a in extra if a.startswith("--runner=")]
    for name in names:
        if name.lower() in _DASK_NAMES and not dask_ok:
            raise FlagError(f"--runner {name}: dask is not installed ({DASK_EXTRA})")
    from apache_beam.options.pipeline_options import StandardOptions
    known = [p.rsplit(".", 1)[-1] for p in StandardOptions.ALL_KNOWN_RUNNERS] + ["DaskRunner"]
    lower = {k.lower() for k in known} | set(_DASK_NAMES)
    for name in names:
        if "." in name or name.lower() in lower or name.lower() + "runner" in lower:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) or \
            difflib.get_close_matches(name.lower(), sorted(lower), n=1, cutoff=0.6)
        raise FlagError(f"unknown runner {name}" + (f" (did you mean {close[0]}?)" if close else "")
                        + "; a runner class's full module path also works")


# flags a runner cannot start without (Beam would refuse them only once the pipeline runs, after
# learnsieve has claimed the output): runner -> (flags, one of which each entry needs)
RUNNER_NEEDS = {
    "DataflowRunner": (("--project",), ("--region",), ("--temp_location", "--staging_location")),
    "PortableRunner": (("--job_endpoint",),),
}
# flags only one runner reads: given to another, they would be silently ignored
RUNNER_ONLY = {"--dask_": "DaskRunner", "--flink_": "FlinkRunner", "--spark_": "SparkRunner"}


def _flag_given(extra: Sequence[str], flag: str) -> Optional[str]:
    """The value of ``flag`` among ``extra`` (``--f v`` or ``--f=v``), '' for a bare flag, None."""
    for i, a in enumerate(extra):
        if a == flag:
            return extra[i + 1] if i + 1 < len(extra) and not extra[i + 1].startswith("--") else ""
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _runner_names(extra: Sequence[str]) -> List[str]:
    names = [extra[i + 1] for i, a in enumerate(extra[:-1]) if a == "--runner"]
    return names + [a.split("=", 1)[1] for a in extra if a.startswith("--runner=")]


def _check_runner_class(name: str) -> None:
    """A runner named by its module path must import: ``pkg.module.Class``."""
    import importlib
    module, _, cls = name.rpartition(".")
    try:
        found = importlib.import_module(module)
    except ImportError as exc:
        raise FlagError(f"--runner {name}: cannot import {module} ({exc})") from None
    if not hasattr(found, cls):
        close = difflib.get_close_matches(cls, [n for n in dir(found) if not n.startswith("_")], n=1, cutoff=0.6)
        raise FlagError(f"--runner {name}: {module} has no {cls}" +
                        (f" (did you mean {module}.{close[0]}?)" if close else ""))


def check_runner_flags(extra: Sequence[str]) -> None:
    """The runner and the flags it needs, before any work: an unknown runner (naming the closest),
    a runner class path that does not import, a runner without the flags it cannot start without
    (Dataflow's --project, --region, --temp_location), a runner's own flags given to another."""
    extra = list(extra)
    _check_runner(extra, _dask_options_known(extra))
    names = _runner_names(extra)
    runner = names[-1] if names else None
    if runner and "." in runner and runner != DASK_RUNNER:
        _check_runner_class(runner)
    short = (runner or "").rsplit(".", 1)[-1]
    short = {"dataflow": "DataflowRunner", "portable": "PortableRunner"}.get(short.lower(), short)
    if short.lower() in ("testdataflowrunner", "dataflowrunner"):
        short = "DataflowRunner"
    missing = [" or ".join(needs) for needs in RUNNER_NEEDS.get(short, ())
               if not any(_flag_given(extra, f) for f in needs)]
    if missing:
        raise FlagError(f"--runner {runner} needs {', '.join(missing)}; e.g. " +
                        " ".join(f"{n[0]} {EXAMPLE_VALUES.get(n[0], 'VALUE')}" for n in RUNNER_NEEDS[short]))
    if short == "DataflowRunner":
        for flag in ("--temp_location", "--staging_location"):
            value = _flag_given(extra, flag)
            if value and not value.startswith("gs://"):
                raise FlagError(f"{flag} {value}: Dataflow stages files in Cloud Storage; pass a gs:// path")
    resolved = (runner or "").lower()
    for prefix, owner in RUNNER_ONLY.items():
        given = next((a.split("=", 1)[0] for a in extra if a.startswith(prefix)), None)
        if given and owner.lower() not in resolved and not (owner == "DaskRunner" and resolved in _DASK_NAMES):
            raise FlagError(f"{given} is a flag of the {owner}, which would ignore it under "
                            f"{'--runner ' + runner if runner else 'the default in-process runner'}: "
                            f"add --runner {owner}")


EXAMPLE_VALUES = {"--project": "PROJECT", "--region": "REGION", "--temp_location": "gs://BUCKET/tmp",
                  "--job_endpoint": "HOST:PORT"}


def check_pipeline_args(pipeline_args: Optional[Sequence[str]]) -> None:
    """What ``check_flags`` checks of Beam's flags, for a caller that passes them directly
    (``pipeline.run.run``, the dry run): every flag known to Beam (the closest named), the
    runner and the flags it needs (``check_runner_flags``). One-line ``FlagError``."""
    extra = [a for a in (pipeline_args or [])]
    if not extra:
        return
    extra, _ = _pop_dry_run(extra)
    dask_ok = _dask_options_known(extra)
    beam = beam_flag_parser()
    try:
        _, left = beam.parse_known_args(list(extra))
    except _BeamFlagError as exc:
        raise FlagError(f"Beam flag: {exc}") from None
    unknown = [a.split("=", 1)[0] for a in left if a.startswith("-")]
    if unknown:
        close = difflib.get_close_matches(unknown[0], _option_strings(beam), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        if unknown[0].startswith("--dask_") and not dask_ok:
            hint = f": a flag of the Dask runner, and dask is not installed ({DASK_EXTRA})"
        raise FlagError(f"unknown pipeline flag {unknown[0]}{hint}")
    check_runner_flags(extra)


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
    """The Beam flags among ``extra`` (what learnsieve's parser did not take), the Dask runner's
    short names resolved (:func:`resolve_runner`); anything else is refused, naming the flag and
    the closest known one, or the stray argument."""
    dask_ok = _dask_options_known(extra)
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
        check_runner_flags(extra)
    if not left:
        check_required(sub, args)
        return resolve_runner(extra)
    unknown = [a.split("=", 1)[0] for a in left if a.startswith("-") and len(a) > 1]
    if unknown:
        if args.command not in BEAM_COMMANDS:
            beam_known = _option_strings(beam_flag_parser())
        reasons = []
        for name in dict.fromkeys(unknown):
            if name.startswith("--dask_") and not dask_ok:
                reasons.append(f"{name} is a flag of the Dask runner, and dask is not installed "
                               f"({DASK_EXTRA})")
                continue
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


# flags a subcommand cannot run without: checked after unknown flags, so that a typo
# (``--dat``) is named with the closest flag, not reported as a missing ``--data``
REQUIRED = {"train-reference": ("--data", "--out"), "train-proxy": ("--data", "--out"),
            "eval": ("--arm", "--test"), "export": ("--output", "--uids"),
            "shards": ("--output",)}


def check_required(sub: argparse.ArgumentParser, args) -> None:
    flags = REQUIRED.get(getattr(args, "command", None), ())
    dests = {o: a.dest for a in sub._actions for o in a.option_strings}  # pylint: disable=protected-access
    missing = [f for f in flags if getattr(args, dests.get(f, f.lstrip("-").replace("-", "_")), None) in (None, [])]
    if missing:
        raise FlagError(f"missing {', '.join(missing)} (see learnsieve {args.command} --help)")


def _flag_before(argv: Sequence[str], token: str) -> Optional[str]:
    """The flag that ``token`` follows in ``argv`` (for the hint), if any."""
    argv = list(argv)
    if token not in argv:
        return None
    for a in reversed(argv[:argv.index(token)]):
        if a.startswith("--"):
            return a.split("=", 1)[0]
    return None
