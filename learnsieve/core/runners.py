"""Runner names learnsieve resolves itself (no Beam import): its fixed Dask runner by its short
names. Read by the flag checks (learnsieve/flags.py) and by the job's options (pipeline/run.py)."""
from __future__ import annotations

from typing import List, Optional, Sequence

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
