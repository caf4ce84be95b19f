"""``python -m learnsieve.online.open_clip_train``: open_clip's real trainer with online selection.

Fast tests check the side channel (reference loss packed into the token rows) and the wrapper's
choice against hand-set losses; the slow one curates the synthetic pool with
``select.mode=all`` (every example's reference loss cached in its KEY.json), then runs
open_clip's own trainer (``open_clip_train.main``) through the entry point on those shards with
ViT-S-32 from random init on the CPU, and checks what it selected and what it wrote."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

open_clip = pytest.importorskip("open_clip")

from learnsieve.online.open_clip_train import (  # noqa: E402
    OnlineSelection,
    _WdsWithReference,
    pack_reference,
    parse_online,
    sample_reference_loss,
    unpack_reference,
)
from learnsieve.online.selector import OnlineSelector  # noqa: E402

HAS_TRAINER = importlib.util.find_spec("open_clip_train") is not None


def test_reference_loss_rides_in_the_token_rows():
    rows = torch.stack([pack_reference(torch.tensor([49406, 320, 49407, 0]), 1.25),
                        pack_reference(torch.tensor([49406, 9, 49407, 0]), math.nan)])
    tokens, ref = unpack_reference(rows)
    assert tokens.tolist() == [[49406, 320, 49407, 0], [49406, 9, 49407, 0]] and rows.dtype == torch.int64
    assert ref[0].item() == 1.25 and math.isnan(ref[1].item())
    sample = {"image": "img", "text": torch.tensor([1, 2]),
              "json": {"learnsieve": {"scores": {"ref_loss": 0.5, "ref_sim": 0.1}}, "url": "x"}}
    assert sample_reference_loss(sample) == 0.5
    assert math.isnan(sample_reference_loss({"json": {"caption": "no scores"}}))
    assert sample_reference_loss({"json": json.dumps(sample["json"]).encode()}) == 0.5

    class FakeWds:
        def map(self, f):
            return ("map", f)

        def to_tuple(self, *keys):
            return ("to_tuple", keys)
    wds = _WdsWithReference(FakeWds())
    kind, f = wds.to_tuple("image", "text")
    image, text = f(sample)
    assert kind == "map" and image == "img" and unpack_reference(text[None])[1].item() == 0.5
    assert wds.to_tuple("image", "label") == ("to_tuple", ("image", "label"))  # other tuples untouched


class Recorder(nn.Module):
    """Stands in for an open_clip model: records what its forward was given."""

    def __init__(self):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(1.0))
        self.seen = []

    def forward(self, image, text):
        self.seen.append((image, text))
        return {"logit_scale": self.logit_scale}


def test_training_forward_keeps_the_highest_learnability_rows():
    proxy_losses = torch.tensor([3.0, 1.0, 2.5, 4.0, 0.5, 2.0, 0.0, 1.0], dtype=torch.float64)
    ref = [0.5, 0.8, 2.4, 1.0, 0.1, 0.2, 0.0, math.nan]
    # learnability = [2.5, 0.2, 0.1, 3.0, 0.4, 1.8, 0.0, nan]: keep 8 / 2 = 4 -> rows 3, 0, 5, 4
    inner = Recorder()
    model = OnlineSelection(inner, OnlineSelector(1), 2.0, lambda m, img, txt: proxy_losses, context_length=3)
    image = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1)
    tokens = torch.arange(8 * 3).view(8, 3)
    text = torch.stack([pack_reference(t, r) for t, r in zip(tokens, ref)])
    model.train()
    model(image, text)
    img, txt = inner.seen[-1]
    assert img.flatten().tolist() == [3.0, 0.0, 5.0, 4.0] and torch.equal(txt, tokens[[3, 0, 5, 4]])
    c = model.counters()
    assert (c["steps"], c["scored"], c["selected"], c["missing_reference"]) == (1, 8, 4, 1)
    assert c["mean_learnability_selected"] == pytest.approx((3.0 + 2.5 + 1.8 + 0.4) / 4)
    model.eval()  # evaluation: the column is stripped, nothing is selected
    model(image, text)
    assert torch.equal(inner.seen[-1][1], tokens) and inner.seen[-1][0].shape[0] == 8
    model.train()  # rows without the column (not learnsieve shards) pass through
    model(image, tokens)
    assert inner.seen[-1][0].shape[0] == 8
    assert model.logit_scale is inner.logit_scale  # open_clip's unwrap_model / clamps reach the model
    assert all(k.startswith("module.") for k in model.state_dict())
    model.load_state_dict(inner.state_dict())  # a plain checkpoint (open_clip strips module.) loads


def test_online_flags_are_separated_from_open_clip_flags():
    ns, rest = parse_online(["--online-ratio", "5", "--model", "ViT-S-32", "--online-proxy", "ViT-S-32",
                             "--batch-size", "10"])
    assert ns.online_ratio == 5 and ns.online_proxy == "ViT-S-32" and rest == ["--model", "ViT-S-32",
                                                                               "--batch-size", "10"]
    with pytest.raises(SystemExit):
        parse_online(["--online-ratio", "0.5"])


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAINER, reason="open_clip_train not installed (open-clip-torch[training])")
def test_open_clip_trainer_with_online_selection(data_root, checkpoints, tmp_path):
    from learnsieve.cli import main
    from learnsieve.online.cached import read_cached_scores
    cached = tmp_path / "cached"
    assert main(["curate", "--input", data_root["pool_pattern"], "--output", str(cached),
                 "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
                 "--set", "score.image_size=32", "--set", "select.mode=all", "--set", "write.report=false"]) == 0
    scores = read_cached_scores(str(cached / "*.tar"))
    assert len(scores) > 100 and all("ref_loss" in s for s in scores.values())
    logs, counters = tmp_path / "logs", tmp_path / "counters.json"
    cmd = [sys.executable, "-m", "learnsieve.online.open_clip_train", "--online-ratio", "2",
           "--online-bank-size", "50", "--online-counters", str(counters),
           "--train-data", str(cached / "00000.tar"), "--train-num-samples", "64", "--dataset-type", "webdataset",
           "--model", "ViT-S-32", "--workers", "0", "--precision", "fp32", "--batch-size", "16", "--epochs", "1",
           "--lr", "1e-3", "--warmup", "1", "--seed", "0", "--device", "cpu", "--save-frequency", "1",
           "--logs", str(logs), "--name", "online"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Train Epoch: 0" in done.stdout + done.stderr
    c = json.loads(counters.read_text())
    assert c["steps"] == 4 and c["scored"] == 64 and c["selected"] == 32 and c["missing_reference"] == 0
    assert c["proxy"] == "learner" and c["bank_refreshes"] >= 1
    assert c["mean_learnability_selected"] > c["mean_learnability_all"]  # it picked the top half
    ckpt = logs / "online" / "checkpoints" / "epoch_1.pt"
    sd = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert all(k.startswith("module.") for k in sd)  # as under DDP: open_clip and learnsieve strip it
    model = open_clip.create_model("ViT-S-32", pretrained=str(ckpt))  # loads back as a plain model
    assert torch.allclose(model.logit_scale, sd["module.logit_scale"])
