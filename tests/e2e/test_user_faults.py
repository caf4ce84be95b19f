"""Faults users meet (issue 21): a full disk, a read-only output, Ctrl-C, one shard named twice,
a hostile or absurd config, member names with two dots, a same-size same-mtime edit in the middle
of a shard. Each ends as docs/RELIABILITY.md ("Faults users meet") promises: one line on stderr
and a documented status, nothing lost, the same command resumes.

Storage faults use real filesystems: a tmpfs mounted read-only, or a small one, in a subprocess
running the real CLI (the tests run as root, whom chmod does not stop). Where ``mount`` is not
permitted those tests skip, saying so."""
import glob
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time

import pytest
from PIL import Image

from learnsieve.cli import main
from learnsieve.core.output import LOCK
from learnsieve.core.paths import expand_pattern, shard_pattern
from learnsieve.datasets.synthetic import NoiseMix, write_split
from tests.conftest import good_example, write_tar
from tests.e2e.helpers import snapshot

FAST = ["--set", "score.image_size=32", "--set", "score.batch_size=16", "--set", "write.samples_per_shard=40"]


def _curate_argv(inp, out, checkpoints, *extra):
    return ["curate", "--input", inp, "--output", str(out), "--reference", checkpoints["reference"],
            "--proxy", checkpoints["proxy"], *FAST, *extra]


def _cli(*argv, **kw):
    """The real command in a subprocess: (rc, stdout, stderr lines)."""
    done = subprocess.run([sys.executable, "-m", "learnsieve", *argv], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)
    return done.returncode, done.stdout, done.stderr.strip().splitlines()


def _one_line(err, prefix="learnsieve: error: "):
    assert len(err) == 1, "\n".join(err[-40:])
    assert err[0].startswith(prefix), err[0]
    return err[0]


# --- config: bounded before it is echoed --------------------------------------------------------

BOMB = """score:
  device:
    - &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    - &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    - &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    - &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    - &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    - &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    - &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def test_a_yaml_alias_bomb_is_refused_in_one_line(tmp_path, capsys):
    """Before: the error echoed the expanded value (481,673 bytes for 5 levels; 7 levels run for
    minutes and gigabytes)."""
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    t = time.monotonic()
    rc = main(["curate", "--config", str(bomb), "--input", "x.tar", "--output", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and time.monotonic() - t < 10
    line = _one_line(err, "learnsieve: config error: ")
    assert "alias" in line and len(line) < 400, line
    # aliases that expand to little are still YAML as usual
    ok = tmp_path / "ok.yaml"
    ok.write_text("select:\n  seeds: &q [a photo of a dog, a dog on grass]\n  seeds_k: &k 5\n"
                  "  seeds_rounds: *k\nwrite:\n  report_scores: [learnability]\n")
    assert main(["config", "--config", str(ok)]) == 0
    assert "a photo of a dog" in capsys.readouterr().out


@pytest.mark.parametrize("text,match", [
    ("select:\n  seeds: &a [x, *a]\n", "recursive"),
    ("score:\n  device: " + "[" * 3000 + "]" * 3000 + "\n", "nested deeper than"),
    ("score:\n  device: " + "x" * 200_000 + "\n", "score.device: 'xxx"),
    ("score:\n  batch_size: " + "9" * 5000 + "\n", "not valid YAML"),
])
def test_hostile_config_values_end_in_one_short_line(tmp_path, capsys, text, match):
    """Before: a recursive alias or 3000 levels of nesting ended in a RecursionError traceback, a
    long value was echoed whole, a 5000-digit integer was a ValueError traceback."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    rc = main(["config", "--config", str(path)])
    line = _one_line(capsys.readouterr().err.strip().splitlines(), "learnsieve: config error: ")
    assert rc == 2 and match in line and len(line) < 400, line


def test_an_alias_bomb_in_set_is_refused(capsys):
    value = "[&a [x,x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], " \
            "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]]"
    rc = main(["config", "--set", f"score.device={value}"])
    line = _one_line(capsys.readouterr().err.strip().splitlines(), "learnsieve: config error: ")
    assert rc == 2 and "alias" in line and len(line) < 400, line


