"""datasets.redundant on a tiny fake CIFAR-10 folder: exact shares, near-duplicates that are not
byte copies, one caption per duplicated picture, and clean captions everywhere."""
from __future__ import annotations

import collections
import json

import pytest

from learnsieve.datasets.cifar import CLASSES, SYNONYMS
from learnsieve.datasets.redundant import build_redundant
from tests.datasets.test_cifar import _members, fake_cifar  # noqa: F401 (fixture)


def test_redundant_pool_has_exact_shares_and_clean_captions(fake_cifar, tmp_path):  # noqa: F811
    out = build_redundant(fake_cifar, str(tmp_path / "r"), seed=1, n_ref=40, n_pool=60, n_test=20,
                          dup_share=0.3, dup_sources=5, frequent_share=0.5, frequent_class="ship",
                          shards=3, ref_shards=2, test_shards=1)
    comp = out["composition"]
    assert collections.Counter(comp.values()) == {"duplicate": 18, "frequent": 21, "unique": 21}
    pool = _members(out["pool_pattern"])
    assert len(pool) == 4 * 60
    labels = {k: int(pool[f"{k}.cls"]) for k in comp}
    assert {labels[k] for k, kind in comp.items() if kind == "frequent"} == {CLASSES.index("ship")}
    assert CLASSES.index("ship") not in {labels[k] for k, kind in comp.items() if kind == "unique"}
    for k in comp:  # every caption names its image's class: no noise
        text = pool[f"{k}.txt"].decode()
        assert any(s in text for s in SYNONYMS[CLASSES[labels[k]]]), text
    dups = [k for k, kind in comp.items() if kind == "duplicate"]
    assert len({pool[f"{k}.txt"] for k in dups}) <= 5  # a re-post keeps its source's caption
    assert len({pool[f"{k}.jpg"] for k in dups}) > 5  # ... but its bytes differ (re-encoded)
    ref, test = _members(out["clean_pattern"]), _members(out["test_pattern"])
    assert len(ref) == 4 * 40 and len(test) == 4 * 20
    assert not {v for n, v in ref.items() if n.endswith(".jpg")} & {v for n, v in pool.items() if n.endswith(".jpg")}
    truth = json.loads((tmp_path / "r" / "truth.json").read_text())
    assert set(truth.values()) == {"clean"} and set(truth) == set(comp)


def test_redundant_pool_too_large_is_a_clear_error(fake_cifar, tmp_path):  # noqa: F811
    with pytest.raises(ValueError, match="too few images"):
        build_redundant(fake_cifar, str(tmp_path / "r"), n_ref=40, n_pool=250, n_test=10,
                        frequent_share=0.5)
    with pytest.raises(ValueError, match="frequent_class"):
        build_redundant(fake_cifar, str(tmp_path / "r"), frequent_class="unicorn")
