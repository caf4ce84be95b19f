"""Image bytes -> uint8 tensor, with named failure reasons and a decompression-bomb guard."""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image

ALLOWED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP"}
DEFAULT_MAX_PIXELS = 64_000_000


class ImageError(ValueError):
    """A bad image; ``reason`` is a short machine-readable name."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def decode_image(data: bytes, size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode, convert to RGB, resize the short side to ``size`` and centre-crop: uint8 [3,size,size].

    The pixel count is checked from the header before any pixel is decoded, so a 30000x30000
    image is refused without allocating it.
    """
    if not data:
        raise ImageError("empty_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("image_too_large", str(exc)) from None
    except Exception as exc:  # PIL raises many types for garbage input
        raise ImageError("undecodable_image", type(exc).__name__) from None
    if img.format not in ALLOWED_FORMATS:
        raise ImageError("unsupported_format", str(img.format))
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError("image_too_large", f"{w}x{h}")
    if w < 1 or h < 1:
        raise ImageError("undecodable_image", f"{w}x{h}")
    try:
        if img.format == "JPEG":
            img.draft("RGB", (size, size))  # DCT-domain downscale: much faster decode
        img = img.convert("RGB")
        w, h = img.size
        side = min(w, h)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        img = img.resize((size, size), Image.BILINEAR, box=box)
        arr = np.asarray(img, dtype=np.uint8)
    except Exception as exc:
        raise ImageError("undecodable_image", f"{type(exc).__name__}: {exc}"[:200]) from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
