"""learnsieve models: pure torch/timm (never imports apache_beam).

Dual encoders, per-example scoring math, training loops and safe checkpoints.
"""
from models.registry import create_model, list_models, register_model
from models.clip import ClipConfig, DualEncoder
from models.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "ClipConfig", "DualEncoder", "create_model", "list_models", "register_model",
    "load_checkpoint", "save_checkpoint",
]
