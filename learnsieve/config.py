"""YAML config -> frozen dataclasses, with ``a.b=value`` overrides and one-line errors.

Only runner flags go through Beam's PipelineOptions; everything about what to curate is here.
"""
from __future__ import annotations

import dataclasses
import re
import reprlib
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional, Tuple

import yaml

from learnsieve.errors import LearnsieveError


class ConfigError(LearnsieveError, ValueError):
    pass


# --- bounded YAML and bounded echoes --------------------------------------------------------
# A config is a few KiB of YAML. Larger files, alias bombs (a few nested anchors expand to
# billions of nodes: "billion laughs") and recursive or deeply nested values are refused while
# the YAML is composed, before any value is built, echoed or copied.
MAX_CONFIG_BYTES = 1 << 20   # bytes of a --config file
MAX_YAML_DEPTH = 32          # nesting levels of lists and mappings (the shipped config has 2)
MAX_ALIAS_NODES = 1000       # nodes that aliases (*name) add in total once expanded


class YamlLimitError(yaml.YAMLError):
    """YAML refused for its shape (alias bomb, recursive alias, nesting): a one-line reason."""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that counts what aliases expand to, and refuses a document whose
    aliases add more than ``MAX_ALIAS_NODES`` nodes, an alias to a value that contains it, and
    nesting deeper than ``MAX_YAML_DEPTH``. (PyYAML shares an aliased node instead of copying
    it, so the bomb itself loads fast; what blows up is every later walk of the value: repr in
    an error message, validation, ``dataclasses.asdict``.)"""

    def __init__(self, stream):
        super().__init__(stream)
        self._sizes: Dict[int, int] = {}  # id(node) -> its node count with aliases expanded
        self._open: set = set()            # anchors of collections being composed
        self._added = 0                    # nodes aliases added so far
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            anchor = self.peek_event().anchor
            if anchor in self._open:
                raise YamlLimitError(f"alias *{anchor} refers to a value that contains it (a "
                                     f"recursive value); write the value out")
            node = self.anchors.get(anchor)
            if node is not None:
                self._added += self._sizes.get(id(node), 1)
                if self._added > MAX_ALIAS_NODES:
                    raise YamlLimitError(f"YAML aliases (*name) expand to more than {MAX_ALIAS_NODES:,} "
                                         f"values (an alias bomb?); write the values out")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise YamlLimitError(f"values nested deeper than {MAX_YAML_DEPTH} levels")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(c), 1) for c in children)
        return node

    def _composing(self, anchor, compose):
        if anchor is None:
            return compose(anchor)
        self._open.add(anchor)
        try:
            return compose(anchor)
        finally:
            self._open.discard(anchor)

    def compose_sequence_node(self, anchor):
        return self._composing(anchor, super().compose_sequence_node)

    def compose_mapping_node(self, anchor):
        return self._composing(anchor, super().compose_mapping_node)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with the limits above; ``YamlLimitError`` (a ``yaml.YAMLError``) when
    the text breaks one. Integers too long to convert (Python's 4300-digit limit) and similar
    construction failures become ``yaml.YAMLError`` too."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. int("9" * 5000)
        raise yaml.YAMLError(f"{type(exc).__name__}: {exc}"[:200]) from None
    finally:
        loader.dispose()


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxstring, _SHOW.maxother, _SHOW.maxlong = 3, 80, 80, 40
_SHOW.maxlist = _SHOW.maxtuple = _SHOW.maxdict = _SHOW.maxset = 6


def shown(value: Any) -> str:
    """``repr(value)`` bounded in size and depth (at most ~300 characters whatever the value):
    what config errors echo of a user's value."""
    return _SHOW.repr(value)


