"""Training you can watch (issue 22.5): progress lines by time with loss, held-out loss and ETA,
early stopping's patience ends the run at the kept step, a notice when --sample exceeds the pool."""
import logging

import torch

from learnsieve.config import TrainConfig
from learnsieve.models.train import duration, fit, progress_line
from learnsieve.train.clip import train_from_shards


def test_progress_line_and_durations():
    line = progress_line(120, 400, 2.1134, [(100, 2.301), (125, 2.35)], 40.0)
    assert line.startswith("step 120/400 loss 2.113 held-out 2.350 (best 2.301 at 100)")
    assert "3.00 steps/s ETA 1m33s elapsed 40s" in line
    assert (duration(5), duration(187), duration(3720)) == ("5s", "3m07s", "1h02m")


class _Rising:
    """A held-out loss that is lowest at the second evaluation and rises after it."""

    def __init__(self, patience):
        self.patience, self.stop, self.calls, self.best_step = patience, False, [], 0

    def __call__(self, step, model):
        self.calls.append(step)
        loss = abs(len(self.calls) - 2) + 1.0
        if len(self.calls) == 2:
            self.best_step = step
        self.stop = len(self.calls) - 2 >= self.patience
        return loss


def _fit(on_eval, steps=40, **kw):
    model = torch.nn.Linear(3, 1)
    batches = [(torch.ones(4, 3), torch.zeros(4, 1))]
    return fit(model, batches, steps, lambda m, x, y: ((m(x) - y) ** 2).mean(), None, eval_every=5,
               on_eval=on_eval, **kw)


def test_patience_stops_training_at_the_kept_step_plus_patience(caplog):
    caplog.set_level(logging.INFO, logger="learnsieve")
    hook = _Rising(patience=3)
    losses = _fit(hook, tag="[reference]")
    assert hook.calls == [5, 10, 15, 20, 25] and len(losses) == 25
    text = caplog.text
    assert "[reference] early stopping: no lower held-out loss in the 15 steps after step 10" in text
    assert "stopped at step 25 of 40, the remaining 15 skipped" in text
    assert "held-out" in text and "ETA" in text


def test_lines_come_by_time_not_only_every_50_steps(caplog):
    caplog.set_level(logging.INFO, logger="learnsieve")
    _fit(None, steps=7, log_seconds=1e-9)  # every step is "10 s later"
    assert sum("step " in r.getMessage() for r in caplog.records) == 7
    caplog.clear()
    _fit(None, steps=7, log_seconds=0)  # first and last step only
    assert [r.getMessage().split()[1] for r in caplog.records] == ["1/7", "7/7"]


def test_train_reference_stops_early_and_warns_when_sample_exceeds_the_pool(data_root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="learnsieve")
    tc = TrainConfig(batch_size=16, augment=False, proxy_val_fraction=0.2, val_every=2, patience=2)
    train_from_shards(data_root["pool_pattern"], str(tmp_path / "p"), "ls_clip_test", 200, tc, 32,
                      sample=100_000, role="proxy")
    assert "--sample 100,000 is more than" in caplog.text and "usable pairs are used" in caplog.text
    import json
    meta = json.load(open(tmp_path / "p" / "config.json"))
    assert meta["trained_steps"] < 200 and meta["trained_steps"] == meta["val_curve"][-1][0]
    assert meta["trained_steps"] - meta["best_step"] == 2 * tc.val_every
