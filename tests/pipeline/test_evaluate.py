"""The evaluation harness: metrics on constructed embeddings, and the arms end to end."""
import json
import os

import pytest
import torch

from models.metrics import retrieval_recall, steps_to_reach
from pipeline.cli import main


def test_retrieval_recall_on_constructed_embeddings():
    eye = torch.eye(6)
    perfect = retrieval_recall(eye, eye.clone(), ks=(1, 5))
    assert perfect["i2t_r@1"] == perfect["t2i_r@1"] == perfect["mean_r@1"] == 1.0
    shuffled = retrieval_recall(eye, eye[torch.tensor([1, 0, 2, 3, 4, 5])], ks=(1, 5))
    assert shuffled["i2t_r@1"] == pytest.approx(4 / 6) and shuffled["i2t_r@5"] == 1.0


def test_steps_to_reach():
    curve = [(10, 0.1), (20, 0.3), (30, 0.5)]
    assert steps_to_reach(curve, 0.3) == 20 and steps_to_reach(curve, 0.9) is None


@pytest.mark.slow
def test_eval_cli_trains_every_arm_and_writes_curves(data_root, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "--arm", f"clean={data_root['clean_pattern']}", "--random-from", data_root["pool_pattern"],
            "--test", data_root["clean_pattern"], "--out", str(out), "--learner", "ls_clip_test",
            "--steps", "6", "--eval-every", "3", "--set", "score.image_size=32", "--set", "train.batch_size=16"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["arms"]) == {"clean", "random"}
    assert result["arms"]["random"]["pairs"] <= result["arms"]["clean"]["pairs"]
    for arm in result["arms"].values():
        assert [p["step"] for p in arm["curve"]] == [3, 6]
        assert 0.0 <= arm["final"]["mean_r@1"] <= 1.0
    assert result["speedup"]["reference_arm"] == "random"
    assert "speed-up" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "random_arm" / "00000.tar")
