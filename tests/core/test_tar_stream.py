"""The byte layer under the tar reader (learnsieve/core/tar_stream.py): ranged reads, compressed
shards, seeking past large members, and storage errors kept apart from damage."""

import pytest

from learnsieve.core.tar import iter_shard
from tests.conftest import good_example, write_tar
from tests.core.test_tar import _items, _six, _summary


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


# --- every byte range accounted for (issue "Nothing lost, nothing touched") -------------------


def test_compressed_damage_and_formats(tmp_path):
    import bz2
    import gzip
    import lzma
    _, data, _ = _six(tmp_path, n=3)
    for name, comp in (("b.tar.bz2", bz2.compress), ("x.tar.xz", lzma.compress), ("g.tgz", gzip.compress)):
        (tmp_path / name).write_bytes(comp(data))
        items = _items(str(tmp_path / name))
        assert _summary(items) == [(f"k{i}", "sample") for i in range(3)] and items[0].spans is None
    gz = gzip.compress(data)
    (tmp_path / "cut.tgz").write_bytes(gz[: len(gz) // 2])
    items = _items(str(tmp_path / "cut.tgz"))
    assert items[-1].reason == "truncated_tar" and "gzip" in items[-1].detail
    (tmp_path / "html.gz").write_bytes(gzip.compress(b"<html>not found</html>" * 40))
    assert _summary(_items(str(tmp_path / "html.gz"))) == [(None, "not_a_tar")]
    (tmp_path / "z.tar.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(600))
    assert "zstd" in _items(str(tmp_path / "z.tar.zst"))[0].detail
    (tmp_path / "padded.tgz").write_bytes(gz + bytes(4096))  # gzip's "trailing garbage", after the end
    assert _summary(_items(str(tmp_path / "padded.tgz"))) == [(f"k{i}", "sample") for i in range(3)]
    (tmp_path / "bad.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 50)
    assert _summary(_items(str(tmp_path / "bad.gz"))) == [(None, "not_a_tar")]


def test_large_members_are_skipped_by_seeking_and_a_cut_inside_one_is_named(tmp_path):
    img, cap = good_example()
    big = b"z" * (3 << 20)
    write_tar(str(tmp_path / "big.tar"), [("a.jpg", img), ("a.txt", cap), ("b.jpg", big), ("b.txt", cap),
                                          ("c.jpg", img), ("c.txt", cap)])
    items = list(iter_shard(str(tmp_path / "big.tar"), 0, max_member_bytes=1 << 20))
    assert _summary(items) == [("a", "sample"), ("b", "member_too_large"), ("c", "sample")]
    data = (tmp_path / "big.tar").read_bytes()
    (tmp_path / "big.tar").write_bytes(data[:3 << 20])
    items = list(iter_shard(str(tmp_path / "big.tar"), 0, max_member_bytes=1 << 20))
    assert _summary(items) == [("a", "sample"), ("b", "truncated_tar")]


def test_a_storage_read_error_fails_the_read_and_is_not_a_dead_letter(tmp_path, monkeypatch):
    """A timeout mid-shard is the storage's failure, not damage: it must raise (Beam retries the
    bundle), never end the shard with a truncated_tar that a score file would keep for good."""
    import contextlib

    import learnsieve.core.tar as tar_mod
    img, cap = good_example(0)
    path = str(tmp_path / "s.tar")
    write_tar(path, [(f"k{i}.{e}", img if e == "jpg" else cap) for i in range(5) for e in ("jpg", "txt")])

    class Flaky:
        def __init__(self, f):
            self.f, self.n = f, 0

        def read(self, *a):
            self.n += 1
            if self.n == 8:
                raise TimeoutError("read timed out")
            return self.f.read(*a)

        def __getattr__(self, name):
            return getattr(self.f, name)

    real = tar_mod.open_input

    @contextlib.contextmanager
    def flaky_open(url):
        with real(url) as f:
            yield Flaky(f)

    monkeypatch.setattr(tar_mod, "open_input", flaky_open)
    with pytest.raises(TimeoutError):
        list(iter_shard(path, 0))
