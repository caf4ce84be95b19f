import pytest

from learnsieve.config import Config, ConfigError, load_config

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_defaults_are_frozen_and_valid():
    cfg = load_config()
    assert isinstance(cfg, Config) and cfg.select.score == "ref_sim"
    with pytest.raises(Exception):
        cfg.select.fraction = 0.1  # frozen


@pytest.mark.parametrize("name", ["default.yaml", "demo.yaml"])
def test_shipped_configs_load(name):
    load_config(str(ROOT / "configs" / name))


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("select:\n  fraction: 0.25\n  score: ref_sim\nwrite:\n  samples_per_shard: 7\n")
    cfg = load_config(str(p), ["select.mode=top_k", "select.k=3", "input=/data/{0..2}.tar"])
    assert (cfg.select.fraction, cfg.select.score, cfg.select.mode, cfg.select.k) == (0.25, "ref_sim", "top_k", 3)
    assert cfg.write.samples_per_shard == 7 and cfg.input == "/data/{0..2}.tar"


@pytest.mark.parametrize("overrides,match", [
    (["select.fracton=0.3"], "unknown config key 'select.fracton'"),
    (["bogus=1"], "unknown config key 'bogus'"),
    (["select.fraction=abc"], "select.fraction: expected float"),
    (["write.samples_per_shard=1.5"], "expected int"),
    (["train.augment=maybe"], "expected true/false"),
    (["select.score=nonsense"], "unknown score 'nonsense'"),
    (["select.mode=random"], "select.mode"),
    (["select.fraction=1.5"], r"select.fraction must be in \(0, 1\]"),
    (["select.mode=top_k"], "select.k must be >= 1"),
    (["noequals"], "section.key=value"),
])
def test_bad_values_fail_with_one_line(overrides, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("select: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(bad))


@pytest.mark.parametrize("override,key,value", [
    ("train.lr=1e-3", ("train", "lr"), 1e-3),          # YAML 1.1 reads these as strings
    ("train.lr=1E5", ("train", "lr"), 1e5),
    ("select.threshold=-2.5e-4", ("select", "threshold"), -2.5e-4),
    ("select.fraction=.25", ("select", "fraction"), 0.25),
    ("select.fraction=1", ("select", "fraction"), 1.0),
    ("select.cluster_sample=1e5", ("select", "cluster_sample"), 100000),  # integral: an int
    ("select.k=2E1", ("select", "k"), 20),
])
def test_numbers_in_exponent_notation(override, key, value):
    cfg = load_config(None, [override, "select.mode=top_k", "select.k=1"] if key[1] != "k"
                      else ["select.mode=top_k", override])
    got = getattr(getattr(cfg, key[0]), key[1])
    assert got == value and type(got) is type(value)


def test_exponent_notation_in_a_config_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lr: 3e-4\nselect:\n  cluster_sample: 2e4\n")
    cfg = load_config(str(p))
    assert cfg.train.lr == 3e-4 and cfg.select.cluster_sample == 20000


@pytest.mark.parametrize("override,match", [
    ("select.k=2.5e0", "select.k: expected int, got str '2.5e0'"),  # not integral
    ("select.k=3.0", "select.k: expected int, got float"),
    ("train.lr=1e-3x", "train.lr: expected float, got str"),
    ("score.device=1e3", "score.device"),  # a str field stays a string (and is validated)
])
def test_exponent_notation_is_no_loophole(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, [override])


def test_extra_scores_are_the_record_modules_cluster_scores():
    from learnsieve.config import EXTRA_SCORES
    from learnsieve.core.records import CLUSTER_SCORES
    assert EXTRA_SCORES == ("prototype",) + CLUSTER_SCORES
