"""The Beam job's flags, checked before any work: runner names (learnsieve's fixed Dask runner by
its short names), an unknown runner named with the closest known one, the flags a runner cannot
start without (Dataflow's --project, --region, --temp_location), a runner's own flags given to
another, and every flag against Beam's PipelineOptions. One-line ``FlagError``s. Beam is imported
only inside the checks. Read by ``pipeline.run`` (a caller passing flags directly), the dry run
and the CLI's flag checking (``learnsieve/flags.py``)."""
from __future__ import annotations

import argparse
import difflib
from typing import List, Optional, Sequence, Tuple

from learnsieve.errors import FlagError

DASK_EXTRA = "pip install 'learnsieve[dask]'"
# learnsieve's Dask runner (pipeline/dask_runner.py): Beam's stock one with its faults fixed
DASK_RUNNER = "learnsieve.pipeline.dask_runner.DaskRunner"
DASK_NAMES = ("dask", "daskrunner", "apache_beam.runners.dask.dask_runner.daskrunner")


def resolve_runner(args: Optional[Sequence[str]]) -> List[str]:
    """``args`` with ``--runner DaskRunner`` / ``dask`` / Beam's full stock name (any case, ``=``
    or not) naming learnsieve's Dask runner; everything else as given."""
    out = list(args or [])
    for i, a in enumerate(out):
        if a == "--runner" and i + 1 < len(out) and out[i + 1].lower() in DASK_NAMES:
            out[i + 1] = DASK_RUNNER
        elif a.startswith("--runner=") and a.split("=", 1)[1].lower() in DASK_NAMES:
            out[i] = f"--runner={DASK_RUNNER}"
    return out


class BeamFlagError(Exception):
    """Beam's argparse error, raised instead of exiting."""


def dask_options_known(extra: Sequence[str]) -> bool:
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
        if name.lower() in DASK_NAMES and not dask_ok:
            raise FlagError(f"--runner {name}: dask is not installed ({DASK_EXTRA})")
    from apache_beam.options.pipeline_options import StandardOptions
    known = [p.rsplit(".", 1)[-1] for p in StandardOptions.ALL_KNOWN_RUNNERS] + ["DaskRunner"]
    lower = {k.lower() for k in known} | set(DASK_NAMES)
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
    _check_runner(extra, dask_options_known(extra))
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
        if given and owner.lower() not in resolved and not (owner == "DaskRunner" and resolved in DASK_NAMES):
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
    extra, _ = pop_dry_run(extra)
    dask_ok = dask_options_known(extra)
    beam = beam_flag_parser()
    try:
        _, left = beam.parse_known_args(list(extra))
    except BeamFlagError as exc:
        raise FlagError(f"Beam flag: {exc}") from None
    unknown = [a.split("=", 1)[0] for a in left if a.startswith("-")]
    if unknown:
        close = difflib.get_close_matches(unknown[0], option_strings(beam), n=1, cutoff=0.6)
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
            raise BeamFlagError(message)

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


def option_strings(p: argparse.ArgumentParser) -> List[str]:
    return [o for a in p._actions for o in a.option_strings]  # pylint: disable=protected-access


def pop_dry_run(extra: Sequence[str]) -> Tuple[List[str], Optional[bool]]:
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
