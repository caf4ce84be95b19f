"""``LearnsieveError``: the base of every error the CLI turns into one line (defined in
models/errors.py, the bottom of the imports, so that models/ can derive from it too)."""
from learnsieve.models.errors import LearnsieveError

__all__ = ["LearnsieveError"]
