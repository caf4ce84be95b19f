import json

from learnsieve.core.layout import final_names, plan_groups, rank_bucket
from learnsieve.core.records import Scored, output_json


def test_plan_groups_packs_consecutive_shards_to_size():
    plan = plan_groups({0: 40, 1: 40, 2: 40, 3: 0, 4: 100, 5: 10}, 100)
    assert plan == {0: 0, 1: 0, 2: 0, 4: 1, 5: 2}
    assert plan_groups({}, 10) == {}
    assert plan_groups({3: 500}, 100) == {3: 0}


def test_rank_bucket_orders_high_scores_first():
    quantiles = [i / 100 for i in range(101)]  # uniform scores in [0, 1]
    assert rank_bucket(0.99, quantiles, 1000, 100) == 0
    assert rank_bucket(0.01, quantiles, 1000, 100) == 9
    assert rank_bucket(0.55, quantiles, 1000, 100) == 4
    assert rank_bucket(0.3, quantiles, 50, 100) == 0  # fits one shard


def test_final_names_are_sequential_in_provisional_order():
    assert final_names(["g000001-00000.tar", "g000000-00001.tar", "g000000-00000.tar"]) == {
        "g000000-00000.tar": "00000.tar", "g000000-00001.tar": "00001.tar", "g000001-00000.tar": "00002.tar"}


def test_output_json_keeps_original_fields():
    s = Scored("k", "src.tar", 0, 3, {"learnability": 1.5, "ref_loss": 0.2})
    out = json.loads(output_json(json.dumps({"url": "http://x", "caption": "c"}).encode(), s, "learnability"))
    assert out["url"] == "http://x" and out["learnsieve"]["value"] == 1.5
    assert json.loads(output_json(b"{broken", s, "learnability"))["original_json_invalid"] is True
    assert "learnsieve" in json.loads(output_json(None, s, "learnability"))
