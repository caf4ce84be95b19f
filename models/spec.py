"""The one parser of model sources (timm's ``parse_model_name``): a learnsieve checkpoint folder,
or ``open_clip:ARCH:PATH`` (an open_clip architecture and a weights file; PATH may hold colons,
``gs://...``). No torch, no open_clip: the CLI checks, preflight, the remote probes and the
rounds loop read specs without loading a model."""
from __future__ import annotations

from typing import Any, Optional, Tuple

from learnsieve.models.errors import CheckpointError

PREFIX = "open_clip:"


class OpenClipError(CheckpointError):
    """A one-line error about an ``open_clip:`` model (a ``CheckpointError``)."""


def is_open_clip(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_spec(spec: str) -> Tuple[str, str]:
    """``open_clip:ARCH:PATH`` -> (ARCH, PATH); a malformed spec is a one-line ``OpenClipError``."""
    found = split_spec(spec)
    if found is None:
        raise OpenClipError(f"{spec!r}: expected open_clip:ARCH:PATH, e.g. "
                            f"open_clip:ViT-B-32:logs/run/checkpoints/epoch_10.pt")
    return found


def split_spec(spec: Any) -> Optional[Tuple[str, str]]:
    """(ARCH, PATH) of a well-formed ``open_clip:ARCH:PATH``; None for anything else."""
    if not is_open_clip(spec):
        return None
    arch, sep, path = spec[len(PREFIX):].partition(":")
    return (arch, path) if sep and arch and path else None


def model_file(spec: Optional[str]) -> Optional[str]:
    """Where a spec's weights are: PATH of ``open_clip:ARCH:PATH``, else the spec itself (a
    checkpoint folder); None for a malformed open_clip spec."""
    if not is_open_clip(spec):
        return spec
    found = split_spec(spec)
    return found[1] if found else None


def make_spec(arch: str, path: str) -> str:
    return f"{PREFIX}{arch}:{path}"
