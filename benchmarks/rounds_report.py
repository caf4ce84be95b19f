"""``bench_rounds.py``'s numbers: per-round loss statistics, the FLOPs accounting (measured and
with a larger learner), the merged tables and the plots. Reads the runs' JSON lines."""
from __future__ import annotations

import json
import os
import statistics

from benchmarks.rounds_spec import DATASETS, ONLINES


def spearman(a, b) -> float:
    import numpy as np
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def round_stats(out: str, labels: dict) -> dict:
    """Why learnability ranks as it does in one round: the spread of each model's loss over the
    scored pool, and the rank correlation of learnability with -reference loss (1.0: it is
    CLIP-score filtering under another name) and with the proxy's loss."""
    import numpy as np
    import pyarrow.parquet as pq
    rows = [r for r in pq.read_table(os.path.join(out, "manifest.parquet")).to_pylist()
            if r.get("learnability") is not None]
    pl = np.array([r["proxy_loss"] for r in rows])
    rl = np.array([r["ref_loss"] for r in rows])
    lb = np.array([r["learnability"] for r in rows])
    bad = np.array([labels.get(r["key"], "clean") not in ("clean", "unique") for r in rows])
    out = {"proxy_loss_std": float(pl.std()), "ref_loss_std": float(rl.std()),
           "rho_learnability_minus_ref_loss": spearman(lb, -rl), "rho_learnability_proxy_loss": spearman(lb, pl)}
    if bad.any() and (~bad).any():
        out["proxy_loss_gap"] = float(pl[bad].mean() - pl[~bad].mean())  # noisy / redundant minus the rest
    return out


def pool_labels(r: dict, round_output: str) -> dict:
    """The pool's ground truth of a finished run, from its data folder (beside the round's)."""
    data = os.path.join(os.path.dirname(round_output), "data")
    for name in ("composition.json", "truth.json"):
        path = os.path.join(data, name)
        if os.path.exists(path):
            with open(path) as f:
                labels = json.load(f)
            return labels if name == "composition.json" else {
                k: ("clean" if v == "clean" else "noisy") for k, v in labels.items()}
    return {}


def accounting(r: dict, arm: str, reuse: int = 1, learner_forward: float = None) -> dict:
    """FLOPs of ``arm`` to random's best vs random's own (IID) FLOPs to it.

    ``reuse``: the fixed curation (reference training, its scoring of the pool, and for
    learnability_warmup the warm-up's training and heads) is
    shared by ``reuse`` training runs; the learner-as-proxy's own scoring passes are not (they are
    the learner's trajectory). ``learner_forward``: another learner's forward FLOPs per example (a
    learner much larger than the one trained here; also what its scoring passes cost as the
    proxy), with the measured steps kept: an extrapolation, labelled as one in the table."""
    c, sp = r["compute"], r["speedup"]
    steps, iid = sp["arms"][arm]["steps_to_target"], sp["reference_steps"]
    if not steps or not iid:
        return {}
    fwd = learner_forward or c["learner_forward_flops_per_example"]
    step_flops = 3 * fwd * r["batch_size"]
    pool = r["pool"]
    judges = c["reference_train_flops"] + pool * c["reference_forward_flops_per_example"]
    # the warm-up proxy scores in the same pass as the reference: on the same frozen towers it
    # adds only its heads (core/scoring.py runs each tower once per batch for both models)
    warm_scoring = c["warmup_forward_flops_per_example"] - (
        c.get("warmup_frozen_forward_flops_per_example", 0.0) if c.get("shared_towers") else 0.0)
    warm = c["warmup_train_flops"] + pool * warm_scoring
    online = 0.0
    if arm in ONLINES:  # this arm uses only the reference's scores, then the learner's own
        used = [x for x in r["arms"][arm]["rounds"] if x["step"] < steps]
        online = len(used) * pool * (learner_forward or c["learner_proxy_forward_flops_per_example"])
    elif arm == "learnability_warmup":  # ref_sim and easy need the reference alone
        judges += warm
    total = (0.0 if arm == "random" else judges / reuse) + online + steps * step_flops
    fixed = (judges / reuse + online)
    saved_per_step = step_flops * (1 - steps / iid) if iid > steps else 0.0
    return {"ratio": total / (iid * step_flops),
            "break_even_iid_steps": fixed / saved_per_step if saved_per_step else None}


