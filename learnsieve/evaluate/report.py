"""What ``learnsieve eval`` adds after training the arms: each score's AUROC against ground truth
(``learnsieve.evaluate.ground_truth``), compute accounting (``learnsieve.evaluate.accounting``), PNG plots,
a text table and eval.html (learnsieve/report/html.py)."""
from __future__ import annotations

import logging
import os
from typing import List, Optional

from learnsieve.evaluate.accounting import compute_summary
from learnsieve.evaluate.arms import load_test, write_json

log = logging.getLogger(__name__)


def finish(results: dict, out: str, image_size: int, batch_size: int, manifest: Optional[str] = None,
           truth: Optional[str] = None, reference: Optional[str] = None, proxy: Optional[str] = None,
           scored: Optional[int] = None, scoring_seconds: Optional[float] = None,
           curated_arm: Optional[str] = None, plots: bool = True) -> dict:
    """Add ``judges`` and ``compute`` to ``results`` where their inputs are given, write eval.json,
    the plots and eval.html (tables and plots, self-contained) beside it; returns ``results``."""
    curated_arm = curated_arm or next(iter(results["arms"]))
    if manifest and truth:
        from learnsieve.evaluate.ground_truth import judge, load_truth
        j = judge(manifest, load_truth(truth))
        results["judges"] = {k: v for k, v in j.items() if k != "values"}
        results["judges"]["manifest"] = manifest
        if plots:
            from learnsieve.evaluate.plots import plot_histograms
            results["judges"]["histograms_png"] = plot_histograms(
                j["values"], j["auroc"], _beside(out, "scores_hist.png"))
    if reference and proxy:
        from learnsieve.evaluate.accounting import account
        images, captions, labels = _probe(results, image_size)
        targets = captions if results["task"] == "retrieval" else labels
        results["compute"] = account(results, results["arms"][curated_arm]["learner_flops_per_example"],
                                     batch_size, reference, proxy, scored or 0, images, targets,
                                     curated_arm=curated_arm, scoring_seconds=scoring_seconds)
        results["compute"]["summary"] = compute_summary(results["compute"])  # the line eval.html shows
    if plots:
        from learnsieve.evaluate.plots import plot_curves
        metrics = [results["metric"]] + [m for m in ("zeroshot_top1", "mean_r@1", "mean_r@5")
                                         if m != results["metric"]]
        results["curves_png"] = plot_curves(results["arms"], metrics, _beside(out, "curves.png"),
                                            title=f"{results['learner']}, seed {results['seed']}")
    results["html"] = os.path.splitext(out)[0] + ".html"
    write_json(results, out)
    from learnsieve.report.html import write_eval_page
    write_eval_page(results, results["html"])  # eval.html: the same as one self-contained page
    return results


def _beside(out: str, name: str) -> str:
    stem = os.path.splitext(os.path.basename(out))[0]
    return os.path.join(os.path.dirname(os.path.abspath(out)), f"{stem}_{name}")


def _probe(results: dict, image_size: int, n: int = 32):
    if results["task"] == "retrieval":
        images, captions, labels = load_test(results["test"], image_size)
        return images[:n], captions[:n], labels[:n]
    from learnsieve.evaluate.arms_cls import load_test as load_labelled_test
    images, labels = load_labelled_test(results["test"], image_size, results["num_classes"])
    return images[:n], None, labels[:n]


def table(results: dict) -> List[str]:
    m, sp = results["metric"], results["speedup"]
    lines = [f"{'arm':<14}{'examples':>9}{'final ' + m:>22}{'steps to ' + sp['reference_arm'] + ' best':>22}"
             f"{'speed-up':>10}"]
    for name, arm in results["arms"].items():
        s = sp["arms"][name]
        ratio = f"{s['speedup_vs_reference']:.2f}x" if s["speedup_vs_reference"] else "-"
        lines.append(f"{name:<14}{arm['examples']:>9}{arm['final'][m]:>22.3f}"
                     f"{str(s['steps_to_target'] or 'not reached'):>22}{ratio:>10}")
    from learnsieve.evaluate.arms import bootstrap_lines
    lines += bootstrap_lines(results.get("bootstrap"))
    if "judges" in results:
        j = results["judges"]
        lines.append(f"noisy share: pool {j['pool_noise']:.1%}, kept {j['kept_noise']:.1%}; AUROC true vs "
                     "noisy: " + ", ".join(f"{k} {v:.3f}" for k, v in j["auroc"].items()))
    if "compute" in results:
        lines.append("compute: " + compute_summary(results["compute"]))
    return lines


