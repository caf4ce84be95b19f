"""Nothing lost, nothing touched: learnsieve deletes or overwrites only what it wrote in its own
output folder, refuses every non-data problem in one line (rc 2) before any work, keys its score
files on the input shards' content, and locks the output against a second run.

Tried with the real CLI (``learnsieve.cli.main`` in-process): each refusal is one stderr line
starting "learnsieve: error" / "learnsieve: config error", and the user's files stay byte for
byte as they were."""
import dataclasses
import glob
import json
import os
import shutil
import socket
import subprocess
import tarfile

import pyarrow.parquet as pq
import pytest
import torch
import webdataset as wds

from learnsieve.cli import main
from learnsieve.config import load_config
from learnsieve.core.output import LOCK, MARKER, acquire_lock, open_output, release_lock
from learnsieve.core.plan import plan_run
from learnsieve.core.score_file import cache_valid, write_score_file
from tests.conftest import good_example, write_tar

FAST = ["--set", "score.image_size=32", "--set", "score.batch_size=16", "--set", "write.samples_per_shard=40"]


def _curate(capsys, inp, out, checkpoints, *extra):
    rc = main(["curate", "--input", inp, "--output", str(out), "--reference", checkpoints["reference"],
               "--proxy", checkpoints["proxy"], *FAST, *extra])
    captured = capsys.readouterr()
    return rc, captured.err.strip().splitlines()


def _refused(rc, err, match, prefix="learnsieve: error: "):
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(prefix) and match in err[0], err[0]


