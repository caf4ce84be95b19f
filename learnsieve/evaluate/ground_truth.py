"""How well each score separates true from noisy examples, where ground truth is known.

Reads a curation's ``manifest.parquet`` (every read example with its decision and every score)
and a ``{key: kind}`` truth file (``clean`` or a noise kind, as the benchmark builders write).
Rejected records are left out: they never reach a score, and they are counted separately.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Sequence

import pyarrow.parquet as pq

from learnsieve.models.metrics import auroc
from learnsieve.models.scores import SCORERS


def load_truth(path: str) -> Dict[str, str]:
    with open(path) as f:
        truth = json.load(f)
    if not isinstance(truth, dict):
        raise ValueError(f"{path}: expected a JSON object {{key: kind}}")
    return {str(k): str(v) for k, v in truth.items()}


def score_columns(rows: Sequence[dict], names: Optional[Sequence[str]] = None) -> List[str]:
    names = list(names) if names else SCORERS.names()
    return [n for n in names if rows and n in rows[0]]


def judge(manifest: str, truth: Dict[str, str], scores: Optional[Sequence[str]] = None,
          unknown_clean: bool = False) -> dict:
    """AUROC of each score for clean vs noisy (all noise kinds, and each kind), the noisy share of
    the pool / the records that reached scoring / the kept set, and the raw score values by kind
    (for histograms). Keys missing from ``truth`` are an error, or clean with ``unknown_clean``."""
    rows = pq.read_table(manifest).to_pylist()
    unknown = [r["key"] for r in rows if r["key"] not in truth]
    if unknown and not unknown_clean:
        raise ValueError(f"{len(unknown)} manifest keys are not in the truth file, e.g. {unknown[0]!r}")
    if unknown:
        truth = {**{k: "clean" for k in unknown}, **truth}
    scored = [r for r in rows if r["decision"] != "rejected"]
    kept = [r for r in rows if r["decision"] == "kept"]
    kinds = sorted({truth[r["key"]] for r in scored} - {"clean"})
    names = score_columns(scored, scores)
    clean = [truth[r["key"]] == "clean" for r in scored]

    def share(rs, pred):
        return sum(1 for r in rs if pred(truth[r["key"]])) / max(1, len(rs))

    out = {
        "examples": len(rows), "scored": len(scored), "kept": len(kept),
        "noise_kinds": kinds,
        "pool_noise": share(rows, lambda k: k != "clean"),
        "scored_noise": share(scored, lambda k: k != "clean"),
        "rejected_noise": share([r for r in rows if r["decision"] == "rejected"], lambda k: k != "clean"),
        "kept_noise": share(kept, lambda k: k != "clean"),
        "kept_noise_by_kind": {k: share(kept, lambda v, k=k: v == k) for k in kinds},
        "pool_noise_by_kind": {k: share(rows, lambda v, k=k: v == k) for k in kinds},
        "auroc": {n: auroc([r[n] for r in scored], clean) for n in names},
        "auroc_by_kind": {},
        "values": {n: {kind: [r[n] for r in scored if truth[r["key"]] == kind]
                       for kind in ["clean"] + kinds} for n in names},
    }
    for kind in kinds:
        sub = [r for r in scored if truth[r["key"]] in ("clean", kind)]
        pos = [truth[r["key"]] == "clean" for r in sub]
        out["auroc_by_kind"][kind] = {n: auroc([r[n] for r in sub], pos) for n in names}
    return out
