"""The record module owns every serialisation of an example: a base quantity added in one place
(models/scores.py's ROLE_OUTPUTS) reaches the score file, the records, the manifest and the
output json; decisions say which stage decided; old score files are rescored, never misread."""
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch import nn

from learnsieve.core import records
from learnsieve.core.records import (
    FILTERED,
    KEPT,
    REJECTED,
    DeadLetter,
    Decoded,
    decide,
    from_score_rows,
    manifest_row,
    manifest_schema,
    output_json,
    rejected_line,
    score_file_schema,
    score_row,
    with_cluster,
)
from learnsieve.core.score_file import cache_state, read_score_file, write_score_file
from learnsieve.core.scoring import model_quantities
from learnsieve.models.judge import OUTPUTS, Judge
from learnsieve.models.scores import ROLE_OUTPUTS, base_quantities, score_names


class FixedJudge(nn.Module, Judge):
    """A judge whose outputs are a function of the image's first pixel: per-example values that
    do not depend on the batch, as the interface asks."""

    def __init__(self, offset: float):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))
        self.offset = offset

    def score_batch(self, images, targets):
        x = images[:, 0, 0, 0].float() / 255 + self.offset
        out = {name: x + i for i, name in enumerate(OUTPUTS[:-1])}
        out["image_embedding"] = torch.nn.functional.normalize(images.flatten(1)[:, :4].float() + 1, dim=-1)
        return out


def decoded(i: int) -> Decoded:
    image = np.full((3, 4, 4), 10 * i, dtype=np.uint8)
    return Decoded(key=f"k{i}", source="pool/000.tar", shard_index=0, index=i, image=image, caption=f"c{i}",
                   digest=f"d{i}", uid=f"u{i}", url=f"http://x/{i}.jpg")


def scored_rows(n=3):
    batch = [decoded(i) for i in range(n)]
    qs = model_quantities(FixedJudge(0.0), FixedJudge(0.5), batch)
    return [{**score_row(d), **q} for d, q in zip(batch, qs)] + [
        score_row(DeadLetter("bad", "pool/000.tar", "decode", "undecodable_image", "x", 0, n))]


def test_a_base_quantity_added_in_one_place_reaches_every_serialisation(tmp_path, monkeypatch):
    monkeypatch.setitem(ROLE_OUTPUTS, "ref", ROLE_OUTPUTS["ref"] + ("entropy",))
    assert "ref_entropy" in base_quantities() and "ref_entropy" in score_names()
    rows = scored_rows()
    assert all("ref_entropy" in r for r in rows[:3])  # scoring asks the judge for it
    assert "ref_entropy" in score_file_schema().names
    shard = tmp_path / "000.tar"
    shard.write_bytes(b"\0" * 1024)
    path = str(tmp_path / "_scores" / "000.parquet")
    write_score_file(path, str(shard), rows, ("r", "p"), "{}")
    back, proxy_valid = read_score_file(path, str(shard), ("r", "p"), "{}")
    assert proxy_valid and back[0]["ref_entropy"] == pytest.approx(rows[0]["ref_entropy"])
    recs = from_score_rows(back, str(shard), 0)
    assert "ref_entropy" in recs[0].scores and isinstance(recs[-1], DeadLetter)
    row = manifest_row(decide(recs[0], KEPT), "00000.tar", ("r", "p"))
    table = pa.Table.from_pylist([row], schema=manifest_schema(score_names()))
    assert table.column("ref_entropy")[0].as_py() == pytest.approx(rows[0]["ref_entropy"])
    assert "ref_entropy" in json.loads(output_json(None, recs[0], "learnability"))["learnsieve"]["scores"]


def test_score_file_round_trip_keeps_every_field_and_derives_the_same_scores(tmp_path):
    rows = scored_rows()
    rows[0]["spans"] = {"jpg": (512, 100), "txt": (1024, 5)}
    shard = tmp_path / "000.tar"
    shard.write_bytes(b"\1" * 2048)
    path = str(tmp_path / "_scores" / "000.parquet")
    write_score_file(path, str(shard), rows, ("r", "p"), "{}")
    back, _ = read_score_file(path, str(shard), ("r", "p"), "{}")
    for a, b in zip(rows, back):
        for k, v in a.items():
            assert b[k] == (pytest.approx(v) if isinstance(v, float) else v), k
    fresh, reloaded = from_score_rows(rows, "s", 0), from_score_rows(back, "s", 0)
    assert [r.scores for r in fresh[:3]] == [r.scores for r in reloaded[:3]]  # bit-identical: float32 both ways
    assert pq.read_schema(path).field("ref_loss").type == pa.float32()


