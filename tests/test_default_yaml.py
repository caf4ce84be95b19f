"""configs/default.yaml says it lists every key: every config dataclass field, with its default."""
import dataclasses
from pathlib import Path

import yaml

from learnsieve.config import Config

ROOT = Path(__file__).resolve().parents[1]


def _fields(cls, prefix=""):
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out.update(_fields(type(default), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = default
    return out


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_default_yaml_lists_every_field_with_its_default():
    fields = _fields(Config)
    shipped = _flatten(yaml.safe_load((ROOT / "configs" / "default.yaml").read_text()))
    assert sorted(set(fields) - set(shipped)) == [], "keys missing from configs/default.yaml"
    assert sorted(set(shipped) - set(fields)) == [], "keys in default.yaml that no dataclass has"
    for key, default in fields.items():
        value = tuple(shipped[key]) if isinstance(default, tuple) else shipped[key]
        assert value == default, f"{key}: default.yaml says {shipped[key]!r}, the dataclass {default!r}"
