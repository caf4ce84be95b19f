"""learnsieve.models: pure torch/timm (never imports apache_beam).

``registry`` (names -> configs, imports no model), ``zoo``/``zoo_cls`` (the built-in configs,
registered on import), ``factory`` (builds a config by its type), ``losses`` (loss and score math
over tensors), ``scores`` (the registry of named scores), model classes (``clip``, ``classifier``,
towers), training loops, metrics and safe checkpoints.
"""
from learnsieve.models import zoo, zoo_cls  # noqa: F401  (register the built-in configs)
from learnsieve.models.checkpoint import load_checkpoint, save_checkpoint
from learnsieve.models.classifier import Classifier, ClassifierConfig
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.factory import create_model
from learnsieve.models.registry import list_models, register_model

__all__ = [
    "Classifier", "ClassifierConfig", "ClipConfig", "DualEncoder", "create_model", "list_models", "register_model",
    "load_checkpoint", "save_checkpoint",
]
