import io
import json
import struct
import zlib

import pytest
import torch
from PIL import Image

from learnsieve.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from learnsieve.models.factory import create_model
from learnsieve.models.image import ImageError, decode_image
from learnsieve.models.registry import list_models
from tests.conftest import good_example


def _model():
    torch.manual_seed(0)
    m = create_model("ls_clip_test")
    m.set_bank(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8), [str(i) for i in range(32)])
    return m.eval()


def test_checkpoint_roundtrip_gives_identical_scores(tmp_path):
    m = _model()
    digest = save_checkpoint(m, str(tmp_path / "ck"), extra={"role": "reference"})
    loaded, meta = load_checkpoint(str(tmp_path / "ck"))
    assert meta["sha256"] == digest and meta["role"] == "reference"
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    caps = ["a red circle", "a blue box", "junk"]
    assert torch.equal(m.score_batch(x, caps)["loss"], loaded.score_batch(x, caps)["loss"])


def test_tampered_weights_are_refused(tmp_path):
    save_checkpoint(_model(), str(tmp_path / "ck"))
    path = tmp_path / "ck" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(str(tmp_path / "ck"))


@pytest.mark.parametrize("name", ["model.pt", "weights.pth", "x.ckpt", "y.bin"])
def test_pickle_files_are_never_loaded(tmp_path, name):
    path = tmp_path / name
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(str(path))


def test_missing_or_broken_checkpoint_messages(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        load_checkpoint(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_checkpoint(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(str(tmp_path / "bad"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"format": "pickle"}))
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(str(tmp_path / "other"))


def test_registry_lists_and_rejects_unknown():
    assert {"ls_clip_small", "ls_clip_tiny", "ls_clip_test"} <= set(list_models())
    with pytest.raises(KeyError, match="unknown model"):
        create_model("resnet9000")


def test_decode_image_shape_and_crop():
    img, _ = good_example()
    out = decode_image(img, 32)
    assert out.shape == (3, 32, 32) and out.dtype == torch.uint8
    buf = io.BytesIO()
    Image.new("RGB", (120, 40), (10, 200, 30)).save(buf, format="PNG")
    wide = decode_image(buf.getvalue(), 16)
    assert wide.shape == (3, 16, 16) and int(wide[1].float().mean()) == 200


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data needed to trip the guard)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("data,reason", [
    (b"", "empty_image"),
    (b"garbage bytes that are no image", "undecodable_image"),
    (png_header(30000, 30000), "image_too_large"),
    (b"P6\n2 2\n255\n" + b"\x00" * 12, "unsupported_format"),
])
def test_decode_image_failures_have_reasons(data, reason):
    with pytest.raises(ImageError) as info:
        decode_image(data, 32, max_pixels=64_000_000)
    assert info.value.reason == reason


def test_truncated_jpeg_is_undecodable():
    img, _ = good_example()
    with pytest.raises(ImageError) as info:
        decode_image(img[: len(img) // 2], 32)
    assert info.value.reason == "undecodable_image"