def online_lines(rs: list, online: str) -> list:
    """A learner-as-proxy arm's rounds: overlap with round 0, reuse, and the loss spreads."""
    on = [r["arms"].get(online) for r in rs]
    if not all(on):
        return []
    lines: list = []
    lines += ["", f"{online}: rounds at steps {', '.join(str(x['step']) for x in on[0]['rounds'])}; "
              "share of round 0's selection still kept, per round (per seed): " + "; ".join(
                  ", ".join(f"{v:.2f}" for v in o["overlap_with_round0"]) for o in on) +
              "; shards scored by the learner alone (reference reused), per round: " + "; ".join(
                  ", ".join(f"{x['proxy_only_shards']}/{x['input_shards']}" for x in o["rounds"]) for o in on) + "."]
    rows = []
    for r, o in zip(rs, on):
        for x in o["rounds"]:
            st = x.get("stats")
            if st is None and os.path.exists(os.path.join(x["output"], "manifest.parquet")):
                labels = pool_labels(r, x["output"])
                st = x["stats"] = round_stats(x["output"], labels)
            if st:
                rows.append((r["seed"], x["round"], st))
    if rows:
        lines += ["", "| seed | round | std of proxy (learner) loss | std of reference loss | "
                  "Spearman(learnability, -ref loss) | Spearman(learnability, learner loss) | "
                  "learner loss, noisy/redundant minus the rest |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {sd} | {rd} | {st['proxy_loss_std']:.2f} | {st['ref_loss_std']:.2f} | "
                  f"{st['rho_learnability_minus_ref_loss']:.2f} | {st['rho_learnability_proxy_loss']:.2f} | "
                  f"{st.get('proxy_loss_gap', float('nan')):+.2f} |" for sd, rd, st in rows]
    return lines


def reference_of(r: dict) -> str:
    """The reference model of a result (runs made before it was recorded: the dataset's)."""
    return r.get("reference_model") or DATASETS[r["dataset"]].get("reference_model", "ls_clip_lit")


def merge_runs(results: list) -> list:
    """Runs of the same dataset, seed and budget with different ``--arms`` as one result each
    (the data, the judges and every arm's initialisation are the same: all seeded)."""
    merged: dict = {}
    for r in results:
        key = (r["dataset"], r["seed"], r["fraction"], r["steps"], r["rounds"], r["batch_size"], r["pool"],
               reference_of(r))
        if key not in merged:
            merged[key] = r
            continue
        for arm, v in r["arms"].items():
            merged[key]["arms"].setdefault(arm, v)
        if merged[key]["compute"].get("learner_proxy_forward_flops_per_example") is None:
            merged[key]["compute"] = r["compute"]
    return list(merged.values())


