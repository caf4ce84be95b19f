"""Nothing of yours overwritten (issue 22.2): train-*, eval, shards and export claim what they
write as curate claims its output: a non-empty folder they did not write is refused, --overwrite
removes only their own files, and eval writes under its own folder, never into the working
directory."""
import json
import os

import pytest

from learnsieve.cli import main
from learnsieve.core.output import FOLDER_KINDS, OutputError, claim_folder, release_lock

TINY = ["--model", "ls_clip_test", "--steps", "2", "--set", "score.image_size=32", "--set", "train.batch_size=16",
        "--set", "train.reference_val_fraction=0"]


def _train(data_root, out, *extra):
    return main(["train-reference", "--data", data_root["clean_pattern"], "--out", str(out), *TINY, *extra])


def test_train_refuses_to_replace_a_checkpoint_without_overwrite(data_root, tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    assert _train(data_root, ckpt) == 0
    first = json.loads((ckpt / "config.json").read_text())["sha256"]
    assert "curate --reference" in capsys.readouterr().out
    assert _train(data_root, ckpt, "--steps", "3") == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a checkpoint" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert json.loads((ckpt / "config.json").read_text())["sha256"] == first
    assert _train(data_root, ckpt, "--steps", "3", "--overwrite") == 0
    assert json.loads((ckpt / "config.json").read_text())["sha256"] != first
    assert sorted(os.listdir(ckpt)) == [".learnsieve-train", "config.json", "model.safetensors"]


def test_train_into_a_users_folder_keeps_the_users_files(data_root, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert _train(data_root, mine) == 2
    assert "is not empty and was not written by learnsieve train" in capsys.readouterr().err
    assert _train(data_root, mine, "--overwrite") == 0
    assert (mine / "notes.txt").read_text() == "mine" and (mine / "model.safetensors").exists()
    marker = json.loads((mine / ".learnsieve-train").read_text())
    assert marker["foreign"] == ["notes.txt"]


def test_overwrite_removes_only_the_commands_own_names(tmp_path):
    root = tmp_path / "ev"
    out = claim_folder(str(root), FOLDER_KINDS["eval"])
    release_lock(out.url)
    for name in ("eval.json", "eval.html", "eval_curves.png", "mine.json"):
        (root / name).write_text("x")
    (root / "random_arm").mkdir()
    (root / "random_arm" / "00000.tar").write_text("x")
    with pytest.raises(OutputError, match="already holds an eval run"):
        claim_folder(str(root), FOLDER_KINDS["eval"])
    claim_folder(str(root), FOLDER_KINDS["eval"], overwrite=True)
    release_lock(str(root))
    assert sorted(os.listdir(root)) == [".learnsieve-eval", "mine.json"]
    # a folder another command claimed is not eval's, even with --overwrite
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / ".learnsieve-train").write_text("{}")
    with pytest.raises(OutputError, match="another learnsieve command"):
        claim_folder(str(tmp_path / "ck"), FOLDER_KINDS["eval"], overwrite=True)
    # a user's random_arm/ is never written into
    (tmp_path / "u" / "random_arm").mkdir(parents=True)
    with pytest.raises(OutputError, match="holds random_arm/"):
        claim_folder(str(tmp_path / "u"), FOLDER_KINDS["eval"], overwrite=True)


def test_eval_writes_only_into_its_own_new_folder(data_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["eval", "--arm", f"clean={data_root['clean_pattern']}", "--random-from", data_root["pool_pattern"],
            "--test", data_root["clean_pattern"], "--learner", "ls_clip_test", "--steps", "2", "--eval-every", "1",
            "--set", "score.image_size=32", "--set", "train.batch_size=16", "--no-plots"]
    assert main(argv) == 0
    assert os.listdir(tmp_path) == ["runs"]
    (folder,) = os.listdir(tmp_path / "runs")
    assert folder.startswith("eval-")
    assert {"eval.json", "eval.html", "random_arm", ".learnsieve-eval"} <= set(os.listdir(tmp_path / "runs" / folder))
    b = json.loads((tmp_path / "runs" / folder / "eval.json").read_text())["bootstrap"]  # issue 22.6
    assert b["test_examples"] > 0 and set(b["arms"]) == {"clean", "random"} and "clean" in b["vs_reference"]
    assert "95% bootstrap intervals" in capsys.readouterr().out
    assert main(argv + ["--out", str(tmp_path / "runs" / folder)]) == 2
    assert "already holds an eval run" in capsys.readouterr().err
    assert main(argv + ["--out", "x/eval.json"]) == 2
    assert "eval's --out is a folder" in capsys.readouterr().err


def test_shards_refuses_a_users_folder_and_overwrite_keeps_the_users_tar(tmp_path, capsys):
    from PIL import Image
    images = tmp_path / "img"
    images.mkdir()
    Image.new("RGB", (8, 8), "red").save(images / "a.jpg")
    (images / "a.txt").write_text("red")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.tar").write_bytes(b"mine")
    argv = ["shards", "--images", str(images), "--output", str(out), "--quiet"]
    assert main(argv) == 2
    assert "not written by learnsieve shards" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "old.tar").read_bytes() == b"mine" and (out / "00000.tar").exists()
    assert main(argv) == 2 and "already holds shards" in capsys.readouterr().err
    # in a folder shards marked, NNNNN.tar is its own name (as in curate's output): --overwrite replaces it
    (out / "00007.tar").write_bytes(b"stale")
    assert main(argv + ["--overwrite"]) == 0
    assert sorted(n for n in os.listdir(out) if n.endswith(".tar")) == ["00000.tar", "old.tar"]


def test_export_refuses_an_existing_file(tmp_path, capsys):
    target = tmp_path / "subset.npy"
    target.write_bytes(b"mine")
    assert main(["export", "--output", str(tmp_path / "nope"), "--uids", str(target)]) == 2
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    assert target.read_bytes() == b"mine"
