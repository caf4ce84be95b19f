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


# --- remote reads: few large requests, coalesced ranges, retries (issue 19, point 2) ----------


class _CountingFS:
    """An fsspec in-memory filesystem under its own protocol that counts its range requests
    (``cat_file``: one GET on gs://) and can fail some of them."""

    calls: list = []
    fail: list = []  # exceptions raised by the next requests, in order


def _counting_fs():
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class CountingMemFS(MemoryFileSystem):
        protocol = "countmem"
        store: dict = {}
        pseudo_dirs = [""]

        @classmethod
        def _strip_protocol(cls, path):
            return super()._strip_protocol(path[len("countmem://"):] if path.startswith("countmem://") else path)

        def cat_file(self, path, start=None, end=None, **kw):
            _CountingFS.calls.append((start, end))
            if _CountingFS.fail:
                raise _CountingFS.fail.pop(0)
            return super().cat_file(path, start=start, end=end, **kw)

    fsspec.register_implementation("countmem", CountingMemFS, clobber=True)
    return CountingMemFS


@pytest.fixture
def countmem(monkeypatch):
    import learnsieve.core.tar_stream as ts
    cls = _counting_fs()
    cls.store.clear()
    _CountingFS.calls, _CountingFS.fail = [], []
    monkeypatch.setattr(ts, "BACKOFF", 0.01)

    def put(name, data):
        cls().pipe_file(f"/{name}", data)
        return f"countmem:///{name}"

    yield put
    cls.store.clear()


def _shard(tmp_path, n, size=None):
    """A tar of n samples (jpg + txt), members padded to ``size`` bytes when given."""
    import random

    from learnsieve.datasets.synthetic import make_example
    members = []
    for i in range(n):
        img, cap, _ = make_example(random.Random(i), "clean")
        members += [(f"k{i:05d}.jpg", img + bytes(max(0, (size or 0) - len(img)))), (f"k{i:05d}.txt", cap)]
    path = tmp_path / f"s{n}.tar"
    write_tar(str(path), members)
    return str(path), path.read_bytes()


def _same(a, b):
    return [(getattr(i, "key", None), getattr(i, "files", None), getattr(i, "reason", None)) for i in a] == \
        [(getattr(i, "key", None), getattr(i, "files", None), getattr(i, "reason", None)) for i in b]