def summarise(results: list, large_learners=None) -> list:
    """The markdown tables of ``results`` (``bench_rounds.py``'s JSON lines), one per dataset,
    reference and budget. ``large_learners``: the architectures of the extrapolated accounting
    (default ``LARGE_LEARNERS`` of the task; empty: none)."""
    results = merge_runs(results)
    lines = []
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    by = {}
    for r in results:  # one table per dataset, reference and budget
        by.setdefault((r["dataset"], reference_of(r), r["fraction"]), []).append(r)
    from learnsieve.evaluate.arms import speedup
    for (ds, ref_model, _), rs in by.items():
        metric = rs[0]["metric"]
        rs = [r for r in rs if "random" in r["arms"]]  # a run of other arms alone, not merged
        if not rs:
            continue
        for r in rs:
            r["speedup"] = speedup(r, metric, "random")
        seeds = [r["seed"] for r in rs]
        lines += [f"#### {ds}: seeds {', '.join(map(str, seeds))}; reference {ref_model}, "
                  f"learner {rs[0]['learner']}, {rs[0]['steps']} "
                  f"steps of {rs[0]['batch_size']}, {rs[0]['rounds']} rounds, keep {rs[0]['fraction']:.0%} of "
                  f"{rs[0]['pool']}", ""]
        kinds = sorted({k for r in rs for a in r["arms"].values() for k in a["composition"]})
        lines += ["| arm | best " + metric + " (per seed) | final (per seed) | steps to random's best (per seed) | "
                  "speed-up vs random | vs ref_sim (steps) | " + " | ".join(f"{k} share" for k in kinds) + " | "
                  "FLOPs / IID | FLOPs / IID, curation reused by 10 runs |",
                  "|---|---|---|---|---|---|" + "---|" * len(kinds) + "---|---|"]
        for arm in rs[0]["arms"]:
            best = [max(p[metric] for p in r["arms"][arm]["curve"]) for r in rs]
            final = [r["arms"][arm]["curve"][-1][metric] for r in rs]
            steps = [r["speedup"]["arms"][arm]["steps_to_target"] for r in rs]
            ups = [r["speedup"]["arms"][arm]["speedup_vs_reference"] for r in rs]
            vs = []
            for r in rs:
                arms_ = r["speedup"]["arms"]
                a, b = arms_[arm]["steps_to_target"], arms_.get("ref_sim", {}).get("steps_to_target")
                vs.append(b / a if a and b else None)
            fl = [accounting(r, arm).get("ratio") for r in rs]
            fl10 = [accounting(r, arm, reuse=10).get("ratio") for r in rs]
            fmt = lambda xs, f="{:.3f}": ", ".join(f.format(x) if x is not None else "-" for x in xs)  # noqa: E731
            up = f"{mean(ups):.2f}x" if all(ups) else "not reached in every seed"
            vsr = f"{mean(vs):.2f}x ({fmt(vs, '{:.2f}')})" if all(v is not None for v in vs) else fmt(vs, "{:.2f}")
            comp = " | ".join(f"{mean([r['arms'][arm]['composition'].get(k, 0.0) for r in rs]):.1%}" for k in kinds)
            lines.append(f"| {arm} | {mean(best):.3f} ({fmt(best)}) | {mean(final):.3f} ({fmt(final)}) | "
                         f"{', '.join(str(s) if s else 'not reached' for s in steps)} | {up} | {vsr} | {comp} | "
                         f"{fmt(fl, '{:.2f}')} | {fmt(fl10, '{:.2f}')} |")
        pool = " | ".join(f"{mean([r['pool_composition'].get(k, 0.0) for r in rs]):.1%}" for k in kinds)
        lines.append(f"| (pool) | | | | | | {pool} | | |")
        if rs[0].get("judges"):
            au = rs[0]["judges"]["auroc"]
            lines += ["", "AUROC true vs noisy of the first curation's scores (mean over seeds): " + ", ".join(
                f"{s} {mean([r['judges']['auroc'][s] for r in rs]):.3f}" for s in
                ("learnability", "ref_sim", "easy", "proxy_sim") if s in au) + "."]
        for online in ONLINES:
            lines += online_lines(rs, online)
        c = rs[0]["compute"]
        lines += ["", f"FLOPs per example (seed {rs[0]['seed']}): reference scoring "
                      f"{c['reference_forward_flops_per_example'] / 1e6:.1f} M, "
                  f"warm-up proxy scoring {c['warmup_forward_flops_per_example'] / 1e6:.1f} M, learner forward "
                  f"{c['learner_forward_flops_per_example'] / 1e6:.1f} M (a training step 3x); reference training "
                  f"{c['reference_train_flops'] / 1e12:.2f} TFLOPs, "
                  f"warm-up {c['warmup_train_flops'] / 1e12:.2f} TFLOPs."]
        lines += large_learner_lines(rs, large_learners) + [""]
    return lines


