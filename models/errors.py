"""The errors of learnsieve, at the bottom of its imports (models/ is a leaf: it imports nothing
of the rest of learnsieve, so the base lives here and ``learnsieve.errors`` re-exports it)."""


class LearnsieveError(Exception):
    """A user, input, config, model or storage error that the ``learnsieve`` command shows in one
    line (exit status 2) instead of a traceback. Every such error derives from it."""


class CheckpointError(LearnsieveError, RuntimeError):
    """A checkpoint that cannot be used: missing, damaged, foreign, or needing a package not installed."""