def test_a_score_file_of_the_previous_format_is_rescored_not_misread(tmp_path):
    shard = tmp_path / "000.tar"
    shard.write_bytes(b"\2" * 1024)
    path = str(tmp_path / "000.parquet")
    write_score_file(path, str(shard), scored_rows(), ("r", "p"), "{}")
    assert cache_state(path, str(shard), ("r", "p"), "{}") == "both"
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    assert meta[b"format"] == records.SCORE_FILE_FORMAT.encode() == b"learnsieve-scores-v3"
    meta[b"format"] = b"learnsieve-scores-v2"
    pq.write_table(table.replace_schema_metadata(meta), path)
    assert cache_state(path, str(shard), ("r", "p"), "{}") == "none"
    assert read_score_file(path, str(shard), ("r", "p"), "{}") is None


def test_manifest_rows_name_the_stage_that_decided():
    s = from_score_rows(scored_rows(1), "s", 0)[0]
    dead = DeadLetter("bad", "s", "decode", "undecodable_image", "truncated", 0, 1, "u", None)
    rows = {
        "select": manifest_row(decide(s, FILTERED)),
        "dedup": manifest_row(records.dataclasses.replace(s, decision=FILTERED, stage="dedup",
                                                          reason="exact_duplicate")),
        "candidates": manifest_row(decide(s, FILTERED, "candidates", "not_candidate")),
        "kept": manifest_row(decide(s, KEPT), "00000.tar"),
        "dead": manifest_row(dead),
    }
    assert (rows["select"]["stage"], rows["select"]["reason"]) == ("select", None)
    assert (rows["dedup"]["stage"], rows["dedup"]["reason"]) == ("dedup", "exact_duplicate")
    assert (rows["candidates"]["stage"], rows["candidates"]["reason"]) == ("candidates", "not_candidate")
    assert rows["kept"]["output_shard"] == "00000.tar" and rows["kept"]["stage"] == "select"
    assert rows["dead"]["decision"] == REJECTED and rows["dead"]["stage"] == "decode"
    assert json.loads(rejected_line(rows["dead"])) == {"key": "bad", "source": "s", "stage": "decode",
                                                       "reason": "undecodable_image", "detail": "truncated",
                                                       "uid": "u"}
    schema = manifest_schema(score_names())
    table = pa.Table.from_pylist(list(rows.values()), schema=schema)  # every row fits the one schema
    assert table.num_rows == 5
    with pytest.raises(ValueError):
        decide(s, KEPT, "write")


def test_clusters_are_typed_fields_not_scores():
    s = with_cluster(from_score_rows(scored_rows(1), "s", 0)[0], 3, 0.25)
    assert s.cluster == 3 and "cluster" not in s.scores
    assert s.scores["proto_dist"] == 0.25 and s.scores["proto_easy"] == -0.25
    row = manifest_row(decide(s, KEPT))
    assert row["cluster"] == 3
    table = pa.Table.from_pylist([row], schema=manifest_schema(score_names() + list(records.CLUSTER_SCORES)))
    assert table.schema.field("cluster").type == pa.int64()
    assert json.loads(output_json(None, s, "proto_dist"))["learnsieve"]["cluster"] == 3


def test_scoring_refuses_a_judge_that_breaks_the_interface():
    class Broken(FixedJudge):
        def score_batch(self, images, targets):
            out = super().score_batch(images, targets)
            del out["margin"]
            return out

    with pytest.raises(TypeError, match="margin"):
        model_quantities(FixedJudge(0.0), Broken(0.0), [decoded(0)])


def test_every_model_class_is_a_judge():
    from learnsieve.models.classifier import Classifier
    from learnsieve.models.clip import DualEncoder
    from learnsieve.models.open_clip_adapter import OpenClipScorer
    assert all(issubclass(c, Judge) for c in (DualEncoder, Classifier, OpenClipScorer))
    with pytest.raises(TypeError):
        type("NoScore", (nn.Module, Judge), {})()  # a judge must say how it scores a batch