def plot_means(results: list, folder: str) -> list:
    """Per dataset, each arm's curve averaged over the seeds (the same evaluation steps)."""
    from learnsieve.evaluate.plots import plot_curves
    os.makedirs(folder, exist_ok=True)
    by: dict = {}
    for r in merge_runs(results):
        ref, frac = reference_of(r), r["fraction"]
        name = r["dataset"] + ("" if ref == DATASETS[r["dataset"]].get("reference_model", "ls_clip_lit")
                               else f"_{ref}") + ("" if frac == 0.5 else f"_f{frac:g}")
        by.setdefault(name, []).append(r)
    paths = []
    for ds, rs in by.items():
        arms = {}
        for arm in rs[0]["arms"]:
            curves = [r["arms"][arm]["curve"] for r in rs]
            arms[arm] = {"curve": [{"step": pts[0]["step"], **{m: statistics.fmean(p[m] for p in pts)
                                                              for m in pts[0] if m != "step"}}
                                   for pts in zip(*curves)]}
        metric = rs[0]["metric"]
        path = os.path.join(folder, f"rounds_{ds}.png")
        plot_curves(arms, [metric], path, title=f"{ds}: {rs[0]['learner']}, mean of {len(rs)} seeds")
        paths.append(path)
    return paths


LARGE_LEARNERS = {"retrieval": ("ViT-S-32", "ViT-B-32", "ViT-B-16"),  # open_clip, 224 px
                  "classification": ("resnet50", "vit_base_patch16_224")}  # timm, 224 px


def large_forward_flops(arch: str, task: str) -> float:
    """Forward FLOPs per example of an open_clip architecture (image + text) or, for
    classification, a timm classifier (random weights, nothing downloaded; FlopCounterMode as
    for learnsieve's models)."""
    import torch

    from learnsieve.models.flops import flops_per_example
    if task == "classification":
        import timm
        m = timm.create_model(arch, pretrained=False, num_classes=10).eval()
        images = torch.randn(2, 3, 224, 224)
        return flops_per_example(lambda: m(images), 2)
    import open_clip
    m = open_clip.create_model(arch).eval()
    size = m.visual.image_size
    size = size if isinstance(size, int) else size[0]
    images, text = torch.randn(2, 3, size, size), open_clip.get_tokenizer(arch)(["a photo of a cat", "a dog"])
    return flops_per_example(lambda: (m.encode_image(images), m.encode_text(text)), 2)


def large_learner_lines(rs: list, archs=None) -> list:
    """Issue 13 point 5: the same measured step counts, accounted with a learner much larger than
    the judges. An extrapolation (a larger learner's steps to target are not measured here)."""
    task = rs[0].get("task", "retrieval")
    archs = LARGE_LEARNERS[task] if archs is None else archs
    if not archs:
        return []
    try:
        large = {a: large_forward_flops(a, task) for a in archs}
    except ImportError:
        return ["", "(open_clip / timm is not installed: the larger-learner accounting is skipped)"]
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    small = rs[0]["compute"]["learner_forward_flops_per_example"]
    cols = [(rs[0]["learner"], None)] + list(large.items())
    lines = ["", "FLOPs / IID to random's best with the measured step counts and a learner of each size "
             "(forward GFLOPs per example: " + ", ".join(f"{n} {(k or small) / 1e9:.3f}" for n, k in cols) +
             "); per cell: curation used once / reused by 10 training runs; break-even IID steps (used "
             "once) in brackets. Columns other than the first are extrapolations.", "",
             "| arm | " + " | ".join(n for n, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for arm in rs[0]["arms"]:
        if arm == "random":
            continue
        cells = []
        for _, k in cols:
            one = [accounting(r, arm, 1, k) for r in rs]
            ten = [accounting(r, arm, 10, k) for r in rs]
            if not all(one):
                cells.append("not reached in every seed")
                continue
            be = [o["break_even_iid_steps"] for o in one]
            cells.append(f"{mean([o['ratio'] for o in one]):.2f} / {mean([t['ratio'] for t in ten]):.2f}"
                         + (f" ({mean(be):.0f})" if all(b is not None for b in be) else ""))
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines
