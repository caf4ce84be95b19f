import json
import shutil
import subprocess
import tarfile

import pytest
import webdataset as wds

from learnsieve.core.paths import InputError, expand_pattern
from learnsieve.core.records import DeadLetter, Sample
from learnsieve.core.tar import iter_shard, split_member
from learnsieve.core.tar_write import TarSink
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


def _six(tmp_path, name="six.tar", n=6):
    """A shard of n jpg+txt samples; (path, bytes, member offsets by name)."""
    img, cap = good_example()
    path = tmp_path / name
    write_tar(str(path), [m for i in range(n) for m in ((f"k{i}.jpg", img + bytes([i])), (f"k{i}.txt", cap))])
    with tarfile.open(path) as t:
        offsets = {m.name: m.offset for m in t.getmembers()}
    return path, path.read_bytes(), offsets


def _summary(items):
    return [(i.key, "sample") if isinstance(i, Sample) else (i.key, i.reason) for i in items]


def test_bad_header_mid_shard_resumes_at_the_next_header(tmp_path):
    path, data, off = _six(tmp_path)
    raw = bytearray(data)
    raw[off["k2.jpg"]:off["k2.jpg"] + 512] = b"\xee" * 512  # header overwritten: no legible name
    path.write_bytes(bytes(raw))
    items = _items(str(path))
    assert _summary(items) == [("k0", "sample"), ("k1", "sample"), (None, "bad_header"),
                               ("k2", "sample"), ("k3", "sample"), ("k4", "sample"), ("k5", "sample")]
    bad = items[2]
    assert bad.stage == "read" and f"at byte {off['k2.jpg']}" in bad.detail
    assert f"next header at byte {off['k2.txt']}" in bad.detail
    assert set(items[3].files) == {"txt"}  # k2 lost its image: decode names it missing_image
    assert [i.index for i in items] == list(range(7))


def test_bad_checksum_with_legible_name_names_its_sample(tmp_path):
    path, data, off = _six(tmp_path)
    raw = bytearray(data)
    raw[off["k3.jpg"] + 140] ^= 0x01  # a flipped bit in mtime: checksum mismatch, name intact
    path.write_bytes(bytes(raw))
    items = _items(str(path))
    assert _summary(items) == [("k0", "sample"), ("k1", "sample"), ("k2", "sample"),
                               ("k3", "bad_header"), ("k4", "sample"), ("k5", "sample")]
    assert "checksum" in items[3].detail
    assert all(it.files == {"jpg": good_example()[0] + bytes([int(it.key[1])]), "txt": good_example()[1]}
               for it in items if isinstance(it, Sample))


def test_cut_inside_a_header_or_data_is_truncated_tar_with_the_member_count(tmp_path):
    path, data, off = _six(tmp_path)
    path.write_bytes(data[:off["k4.jpg"] + 100])  # inside the header of k4.jpg
    items = _items(str(path))
    assert _summary(items)[:3] == [("k0", "sample"), ("k1", "sample"), ("k2", "sample")]
    assert _summary(items)[3:] == [("k3", "truncated_tar")]  # k3 may have had more members
    assert "8 members read" in items[-1].detail and "header" in items[-1].detail
    path.write_bytes(data[:off["k4.txt"] + 600])  # inside the data of k4.txt
    items = _items(str(path))
    assert _summary(items) == [(f"k{i}", "sample") for i in range(4)] + [("k4", "truncated_tar")]
    assert "member data" in items[-1].detail


def test_clean_cut_at_a_member_boundary_is_missing_end_of_archive(tmp_path):
    path, data, off = _six(tmp_path)
    path.write_bytes(data[:off["k4.jpg"]])
    items = _items(str(path))
    assert _summary(items) == [(f"k{i}", "sample") for i in range(4)] + [(None, "missing_end_of_archive")]
    assert "8 members" in items[-1].detail
    path.write_bytes(data[:off["k4.jpg"]] + bytes(512))  # one zero block: tarfile's end, accepted
    assert _summary(_items(str(path))) == [(f"k{i}", "sample") for i in range(4)]


def test_every_damage_is_named_and_no_sample_has_foreign_bytes(tmp_path):
    """Cuts at many offsets and a flipped byte in every header field: iter_shard never raises,
    every damaged shard yields a dead letter, and no sample holds bytes it did not have."""
    path, data, off = _six(tmp_path, n=3)
    with tarfile.open(path) as t:
        truth = {}
        for m in t.getmembers():
            k, e = split_member(m.name)
            truth.setdefault(k, {})[e] = t.extractfile(m).read()
    damaged = [data[:n] for n in range(0, off["k2.txt"] + 1200, 61)]
    for start in off.values():
        for pos in range(0, 512, 7):
            raw = bytearray(data)
            raw[start + pos] ^= 0x5A
            damaged.append(bytes(raw))
    for raw in damaged:
        path.write_bytes(raw)
        items = _items(str(path))
        assert any(isinstance(i, DeadLetter) for i in items) or raw == data[:len(raw)] and \
            len(raw) >= off["k2.txt"] + 1024
        for s in (i for i in items if isinstance(i, Sample)):
            assert s.key in truth and all(truth[s.key][e] == b for e, b in s.files.items())


