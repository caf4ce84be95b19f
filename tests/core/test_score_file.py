"""Score files keep each model's part apart: a new proxy leaves the reference part valid."""
from learnsieve.core.score_file import cache_state, read_score_file, write_score_file
from tests.conftest import good_example, write_tar


def test_reference_part_stays_valid_under_a_new_proxy(tmp_path):
    img, cap = good_example(0)
    shard = str(tmp_path / "s.tar")
    write_tar(shard, [("a.jpg", img), ("a.txt", cap)])
    path = str(tmp_path / "_scores" / "s.parquet")
    rows = [{"key": "a", "index": 0, "ref_loss": 1.0, "ref_sim": 0.5, "proxy_loss": 2.0, "proxy_sim": 0.1,
             "proxy_entropy": 3.0, "proxy_margin": 0.2, "proxy_least_confidence": 0.4, "embedding": b"\0\0",
             "spans": {"jpg": (512, 10)}},
            {"key": "b", "index": 1, "stage": "decode", "reason": "empty_caption"}]
    write_score_file(path, shard, rows, ("ref", "p1"), "settings")
    assert cache_state(path, shard, ("ref", "p1"), "settings") == "both"
    assert cache_state(path, shard, ("ref", "p2"), "settings") == "reference"
    assert cache_state(path, shard, ("other", "p1"), "settings") == "none"
    assert cache_state(path, shard, ("ref", "p1"), "other settings") == "none"
    back, proxy_ok = read_score_file(path, shard, ("ref", "p2"), "settings")
    assert not proxy_ok and back[0]["spans"] == {"jpg": (512, 10)} and back[1]["reason"] == "empty_caption"
    assert back[0]["ref_loss"] == 1.0 and back[0]["embedding"] == b"\0\0"

