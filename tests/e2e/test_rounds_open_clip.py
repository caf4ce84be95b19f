"""`learnsieve rounds --train-cmd`: re-curation with the user's own trainer between rounds.

The slow test runs open_clip's real trainer (`python -m open_clip_train.main`, needs
`open-clip-torch[training]`) on round 0's curated shards with ViT-S-32 on the CPU, and curates
round 1 with the checkpoint it wrote as the proxy (`open_clip:ViT-S-32:.../epoch_1.pt`). The
fast tests check the command's failures with stand-in commands."""
from __future__ import annotations

import hashlib
import importlib.util
import shlex
import sys

import pytest

from learnsieve.cli import main

open_clip = pytest.importorskip("open_clip")

HAS_TRAINER = importlib.util.find_spec("open_clip_train") is not None


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def rounds_argv(data_root, checkpoints, out, proxy, *extra):
    return ["rounds", "--input", data_root["pool_pattern"], "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", proxy, "--rounds", "2",
            "--set", "score.image_size=32", "--set", "select.fraction=0.5", *extra]


def py(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def one_line_error(err: str) -> str:
    """The one error line among learnsieve's stderr (progress and streamed trainer lines too)."""
    errors = [line for line in err.splitlines() if line.startswith("learnsieve: ") and "error:" in line]
    assert len(errors) == 1, err
    return errors[0]


def streamed(err: str, r: int = 0):
    """The trainer's output lines, as learnsieve streamed them to stderr."""
    return [line for line in err.splitlines() if f"[round {r} train]" in line]


def test_failing_train_cmd_fails_in_one_line(data_root, checkpoints, tmp_path, capsys):
    argv = rounds_argv(data_root, checkpoints, tmp_path / "r", checkpoints["proxy"],
                       "--train-cmd", py("import sys; print('epoch 0 ...'); print('boom: out of memory'); sys.exit(3)"),
                       "--proxy-arch", "ViT-S-32")
    assert main(argv) == 2
    err = one_line_error(capsys.readouterr().err)
    assert "--train-cmd failed in round 0 with exit code 3: boom: out of memory" in err
    assert (tmp_path / "r" / "round0" / "manifest.parquet").exists()  # round 0 was curated


def test_train_cmd_that_writes_no_checkpoint(data_root, checkpoints, tmp_path, capsys):
    logs = tmp_path / "logs"
    old = logs / "old" / "checkpoints" / "epoch_1.pt"  # an earlier run's checkpoint never counts
    old.parent.mkdir(parents=True)
    old.write_bytes(b"x")
    argv = rounds_argv(data_root, checkpoints, tmp_path / "r", checkpoints["proxy"],
                       "--train-cmd", py("import sys; print('shards', sys.argv[1:])") +
                       " {shards} n={num_samples} r{round} {output} {unknown}",
                       "--checkpoints-glob", f"{logs}/*/checkpoints/epoch_*.pt", "--proxy-arch", "ViT-S-32")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "wrote no checkpoint matching" in one_line_error(err) and "1 older file(s) match" in err
    line = streamed(err)[0]  # every placeholder filled, each argument on its own, others left alone
    assert "00000.tar" in line and "'r0'" in line and "'{unknown}'" in line
    assert "'n=" in line and "/r/round0'" in line


@pytest.mark.parametrize("extra, msg", [
    ([], "learnsieve's trainer does not train"),
    (["--train-cmd", "true", "--proxy-arch", "NoSuchArch"], "unknown open_clip architecture"),
    (["--train-cmd", "'unclosed"], "--train-cmd"),
])
def test_open_clip_rounds_refused_before_any_work(data_root, checkpoints, tmp_path, capsys, extra, msg):
    proxy = f"open_clip:ViT-S-32:{tmp_path / 'missing.pt'}"
    assert main(rounds_argv(data_root, checkpoints, tmp_path / "r", proxy, *extra)) == 2
    assert msg in one_line_error(capsys.readouterr().err) and not (tmp_path / "r").exists()


def test_train_cmd_needs_an_architecture(data_root, checkpoints, tmp_path, capsys):
    argv = rounds_argv(data_root, checkpoints, tmp_path / "r", checkpoints["proxy"], "--train-cmd", "true")
    assert main(argv) == 2
    assert "pass --proxy-arch" in one_line_error(capsys.readouterr().err) and not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TRAINER, reason="open_clip_train not installed (open-clip-torch[training])")
def test_rounds_with_open_clip_trainer(data_root, checkpoints, tmp_path, capsys):
    """Round 0 curates with a random ViT-S-32 proxy; open_clip's trainer trains on what it kept
    (starting from that proxy, `--pretrained {proxy}`); round 1 curates with its checkpoint."""
    import pyarrow.parquet as pq
    import torch

    from learnsieve.models.open_clip_adapter import save_weights
    torch.manual_seed(0)
    start = tmp_path / "vit-s-32-init.pt"
    save_weights(open_clip.create_model("ViT-S-32"), str(start))
    logs, out = tmp_path / "logs", tmp_path / "r"
    train = (f"{shlex.quote(sys.executable)} -m open_clip_train.main --train-data {{shards}} "
             f"--train-num-samples {{num_samples}} --dataset-type webdataset --model ViT-S-32 "
             f"--pretrained {{proxy}} --workers 0 --precision fp32 --batch-size 16 --epochs 1 "
             f"--lr 1e-3 --warmup 1 --seed 0 --device cpu --save-frequency 1 "
             f"--logs {shlex.quote(str(logs))} --name round{{round}}")
    argv = rounds_argv(data_root, checkpoints, out, f"open_clip:ViT-S-32:{start}",
                       "--set", "score.batch_size=16", "--train-cmd", train,
                       "--checkpoints-glob", f"{logs}/*/checkpoints/epoch_*.pt")
    argv[argv.index("select.fraction=0.5")] = "select.fraction=0.25"  # ~32 pairs to train on
    assert main(argv) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "round 0: kept" in printed and "round 1: kept" in printed
    trained = logs / "round0" / "checkpoints" / "epoch_1.pt"
    assert trained.exists()
    m0 = pq.read_table(out / "round0" / "manifest.parquet").to_pylist()
    m1 = pq.read_table(out / "round1" / "manifest.parquet").to_pylist()
    # the model hash is the file's sha256 in the manifest; the score files' stamps add ARCH (one
    # file can load into two architectures that score differently)
    assert {r["proxy_sha256"] for r in m0} == {sha256(start)}
    assert {r["proxy_sha256"] for r in m1} == {sha256(trained)}
    stamps = {pq.read_schema(f).metadata[b"proxy_sha256"].decode() for f in (out / "round1" / "_scores").iterdir()
              if f.suffix == ".parquet"}
    assert stamps == {f"{sha256(trained)}:ViT-S-32"}
    # the trained proxy scores differently from the one it started from
    loss0 = {r["key"]: r["proxy_loss"] for r in m0 if r.get("proxy_loss") is not None}
    loss1 = {r["key"]: r["proxy_loss"] for r in m1 if r.get("proxy_loss") is not None}
    assert loss0.keys() == loss1.keys() and any(abs(loss0[k] - loss1[k]) > 1e-4 for k in loss0)
    assert any("Train Epoch: 0" in line for line in streamed(captured.err))