def test_a_remote_shard_is_read_in_few_large_requests(tmp_path, countmem):
    import learnsieve.core.tar_stream as ts
    path, data = _shard(tmp_path, 1000)
    assert 2 << 20 < len(data) < ts.BLOCK
    url = countmem("pool/s.tar", data)
    items = list(iter_shard(url, 0))
    assert _same(items, list(iter_shard(path, 0))) and len(items) == 1000
    assert _CountingFS.calls == [(0, len(data))]  # one request for the whole shard (was one per read)
    big_path, big = _shard(tmp_path, 40, size=500_000)  # ~20 MB: ceil(size / BLOCK) requests
    _CountingFS.calls = []
    items = list(iter_shard(countmem("pool/big.tar", big), 0))
    assert _same(items, list(iter_shard(big_path, 0)))
    assert len(_CountingFS.calls) == -(-len(big) // ts.BLOCK) == 3
    assert all(e - s == ts.BLOCK for s, e in _CountingFS.calls[:-1])


def test_an_unbuffered_fsspec_file_would_make_a_request_per_small_read(tmp_path, countmem):
    """What the buffering saves: the tar parser's reads counted on the file itself."""
    import io

    import learnsieve.core.tar_stream as ts
    _, data = _shard(tmp_path, 200)
    url = countmem("pool/c.tar", data)

    class Counting(io.RawIOBase):
        def __init__(self):
            self.f, self.reads = io.BytesIO(data), 0

        def readable(self):
            return True

        def seekable(self):
            return True

        def seek(self, *a):
            return self.f.seek(*a)

        def tell(self):
            return self.f.tell()

        def readinto(self, b):
            self.reads += 1
            got = self.f.readinto(b)
            return got

    bare, buffered = Counting(), Counting()
    from learnsieve.core.tar import iter_file
    n_bare = len(list(iter_file(bare, url)))
    n_buf = len(list(iter_file(io.BufferedReader(buffered, ts.BLOCK), url)))
    assert n_bare == n_buf == 200
    assert bare.reads > 3 * 200 and buffered.reads <= 2


def test_kept_examples_are_read_back_in_coalesced_ranges(tmp_path, countmem, monkeypatch):
    import learnsieve.core.tar_stream as ts
    from learnsieve.core.tar import read_spans
    path, data = _shard(tmp_path, 600)
    url = countmem("pool/r.tar", data)
    samples = list(iter_shard(path, 0))
    kept = samples[::3] + samples[1::7]
    _CountingFS.calls = []
    got = list(read_spans(url, kept))
    assert len(_CountingFS.calls) == 1  # nearby ranges (gaps < SPAN_GAP): one request
    assert [r.key for r, _ in got] == sorted((r.key for r in kept), key=lambda k: int(k[1:]))
    assert all(files == r.files for r, files in got)
    monkeypatch.setattr(ts, "SPAN_REQUEST", 256 << 10)  # capped requests
    _CountingFS.calls = []
    got = list(read_spans(url, kept))
    assert all(files == r.files for r, files in got)
    span = _CountingFS.calls[-1][1] - _CountingFS.calls[0][0]
    assert len(_CountingFS.calls) >= -(-span // (256 << 10)) >= 2
    assert all(e - s <= 256 << 10 for s, e in _CountingFS.calls)
    monkeypatch.setattr(ts, "SPAN_REQUEST", 64 << 20)
    far_path, far = _shard(tmp_path, 12, size=600_000)  # kept examples far apart: one request each
    url = countmem("pool/far.tar", far)
    samples = list(iter_shard(far_path, 0))
    kept = samples[::4]
    _CountingFS.calls = []
    got = list(read_spans(url, kept))
    assert all(files == r.files for r, files in got) and len(_CountingFS.calls) == len(kept) == 3
    local = list(read_spans(far_path, kept))  # local reads are unchanged
    assert [f for _, f in local] == [f for _, f in got]


def test_a_dropped_request_is_retried_without_losing_or_repeating_bytes(tmp_path, countmem, monkeypatch):
    import learnsieve.core.tar_stream as ts
    path, data = _shard(tmp_path, 40, size=500_000)
    url = countmem("pool/d.tar", data)
    expected = list(iter_shard(path, 0))
    asked = []
    real = ts.RemoteReader._fetch

    def fetch(self, n):  # the second request (mid-shard) fails once
        asked.append(self.pos)
        if len(asked) == 2:
            raise ConnectionResetError("connection reset by peer")
        return real(self, n)

    monkeypatch.setattr(ts.RemoteReader, "_fetch", fetch)
    items = list(iter_shard(url, 0))
    assert _same(items, expected)
    assert asked[:3] == [0, ts.BLOCK, ts.BLOCK]  # the retry asked again from where the lost one began


def test_persistent_or_permanent_errors_fail_the_read_after_the_retries(tmp_path, countmem):
    import learnsieve.core.tar_stream as ts
    _, data = _shard(tmp_path, 30)
    url = countmem("pool/e.tar", data)
    _CountingFS.fail = [TimeoutError("read timed out")] * (ts.RETRIES + 1)
    with pytest.raises(TimeoutError):
        list(iter_shard(url, 0))
    assert len(_CountingFS.calls) == ts.RETRIES + 1
    _CountingFS.calls, _CountingFS.fail = [], [PermissionError("403 forbidden")]
    with pytest.raises(PermissionError):
        list(iter_shard(url, 0))
    assert len(_CountingFS.calls) == 1  # not retried
    _CountingFS.calls, _CountingFS.fail = [], [ConnectionResetError("reset")]
    assert len(list(iter_shard(url, 0))) == 30 and len(_CountingFS.calls) == 2
    (item,) = list(iter_shard("countmem:///pool/none.tar", 0))
    assert item.reason == "missing_shard"


def test_local_shards_are_plain_files(tmp_path):
    import io

    from learnsieve.core.tar_stream import open_input
    path, _ = _shard(tmp_path, 2)
    with open_input(path) as f:
        assert isinstance(f, io.BufferedReader) and isinstance(f.raw, io.FileIO)
    with open_input("file://" + path) as f:
        assert isinstance(f.raw, io.FileIO)


def test_read_ends_reads_exactly_the_head_and_the_tail(tmp_path, countmem):
    from learnsieve.core.tar_stream import read_ends
    path, data = _shard(tmp_path, 40, size=100_000)  # ~4 MB
    url = countmem("pool/ends.tar", data)
    span = 1 << 20
    want = data[:span] + data[-span:]
    assert read_ends(path, len(data), span) == want == read_ends(url, len(data), span)
    assert _CountingFS.calls == [(0, span), (len(data) - span, len(data))]
    _CountingFS.calls = []
    assert read_ends(url, len(data), len(data)) == data and len(_CountingFS.calls) == 1
