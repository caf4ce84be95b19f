"""Summaries of a finished run: counts, and curation quality against ground truth when known."""
from __future__ import annotations

from typing import Dict, List

import pyarrow.parquet as pq

from learnsieve.models.metrics import auroc


def quality(manifest_path: str, truth: Dict[str, str], scores: List[str]) -> dict:
    """Noise share of the pool vs the kept set, and each score's AUROC for clean vs noisy
    among scored examples (what a score can separate, whatever the selection rule)."""
    table = pq.read_table(manifest_path).to_pylist()
    noisy = lambda r: truth.get(r["key"], "clean") != "clean"  # noqa: E731
    pool = [r for r in table]
    kept = [r for r in table if r["decision"] == "kept"]
    scored = [r for r in table if r["decision"] != "rejected"]
    out = {
        "pool_noise": sum(map(noisy, pool)) / max(1, len(pool)),
        "scored_noise": sum(map(noisy, scored)) / max(1, len(scored)),
        "kept_noise": sum(map(noisy, kept)) / max(1, len(kept)),
        "rejected_noise": sum(map(noisy, [r for r in table if r["decision"] == "rejected"])) /
        max(1, len(table) - len(scored)),
        "auroc": {s: auroc([r[s] for r in scored], [not noisy(r) for r in scored]) for s in scores},
    }
    return out


def format_summary(stats: dict, q: dict | None = None) -> str:
    lines = [f"read {stats['read']}  kept {stats['kept']}  filtered {stats['filtered']}  "
             f"rejected {stats['rejected']}  (read = kept + filtered + rejected: "
             f"{stats['read'] == stats['kept'] + stats['filtered'] + stats['rejected']})",
             f"output shards {stats.get('output_shards', 0)}"]
    if stats.get("rejected_by_reason"):
        lines.append("rejected by reason: " + ", ".join(
            f"{k} {v}" for k, v in sorted(stats["rejected_by_reason"].items())))
    if "rescored_shards" in stats:
        lines.append(f"input shards {stats.get('input_shards', 0)}: scored {stats['rescored_shards']}, "
                     f"{stats.get('input_shards', 0) - stats['rescored_shards']} reused from score files")
    if stats.get("counters"):
        lines.append("counters: " + ", ".join(f"{k} {v}" for k, v in stats["counters"].items()))
    if q:
        lines.append(f"noisy share: pool {q['pool_noise']:.1%} -> after rejecting bad records "
                     f"{q['scored_noise']:.1%} -> kept {q['kept_noise']:.1%}")
        lines.append("AUROC clean vs noisy (scored examples): " + ", ".join(
            f"{k} {v:.3f}" for k, v in q["auroc"].items()))
    return "\n".join(lines)
