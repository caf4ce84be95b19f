"""The pipeline on runners that pickle everything as a remote runner would (offline)."""
import dataclasses

import pytest

from learnsieve.config import load_config
from learnsieve.pipeline.run import run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("runner_args", [
    ["--runner", "DirectRunner", "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
    ["--runner", "PortableRunner", "--job_endpoint", "embed", "--environment_type", "LOOPBACK"],
], ids=["multi_processing", "portable_loopback"])
def test_curate_on_pickling_runners(data_root, checkpoints, tmp_path, runner_args):
    cfg = load_config(None, ["score.image_size=32", "score.batch_size=16", "score.torch_threads=1",
                             "select.fraction=0.5", "write.samples_per_shard=40"])
    cfg = dataclasses.replace(cfg, input=data_root["pool_pattern"], output=str(tmp_path), **checkpoints)
    stats = run(cfg, runner_args)
    assert stats["read"] == 150 == stats["kept"] + stats["filtered"] + stats["rejected"]
    assert stats["kept"] > 0 and stats["output_shards"] >= 1
