"""learnsieve models: pure torch/timm (never imports apache_beam).

Dual encoders, per-example scoring math, training loops and safe checkpoints.
"""
from models.registry import create_model, list_models, register_model
from models.clip import ClipConfig, DualEncoder
from models.checkpoint import load_checkpoint, save_checkpoint
from models.classifier import Classifier, ClassifierConfig
import models.zoo_cls  # noqa: F401,E402  (registers the classifier configs)

__all__ = [
    "Classifier", "ClassifierConfig", "ClipConfig", "DualEncoder", "create_model", "list_models", "register_model",
    "load_checkpoint", "save_checkpoint",
]
