"""The file behind ``open_clip:ARCH:PATH``: the spec, its sha256, its state dict, the model.

``PATH`` is read with ``torch.load(weights_only=True)`` (or safetensors): nothing but tensors and
plain containers is ever unpickled. Trainer checkpoints (a dict with ``state_dict``, keys maybe
prefixed ``module.``) and plain weights files are both taken. The scoring side (bank, losses,
preprocessing) is ``models/open_clip_adapter.py``.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from typing import Any, Dict, Tuple

import fsspec
import torch
from torch import nn

from learnsieve.models.spec import PREFIX, OpenClipError, is_open_clip, parse_spec  # noqa: F401  (the API here too)

INSTALL_HINT = "install learnsieve[open-clip] (pip install 'learnsieve[open-clip]')"


def import_open_clip():
    try:
        import open_clip
    except ImportError:
        raise OpenClipError(f"open_clip models need open-clip-torch: {INSTALL_HINT}") from None
    return open_clip


def known_arch(spec: str, arch: str) -> None:
    open_clip = import_open_clip()
    if open_clip.get_model_config(arch) is None:
        close = [m for m in open_clip.list_models() if m.lower() == arch.lower()]
        hint = f" (did you mean {close[0]}?)" if close else " (see open_clip.list_models())"
        raise OpenClipError(f"{spec}: unknown open_clip architecture {arch!r}{hint}")


# --- the file: its sha256 (cached) and its state dict -------------------------------------

_sha_cache: Dict[Tuple, str] = {}
_lock = threading.Lock()


def _stat_key(fs, path: str) -> Tuple | None:
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    stamp = info.get("mtime") or info.get("updated") or info.get("LastModified") or info.get("etag")
    return (path, info.get("size"), str(stamp)) if stamp is not None else None


def file_digest(spec: str, path: str) -> str:
    """sha256 of the weights file, cached per process while its size and mtime are unchanged."""
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise OpenClipError(f"{spec}: no such file {path}")
    if fs.isdir(root):
        raise OpenClipError(f"{spec}: {path} is a directory; open_clip:ARCH:PATH takes a weights "
                            f"file (e.g. logs/NAME/checkpoints/epoch_N.pt)")
    key = _stat_key(fs, root)
    with _lock:
        if key is not None and key in _sha_cache:
            return _sha_cache[key]
    h = hashlib.sha256()
    with fs.open(root, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    digest = h.hexdigest()
    if key is not None:
        with _lock:
            _sha_cache[key] = digest
    return digest


def read_state_dict(spec: str, path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any], str]:
    """(state dict, trainer info such as epoch, sha256 of the bytes read)."""
    fs, root = fsspec.core.url_to_fs(path)
    try:
        with fs.open(root, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise OpenClipError(f"{spec}: no such file {path}") from None
    digest = hashlib.sha256(blob).hexdigest()
    info: Dict[str, Any] = {}
    if path.endswith(".safetensors"):
        from safetensors.torch import load as st_load
        try:
            obj: Any = st_load(blob)
        except Exception as exc:
            raise OpenClipError(f"{spec}: not a safetensors file ({exc})".splitlines()[0]) from None
    else:
        try:
            obj = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError for arbitrary objects, RuntimeError for junk
            raise OpenClipError(f"{spec}: torch.load(weights_only=True) refused {path} (not a "
                                f"checkpoint of tensors: {exc})".splitlines()[0]) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        info = {k: obj[k] for k in ("epoch", "name") if isinstance(obj.get(k), (int, str))}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise OpenClipError(f"{spec}: {path} holds no state dict of tensors (an open_clip "
                            f"trainer checkpoint or a weights file)")
    for prefix in ("module.", "_orig_mod."):  # DistributedDataParallel, torch.compile
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj, info, digest


def _convert(model: nn.Module, sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """What ``open_clip.load_checkpoint`` does to a state dict before loading it."""
    from open_clip import factory
    if hasattr(factory, "convert_state_dict"):
        sd = factory.convert_state_dict(model, sd)
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = factory.convert_to_custom_text_state_dict(sd)
    for name in ("logit_scale", "logit_bias"):
        own = getattr(model, name, None)
        if name in sd and isinstance(own, torch.Tensor) and own.ndim != sd[name].ndim:
            sd[name] = sd[name].reshape(own.shape)
    if "logit_bias" not in sd and getattr(model, "logit_bias", None) is not None:
        sd["logit_bias"] = torch.zeros_like(sd["logit_scale"])
    position_ids = "text.transformer.embeddings.position_ids"  # gone after transformers 4.31
    if position_ids in sd and position_ids not in model.state_dict():
        del sd[position_ids]
    for fn in ("resize_pos_embed", "resize_text_pos_embed"):
        if hasattr(factory, fn):
            getattr(factory, fn)(sd, model)
    return sd


def build_model(spec: str, arch: str, sd: Dict[str, torch.Tensor]) -> nn.Module:
    import inspect
    open_clip = import_open_clip()
    kwargs: Dict[str, Any] = {"pretrained": None}
    params = inspect.signature(open_clip.create_model).parameters
    if "pretrained_text" in params:
        kwargs["pretrained_text"] = False  # never fetch a hub text tower: the file has the weights
    quiet = logging.getLogger()
    level = quiet.level
    quiet.setLevel(max(level, logging.ERROR))  # "No pretrained weights loaded" is expected here
    try:
        model = open_clip.create_model(arch, **kwargs)
    except Exception as exc:
        raise OpenClipError(f"{spec}: open_clip cannot build {arch} ({exc})".splitlines()[0]) from None
    finally:
        quiet.setLevel(level)
    try:
        model.load_state_dict(_convert(model, dict(sd)), strict=True)
    except Exception as exc:
        raise OpenClipError(f"{spec}: the weights do not fit {arch} (wrong ARCH?): "
                            f"{exc}".replace("\n", " ")[:400]) from None
    return model.eval()


def save_weights(model: nn.Module, path: str) -> str:
    """Save an open_clip model's state dict as a weights file ``open_clip:ARCH:PATH`` loads
    (tests, and a quick way to start from ``create_model(ARCH)``); returns its sha256."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
