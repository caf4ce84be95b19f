"""Checkpoints are ``model.safetensors`` + ``config.json``; loading never unpickles.

Paths may be local or any fsspec URL (``gs://``). ``config.json`` records the sha256 of the
weights, so a tampered or truncated file is refused with a one-line error. A frozen pretrained
text tower (``text_tower: minilm``) or image tower (``image_pretrained``) is not stored: its
weights come from their package, and the config's ``text_weights_sha256`` /
``image_weights_sha256`` must match them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, Dict, Tuple

import fsspec
from learnsieve.models.classifier import FORMAT as CLASSIFIER_FORMAT
from learnsieve.models.classifier import Classifier, ClassifierConfig
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.image_pretrained import PretrainedImageError
from learnsieve.models.text_minilm import MiniLMError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

FORMAT = "learnsieve-clip-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")


class CheckpointError(RuntimeError):
    pass


def _join(path: str, name: str) -> str:
    return path.rstrip("/") + "/" + name


def save_checkpoint(model: DualEncoder, path: str, extra: Dict[str, Any] | None = None) -> str:
    """Write weights and config; returns the sha256 of the weights (the model's identity)."""
    blob = st_save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})
    digest = hashlib.sha256(blob).hexdigest()
    fs, root = fsspec.core.url_to_fs(path)
    fs.makedirs(root, exist_ok=True)
    meta = {"format": getattr(model, "checkpoint_format", FORMAT),
            "config": dataclasses.asdict(model.cfg), "sha256": digest, **(extra or {})}
    with fs.open(_join(root, WEIGHTS), "wb") as f:
        f.write(blob)
    with fs.open(_join(root, CONFIG), "w") as f:  # written last: its presence marks completion
        json.dump(meta, f, indent=2, sort_keys=True)
    return digest


def read_checkpoint_meta(path: str) -> Dict[str, Any]:
    if path.endswith(PICKLE_SUFFIXES):
        raise CheckpointError(f"refusing to unpickle {path}: learnsieve loads only a directory "
                              f"with {WEIGHTS} + {CONFIG}")
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.isdir(root):
        raise CheckpointError(f"checkpoint {path} is not a directory with {WEIGHTS} + {CONFIG}")
    try:
        with fs.open(_join(root, CONFIG), "r") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no {CONFIG} (incomplete or not a "
                              f"learnsieve checkpoint)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {CONFIG} is not valid JSON ({exc})") from None
    if meta.get("format") not in (FORMAT, CLASSIFIER_FORMAT):
        raise CheckpointError(f"checkpoint {path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def load_checkpoint(path: str, device: str = "cpu") -> Tuple[DualEncoder, Dict[str, Any]]:
    """Load a checkpoint in eval mode; returns (model, meta). Raises ``CheckpointError``."""
    meta = read_checkpoint_meta(path)
    fs, root = fsspec.core.url_to_fs(path)
    try:
        with fs.open(_join(root, WEIGHTS), "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no {WEIGHTS}") from None
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} does not match the sha256 in "
                              f"{CONFIG} (truncated or tampered); retrain or re-copy it")
    try:
        cfg_cls, model_cls = ((ClassifierConfig, Classifier) if meta["format"] == CLASSIFIER_FORMAT
                              else (ClipConfig, DualEncoder))
        cfg_fields = {f.name for f in dataclasses.fields(cfg_cls)}
        cfg = cfg_cls(**{k: v for k, v in meta["config"].items() if k in cfg_fields})
        model = model_cls(cfg)
        model.load_state_dict(st_load(blob), strict=True)
    except (MiniLMError, PretrainedImageError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}".splitlines()[0]) from None
    except Exception as exc:
        raise CheckpointError(f"checkpoint {path} does not load: {exc}".splitlines()[0]) from None
    return model.to(device).eval(), meta
