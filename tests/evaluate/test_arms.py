"""The evaluation harness: metrics on constructed embeddings, and the arms end to end."""
import dataclasses
import json
import os

import pytest
import torch
import torch.nn.functional as F

from learnsieve.cli import main
from learnsieve.config import TrainConfig, load_config
from learnsieve.evaluate.arms import speedup, zero_shot_top1
from learnsieve.models.metrics import retrieval_recall, steps_to_reach
from learnsieve.pipeline.run import run


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
    out = tmp_path / "ev" / "eval.json"
    argv = ["eval", "--arm", f"clean={data_root['clean_pattern']}", "--random-from", data_root["pool_pattern"],
            "--test", data_root["clean_pattern"], "--out", str(out.parent), "--learner", "ls_clip_test",
            "--steps", "6", "--eval-every", "3", "--set", "score.image_size=32", "--set", "train.batch_size=16"]
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert set(result["arms"]) == {"clean", "random"}
    assert result["arms"]["random"]["examples"] <= result["arms"]["clean"]["examples"]
    for arm in result["arms"].values():
        assert [p["step"] for p in arm["curve"]] == [3, 6]
        assert 0.0 <= arm["final"]["mean_r@1"] <= 1.0
    assert result["speedup"]["reference_arm"] == "random"
    assert "speed-up" in capsys.readouterr().out
    assert os.path.exists(tmp_path / "ev" / "random_arm" / "00000.tar")
    assert os.path.exists(tmp_path / "ev" / "eval_curves.png")
    assert sorted(os.listdir(tmp_path)) == ["ev"]  # nothing beside its folder


class _OneHotClip:
    """Images are one-hot class vectors; text embeds a prompt by the class word it names."""
    classes = ["red", "green", "blue"]

    def encode_image(self, images):
        return images

    def encode_text(self, texts):
        return torch.stack([F.one_hot(torch.tensor(next(i for i, c in enumerate(self.classes) if c in t)),
                                      3).float() for t in texts])


def test_zero_shot_top1_on_a_constructed_model():
    images = torch.eye(3)[[0, 1, 2, 2]]
    assert zero_shot_top1(_OneHotClip(), images, [0, 1, 2, 2], _OneHotClip.classes, ["a {}"]) == 1.0
    assert zero_shot_top1(_OneHotClip(), images, [0, 1, 2, 0], _OneHotClip.classes, ["a {}"]) == 0.75


def test_speedup_counts_steps_to_the_reference_arms_final_metric():
    def arm(values):
        curve = [{"step": 10 * (i + 1), "m": v} for i, v in enumerate(values)]
        return {"curve": curve, "final": curve[-1]}
    res = {"arms": {"fast": arm([0.2, 0.5, 0.6, 0.7]), "random": arm([0.1, 0.2, 0.3, 0.5])}}
    sp = speedup(res, "m")
    assert sp["target"] == 0.5 and sp["reference_steps"] == 40
    assert sp["arms"]["fast"] == {"steps_to_target": 20, "speedup_vs_reference": 2.0}


def test_speedup_targets_the_reference_arms_best_point_when_it_overfits():
    def arm(values):
        curve = [{"step": 10 * (i + 1), "m": v} for i, v in enumerate(values)]
        return {"curve": curve, "final": curve[-1]}
    # random peaks at 0.4 (step 30) and falls to 0.2: reaching "0.2" would be no evidence at all
    res = {"arms": {"curated": arm([0.1, 0.45, 0.5, 0.5]), "random": arm([0.1, 0.3, 0.4, 0.2])}}
    sp = speedup(res, "m")
    assert sp["target"] == 0.4 and sp["reference_steps"] == 30
    assert sp["arms"]["curated"]["steps_to_target"] == 20
    assert sp["arms"]["curated"]["speedup_vs_reference"] == 1.5


@pytest.mark.slow
def test_eval_reports_judges_and_compute(data_root, checkpoints, tmp_path):
    cfg = load_config(None, ["score.image_size=32", "score.batch_size=16", "select.fraction=0.5"])
    curated = tmp_path / "curated"
    run(dataclasses.replace(cfg, input=data_root["pool_pattern"], output=str(curated), **checkpoints))
    out = tmp_path / "e" / "eval.json"
    argv = ["eval", "--arm", f"curated={curated}/*.tar", "--random-from", data_root["pool_pattern"],
            "--test", data_root["clean_pattern"], "--out", str(out.parent), "--learner", "ls_clip_test",
            "--steps", "6", "--eval-every", "3", "--set", "score.image_size=32", "--set", "train.batch_size=16",
            "--manifest", str(curated / "manifest.parquet"), "--truth", os.path.join(os.path.dirname(
                data_root["pool"]), "truth.json"), "--reference", checkpoints["reference"],
            "--proxy", checkpoints["proxy"]]
    assert main(argv) == 0
    res = json.loads(out.read_text())
    j = res["judges"]
    assert j["examples"] == 150 and 0.0 <= j["kept_noise"] <= 1.0
    assert {"learnability", "ref_sim", "hard"} <= set(j["auroc"])
    assert set(j["auroc_by_kind"]) == set(j["noise_kinds"]) and "mismatch" in j["noise_kinds"]
    assert os.path.exists(j["histograms_png"])
    c = res["compute"]
    assert c["scored_examples"] == 150 and c["learner_step_flops"] > 0
    # no frozen towers: 3x the training forward per example seen (batch 16 x 8 steps); the
    # scoring forward adds the negative-bank logits on top of it, a fraction of a percent here
    ref = c["reference"]
    assert ref["frozen_forward_flops_per_example"] == 0 and ref["validation_flops"] == 0
    assert 0.99 * 3 * ref["forward_flops_per_example"] * 16 * 8 <= ref["train_flops"] \
        <= 3 * ref["forward_flops_per_example"] * 16 * 8
    assert c["scoring_flops"] == pytest.approx(150 * (c["reference"]["forward_flops_per_example"]
                                                      + c["proxy"]["forward_flops_per_example"]))
    if c["compute_positive"] is not None:
        assert c["flops"]["curated_total"] > c["flops"]["curated_learner"]


def test_the_learner_trains_with_its_own_configs_augmentation(data_root, monkeypatch):
    """ls_clip_photo's photo augmentation, a LiT learner's none: what the model config says,
    as train-reference/train-proxy do, not a fixed default."""
    import learnsieve.evaluate.arms as ev
    from learnsieve.models.clip import DualEncoder
    from learnsieve.models.registry import model_config
    cfg = dataclasses.replace(model_config("ls_clip_test"), augment="none")
    seen = []
    monkeypatch.setattr(ev, "create_model", lambda name: DualEncoder(cfg))
    monkeypatch.setattr(ev, "train_clip", lambda model, *a, **kw: seen.append(kw["augment_kind"]) or [])
    monkeypatch.setattr(ev, "learner_flops", lambda *a: 0.0)
    test = ev.load_test(data_root["clean_pattern"], 32)
    ev.retrieval_arm(data_root["pool_pattern"], test, "ls_clip_test", 1, 1, TrainConfig(batch_size=8), 32)
    assert seen == ["none"]
