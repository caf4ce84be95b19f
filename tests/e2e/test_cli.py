import subprocess
import sys

import pytest

from learnsieve.cli import main

SUBCOMMANDS = ["demo", "train-reference", "train-proxy", "curate", "rounds", "eval", "models"]


@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as info:
        main([cmd, "--help"])
    assert info.value.code == 0
    assert "usage: learnsieve" in capsys.readouterr().out


def test_console_script_help_runs():
    out = subprocess.run([sys.executable, "-m", "learnsieve.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and all(c in out.stdout for c in SUBCOMMANDS)


def test_models_lists_registries(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ls_clip_small" in out and "learnability" in out


@pytest.mark.parametrize("argv,msg", [
    (["curate", "--input", "/no/such/{00000..00001}.tar", "--output", "o", "--reference", "r", "--proxy", "p"],
     "does not exist"),
    (["curate", "--output", "o"], "missing input"),
    (["curate", "--set", "select.fracton=0.2"], "unknown config key"),
    (["curate", "--config", "/no/such.yaml"], "not found"),
])
def test_bad_invocations_fail_fast_with_one_line(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_unreadable_checkpoint_fails_fast(data_root, tmp_path, capsys):
    argv = ["curate", "--input", data_root["pool_pattern"], "--output", str(tmp_path / "o"),
            "--reference", str(tmp_path / "missing"), "--proxy", str(tmp_path / "missing")]
    assert main(argv) == 2
    assert "is not a directory with model.safetensors" in capsys.readouterr().err


def test_beam_flags_are_rejected_where_no_pipeline_runs():
    with pytest.raises(SystemExit):
        main(["models", "--runner", "DirectRunner"])


@pytest.mark.slow
def test_cli_curate_end_to_end(data_root, checkpoints, tmp_path, capsys):
    argv = ["curate", "--input", data_root["pool_pattern"], "--output", str(tmp_path / "o"),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "select.mode=top_k", "--set", "select.k=10",
            "--runner", "DirectRunner"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kept 10" in out and "read 150" in out


@pytest.mark.slow
def test_rounds_keep_the_proxy_online(data_root, checkpoints, tmp_path, capsys):
    out = tmp_path / "r"
    argv = ["rounds", "--input", data_root["pool_pattern"], "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"], "--rounds", "2",
            "--steps", "2", "--set", "score.image_size=32", "--set", "select.fraction=0.5",
            "--set", "train.batch_size=16"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "round 0: kept" in printed and "round 1: kept" in printed
    import pyarrow.parquet as pq
    p0 = pq.read_table(out / "round0" / "manifest.parquet").to_pylist()[0]["proxy_sha256"]
    p1 = pq.read_table(out / "round1" / "manifest.parquet").to_pylist()[0]["proxy_sha256"]
    assert p0 != p1 and (out / "proxy1" / "model.safetensors").exists()
