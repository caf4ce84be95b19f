"""eval says when the test set is too small to tell arms apart (issue 22.6): a paired bootstrap
interval of each arm's final metric and of its difference to the reference arm, in eval.json,
the printed table and eval.html."""
import torch

from learnsieve.evaluate.arms import bootstrap, bootstrap_lines, per_example_recall
from learnsieve.models.metrics import retrieval_recall
from learnsieve.report.html import render_eval


def test_per_example_recall_averages_to_the_metric():
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(12, 5, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(img + 0.8 * torch.randn(12, 5, generator=g), dim=-1)
    whole, each = retrieval_recall(img, txt), per_example_recall(img, txt)
    for k in ("mean_r@1", "mean_r@5", "i2t_r@1", "t2i_r@5"):
        assert abs(sum(each[k]) / 12 - whole[k]) < 1e-6  # (float32 means)


def test_a_hundred_examples_at_chance_cannot_separate_arms():
    # curated R@1 0.000 vs random 0.010 on 100 test images: what the newcomer saw
    b = bootstrap({"curated": [0.0] * 100, "random": [1.0] + [0.0] * 99}, "random", "mean_r@1")
    assert b["vs_reference"]["curated"]["separated"] is False
    assert b["arms"]["random"]["value"] == 0.01 and b["arms"]["random"]["ci95"][0] == 0.0
    assert "cannot tell these arms apart" in b["warning"] and "100 examples" in b["warning"]
    lines = bootstrap_lines(b)
    assert lines[0].startswith("95% bootstrap intervals of final mean_r@1 (100 test examples")
    assert lines[1].startswith("warning: ")
    page = render_eval({"metric": "mean_r@1", "arms": {}, "bootstrap": b})
    assert "cannot tell these arms apart" in page


def test_a_clear_difference_is_separated_and_warns_nothing():
    b = bootstrap({"curated": [1.0] * 300 + [0.0] * 100, "random": [1.0] * 100 + [0.0] * 300}, "random", "m")
    v = b["vs_reference"]["curated"]
    assert v["separated"] is True and v["difference"] == 0.5 and v["ci95"][0] > 0.4
    assert b["warning"] is None and len(bootstrap_lines(b)) == 1
