"""``LearnsieveError``: the base of every error the CLI turns into one line (defined in
models/errors.py, the bottom of the imports, so that models/ can derive from it too)."""
from learnsieve.models.errors import LearnsieveError

__all__ = ["FlagError", "LearnsieveError"]


class FlagError(LearnsieveError, ValueError):
    """A flag that neither learnsieve nor Beam knows, a runner without the flags it needs, or a
    stray argument; one line."""
