"""Errors of models/ (a leaf: imports nothing of learnsieve), so that checkpoint.py and the
open_clip files it dispatches to can both raise them without importing each other."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, damaged, foreign, or needing a package not installed."""