def test_config_that_is_a_folder_is_one_line(tmp_path, capsys):
    """Before: an IsADirectoryError traceback."""
    rc = main(["config", "--config", str(tmp_path)])
    line = _one_line(capsys.readouterr().err.strip().splitlines(), "learnsieve: config error: ")
    assert rc == 2 and "is a folder" in line


@pytest.mark.parametrize("override,bound", [
    ("score.max_pixels=1e9", "89,478,485"),
    ("score.max_member_bytes=1e12", "1,073,741,824"),
    ("score.batch_size=1e6", "4,096"),
    ("score.image_size=100000", "4,096"),
])
def test_absurd_score_values_are_refused_in_one_line(override, bound, capsys):
    """Before: accepted without a word (a 1-gigapixel decode takes gigabytes)."""
    rc = main(["config", "--set", override])
    line = _one_line(capsys.readouterr().err.strip().splitlines(), "learnsieve: config error: ")
    assert rc == 2 and override.split("=")[0] in line and f"<= {bound}" in line, line


# --- input paths: one shard named twice is read once --------------------------------------------

def test_spellings_of_one_shard_are_one_shard(tmp_path, monkeypatch):
    img, cap = good_example(1)
    d = tmp_path / "in"
    d.mkdir()
    write_tar(str(d / "00000.tar"), [("a.jpg", img), ("a.txt", cap)])
    os.symlink(d / "00000.tar", tmp_path / "link.tar")
    os.link(d / "00000.tar", tmp_path / "hard.tar")
    monkeypatch.chdir(tmp_path)
    pattern = "::".join(["in/00000.tar", "in/./00000.tar", "in//00000.tar", f"file://{d}/00000.tar",
                         "link.tar", "hard.tar", "in/../in/00000.tar", "in/*.tar", "in/{00000..00000}.tar"])
    assert expand_pattern(pattern) == [str(d / "00000.tar")]
    assert expand_pattern("in/.//00000.tar") == [str(d / "00000.tar")]  # spelled clean


@pytest.fixture(scope="module")
def dedup_and_dots_run(checkpoints, tmp_path_factory):
    """One curate run: a shard named five ways, and a shard with members named ``a.b.jpg``."""
    d = tmp_path_factory.mktemp("paths")
    img, cap = good_example(2)
    img2, cap2 = good_example(3)
    write_tar(str(d / "00000.tar"), [(f"k{i}.jpg", img) if j == 0 else (f"k{i}.txt", cap)
                                     for i in range(4) for j in range(2)])
    write_tar(str(d / "dots.tar"), [("ok.jpg", img2), ("ok.txt", cap2),
                                    ("photo.v2.jpg", img), ("photo.v2.txt", cap)])
    os.symlink(d / "00000.tar", d / "link.tar")
    pattern = "::".join([f"{d}/00000.tar", f"{d}/./00000.tar", f"{d}//00000.tar", f"file://{d}/00000.tar",
                         f"{d}/link.tar", f"{d}/dots.tar"])
    out = d / "o"
    rc = main(_curate_argv(pattern, out, checkpoints, "--set", "select.mode=all", "--set",
                           "max_bad_fraction=1.0"))
    assert rc == 0
    return out


@pytest.mark.slow
def test_a_shard_named_five_ways_is_read_once(dedup_and_dots_run):
    """Before: ``IN/00000.tar::IN/./00000.tar`` read the shard twice and wrote its examples twice."""
    stats = json.load(open(dedup_and_dots_run / "stats.json"))
    assert stats["input_shards"] == 2, stats
    assert stats["read"] == 4 + 2 == stats["kept"] + stats["filtered"] + stats["rejected"], stats
    rows = [json.loads(ln) for ln in open(dedup_and_dots_run / "rejected" / "rejected.jsonl")]
    assert not any(r.get("reason") == "duplicate_key" for r in rows), rows


