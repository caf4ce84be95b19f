"""The dataset card names the output shards one by one (issue 22): a tar of the user's that
shares the folder is never part of what ``datasets.load_dataset(folder)`` returns."""
import fsspec
import pytest
import yaml

from learnsieve.core.finalize import write_loader_files
from learnsieve.core.layout import dataset_card
from learnsieve.core.tar_write import TarSink
from tests.conftest import good_example


def test_the_card_lists_exactly_the_shards_never_a_glob():
    card = dataset_card("abc", ["00001.tar", "00000.tar"])
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": ["00000.tar", "00001.tar"]}]
    assert "*" not in card.split("---\n")[1]
    with pytest.raises(ValueError):
        dataset_card("abc", ["*.tar"])


def test_load_dataset_reads_only_learnsieves_shards_beside_a_users_tar(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    img, cap = good_example(0)
    root = tmp_path / "curated"
    root.mkdir()
    for name, n, prefix in (("00000.tar", 2, "a"), ("00001.tar", 1, "b"), ("old.tar", 5, "user")):
        sink = TarSink(str(root / name))
        for i in range(n):
            sink.write(f"{prefix}{i}", {"jpg": img, "txt": cap})
        sink.close()
    write_loader_files(fsspec.filesystem("file"), str(root), {"00000.tar": 2, "00001.tar": 1})
    ds = datasets.load_dataset(str(root), split="train", cache_dir=str(tmp_path / "hf"))
    assert sorted(ds["__key__"]) == ["a0", "a1", "b0"]