@dataclass(frozen=True)
class TrainConfig:
    reference_model: str = "ls_clip_lit"  # pretrained frozen towers, linear heads (README "Judges")
    proxy_model: str = "ls_clip_lit_proxy"  # heads on frozen pretrained towers: learns real photos
    reference_steps: int = 400
    proxy_steps: int = 200
    proxy_sample: int = 2000        # random sample of the noisy pool for the proxy warm-up
    batch_size: int = 64
    lr: float = 2e-3
    augment: bool = True
    seed: int = 0
    torch_threads: int = 0          # intra-op threads for training; 0 = torch's default
    num_classes: int = 10           # task classification: classes of the reference, proxy and learner
    reference_val_fraction: float = 0.1  # share of the clean images held out from the reference's
                                    # training: its checkpoint is the step with the lowest held-out
                                    # loss (early stopping); 0 = train on all, keep the last step
    proxy_val_fraction: float = 0.1  # the same for the proxy's warm-up: this share of its pool sample's
                                    # images held out, the step with the lowest held-out loss kept
    val_every: int = 25             # steps between held-out evaluations
    patience: int = 4               # early stopping: stop after this many held-out evaluations without
                                    # a lower loss (the kept step is the same); 0 = train every step
    log_seconds: float = 10.0       # a training progress line (step, loss, held-out loss, ETA) at
                                    # least this often; 0 = only every 50 steps


@dataclass(frozen=True)
class ScoreConfig:
    batch_size: int = 64
    image_size: int = 160           # decode resolution (ls_clip_lit's); towers resize if theirs differs
    max_pixels: int = 64_000_000    # decompression-bomb guard, checked from the header
    max_caption_bytes: int = 8192
    max_member_bytes: int = 64 << 20
    device: str = "auto"            # auto | cpu | cuda
    torch_threads: int = 0          # intra-op threads per scoring worker; 0 = torch's default
    precision: str = "auto"         # auto (bf16 autocast on cuda, fp32 on cpu) | fp32 | bf16
    decode_threads: int = 0         # threads decoding ahead of the model per worker; 0 = one per core
    fingerprint: str = "full"       # how a score file is matched to its input shard: full (local: a
                                    # blake2b of the whole shard; object stores: the server's
                                    # checksum) | head_tail (its first and last MiB only)


@dataclass(frozen=True)
class SelectConfig:
    score: str = "ref_sim"          # any registered score, or "prototype" (regime rule below)
    mode: str = "top_fraction"      # a learnsieve.core.modes.MODES name (top_fraction, top_k, threshold, all, ...)
    fraction: float = 0.5           # kept share (top_fraction, per_batch, per_cluster, coreset)
    k: int = 0
    threshold: float = 0.0
    ranked: bool = False            # output ordered by score, highest in the first shards
    sampling: str = "greedy"        # greedy | gumbel: sample without replacement ~ softmax(score / T)
    temperature: float = 1.0
    seed: int = 0
    batch: int = 1024               # per_batch: super-batch size, in stream order
    dedup: str = "none"             # none | exact (image bytes) | semantic (SemDeDup, implies exact)
    semdedup_eps: float = 0.05      # duplicates: cosine similarity > 1 - eps within a cluster
    clusters: int = 100             # k-means clusters on reference embeddings
    cluster_sample: int = 100000    # embeddings k-means is trained on (deterministic sample)
    prototype_regime: str = "auto"  # auto (Sorscher's rule) | easy | hard
    prototype_switch: float = 0.5   # auto: keep easy below this kept fraction, hard above
    seeds: Tuple[str, ...] = ()     # SEALS: captions describing the concept to mine; empty = off
    seeds_k: int = 50               # nearest neighbours per query and round
    seeds_rounds: int = 2           # rounds of growing the candidate pool from its new members


@dataclass(frozen=True)
class WriteConfig:
    samples_per_shard: int = 1000
    report: bool = True             # report.html in the output (learnsieve/report/html.py)
    report_scores: Tuple[str, ...] = ()  # score columns the report plots and shows; () = select.score
    report_examples: int = 8        # thumbnails per grid (top, bottom, either side of the threshold)


