"""learnsieve: offline data curation of noisy image-text WebDataset shards (CLIP score, learnability, ...).

One import name; the repository's top-level ``pipeline/`` (the Beam job) and ``models/`` (pure
torch, never imports apache_beam) are mapped to ``learnsieve.pipeline`` and ``learnsieve.models``
(see pyproject.toml and docs/ARCHITECTURE.md).
"""
from importlib import metadata as _metadata
from pkgutil import extend_path

# Run from the repository root (``python -m pytest``, ``python -m learnsieve...``), the source
# folder learnsieve/ comes first on sys.path and has no pipeline/ or models/; the installed link
# tree (an editable install in strict mode) has them. extend_path adds every other learnsieve/
# on sys.path to this package's path, so both resolve; in a wheel install it changes nothing.
__path__ = extend_path(__path__, __name__)

try:
    __version__ = _metadata.version("learnsieve")
except _metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
