"""Pure helpers that decide where kept examples go: shard packing, ranked buckets, names."""
from __future__ import annotations

import bisect
import json
import re
from typing import Dict, Sequence

# Names inside an output folder that learnsieve writes (besides NNNNN.tar and NNNNN_stats.json)
TMP = "_tmp"                  # shards being written, renamed when complete
MANIFEST_PARTS = "_manifest"  # per-input-shard manifest parts, merged into manifest.parquet
WIDS_INDEX = "shardindex.json"  # wids (webdataset's indexed reader) shard index, beside sizes.json
DATASET_CARD = "README.md"      # Hugging Face dataset card: `datasets.load_dataset(folder)` reads *.tar
REPORT = "report.html"          # the run's self-contained report (learnsieve/report/html.py)
CARD_MARK = ("<!-- written by learnsieve: rewritten by every run into this folder; "
             "remove this line to keep your edits -->")


def wids_index(shards: Dict[str, int], filesizes: Dict[str, int]) -> dict:
    """The wids shard index (``wids-shard-index-v1``) of the output shards: urls relative to the
    index, which ``wids.ShardListDataset(".../shardindex.json")`` resolves against its folder."""
    return {"__kind__": "wids-shard-index-v1", "wids_version": 1,
            "shardlist": [{"url": name, "nsamples": n, "filesize": filesizes[name]}
                          for name, n in sorted(shards.items())]}


def dataset_card(run_id: str = "default", shards: Sequence[str] = ()) -> str:
    """A Hugging Face dataset card whose ``configs`` name the output shards, one by one, as the
    data, so that HF's folder loader reads exactly learnsieve's tars: never the json/parquet side
    outputs, and never a tar of the user's that shares the folder (a ``*.tar`` glob would load it
    too). Shard names are literal (``00000.tar``), with no glob characters.
    The config is named after the output (``run_id``): HF caches a local folder's dataset by its
    folder name and config, so two outputs both called ``curated/`` would otherwise share a
    cache entry and the second would load the first one's examples."""
    names = sorted(shards)
    if any(not re.fullmatch(r"[0-9A-Za-z_.-]+\.tar", n) for n in names):
        raise ValueError(f"dataset card: shard names must be plain file names, got {names[:3]}")
    paths = "".join(f"    - {json.dumps(n)}\n" for n in names) if names else "    - \"*.tar\"\n"
    return (f"---\nconfigs:\n- config_name: learnsieve-{run_id}\n  data_files:\n  - split: train\n"
            "    path:\n" + paths + "---\n" + CARD_MARK + "\n\n"
            "# Curated WebDataset shards (learnsieve)\n\n"
            f"{len(names)} shard(s): `NNNNN.tar`, the kept examples' original bytes, `KEY.json` with "
            "learnsieve's scores. Side outputs (not data): `sizes.json`, `NNNNN_stats.json`, "
            "`shardindex.json` (wids), `manifest.parquet` (a row per input example), `rejected/`, "
            "`stats.json`, `report.html`, `_scores/`. Other files in this folder are not part of the "
            "dataset.\n")


def plan_groups(kept_per_shard: Dict[int, int], samples_per_shard: int) -> Dict[int, int]:
    """Pack consecutive input shards into write groups of about ``samples_per_shard`` kept
    examples, so output shards are full-sized and stream order is preserved. Deterministic."""
    plan: Dict[int, int] = {}
    group, filled = 0, 0
    for shard in sorted(kept_per_shard):
        if kept_per_shard[shard] <= 0:
            continue
        if filled >= samples_per_shard:
            group, filled = group + 1, 0
        plan[shard] = group
        filled += kept_per_shard[shard]
    return plan


def rank_bucket(score: float, quantiles: Sequence[float], kept_total: int, samples_per_shard: int) -> int:
    """Output shard (0 = highest scores) of a kept example in ranked mode, from the global
    quantiles of kept scores: its approximate rank from the top, divided by the shard size."""
    if kept_total <= samples_per_shard or len(quantiles) < 2:
        return 0
    below = bisect.bisect_left(quantiles, score) / (len(quantiles) - 1)
    rank = (1.0 - below) * kept_total
    buckets = -(-kept_total // samples_per_shard)
    return min(buckets - 1, max(0, int(rank // samples_per_shard)))


def group_shard_name(group: int, chunk: int) -> str:
    return f"g{group:06d}-{chunk:05d}.tar"


def output_shard_name(i: int, total: int) -> str:
    """The ``i``-th of ``total`` output shards: ``00000.tar`` ... (wider past 100,000 shards)."""
    width = max(5, len(str(max(0, total - 1))))
    return f"{i:0{width}d}.tar"


def final_names(provisional: Sequence[str]) -> Dict[str, str]:
    """Provisional names (which sort in output order) -> ``00000.tar``, ``00001.tar``, ..."""
    return {p: output_shard_name(i, len(provisional)) for i, p in enumerate(sorted(provisional))}
