"""The text summary of a finished run: counts, reasons, counters, and (with ground truth, from
learnsieve/evaluate/ground_truth.py ``judge``) how much cleaner the kept set is."""
from __future__ import annotations


def format_summary(stats: dict, q: dict | None = None) -> str:
    lines = [f"read {stats['read']}  kept {stats['kept']}  filtered {stats['filtered']}  "
             f"rejected {stats['rejected']}  (read = kept + filtered + rejected: "
             f"{stats['read'] == stats['kept'] + stats['filtered'] + stats['rejected']})",
             f"output shards {stats.get('output_shards', 0)}"]
    if stats.get("rejected_by_reason"):
        lines.append("rejected by reason: " + ", ".join(
            f"{k} {v}" for k, v in sorted(stats["rejected_by_reason"].items())))
    if "rescored_shards" in stats:
        proxy_only = stats.get("counters", {}).get("score/shards_proxy_only", 0)
        how = f" ({proxy_only} by the proxy alone, reusing the reference's scores)" if proxy_only else ""
        lines.append(f"input shards {stats.get('input_shards', 0)}: scored {stats['rescored_shards']}{how}, "
                     f"{stats.get('input_shards', 0) - stats['rescored_shards']} reused from score files")
    if stats.get("counters"):
        lines.append("counters: " + ", ".join(f"{k} {v}" for k, v in stats["counters"].items()))
    if q:
        lines.append(f"noisy share: pool {q['pool_noise']:.1%} -> after rejecting bad records "
                     f"{q['scored_noise']:.1%} -> kept {q['kept_noise']:.1%}")
        lines.append("AUROC clean vs noisy (scored examples): " + ", ".join(
            f"{k} {v:.3f}" for k, v in q["auroc"].items()))
    return "\n".join(lines)
