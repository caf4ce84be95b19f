"""``create_model``: a freshly initialised model from a registered config name, built by the
config's type (timm's ``_factory.py`` above ``_registry.py``)."""
from __future__ import annotations

from learnsieve.models.classifier import Classifier, ClassifierConfig
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.registry import model_config

BUILDERS = {ClipConfig: DualEncoder, ClassifierConfig: Classifier}


def build_model(cfg):
    """The model class that a config's type names, initialised from ``cfg``."""
    try:
        return BUILDERS[type(cfg)](cfg)
    except KeyError:
        raise TypeError(f"no model class for config type {type(cfg).__name__}") from None


def create_model(name: str, **overrides):
    """A ``DualEncoder`` or ``Classifier`` from the config registered as ``name``."""
    return build_model(model_config(name, **overrides))
