"""A newcomer's first hour (issue 22): typos named with the closest flag in every subcommand,
runner names and runner flags checked before anything is written, defaults in --help, every
score listed, the open_clip hint after curate, and the demo reusing its trained models."""
import json
import os

import pytest

from learnsieve.cli import main, train_data_hint
from learnsieve.flags import FlagError, check_pipeline_args


@pytest.mark.parametrize("argv,msg", [
    (["train-reference", "--dat", "x", "--out", "y"], "unknown flag --dat (did you mean --data?)"),
    (["train-proxy", "--data", "x", "--out", "y", "--sampel", "3"], "unknown flag --sampel (did you mean --sample?)"),
    (["shards", "--images", "d", "--output", "o", "--captoin-column", "c"],
     "unknown flag --captoin-column (did you mean --caption-column?)"),
    (["export", "--output", "o", "--uid", "x.npy"], "unknown flag --uid (did you mean --uids?)"),
    (["train-reference", "--out", "y"], "missing --data"),
    (["eval", "--arm", "a=b"], "missing --test"),
    (["shards", "--images", "d"], "missing --output"),
])
def test_every_subcommand_names_the_closest_flag_and_what_is_missing(argv, msg, capsys, tmp_path):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err


def _curate(data_root, checkpoints, out, *extra):
    return ["curate", "--input", data_root["pool_pattern"], "--output", str(out), "--reference",
            checkpoints["reference"], "--proxy", checkpoints["proxy"], "--set", "score.image_size=32", *extra]


@pytest.mark.parametrize("extra,msg", [
    (["--runner", "DataflowRuner"], "unknown runner DataflowRuner (did you mean DataflowRunner?)"),
    (["--runner", "DataflowRunner"], "--runner DataflowRunner needs --project, --region, --temp_location"),
    (["--runner", "DataflowRunner", "--project", "p", "--region", "r", "--temp_location", "/tmp/t"],
     "--temp_location /tmp/t: Dataflow stages files in Cloud Storage"),
    (["--runner", "PortableRunner"], "needs --job_endpoint"),
    (["--runner", "learnsieve.pipeline.local_runner.LocalRuner"],
     "has no LocalRuner (did you mean learnsieve.pipeline.local_runner.LocalRunner?)"),
    (["--runner", "no_such_pkg.Runner"], "cannot import no_such_pkg"),
    (["--flink_master", "localhost:8081"], "--flink_master is a flag of the FlinkRunner"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_runner_and_its_flags_are_checked_before_anything_is_written(data_root, checkpoints, tmp_path, capsys,
                                                                     extra, msg, dry):
    out = tmp_path / "o"
    assert main(_curate(data_root, checkpoints, out, *extra, *(["--dry-run"] if dry else []))) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err
    assert not out.exists()  # no .learnsieve-output, no _tmp/


def test_the_pipeline_flag_check_for_callers_of_the_api():
    check_pipeline_args(["--runner", "DirectRunner", "--direct_num_workers", "2"])
    with pytest.raises(FlagError, match="did you mean --direct_num_workers"):
        check_pipeline_args(["--direct_num_wrokers", "2"])
    with pytest.raises(FlagError, match="did you mean DataflowRunner"):
        check_pipeline_args(["--runner=DataflowRuner"])


def test_help_shows_defaults(capsys):
    for cmd in ("eval", "train-reference", "shards", "curate"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "step budget per arm (default: 300)" in text
    assert "default: train.reference_steps, 400" in text
    assert "examples per shard (default: 1000)" in text and "(default: caption)" in text
    assert "(default: False)" not in text and "(default: None)" not in text


def test_models_lists_every_score_the_readme_names(capsys):
    assert main(["models"]) == 0
    scores = capsys.readouterr().out.split("scores:", 1)[1].splitlines()[0]
    assert {"learnability", "ref_sim", "prototype", "proto_easy", "proto_hard", "proto_dist"} <= {
        s.strip() for s in scores.split(",")}


def test_curate_prints_the_open_clip_train_data_hint():
    assert train_data_hint("curated/", 3) == ("open_clip: python -m open_clip_train.main --dataset-type "
                                              "webdataset --train-data 'curated/{00000..00002}.tar' ...")
    assert "'out/00000.tar'" in train_data_hint("out", 1)


@pytest.mark.slow  # three tiny demos: ~30 s on 2 cores
def test_demo_reuses_its_trained_models_unless_told_otherwise(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--pool", "60", "--clean", "60", "--shards", "2",
            "--set", "train.reference_model=ls_clip_test", "--set", "train.proxy_model=ls_clip_test",
            "--set", "train.reference_steps=3", "--set", "train.proxy_steps=2", "--set", "train.proxy_sample=40",
            "--set", "score.image_size=32", "--set", "train.batch_size=16",
            "--set", "train.reference_val_fraction=0", "--set", "train.proxy_val_fraction=0"]

    def stamps():
        return {r: os.stat(out / r / "model.safetensors").st_mtime_ns for r in ("reference", "proxy")}

    assert main(argv) == 0
    first = stamps()
    capsys.readouterr()
    assert main(argv) == 0
    assert stamps() == first and capsys.readouterr().err.count("reusing") == 2  # the CLI's log lines
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stats"]["read"] == 60
    assert main(argv + ["--set", "train.proxy_steps=3"]) == 0  # a changed setting: that model is trained again
    again = stamps()
    assert again["reference"] == first["reference"] and again["proxy"] != first["proxy"]
    assert main(argv + ["--retrain"]) == 0
    assert all(v != again[k] for k, v in stamps().items())