@dataclass(frozen=True)
class Config:
    task: str = "retrieval"         # retrieval (image-text, CLIP losses) | classification (image-label, ClassAct)
    input: Optional[str] = None     # brace pattern or glob, local or gs://
    output: Optional[str] = None
    reference: Optional[str] = None  # checkpoint directories (safetensors + config.json)
    proxy: Optional[str] = None
    max_bad_fraction: float = 0.5
    train: TrainConfig = field(default_factory=TrainConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    write: WriteConfig = field(default_factory=WriteConfig)


TASKS = ("retrieval", "classification")
FINGERPRINTS = ("full", "head_tail")  # score.fingerprint (learnsieve/core/score_file.py)
# Upper bounds of score.* values, with the reason each is refused above it (configs/default.yaml
# says the same): beyond them a run only fails later, mid-scoring, out of memory.
SCORE_LIMITS = {
    # decode_image refuses PIL's DecompressionBombWarning (above Image.MAX_IMAGE_PIXELS =
    # 89,478,485 px) as image_too_large: a larger max_pixels would not take effect
    "max_pixels": (89_478_485, "PIL's decompression-bomb limit, Image.MAX_IMAGE_PIXELS; every "
                               "image above it is refused as image_too_large anyway"),
    # a member is held in memory whole, and up to 2 x batch_size samples per worker are in flight
    "max_member_bytes": (1 << 30, "1 GiB: a member is held in memory whole; an image within "
                                  "max_pixels is smaller"),
    # every batch is padded to this shape: 4096 x 3 x 224^2 float32 is 2.5 GB of pixels
    "batch_size": (4096, "every batch is padded to this many images"),
    # 4096^2 x 3 bytes = 50 MB per decoded image, times 2 x batch_size in flight
    "image_size": (4096, "a decoded image is image_size^2 x 3 bytes, and 2 x batch_size are held"),
}
# the prototype scores (learnsieve.core.records.CLUSTER_SCORES, named here without importing the
# record module and with it torch) and "prototype", which picks one of them by regime
EXTRA_SCORES = ("prototype", "proto_dist", "proto_easy", "proto_hard")


# A number in plain or exponent notation. YAML 1.1 (PyYAML) reads 1e-3, 1E5 and -2.5e-4 as strings
# (it wants a dot and a signed exponent: 1.0e-3), so float fields accept such strings too.
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _number(value: Any, typ: Any) -> Any:
    """``value`` as ``typ`` when it is a string that spells a number the YAML reader missed: any
    number for a float field; for an int field, exponent notation with an integral value (1e3),
    never a fraction (2.5) or a decimal point without exponent (3.0)."""
    if not isinstance(value, str) or not _NUMBER.fullmatch(value.strip()):
        return value
    text = value.strip()
    if typ is float:
        return float(text)
    if typ is int and "e" in text.lower():
        number = float(text)
        if number.is_integer() and abs(number) < 2 ** 53:
            return int(number)
    return value


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(typ) if a is not type(None)]
        return _coerce(value, inner, where)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(typ, value, where + ".")
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {shown(value)}")
        return tuple(value)
    if typ in (int, float):
        value = _number(value, typ)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true/false, got {shown(value)}")
    if typ in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {shown(value)}")
    if typ in (int, float, str) and not isinstance(value, typ):
        raise ConfigError(f"{where}: expected {typ.__name__}, got {type(value).__name__} {shown(value)}")
    return value


def _build(cls, data: Dict[str, Any], prefix: str = ""):
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise ConfigError(f"unknown config key {shown(prefix + str(unknown[0]))}; known under "
                          f"{prefix.rstrip('.') or 'top level'}: {', '.join(sorted(known))}")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in data.items()})


