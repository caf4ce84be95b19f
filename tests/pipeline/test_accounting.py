"""Compute accounting arithmetic on constructed numbers."""
import pytest

from pipeline.accounting import break_even


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
