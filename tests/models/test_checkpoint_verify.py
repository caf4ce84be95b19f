"""Checkpoints are fully verified before any work (issue "Nothing lost, nothing touched"): the
weights' sha256, the safetensors header, known towers and the recorded roles, each refused in
one line by the real CLI (rc 2) before the output folder exists."""
import hashlib
import json
import pickle

import pytest
import torch

from learnsieve.models.checkpoint import (
    CheckpointError,
    check_roles,
    save_checkpoint,
    verify_checkpoint,
)
from learnsieve.models.factory import create_model


def _save(path, role):
    torch.manual_seed(0)
    m = create_model("ls_clip_test")
    m.set_bank(torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8), [str(i) for i in range(32)])
    save_checkpoint(m.eval(), str(path), extra={"role": role})
    return str(path)


@pytest.fixture()
def pair(tmp_path):
    return _save(tmp_path / "reference", "reference"), _save(tmp_path / "proxy", "proxy")


def _edit_config(ck, **changes):
    p = f"{ck}/config.json"
    meta = json.load(open(p))
    for k, v in changes.items():
        if v is None:
            meta.pop(k, None)
        elif k == "config":
            meta["config"].update(v)
        else:
            meta[k] = v
    json.dump(meta, open(p, "w"))


def _truncate(ck):
    p = f"{ck}/model.safetensors"
    data = open(p, "rb").read()
    open(p, "wb").write(data[: len(data) // 2])


def _pickle_matching_sha(ck):
    blob = pickle.dumps({"weights": [1, 2, 3]})
    open(f"{ck}/model.safetensors", "wb").write(blob)
    _edit_config(ck, sha256=hashlib.sha256(blob).hexdigest())


def _pickle_torch_save(ck):
    torch.save({"a": torch.zeros(2)}, f"{ck}/model.safetensors")


BREAKS = {
    "truncated": (_truncate, "truncated"),
    "pickle bytes, sha256 updated": (_pickle_matching_sha, "pickled"),
    "torch.save zip": (_pickle_torch_save, "pickled"),
    "no sha256": (lambda ck: _edit_config(ck, sha256=None), "records no sha256"),
    "unknown image tower": (lambda ck: _edit_config(ck, config={"image_tower": "no_such_net"}),
                            "unknown image tower 'no_such_net'"),
    "unknown text tower": (lambda ck: _edit_config(ck, config={"text_tower": "bogus"}),
                           "unknown text tower 'bogus'"),
    "unknown pretrained tower": (lambda ck: _edit_config(ck, config={"image_pretrained": "nope.x"}),
                                 "unknown pretrained image tower"),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_verify_refuses_broken_checkpoints(pair, case):
    ref, _ = pair
    verify_checkpoint(ref)  # intact: passes
    breaker, match = BREAKS[case]
    breaker(ref)
    with pytest.raises(CheckpointError, match=match) as info:
        verify_checkpoint(ref)
    assert "\n" not in str(info.value)


def test_tampered_weights_of_the_same_size_fail_the_sha256(pair):
    ref, _ = pair
    p = f"{ref}/model.safetensors"
    data = bytearray(open(p, "rb").read())
    data[-5] ^= 0xFF
    open(p, "wb").write(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sha256"):
        verify_checkpoint(ref)


def test_roles(pair):
    ref, proxy = pair
    r, p = verify_checkpoint(ref), verify_checkpoint(proxy)
    check_roles(ref, r, proxy, p)
    check_roles(ref, r, ref, r)  # the reference as its own proxy: a legitimate baseline
    check_roles(ref, {**r, "role": None}, proxy, {**p, "role": None})  # hand-saved: no role
    with pytest.raises(CheckpointError, match="swapped"):
        check_roles(proxy, p, ref, r)
    with pytest.raises(CheckpointError, match="trained as a proxy"):
        check_roles(proxy, p, proxy, p)
    with pytest.raises(CheckpointError, match="unknown role"):
        check_roles(ref, {**r, "role": "judge"}, proxy, p)


# --- the real CLI: one line, rc 2, nothing created --------------------------------------------

def _curate(capsys, data_root, out, ref, proxy, *extra):
    from learnsieve.cli import main
    rc = main(["curate", "--input", data_root["pool_pattern"], "--output", str(out), "--reference", ref,
               "--proxy", proxy, "--set", "score.image_size=32", *extra])
    return rc, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("case", sorted(BREAKS) + ["swapped roles"])
def test_cli_refuses_bad_checkpoints_before_any_work(case, pair, data_root, tmp_path, capsys):
    ref, proxy = pair
    if case == "swapped roles":
        ref, proxy, match = proxy, ref, "swapped"
    else:
        breaker, match = BREAKS[case]
        breaker(proxy)
    out = tmp_path / "out"
    rc, err = _curate(capsys, data_root, out, ref, proxy)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("learnsieve: error: ") and match in err[0]
    assert not out.exists()  # refused before the output folder is created


def test_a_safetensors_header_length_with_a_0x80_low_byte_is_not_taken_for_pickle(tmp_path):
    """A real safetensors file whose u64 header length starts with byte 0x80 (here 384 bytes)."""
    import io
    import json as _json
    import struct

    from learnsieve.models.checkpoint import _check_safetensors_header
    header = _json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    header += b" " * (384 - len(header))
    raw = struct.pack("<Q", len(header)) + header + b"\0\0\0\0"
    assert raw[0] == 0x80
    assert _check_safetensors_header("ckpt", io.BytesIO(raw), len(raw)).startswith(raw[:8])
