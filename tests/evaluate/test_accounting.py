"""Compute accounting arithmetic on constructed numbers."""
import pytest

from learnsieve.evaluate.accounting import break_even


def _costs(curated_steps, iid_steps):
    return {"curated_steps": curated_steps, "iid_steps": iid_steps, "learner_step_flops": 10.0,
            "scoring_flops": 300.0, "proxy": {"train_flops": 100.0}, "reference": {"train_flops": 600.0}}


def test_break_even_is_judge_cost_over_the_saving_per_iid_step():
    # s = 2: each IID step saves half a step (5 FLOPs); judge cost 1000 (400 without reference)
    got = break_even(_costs(50, 100))
    assert got["break_even_iid_steps"] == pytest.approx(1000 / 5)
    assert got["break_even_iid_steps_amortised"] == pytest.approx(400 / 5)


@pytest.mark.parametrize("curated,iid", [(100, 100), (120, 100), (None, 100)])
def test_no_break_even_without_a_speed_up(curated, iid):
    assert break_even(_costs(curated, iid)) == {"break_even_iid_steps": None,
                                                "break_even_iid_steps_amortised": None}


def test_frozen_towers_cost_one_forward_per_example_in_training_and_all_of_it_in_scoring(tmp_path):
    """A LiT judge: its frozen towers run once per distinct training pair (cached), the heads
    3x forward per step; scoring counts every tower, however warm the caches are."""
    import torch

    from learnsieve.evaluate.accounting import judge_costs
    from learnsieve.models.checkpoint import save_checkpoint
    from learnsieve.models.clip import ClipConfig, DualEncoder

    cfg = ClipConfig(name="lit_test", image_pretrained="efficientnet_lite0.imagenet", image_size=64,
                     text_tower="minilm", embed_dim=32, bank_size=4, augment="none")
    model = DualEncoder(cfg)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    caps = ["a red car", "two dogs on a beach", "a man on a bike", "a bowl of soup"]
    model.set_bank(images, caps)
    save_checkpoint(model, str(tmp_path / "lit"), extra={"steps": 10, "batch_size": 4, "pairs": 6})
    model.encode_image(images)  # warm caches must not hide the towers' cost
    c = judge_costs(str(tmp_path / "lit"), images, caps, batch_size=4)
    heads = 2 * (1280 * 32 + 384 * 32)  # two linear heads' FLOPs per example
    frozen = c["frozen_forward_flops_per_example"]
    assert frozen > 100 * heads  # EfficientNet-Lite0 at 64 px + MiniLM
    assert c["forward_flops_per_example"] >= frozen + heads
    assert c["train_flops"] == pytest.approx(frozen * 6 + 3.0 * heads * 4 * 10, rel=0.01)
