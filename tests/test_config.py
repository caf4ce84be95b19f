import pytest

from learnsieve.config import Config, ConfigError, load_config

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_defaults_are_frozen_and_valid():
    cfg = load_config()
    assert isinstance(cfg, Config) and cfg.select.score == "learnability"
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
