import json

import pytest
import webdataset as wds

from learnsieve.core.paths import InputError, expand_pattern
from learnsieve.core.records import DeadLetter, Sample
from learnsieve.core.tar import TarSink, iter_shard, split_member
from tests.conftest import good_example, write_tar


def _items(path):
    return list(iter_shard(path, 0))


def test_expand_braces_globs_and_errors(tmp_path):
    for i in range(3):
        write_tar(str(tmp_path / f"{i:05d}.tar"), [])
    assert expand_pattern(str(tmp_path / "{00000..00002}.tar")) == [str(tmp_path / f"{i:05d}.tar") for i in range(3)]
    assert len(expand_pattern(str(tmp_path / "*.tar"))) == 3
    both = expand_pattern(f"{tmp_path}/00000.tar::{tmp_path}/0000[12].tar")
    assert len(both) == 3
    with pytest.raises(InputError, match="does not exist"):
        expand_pattern(str(tmp_path / "{00000..00003}.tar"))
    with pytest.raises(InputError, match="matches no files"):
        expand_pattern(str(tmp_path / "*.parquet"))
    with pytest.raises(InputError, match="is a directory"):
        expand_pattern(str(tmp_path))
    with pytest.raises(InputError, match="no input"):
        expand_pattern("")


def test_split_member_follows_webdataset_convention():
    assert split_member("000010005.jpg") == ("000010005", "jpg")
    assert split_member("dir/abc.seg.json") == ("dir/abc", "seg.json")
    assert split_member("noext") is None


def test_iter_shard_groups_and_names_every_problem(bad_shard):
    items = _items(bad_shard)
    samples = [i for i in items if isinstance(i, Sample)]
    dead = [i for i in items if isinstance(i, DeadLetter)]
    assert [s.key for s in samples][:2] == ["ok1", "nocap"]
    assert [d.reason for d in dead] == ["duplicate_key"]
    assert dead[0].key == "ok1" and dead[0].stage == "read" and dead[0].source == bad_shard
    assert [s.index for s in samples] == sorted(s.index for s in samples)


def test_truncated_tar_keeps_what_came_before(tmp_path):
    img, cap = good_example()
    path = tmp_path / "t.tar"
    write_tar(str(path), [(f"k{i}.jpg", img) for i in range(6)])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    items = _items(str(path))
    assert isinstance(items[-1], DeadLetter) and items[-1].reason == "truncated_tar"
    assert all(isinstance(i, Sample) for i in items[:-1]) and len(items) >= 2


def test_non_tar_empty_and_unsafe(tmp_path):
    (tmp_path / "x.tar").write_bytes(b"this is not a tar file at all" * 40)
    assert [d.reason for d in _items(str(tmp_path / "x.tar"))] == ["not_a_tar"]
    (tmp_path / "zero.tar").write_bytes(b"")
    assert [d.reason for d in _items(str(tmp_path / "zero.tar"))] == ["not_a_tar"]
    write_tar(str(tmp_path / "empty.tar"), [])
    assert _items(str(tmp_path / "empty.tar")) == []
    img, cap = good_example()
    write_tar(str(tmp_path / "u.tar"), [("../evil.jpg", img), ("../evil.txt", cap), ("fine.jpg", img)])
    reasons = [getattr(i, "reason", "ok") for i in _items(str(tmp_path / "u.tar"))]
    assert reasons == ["unsafe_key", "ok"]


def test_member_size_guard(tmp_path):
    img, cap = good_example()
    write_tar(str(tmp_path / "big.tar"), [("a.jpg", img), ("a.txt", b"y" * 5000), ("b.jpg", img)])
    items = list(iter_shard(str(tmp_path / "big.tar"), 0, max_member_bytes=1000))
    assert items[0].reason == "member_too_large" and isinstance(items[1], Sample)


def test_tar_sink_is_readable_by_webdataset_and_deterministic(tmp_path):
    img, cap = good_example()
    for name in ("a.tar", "b.tar"):
        sink = TarSink(str(tmp_path / name))
        for i in range(3):
            sink.write(f"k{i:03d}", {"jpg": img, "txt": cap, "json": json.dumps({"i": i}).encode()})
        sink.close()
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    ds = wds.WebDataset(str(tmp_path / "a.tar"), shardshuffle=False)
    got = list(ds)
    assert [s["__key__"] for s in got] == ["k000", "k001", "k002"]
    assert got[1]["jpg"] == img and got[1]["txt"] == cap


def test_spans_allow_ranged_reads_of_exactly_the_kept_members(tmp_path):
    from learnsieve.core.tar import read_spans
    img, cap = good_example()
    img2, cap2 = good_example(5)
    write_tar(str(tmp_path / "s.tar"), [("a.jpg", img), ("a.txt", cap), ("b.jpg", img2), ("b.txt", cap2)])
    samples = [s for s in _items(str(tmp_path / "s.tar"))]
    assert all(s.spans and set(s.spans) == set(s.files) for s in samples)
    got = list(read_spans(str(tmp_path / "s.tar"), [samples[1]]))
    assert got[0][1] == samples[1].files


def test_compressed_tars_carry_no_spans(tmp_path):
    import gzip
    img, cap = good_example()
    write_tar(str(tmp_path / "s.tar"), [("a.jpg", img), ("a.txt", cap)])
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress((tmp_path / "s.tar").read_bytes()))
    (sample,) = _items(str(tmp_path / "s.tar.gz"))
    assert sample.spans is None and sample.files["txt"] == cap
