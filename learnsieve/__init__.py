"""learnsieve: offline data curation of noisy image-text WebDataset shards by learnability.

One import name; the repository's top-level ``pipeline/`` (the Beam job) and ``models/`` (pure
torch, never imports apache_beam) are mapped to ``learnsieve.pipeline`` and ``learnsieve.models``
(see pyproject.toml and docs/ARCHITECTURE.md).
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("learnsieve")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