@pytest.mark.slow
def test_member_names_with_two_dots_name_the_cause(dedup_and_dots_run):
    """Before: ``photo.v2.jpg`` became ``decode:missing_image`` for key ``photo``."""
    rows = [json.loads(ln) for ln in open(dedup_and_dots_run / "rejected" / "rejected.jsonl")]
    (row,) = [r for r in rows if r.get("key") == "photo"]
    assert (row["stage"], row["reason"]) == ("decode", "multi_dot_name"), row
    assert "first dot" in row["detail"] and "photo.v2.jpg" in row["detail"], row["detail"]


# --- storage: read-only output, a full disk -----------------------------------------------------

def _mount_tmpfs(where, options):
    where.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount here ({exc}): a read-only or full filesystem needs a mount")
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here ({done.stderr.strip()}): a read-only or "
                    f"full filesystem needs a mount (chmod does not stop root)")


@pytest.fixture()
def mounts(tmp_path):
    made = []

    def mount(name, options):
        where = tmp_path / name
        _mount_tmpfs(where, options)
        made.append(where)
        return where

    yield mount
    for where in reversed(made):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("below", ["", "out", "a/b"])
def test_read_only_output_is_refused_before_any_work(mounts, data_root, checkpoints, below):
    """The output is a read-only mount, or a folder to be created below one. Before: rc 1 and a
    21-line traceback ([Errno 30] Read-only file system: '.../.learnsieve-lock')."""
    ro = mounts("ro", "size=2m,ro")
    out = ro / below if below else ro
    rc, _, err = _cli(*_curate_argv(data_root["pool_pattern"], out, checkpoints))
    line = _one_line(err)
    assert rc == 2, err
    assert "read-only file system (EROFS)" in line and str(ro) in line, line


@pytest.mark.slow
def test_a_full_disk_before_any_work_is_refused(mounts, data_root, checkpoints):
    full = mounts("full", "size=64k")
    with open(full / "filler", "wb") as f:
        try:
            f.write(b"\0" * (1 << 20))
        except OSError:
            pass
    rc, _, err = _cli(*_curate_argv(data_root["pool_pattern"], full / "out", checkpoints))
    line = _one_line(err)
    assert rc == 2 and "no space left on device (ENOSPC)" in line and str(full) in line, line


@pytest.mark.slow
def test_disk_full_mid_run_is_one_line_and_resumes(mounts, data_root, checkpoints, tmp_path, capsys):
    """Room for the score files, not for the shards. Before: rc 1 and a 226-line traceback ending
    in ``OSError: [Errno 28] No space left on device [while running 'WriteShards/...']``."""
    reference = tmp_path / "reference"
    assert main(_curate_argv(data_root["pool_pattern"], reference, checkpoints)) == 0
    capsys.readouterr()
    small = mounts("small", "size=256k")
    out = small / "out"
    argv = _curate_argv(data_root["pool_pattern"], out, checkpoints)
    rc, _, err = _cli(*argv)
    line = _one_line(err)
    assert rc == 1, err
    assert "no space left on device (ENOSPC)" in line and str(out) in line, line
    assert "run the same command to resume" in line
    assert not os.path.exists(out / LOCK)
    assert not os.path.exists(out / "stats.json")
    scored = len(glob.glob(str(out / "_scores" / "*.parquet")))
    subprocess.run(["mount", "-o", "remount,size=64m", str(small)], check=True, timeout=30)
    rc, stdout, err = _cli(*argv)
    assert rc == 0, err
    assert json.load(open(out / "stats.json"))["rescored_shards"] == 3 - scored
    assert snapshot(str(out)) == snapshot(str(reference))


# --- Ctrl-C ---------------------------------------------------------------------------------------

SHARDS = 12


