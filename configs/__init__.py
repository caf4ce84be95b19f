"""The shipped YAML configs (``learnsieve.configs``): ``default.yaml`` lists every key."""
from pathlib import Path

HERE = Path(__file__).resolve().parent


def config_path(name: str = "default") -> Path:
    """Path of a shipped config, e.g. ``config_path("demo")``."""
    return HERE / f"{name}.yaml"