def _apply_override(data: Dict[str, Any], override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {shown(override)} must look like section.key=value")
    path, raw = override.split("=", 1)
    parts = path.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {shown(override)}: {shown(part)} is not a section")
    try:
        node[parts[-1]] = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {shown(path.strip())}: {_yaml_problem(exc)}") from None


def validate(cfg: Config) -> Config:
    import math

    from learnsieve.models.scores import SCORERS
    for prefix, section in (("", cfg), ("train.", cfg.train), ("score.", cfg.score),
                            ("select.", cfg.select), ("write.", cfg.write)):
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{prefix}{f.name} must be a finite number, got {shown(value)}")
    s = cfg.select
    if s.score not in SCORERS and s.score not in EXTRA_SCORES:
        raise ConfigError(f"select.score: unknown score {shown(s.score)}; known: "
                          f"{', '.join(SCORERS.names() + list(EXTRA_SCORES))}")
    from learnsieve.core.modes import MODES
    if s.mode not in MODES:
        raise ConfigError(f"select.mode: {shown(s.mode)} is not one of {', '.join(MODES.names())}")
    for name, value, allowed in (("sampling", s.sampling, ("greedy", "gumbel")),
                                 ("dedup", s.dedup, ("none", "exact", "semantic")),
                                 ("prototype_regime", s.prototype_regime, ("auto", "easy", "hard"))):
        if value not in allowed:
            raise ConfigError(f"select.{name}: {shown(value)} is not one of {', '.join(allowed)}")
    if s.seeds and (s.seeds_k < 1 or s.seeds_rounds < 1):
        raise ConfigError("select.seeds_k and select.seeds_rounds must be >= 1")
    if s.temperature <= 0 or s.batch < 1 or s.clusters < 1 or s.cluster_sample < 1:
        raise ConfigError("select.temperature must be > 0 and select.batch, clusters, cluster_sample >= 1")
    if "fraction" in MODES.get(s.mode).uses and not 0.0 < s.fraction <= 1.0:
        raise ConfigError(f"select.fraction must be in (0, 1], got {s.fraction}")
    if s.mode == "top_k" and s.k < 1:
        raise ConfigError(f"select.k must be >= 1 with mode top_k, got {shown(s.k)}")
    if cfg.write.samples_per_shard < 1:
        raise ConfigError("write.samples_per_shard must be >= 1")
    for name in cfg.write.report_scores:
        if name not in SCORERS and name not in EXTRA_SCORES:
            raise ConfigError(f"write.report_scores: unknown score {shown(name)}; known: "
                              f"{', '.join(SCORERS.names() + list(EXTRA_SCORES))}")
    if not 0 <= cfg.write.report_examples <= 64:
        raise ConfigError(f"write.report_examples must be in [0, 64], got {shown(cfg.write.report_examples)}")
    if cfg.score.batch_size < 1 or cfg.train.batch_size < 2:
        raise ConfigError("score.batch_size must be >= 1 and train.batch_size >= 2")
    if not 0.0 <= cfg.train.reference_val_fraction < 1.0 or cfg.train.val_every < 1:
        raise ConfigError("train.reference_val_fraction must be in [0, 1) and train.val_every >= 1")
    if not 0.0 <= cfg.train.proxy_val_fraction < 1.0:
        raise ConfigError(f"train.proxy_val_fraction must be in [0, 1), got {cfg.train.proxy_val_fraction}")
    if cfg.train.patience < 0 or cfg.train.log_seconds < 0:
        raise ConfigError("train.patience and train.log_seconds must be >= 0")
    if not 0.0 <= cfg.max_bad_fraction <= 1.0:
        raise ConfigError(f"max_bad_fraction must be in [0, 1], got {cfg.max_bad_fraction}")
    if cfg.score.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"score.precision: {shown(cfg.score.precision)} is not one of auto, fp32, bf16")
    if cfg.score.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"score.device: {shown(cfg.score.device)} is not one of auto, cpu, cuda")
    for name in ("image_size", "max_pixels", "max_caption_bytes", "max_member_bytes"):
        if getattr(cfg.score, name) < 1:
            raise ConfigError(f"score.{name} must be >= 1, got {shown(getattr(cfg.score, name))}")
    for name, (limit, why) in SCORE_LIMITS.items():
        if getattr(cfg.score, name) > limit:
            raise ConfigError(f"score.{name} must be <= {limit:,} ({why}), got "
                              f"{shown(getattr(cfg.score, name))}")
    if cfg.score.fingerprint not in FINGERPRINTS:
        raise ConfigError(f"score.fingerprint: {shown(cfg.score.fingerprint)} is not one of "
                          f"{', '.join(FINGERPRINTS)}")
    for where, value in (("score.torch_threads", cfg.score.torch_threads),
                         ("train.torch_threads", cfg.train.torch_threads), ("select.k", s.k),
                         ("train.reference_steps", cfg.train.reference_steps),
                         ("train.proxy_steps", cfg.train.proxy_steps)):
        if value < 0:
            raise ConfigError(f"{where} must be >= 0, got {shown(value)}")
    if cfg.train.lr <= 0 or cfg.train.proxy_sample < 1:
        raise ConfigError("train.lr must be > 0 and train.proxy_sample >= 1")
    if not 0.0 < s.semdedup_eps <= 2.0 or not 0.0 <= s.prototype_switch <= 1.0:
        raise ConfigError("select.semdedup_eps must be in (0, 2] and select.prototype_switch in [0, 1]")
    if cfg.score.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise ConfigError("score.device is cuda, but torch sees no CUDA GPU here; use score.device: "
                              "auto (cuda where a GPU is present, else cpu) or cpu")
    _validate_task(cfg)
    return cfg


