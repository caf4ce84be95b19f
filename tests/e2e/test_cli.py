import subprocess
import sys

import pytest

from learnsieve.cli import main

SUBCOMMANDS = ["demo", "train-reference", "train-proxy", "curate", "rounds", "eval", "models", "config"]


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


def test_beam_flags_are_rejected_where_no_pipeline_runs(capsys):
    assert main(["models", "--runner", "DirectRunner"]) == 2
    assert "--runner is a Beam pipeline flag; models runs no pipeline" in capsys.readouterr().err


CURATE = ["curate", "--input", "i/{0..1}.tar", "--output", "o", "--reference", "r", "--proxy", "p"]


@pytest.mark.parametrize("extra,msg", [
    (["--direct_num_wrokers", "2", "--overwirte"],
     ("unknown flag --direct_num_wrokers (did you mean --direct_num_workers?); "
      "unknown flag --overwirte (did you mean --overwrite?)")),
    (["--sett", "select.k=1"], "unknown flag --sett (did you mean --set?)"),
    (["--out", "o2"], "unknown flag --out (did you mean --output?)"),  # no abbreviations
    (["--runner=DirectRunner", "--temp_locaton", "/tmp"], "did you mean --temp_location?"),
    (["--direct_num_workers", "two"], "Beam flag: argument --direct_num_workers: invalid int value"),
    (["stray.tar"], "unexpected argument 'stray.tar' after --proxy: quote glob and brace patterns"),
    (["--dry_run=maybe"], "expected --dry_run=True or --dry_run=False"),
])
def test_unknown_flags_and_stray_arguments_are_refused(extra, msg, capsys, tmp_path):
    assert main(CURATE + extra) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_unknown_flags_of_commands_without_beam(capsys):
    assert main(["eval", "--arm", "a=x", "--test", "t", "--stepz", "3"]) == 2
    assert "unknown flag --stepz (did you mean --steps?)" in capsys.readouterr().err


def test_several_input_paths_as_the_shell_expands_a_glob():
    from learnsieve.cli import parser
    args, extra = parser().parse_known_args(["curate", "--input", "d/a.tar", "d/b.tar", "d/c.tar",
                                             "--output", "o", "--runner", "DirectRunner"])
    assert args.input == "d/a.tar::d/b.tar::d/c.tar" and extra == ["--runner", "DirectRunner"]
    args, _ = parser().parse_known_args(["train-reference", "--data", "x.tar", "y.tar", "--out", "c"])
    assert args.data == "x.tar::y.tar"


def test_version(capsys):
    import learnsieve
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"learnsieve {learnsieve.__version__}"


def test_config_default_prints_the_shipped_file(capsys):
    from learnsieve.configs import config_path
    assert main(["config", "--default"]) == 0
    assert capsys.readouterr().out == config_path("default").read_text()


def test_config_prints_the_resolved_config(capsys):
    import yaml
    assert main(["config", "--set", "train.lr=1e-3", "--set", "select.seeds=[a dog]"]) == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["train"]["lr"] == 0.001 and data["select"]["seeds"] == ["a dog"]


def test_dry_run_builds_the_graph_and_writes_nothing(data_root, checkpoints, tmp_path, capsys):
    import glob
    out = tmp_path / "o"
    shards = sorted(glob.glob(data_root["pool"] + "/*.tar"))  # as an unquoted glob arrives
    argv = ["curate", "--input", *shards, "--output", str(out), "--reference", checkpoints["reference"],
            "--proxy", checkpoints["proxy"], "--set", "select.mode=top_k", "--set", "select.k=7",
            "--runner", "SparkRunner", "--dry_run=True"]  # (Dataflow would need --project, --region, gs://)
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"input: {len(shards)} shards" in printed and "runner: SparkRunner" in printed
    assert "select: top_k k=7 by ref_sim" in printed  # the default score
    stages = next(line for line in printed.splitlines() if line.startswith("stages: "))
    names = stages[len("stages: "):].split(" -> ")
    # top_k takes the streaming graph: one summary per input shard between stages
    assert names == ["ListShards", "ScoreShards", "SelectShards", "WriteShardGroups", "FinishOutput"]
    assert not out.exists()
    argv = ["rounds", "--input", data_root["pool_pattern"], "--output", str(tmp_path / "r"),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"], "--dry-run"]
    assert main(argv) == 0
    assert "rounds: 3" in capsys.readouterr().out and not (tmp_path / "r").exists()
    # the dry run refuses what the real run refuses: a folder learnsieve did not write
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    argv = ["curate", "--input", data_root["pool_pattern"], "--output", str(foreign), "--reference",
            checkpoints["reference"], "--proxy", checkpoints["proxy"], "--dry-run"]
    assert main(argv) == 2
    assert "not written by learnsieve" in capsys.readouterr().err
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


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
    # round 1 ran only the new proxy: the reference's scores came from round 0's score files
    last, before = printed.splitlines()[-1], printed.splitlines()[-2]
    assert "only the proxy ran on 3 shard(s)" in last and "only the proxy" not in before
    import pyarrow.parquet as pq
    p0 = pq.read_table(out / "round0" / "manifest.parquet").to_pylist()[0]["proxy_sha256"]
    p1 = pq.read_table(out / "round1" / "manifest.parquet").to_pylist()[0]["proxy_sha256"]
    assert p0 != p1 and (out / "proxy1" / "model.safetensors").exists()


def test_round_folder_starts_from_the_previous_rounds_score_files(tmp_path):
    from learnsieve.core.output import MARKER, SCORES
    from learnsieve.pipeline.rounds import seed_scores
    prev, out = tmp_path / "round0", tmp_path / "round1"
    (prev / SCORES).mkdir(parents=True)
    (prev / SCORES / "a-0123.parquet").write_bytes(b"scores")
    (prev / SCORES / "x.parquet.tmp-1").write_bytes(b"partial")  # a temp file is not copied
    (prev / MARKER).write_text("{}")
    assert seed_scores(str(prev), str(out)) == 1
    assert (out / SCORES / "a-0123.parquet").read_bytes() == b"scores" and (out / MARKER).exists()
    assert sorted(p.name for p in (out / SCORES).iterdir()) == ["a-0123.parquet"]
    (out / SCORES / "a-0123.parquet").write_bytes(b"own")  # a rerun keeps the round's own files
    assert seed_scores(str(prev), str(out)) == 0 and (out / SCORES / "a-0123.parquet").read_bytes() == b"own"
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")  # a folder with anything in it is left alone
    assert seed_scores(str(prev), str(user)) == 0 and sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    assert seed_scores(str(tmp_path / "none"), str(tmp_path / "r2")) == 0 and not (tmp_path / "r2").exists()