def _tree(root):
    """Every file under root -> its bytes."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


@pytest.fixture()
def pool(data_root, tmp_path):
    """A private copy of the synthetic pool (3 shards): tests may change it."""
    d = tmp_path / "in"
    shutil.copytree(data_root["pool"], d)
    return str(d), os.path.join(str(d), "{00000..00002}.tar")


@pytest.fixture()
def user_folder(tmp_path):
    """A folder learnsieve did not write, holding names that look like its own."""
    d = tmp_path / "mine"
    (d / "rejected").mkdir(parents=True)
    img, cap = good_example(4)
    write_tar(str(d / "mydata.tar"), [("a.jpg", img), ("a.txt", cap)])
    (d / "notes_stats.json").write_text('{"mine": true}')
    (d / "rejected" / "keep.txt").write_text("keep me")
    return d


# --- refused in one line, nothing touched -------------------------------------------------------

def test_output_equal_to_the_input_folder_is_refused(pool, checkpoints, capsys):
    d, _ = pool
    before = _tree(d)
    rc, err = _curate(capsys, os.path.join(d, "*.tar"), d, checkpoints)
    _refused(rc, err, "is the folder of the input shard")
    assert _tree(d) == before


def test_output_inside_a_recursive_input_glob_is_refused(pool, checkpoints, capsys):
    d, _ = pool
    before = _tree(d)
    for pattern in (os.path.join(d, "**", "*.tar"), os.path.join(d, "*", "*.tar")):
        if pattern.endswith("/*/*.tar"):
            os.makedirs(os.path.join(d, "sub"), exist_ok=True)
            shutil.copy(os.path.join(d, "00000.tar"), os.path.join(d, "sub", "x.tar"))
            before = _tree(d)
        rc, err = _curate(capsys, pattern, os.path.join(d, "out"), checkpoints)
        _refused(rc, err, "matches what learnsieve writes")
        assert not os.path.exists(os.path.join(d, "out")) and _tree(d) == before


def test_output_that_is_a_file_is_refused(pool, checkpoints, capsys, tmp_path):
    _, pattern = pool
    f = tmp_path / "notes.txt"
    f.write_text("not a folder")
    rc, err = _curate(capsys, pattern, f, checkpoints)
    _refused(rc, err, "is a file, not a folder")
    rc, err = _curate(capsys, pattern, f / "sub", checkpoints)
    _refused(rc, err, "which is a file")
    assert f.read_text() == "not a folder"


def test_unrelated_folder_is_refused_without_overwrite(pool, checkpoints, capsys, user_folder):
    _, pattern = pool
    before = _tree(user_folder)
    rc, err = _curate(capsys, pattern, user_folder, checkpoints)
    _refused(rc, err, "not written by learnsieve")
    assert "--overwrite" in err[0]
    assert _tree(user_folder) == before and not (user_folder / MARKER).exists()


def test_overwrite_refuses_to_replace_a_numbered_tar_it_did_not_write(pool, checkpoints, capsys, user_folder):
    _, pattern = pool
    shutil.copy(user_folder / "mydata.tar", user_folder / "00000.tar")
    before = _tree(user_folder)
    rc, err = _curate(capsys, pattern, user_folder, checkpoints, "--overwrite")
    _refused(rc, err, "holds 00000.tar, which learnsieve did not write")
    assert _tree(user_folder) == before


@pytest.mark.parametrize("override,match", [
    ("select.threshold=.nan", "select.threshold must be a finite number"),
    ("select.fraction=.inf", "select.fraction must be a finite number"),
    ("score.image_size=0", "score.image_size must be >= 1"),
    ("score.device=cuda", "no CUDA GPU"),
])
def test_bad_config_values_are_refused_before_the_output_exists(override, match, pool, checkpoints,
                                                                 capsys, tmp_path):
    if override == "score.device=cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present: score.device cuda is valid here")
    _, pattern = pool
    rc, err = _curate(capsys, pattern, tmp_path / "o", checkpoints, "--set", override)
    _refused(rc, err, match, prefix="learnsieve: config error: ")
    assert not (tmp_path / "o").exists()


# --- the lock -----------------------------------------------------------------------------------

def _lock(path, pid, host):
    os.makedirs(path, exist_ok=True)
    info = {"pid": pid, "host": host, "started": "2026-01-01T00:00:00+00:00", "token": "x"}
    with open(os.path.join(path, LOCK), "w") as f:
        json.dump(info, f)
    return open(os.path.join(path, LOCK), "rb").read()


def test_a_live_lock_stops_a_second_run(pool, checkpoints, capsys, tmp_path):
    _, pattern = pool
    out = str(tmp_path / "o")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        for host in (socket.gethostname(), "elsewhere.example"):
            lock = _lock(out, sleeper.pid, host)
            for extra in ((), ("--dry-run",)):  # the dry run says what the real run would
                rc, err = _curate(capsys, pattern, out, checkpoints, *extra)
                _refused(rc, err, "is in use by another learnsieve run")
                assert f"remove {os.path.join(out, LOCK)} if no run is active" in err[0]
                assert open(os.path.join(out, LOCK), "rb").read() == lock and os.listdir(out) == [LOCK]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_on_this_host_is_taken_over_and_released(pool, checkpoints, tmp_path):
    _, pattern = pool
    out = str(tmp_path / "o")
    dead = subprocess.Popen(["true"])
    dead.wait()
    _lock(out, dead.pid, socket.gethostname())
    cfg = dataclasses.replace(load_config(None, ["score.image_size=32"]), input=pattern, output=out,
                              **checkpoints)
    plan_run(cfg)
    held = json.load(open(os.path.join(out, LOCK)))
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert os.path.exists(os.path.join(out, MARKER))
    release_lock(out)
    assert not os.path.exists(os.path.join(out, LOCK))
    # a lock held by this very process is not stale either
    acquire_lock(open_output(out))
    with pytest.raises(Exception, match="in use by another learnsieve run"):
        plan_run(cfg)
    release_lock(out)


# --- paths are literal: glob characters in --output ---------------------------------------------

def test_overwrite_with_glob_characters_touches_only_that_folder(pool, checkpoints, tmp_path):
    _, pattern = pool
    sibling = tmp_path / "out1"  # what fs.glob("out[1]/...") used to match
    (sibling / "_tmp").mkdir(parents=True)
    for name in ("keep.tar", "00000.tar", "00000_stats.json", "sizes.json", "stats.json", "_tmp/x"):
        (sibling / name).write_bytes(b"sibling " + name.encode())
    before = _tree(sibling)
    cfg = dataclasses.replace(load_config(None, ["score.image_size=32"]), input=pattern,
                              output=str(tmp_path / "out[1]"), **checkpoints)
    for _ in range(2):  # claims the fresh folder, then an --overwrite of it
        plan_run(cfg, overwrite=True)
        release_lock(cfg.output)
    assert _tree(sibling) == before
    assert os.path.exists(tmp_path / "out[1]" / MARKER)


# --- score files are keyed on content -----------------------------------------------------------

def _same_size_rewrite(shard, keep_mtime=True):
    """Reverse the first caption in place: same size, different bytes; returns (key, new caption)."""
    st = os.stat(shard)
    with tarfile.open(shard) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".txt"))
    with open(shard, "r+b") as f:
        f.seek(member.offset_data)
        caption = f.read(member.size)
        new = caption[::-1]
        assert new != caption
        f.seek(member.offset_data)
        f.write(new)
    if keep_mtime:
        os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(shard) == st.st_size
    return member.name[:-len(".txt")], new


def test_score_file_is_invalid_once_its_shard_changes_with_the_same_size(pool, tmp_path):
    d, _ = pool
    shard = os.path.join(d, "00001.tar")
    path = str(tmp_path / "_scores" / "s.parquet")
    write_score_file(path, shard, [], ("a" * 64, "b" * 64), "s")
    assert cache_valid(path, shard, ("a" * 64, "b" * 64), "s")
    meta = pq.read_schema(path).metadata
    assert {b"source_size", b"source_mtime", b"source_blake2b"} <= set(meta)
    _same_size_rewrite(shard)
    assert not cache_valid(path, shard, ("a" * 64, "b" * 64), "s")


@pytest.mark.slow
def test_changed_input_shard_of_the_same_size_is_rescored(pool, checkpoints, capsys, tmp_path):
    d, pattern = pool
    out = tmp_path / "o"
    rc, _ = _curate(capsys, pattern, out, checkpoints, "--set", "select.mode=all")
    assert rc == 0
    key, caption = _same_size_rewrite(os.path.join(d, "00001.tar"))
    rc, _ = _curate(capsys, pattern, out, checkpoints, "--set", "select.mode=all", "--incremental")
    assert rc == 0
    stats = json.load(open(out / "stats.json"))
    assert (stats["input_shards"], stats["rescored_shards"]) == (3, 1)
    got = {s["__key__"]: s for t in sorted(glob.glob(str(out / "*.tar")))
           for s in wds.WebDataset(t, shardshuffle=False)}
    assert got[key]["txt"] == caption  # the output carries the input's caption, not a stale one


# --- runs that complete -------------------------------------------------------------------------

@pytest.mark.slow
def test_overwrite_into_an_unrelated_folder_keeps_every_user_file(pool, checkpoints, capsys, user_folder):
    _, pattern = pool
    before = _tree(user_folder)
    for _ in range(2):  # claim the folder, then replace the run in it
        rc, err = _curate(capsys, pattern, user_folder, checkpoints, "--overwrite")
        assert rc == 0, err
        after = _tree(user_folder)
        assert {k: after[k] for k in before} == before
        assert "00000.tar" in after and "stats.json" in after and "rejected/rejected.jsonl" in after
        assert not os.path.exists(user_folder / LOCK)
    marker = json.load(open(user_folder / MARKER))
    assert set(marker["foreign"]) == {"mydata.tar", "notes_stats.json", "rejected"}
    # and its own files are recognised: a rerun needs a flag, then replaces only them
    rc, err = _curate(capsys, pattern, user_folder, checkpoints)
    _refused(rc, err, "already holds a finished curation run", prefix="learnsieve: config error: ")


@pytest.mark.slow
def test_run_into_a_folder_with_glob_characters(pool, checkpoints, capsys, tmp_path):
    _, pattern = pool
    sibling = tmp_path / "out1"
    sibling.mkdir()
    (sibling / "keep.tar").write_bytes(b"keep")
    (sibling / "00000.tar").write_bytes(b"not learnsieve's")
    before = _tree(sibling)
    out = tmp_path / "out[1]"
    for extra in ((), ("--overwrite",)):
        rc, err = _curate(capsys, pattern, out, checkpoints, *extra)
        assert rc == 0, err
    assert _tree(sibling) == before
    assert os.path.exists(out / "00000.tar") and os.path.exists(out / "manifest.parquet")


@pytest.mark.slow
def test_an_all_rejected_run_leaves_nothing_that_blocks_the_rerun(checkpoints, capsys, tmp_path):
    _, cap = good_example(5)
    shard = tmp_path / "in" / "00000.tar"
    shard.parent.mkdir()
    write_tar(str(shard), [(f"k{i}.{ext}", data) for i in range(6)
                           for ext, data in (("jpg", b"\xff\xd8\xff\xe0" + bytes([i]) * 300), ("txt", cap))])
    out = tmp_path / "o"
    rc, err = _curate(capsys, str(shard), out, checkpoints)
    errors = [line for line in err if line.startswith("learnsieve: error")]  # after progress lines
    assert rc == 2 and len(errors) == 1 and "6 of 6 inputs rejected" in errors[0], err
    assert not (out / "stats.json").exists() and (out / "stats.failed.json").exists()
    assert not (out / LOCK).exists()
    # the input fixed, the same command runs again
    write_tar(str(shard), [(f"k{i}.{ext}", data) for i in range(6)
                           for ext, data in (("jpg", good_example(i)[0]), ("txt", good_example(i)[1]))])
    rc, err = _curate(capsys, str(shard), out, checkpoints)
    assert rc == 0, err
    stats = json.load(open(out / "stats.json"))
    assert stats["read"] == 6 and stats["rejected"] == 0
    assert not (out / "stats.failed.json").exists()


def test_remote_output_claim_clean_lock_and_release():
    """The same rules on an fsspec remote (memory://): only own names go, the lock is exclusive."""
    import fsspec

    from learnsieve.core.output import OutputError, claim, inspect_output
    fs = fsspec.filesystem("memory")
    for name, data in (("mydata.tar", b"m"), ("rejected/keep.txt", b"k"), ("rejected/rejected.jsonl", b"r"),
                       ("sizes.json", b'{"00003.tar": 1}'), ("00003.tar", b"old"), ("_tmp/g.tar", b"old")):
        fs.pipe(f"/safety/mine/{name}", data)
    url = "memory://safety/mine"
    with pytest.raises(OutputError, match="not written by learnsieve"):
        inspect_output(url, "memory://safety/in/*.tar", [])
    # an unmarked folder: no sizes.json is trusted, and no folder of it is removed, even with --overwrite
    with pytest.raises(OutputError, match="holds _tmp/, which learnsieve did not write"):
        inspect_output(url, "memory://safety/in/*.tar", [], overwrite=True)
    fs.rm("/safety/mine/_tmp", recursive=True)
    with pytest.raises(OutputError, match="holds 00003.tar, which learnsieve did not write"):
        inspect_output(url, "memory://safety/in/*.tar", [], overwrite=True)
    fs.rm("/safety/mine/00003.tar")
    out = inspect_output(url, "memory://safety/in/*.tar", [], overwrite=True)
    assert claim(out, {"input": "x"}, scores=True) == ["rejected/rejected.jsonl", "sizes.json"]
    with pytest.raises(OutputError, match="in use by another learnsieve run"):
        acquire_lock(open_output(url))
    release_lock(url)
    assert sorted(fs.find("/safety/mine")) == ["/safety/mine/" + n for n in (MARKER, "mydata.tar",
                                                                             "rejected/keep.txt")]
    with pytest.raises(OutputError, match="glob characters"):
        inspect_output("memory://safety/o[1]", "memory://safety/in/*.tar", [])
    with pytest.raises(OutputError, match="matches what learnsieve writes"):
        inspect_output("memory://safety/in/out", "memory://safety/in/**/*.tar", [])
    fs.rm("/safety", recursive=True)


def test_a_lock_with_our_own_pid_but_not_our_token_is_stale():
    """A restarted container reuses its killed predecessor's hostname and, often, its pid."""
    import os
    import socket

    from learnsieve.core.output import _stale
    assert _stale({"host": socket.gethostname(), "pid": os.getpid(), "token": "someone-else"})
    assert not _stale({"host": "another-host", "pid": os.getpid(), "token": "x"})


def test_score_stamps_fold_the_open_clip_architecture_in():
    from learnsieve.config import Config
    from learnsieve.core.plan import score_stamps
    cfg = Config(reference="ckpt/reference", proxy="open_clip:ViT-B-32-quickgelu:logs/x/epoch_3.pt")
    assert score_stamps(cfg, ("aa", "bb")) == ("aa", "bb:ViT-B-32-quickgelu")
    other = Config(reference="ckpt/reference", proxy="open_clip:ViT-B-32:logs/x/epoch_3.pt")
    assert score_stamps(other, ("aa", "bb"))[1] != score_stamps(cfg, ("aa", "bb"))[1]
