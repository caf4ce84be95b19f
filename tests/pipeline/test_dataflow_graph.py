"""Build the Dataflow job graph without submitting it (DataflowRunner --dry_run): catches option
and pickling errors offline. Needs the [gcp] extra; skipped without it."""
import dataclasses

import pytest

pytest.importorskip("apitools", reason="needs apache-beam[gcp] (pip install -e '.[gcp]')")

import apache_beam as beam  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from learnsieve.config import load_config  # noqa: E402
from learnsieve.pipeline.run import build  # noqa: E402


@pytest.mark.parametrize("overrides", [[], ["select.ranked=true", "select.dedup=semantic",
                                            "select.score=prototype"]])
def test_dataflow_graph_builds_with_gpu_workers(overrides):
    cfg = dataclasses.replace(load_config(None, overrides), input="gs://bucket/pool/{00000..00001}.tar",
                              output="gs://bucket/curated", reference="gs://bucket/ckpt/reference",
                              proxy="gs://bucket/ckpt/proxy")
    options = PipelineOptions([
        "--runner", "DataflowRunner", "--project", "example-project-123", "--region", "us-central1",
        "--temp_location", "gs://bucket/tmp", "--dry_run=True", "--experiments=use_runner_v2",
        "--sdk_container_image=us-docker.pkg.dev/example-project-123/learnsieve/worker:latest",
        "--dataflow_service_options=worker_accelerator=type:nvidia-l4;count:1;install-nvidia-driver",
        "--machine_type=g2-standard-8"])
    p = beam.Pipeline(options=options)
    build(p, cfg, ["gs://bucket/pool/00000.tar", "gs://bucket/pool/00001.tar"], ("a" * 64, "b" * 64), cached=[1])
    result = p.run()
    assert result is not None