@pytest.fixture(scope="module")
def pool12(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool_sigint")
    write_split(str(root), SHARDS * 24, SHARDS, seed=7, mix=NoiseMix(corrupt=0.05, mismatch=0.3))
    return shard_pattern(str(root), SHARDS)


def _slow_argv(pool, checkpoints, out):
    # batch 2 makes scoring slow enough (many small forwards) to stop it between two score files
    return [sys.executable, "-m", "learnsieve", "curate", "--input", pool, "--output", str(out),
            "--reference", checkpoints["reference"], "--proxy", checkpoints["proxy"],
            "--set", "score.image_size=32", "--set", "score.batch_size=2", "--set", "score.torch_threads=1",
            "--set", "write.samples_per_shard=40", "--progress-every", "0.5"]


@pytest.mark.slow
def test_ctrl_c_mid_scoring_stops_cleanly_and_resumes(pool12, checkpoints, tmp_path):
    """SIGINT to the run's process group, as Ctrl-C in a terminal sends it, once two shards are
    scored. Before: a 47-line traceback, ``terminate called without an active exception``,
    SIGABRT (rc -6)."""
    reference = tmp_path / "reference"
    done = subprocess.run(_slow_argv(pool12, checkpoints, reference), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "o"
    argv = _slow_argv(pool12, checkpoints, out)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline \
                and len(glob.glob(str(out / "_scores" / "*.parquet"))) < 2:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    lines = stderr.strip().splitlines()
    assert proc.returncode == 130, stderr[-3000:]
    assert lines[-1] == "learnsieve: interrupted; run the same command to resume", lines[-5:]
    assert all(ln.startswith("learnsieve: scored ") for ln in lines[:-1]), stderr[-3000:]
    assert not os.path.exists(out / LOCK)
    left = len(glob.glob(str(out / "_scores" / "*.parquet")))
    assert 2 <= left < SHARDS, f"stopped with {left} of {SHARDS} shards scored: not mid-scoring"
    again = subprocess.run(argv, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.load(open(out / "stats.json"))["rescored_shards"] <= SHARDS - 2
    assert snapshot(str(out)) == snapshot(str(reference))


# --- --incremental: a same-size, same-mtime edit in the middle of a shard ------------------------

def _noise_jpeg(seed: int) -> bytes:
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (256, 256), rng.randbytes(256 * 256 * 3))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


@pytest.mark.slow
def test_a_same_size_same_mtime_edit_mid_shard_is_rescored(checkpoints, tmp_path, capsys):
    """A 3 MiB shard; an image in its middle made undecodable in place, size and mtime kept.
    Before (head/tail fingerprint): --incremental reused the stale score file and shipped the
    broken image as kept."""
    d = tmp_path / "in"
    d.mkdir()
    members = []
    for i in range(44):
        members += [(f"n{i:02d}.jpg", _noise_jpeg(i)), (f"n{i:02d}.txt", f"noise picture {i}".encode())]
    shard = d / "00000.tar"
    write_tar(str(shard), members)
    size = os.path.getsize(shard)
    assert size > 3 << 20, size
    out = tmp_path / "o"
    argv = _curate_argv(str(shard), out, checkpoints, "--set", "select.mode=all")
    assert main(argv) == 0
    with tarfile.open(shard) as tar:
        middle = min((m for m in tar.getmembers() if m.name.endswith(".jpg")),
                     key=lambda m: abs(m.offset_data - size // 2))
    assert (1 << 20) < middle.offset_data < size - (1 << 20) - 4  # neither head nor tail MiB
    st = os.stat(shard)
    with open(shard, "r+b") as f:
        f.seek(middle.offset_data)
        f.write(b"\0" * 4)  # no JPEG start-of-image marker any more
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(shard) == st.st_size and os.stat(shard).st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    assert main(argv + ["--incremental"]) == 0
    stats = json.load(open(out / "stats.json"))
    assert stats["rescored_shards"] == 1, stats
    key = middle.name[:-len(".jpg")]
    rows = [json.loads(ln) for ln in open(out / "rejected" / "rejected.jsonl")]
    assert any(r.get("key") == key and r.get("reason") == "undecodable_image" for r in rows), rows
    kept = {m.name for t in glob.glob(str(out / "*.tar")) for m in tarfile.open(t).getmembers()}
    assert f"{key}.jpg" not in kept