def _validate_task(cfg: Config) -> None:
    """task picks the model kind: registered training models must match it."""
    if cfg.task not in TASKS:
        raise ConfigError(f"task: {shown(cfg.task)} is not one of {', '.join(TASKS)}")
    from learnsieve.models.classifier import is_classifier_config
    from learnsieve.models.registry import MODELS, list_models
    want = cfg.task == "classification"
    for key in ("reference_model", "proxy_model"):
        name = getattr(cfg.train, key)
        if name in list_models() and is_classifier_config(MODELS.get(name)()) != want:
            kind = "an image classifier" if want else "an image-text model"
            fits = [n for n in list_models() if is_classifier_config(MODELS.get(n)()) == want]
            raise ConfigError(f"train.{key}: task {cfg.task} needs {kind}, not {shown(name)}; "
                              f"e.g. {', '.join(fits)}")
    if want and cfg.train.num_classes < 2:
        raise ConfigError(f"train.num_classes must be >= 2 with task classification, "
                          f"got {shown(cfg.train.num_classes)}")
    if want and cfg.select.seeds:
        raise ConfigError("select.seeds (SEALS caption queries) needs task retrieval")


def needs_clusters(s: SelectConfig) -> bool:
    from learnsieve.core.modes import MODES
    return s.score in EXTRA_SCORES or s.dedup == "semantic" or (s.mode in MODES and MODES.get(s.mode).needs_clusters)


def effective_score(s: SelectConfig) -> str:
    """The score column selection ranks by ("prototype" resolves by the data-regime rule)."""
    if s.score != "prototype":
        return s.score
    from learnsieve.models.selection import prototype_regime
    regime = s.prototype_regime if s.prototype_regime != "auto" else prototype_regime(s.fraction, s.prototype_switch)
    return f"proto_{regime}"


def load_config(path: Optional[str] = None, overrides: Iterable[str] = ()) -> Config:
    """Read YAML (or the defaults when ``path`` is None), apply overrides, validate."""
    data: Dict[str, Any] = {}
    if path:
        try:
            text = _read_config(path)
            data = load_yaml(text) or {}
        except YamlLimitError as exc:
            raise ConfigError(f"config file {path} refused: {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(exc)}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    for override in overrides:
        _apply_override(data, override)
    return validate(_build(Config, data))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The first line of a YAML error (PyYAML adds the offending text on later lines), bounded."""
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def _read_config(path: str) -> str:
    """The text of a --config file (local or gs://), at most ``MAX_CONFIG_BYTES``; one-line
    ``ConfigError`` for a folder, a missing or unreadable file, a larger file, or bytes that are
    not UTF-8."""
    import fsspec
    try:
        with fsspec.open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a YAML file: pass a file, e.g. "
                          f"configs/default.yaml") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: "
                          f"{exc.strerror or type(exc).__name__}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES >> 20} MiB: not a "
                          f"learnsieve config (the shipped one is a few KiB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}): not a YAML "
                          f"file") from None


def to_dict(cfg: Config) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)