def test_formats_real_shards_use(tmp_path):
    """ustar with a prefix, GNU long names, pax long names and a global pax header, directories,
    links and extension-less members: the samples tarfile (and webdataset) would see."""
    import io

    from learnsieve.core.tar import read_spans
    img, cap = good_example()
    long_dir = "d" * 120
    members = [("plain.jpg", img), ("plain.txt", cap), (f"{long_dir}/deep.jpg", img),
               (f"{long_dir}/deep.txt", cap), ("__len__", b"2"), ("x" * 150 + ".txt", cap)]
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        path = tmp_path / f"f{fmt}.tar"
        kw = {"pax_headers": {"comment": "global"}} if fmt == tarfile.PAX_FORMAT else {}
        with tarfile.open(path, "w", format=fmt, **kw) as t:
            d = tarfile.TarInfo("adir")
            d.type = tarfile.DIRTYPE
            t.addfile(d)
            ln = tarfile.TarInfo("link.jpg")
            ln.type, ln.linkname = tarfile.SYMTYPE, "plain.jpg"
            t.addfile(ln)
            for name, data in members:
                if fmt == tarfile.USTAR_FORMAT and name.startswith("x"):
                    continue  # too long for ustar
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        items = _items(str(path))
        want = ["plain", f"{long_dir}/deep"] + ([] if fmt == tarfile.USTAR_FORMAT else ["x" * 150])
        assert [i.key for i in items] == want and all(isinstance(i, Sample) for i in items), fmt
        assert items[1].files == {"jpg": img, "txt": cap}
        assert [f for _, f in read_spans(str(path), items)] == [i.files for i in items]


def test_pax_size_and_path_override_the_ustar_fields(tmp_path):
    from learnsieve.core.tar_write import tar_header
    img, cap = good_example()
    pax = tarfile.TarInfo._create_pax_generic_header({"path": "renamed.txt", "size": str(len(cap))},
                                                     tarfile.XHDTYPE, "utf-8")
    raw = (tar_header("renamed.jpg", len(img)) + img + bytes(-len(img) % 512)
           + pax + tar_header("short.txt", 0) + cap + bytes(-len(cap) % 512) + bytes(1024))
    (tmp_path / "p.tar").write_bytes(raw)
    with tarfile.open(tmp_path / "p.tar") as t:
        assert [m.name for m in t.getmembers()] == ["renamed.jpg", "renamed.txt"]
    (s,) = _items(str(tmp_path / "p.tar"))
    assert s.key == "renamed" and s.files == {"jpg": img, "txt": cap}
    records = b"99 path=x.txt\n"  # a record length past the end
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, len(records)
    bad = info.tobuf(tarfile.USTAR_FORMAT) + records + bytes(-len(records) % 512)
    (tmp_path / "b.tar").write_bytes(bad + tar_header("ok.txt", len(cap)) + cap + bytes(-len(cap) % 512)
                                     + bytes(1024))
    assert _summary(_items(str(tmp_path / "b.tar"))) == [(None, "bad_header"), ("ok", "sample")]
    sparse = tarfile.TarInfo._create_pax_generic_header({"GNU.sparse.major": "1"}, tarfile.XHDTYPE, "utf-8")
    (tmp_path / "s.tar").write_bytes(sparse + tar_header("sp.jpg", 5) + b"12345" + bytes(507)
                                     + tar_header("ok.txt", 1) + b"c" + bytes(511) + bytes(1024))
    assert _summary(_items(str(tmp_path / "s.tar"))) == [("sp", "unsupported_member"), ("ok", "sample")]


@pytest.mark.skipif(not shutil.which("tar"), reason="needs GNU tar")
@pytest.mark.parametrize("fmt", ["gnu", "posix", "ustar", "v7"])
def test_gnu_tar_archives(tmp_path, fmt):
    img, cap = good_example()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    names = ["a.jpg", "a.txt", "sub/b.jpg", "sub/b.txt"]
    for n in names:
        (src / n).write_bytes(img if n.endswith("jpg") else cap)
    subprocess.run(["tar", f"--format={fmt}", "-cf", str(tmp_path / "g.tar"), "-C", str(src), *names],
                   check=True)
    items = _items(str(tmp_path / "g.tar"))
    assert [(i.key, i.files) for i in items] == [("a", {"jpg": img, "txt": cap}), ("sub/b", {"jpg": img, "txt": cap})]


