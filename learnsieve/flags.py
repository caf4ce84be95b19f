"""Flag checking for the ``learnsieve`` command: every flag must be learnsieve's or one of Beam's
PipelineOptions (refused in one line, naming the closest known flag); stray arguments are refused
with a hint to quote the pattern; Beam's ``--dry_run`` becomes learnsieve's. ``--runner DaskRunner``
(or ``dask``, or Beam's own full name) names learnsieve's fixed Dask runner, whose flags
(``--dask_client_address``, ``--dask_partition_size``, ...) are known once dask is installed."""
from __future__ import annotations

import argparse
import difflib
from typing import List, Optional, Sequence, Tuple

from learnsieve.errors import FlagError
from learnsieve.pipeline.options import (  # noqa: F401 (check_pipeline_args: also the CLI layer's name)
    DASK_EXTRA,
    BeamFlagError,
    beam_flag_parser,
    check_pipeline_args,
    check_runner_flags,
    dask_options_known,
    option_strings,
    pop_dry_run,
    resolve_runner,
)

BEAM_COMMANDS = ("curate", "demo", "rounds")
QUOTE_HINT = "quote glob and brace patterns ('dir/*.tar') so that the shell does not expand them"


def check_flags(ap: argparse.ArgumentParser, args, extra: Sequence[str],
                argv: Sequence[str]) -> List[str]:
    """The Beam flags among ``extra`` (what learnsieve's parser did not take), the Dask runner's
    short names resolved (:func:`resolve_runner`); anything else is refused, naming the flag and
    the closest known one, or the stray argument."""
    dask_ok = dask_options_known(extra)
    sub = ap._subparsers._group_actions[0].choices[args.command]  # pylint: disable=protected-access
    known = option_strings(sub) + ["--version"]
    beam_known: List[str] = []
    left = list(extra)
    if args.command in BEAM_COMMANDS:
        extra, dry = pop_dry_run(extra)
        if dry is not None:
            args.dry_run = bool(getattr(args, "dry_run", False) or dry)
        if args.command == "demo" and dry:
            raise FlagError("--dry_run: demo makes its own data and checkpoints first; dry-run "
                            "`learnsieve curate` instead")
        beam = beam_flag_parser()
        beam_known = option_strings(beam)
        try:
            _, left = beam.parse_known_args(list(extra))
        except BeamFlagError as exc:
            raise FlagError(f"Beam flag: {exc}") from None
    if not left:  # every flag known: then the runner and the flags it needs
        if args.command in BEAM_COMMANDS:
            check_runner_flags(extra)
        check_required(sub, args)
        return resolve_runner(extra)
    unknown = [a.split("=", 1)[0] for a in left if a.startswith("-") and len(a) > 1]
    if unknown:
        if args.command not in BEAM_COMMANDS:
            beam_known = option_strings(beam_flag_parser())
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


# --- the paths each command's flags name (checked for reachability before any work: core/remote) ---

def targets_for(command: str, args, cfg=None, beam_args: Sequence[str] = ()) -> List[Tuple[str, Optional[str], bool]]:
    """(what, path, write) of every path a command reads or writes; unused arguments are None.
    curate and rounds take their paths from ``cfg`` where given, else from the flags."""
    def get(name: str) -> Optional[str]:
        return getattr(args, name, None)
    out: List[Tuple[str, Optional[str], bool]] = []
    if command in ("curate", "rounds"):
        src = cfg if cfg is not None else args  # the config's paths, or the flags' before it loads
        out += [("--input", getattr(src, "input", None), False), ("--output", getattr(src, "output", None), True),
                ("--reference", model_path(getattr(src, "reference", None)), False),
                ("--proxy", model_path(getattr(src, "proxy", None)), False)]
        out += [(flag, value, True) for flag, value in beam_locations(beam_args)]
    elif command in ("train-reference", "train-proxy"):
        out += [("--data", get("data"), False), ("--out", get("out"), True)]
    elif command == "demo":
        out += [("--out", get("out"), True)]
        out += [(flag, value, True) for flag, value in beam_locations(beam_args)]
    elif command == "eval":
        for spec in get("arm") or []:
            name, _, pattern = spec.partition("=")
            out.append((f"--arm {name}", pattern or None, False))
        out += [("--random-from", get("random_from"), False), ("--test", get("test"), False),
                ("--classes", get("classes"), False), ("--manifest", get("manifest"), False),
                ("--truth", get("truth"), False), ("--reference", model_path(get("reference")), False),
                ("--proxy", model_path(get("proxy")), False), ("--out", get("out"), True)]
    return out


def model_path(spec: Optional[str]) -> Optional[str]:
    """The file of an ``open_clip:ARCH:PATH`` model spec, or the checkpoint folder."""
    from learnsieve.models.spec import model_file
    return model_file(spec)


def beam_locations(beam_args: Sequence[str]) -> List[Tuple[str, str]]:
    """--temp_location / --staging_location among Beam's flags (the job writes there)."""
    found = []
    args = list(beam_args)
    for i, a in enumerate(args):
        for flag in ("--temp_location", "--staging_location"):
            if a == flag and i + 1 < len(args):
                found.append((flag, args[i + 1]))
            elif a.startswith(flag + "="):
                found.append((flag, a.split("=", 1)[1]))
    return found