@pytest.mark.skipif(not shutil.which("tar"), reason="needs GNU tar")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_members_are_named_and_the_stream_stays_aligned(tmp_path, fmt):
    with open(tmp_path / "s.jpg", "wb") as f:  # 8 data runs: old GNU sparse needs extension blocks
        for i in range(8):
            f.seek(i * 65536)
            f.write(b"data%d" % i * 100)
        f.truncate(8 * 65536 + 1000)
    for name, data in (("s.txt", b"c"), ("t.jpg", b"img"), ("t.txt", b"cap")):
        (tmp_path / name).write_bytes(data)
    subprocess.run(["tar", "--sparse", f"--format={fmt}", "-cf", "x.tar", "s.jpg", "s.txt", "t.jpg", "t.txt"],
                   cwd=tmp_path, check=True)
    items = _items(str(tmp_path / "x.tar"))
    assert _summary(items) == [("s", "unsupported_member"), ("t", "sample")]
    assert items[1].files == {"jpg": b"img", "txt": b"cap"}


@pytest.mark.skipif(not shutil.which("tar"), reason="needs GNU tar")
def test_recovers_what_gnu_tar_recovers(tmp_path):
    path, data, off = _six(tmp_path)
    raw = bytearray(data)
    raw[off["k1.txt"]:off["k1.txt"] + 512] = b"\x01" * 512
    raw[off["k4.jpg"] + 150] ^= 0x7
    path.write_bytes(bytes(raw))
    listed = subprocess.run(["tar", "-tf", str(path)], capture_output=True, text=True, check=False).stdout.split()
    got = [f"{i.key}.{e}" for i in _items(str(path)) if isinstance(i, Sample) for e in i.files]
    assert set(got) <= set(listed) and {"k0.jpg", "k5.txt", "k2.jpg"} <= set(got)


def test_concatenated_tars_and_trailing_zeros(tmp_path):
    path, data, _ = _six(tmp_path, n=2)
    _, data2, off2 = _six(tmp_path, "other.tar", n=4)
    path.write_bytes(data + data2[off2["k2.jpg"]:])  # a second archive after the first one's end
    assert _summary(_items(str(path))) == [(f"k{i}", "sample") for i in range(4)]
    path.write_bytes(data + b"trailing junk".ljust(512, b"\0"))
    assert _summary(_items(str(path))) == [("k0", "sample"), ("k1", "sample"), (None, "bad_header")]


def test_duplicates_in_any_member_order(tmp_path):
    img, cap = good_example()
    img2, cap2 = good_example(4)
    write_tar(str(tmp_path / "d.tar"), [
        ("a.jpg", img), ("a.txt", cap), ("a.jpg", img2), ("a.txt", cap2),   # adjacent repeat
        ("b.jpg", img), ("b.png", img),  ("b.txt", cap),                    # two images
        ("c.jpg", img), ("c.jpg", img2), ("c.txt", cap),                    # repeated member
        ("e.jpg", img), ("e.txt", cap), ("e.json", b"{}"), ("e.jpg", img2), ("e.txt", cap2), ("e.json", b"{}"),
        ("f.jpg", img), ("f.txt", cap)])
    items = _items(str(tmp_path / "d.tar"))
    assert _summary(items) == [("a", "sample"), ("a", "duplicate_key"), ("b", "multiple_images"),
                               ("c", "duplicate_member"), ("e", "sample"), ("e", "duplicate_key"),
                               ("f", "sample")]
    assert items[0].files == {"jpg": img, "txt": cap}  # the first stays, never replaced


def test_unsafe_keys_in_every_spelling(tmp_path):
    from learnsieve.core.tar import unsafe_key
    from learnsieve.core.tar_write import tar_header
    img, cap = good_example()
    names = ["..\\w", "/abs", "C:x", "C:\\x", "c:/y", "a/../../b", "nul\x00byte"]
    members = []
    for n in names:
        members += [(f"{n}.jpg", img), (f"{n}.txt", cap)]
    members.append(("fine.jpg", img))
    raw = b""
    for name, data in members:
        if "\x00" in name:  # only a pax path can carry a NUL
            raw += tarfile.TarInfo._create_pax_generic_header({"path": name}, tarfile.XHDTYPE, "utf-8")
        raw += tar_header(name.replace("\x00", "_"), len(data)) + data + bytes(-len(data) % 512)
    (tmp_path / "u.tar").write_bytes(raw + bytes(1024))
    assert _summary(_items(str(tmp_path / "u.tar"))) == [(n, "unsafe_key") for n in names] + [("fine", "sample")]
    assert not unsafe_key("dir/sub") and not unsafe_key("a..b") and not unsafe_key("000001")
