"""Tables and plots of ``bench_online.py``'s JSON lines (one line per dataset and seed)."""
from __future__ import annotations

import os
from collections import defaultdict
from statistics import mean

# forward GFLOPs per example of open_clip learners (docs/BENCHMARKS.md, counted on the real
# architectures at 224 px), for the extrapolated compute columns
VIT_B_32, VIT_S_32 = 11.708e9, 4.802e9
KINDS = {"cifar": ("noisy",), "flickr": ("noisy",), "classact": ("noisy",),
         "redundant": ("duplicate", "frequent", "unique")}


def by_dataset(results):
    """dataset -> one result per seed; runs of one seed with other arms are merged (same data,
    judges and initialisation: all seeded), the later run's arms added to the first's."""
    merged: dict = {}
    for r in results:
        key = (r["dataset"], r["seed"])
        if key not in merged:
            merged[key] = {**r, "arms": dict(r["arms"])}
        else:
            for k, v in r.items():
                merged[key].setdefault(k, v)
            for arm, v in r["arms"].items():  # a rerun with the trace replaces a run without
                old = merged[key]["arms"].get(arm)
                if old is None or (not old.get("counters", {}).get("trace") and v.get("counters", {}).get("trace")):
                    merged[key]["arms"][arm] = v
    out = defaultdict(list)
    for (ds, _), r in sorted(merged.items()):
        out[ds].append(r)
    return out


def reach(curve, metric, target):
    for p in curve:
        if p[metric] >= target:
            return p["step"]
    return None


def arm_costs(r, arm):
    """(fixed FLOPs, FLOPs per learner step) of an arm, every forward running every tower."""
    a, c, fl = r["arms"][arm], r["compute"], r["flops"]
    b = r["batch_size"]
    per_step = 3 * fl["learner"]["full"] * b
    if a["proxy"] == "learner":
        per_step += a["scored_per_step"] * fl["learner"]["full"]
    elif a["proxy"] == "online_model":
        per_step += a["scored_per_step"] * fl["small"]["full"] + 3 * fl["small"]["full"] * b
    if arm == "random":
        return 0.0, per_step
    fixed = c["reference_train_flops"] + r["pool"] * c["reference_forward_flops_per_example"]
    if arm.startswith("offline"):
        warm_score = (c["warmup_forward_flops_per_example"] - c.get("warmup_frozen_forward_flops_per_example", 0.0)
                      if c["shared_towers"] else c["warmup_forward_flops_per_example"])
        fixed += c["warmup_train_flops"] + r["pool"] * warm_score
    return fixed, per_step


def extrapolated_ratio(r, arm, steps, iid_steps, small_share=VIT_S_32 / VIT_B_32):
    """FLOPs / IID with a ViT-B-32 learner (online model ViT-S-32-sized), judges as measured."""
    a = r["arms"][arm]
    b = r["batch_size"]
    fixed, _ = arm_costs(r, arm)
    per = 3 * VIT_B_32 * b
    if a["proxy"] == "learner":
        per += a["scored_per_step"] * VIT_B_32
    elif a["proxy"] == "online_model":
        per += (a["scored_per_step"] + 3 * b) * VIT_B_32 * small_share
    return (fixed + steps * per) / (iid_steps * 3 * VIT_B_32 * b)


def ratio_text(values, seeds: int) -> str:
    if not values:
        return "n/a"
    return f"{mean(values):.2f}x" + ("" if len(values) == seeds else "*")


def break_even(runs, arm, speed) -> str:
    """IID steps beyond which the arm's total FLOPs (fixed + its steps, each with its super-batch
    forwards) fall below IID's, at the measured speed-up (an extrapolation); "never" when one
    of its steps costs more than ``speed`` IID steps."""
    if arm == "random" or not speed:
        return ""
    fixed, per = mean(arm_costs(r, arm)[0] for r in runs), mean(arm_costs(r, arm)[1] for r in runs)
    iid = mean(arm_costs(r, "random")[1] for r in runs)
    denom = iid - per / speed
    return f"{fixed / denom:,.0f}" if denom > 0 else "never"


def summarise(results) -> list:
    lines = []
    for ds, runs in sorted(by_dataset(results).items()):
        runs = sorted(runs, key=lambda r: r["seed"])
        r0 = runs[0]
        metric = r0["metric"]
        arms = [a for a in r0["arms"] if all(a in r["arms"] for r in runs)]
        lines += ["", f"#### {ds}: seeds {', '.join(str(r['seed']) for r in runs)}; learner {r0['learner']}, "
                  f"online model {r0['small']}, {r0['steps']} steps of {r0['batch_size']}, pool {r0['pool']}", ""]
        kinds = KINDS.get(ds, ("noisy",))
        lines.append("| arm | best " + metric + " (per seed) | final | steps to random's best (per seed) | "
                     "speed-up vs random | vs clip30 (steps) | " + " | ".join(f"{k} share" for k in kinds) +
                     " | proxy forwards / step | FLOPs / IID (per seed) | FLOPs / IID, ViT-B-32 learner | "
                     "break-even IID steps |")
        lines.append("|" + "---|" * (10 + len(kinds)))
        for arm in arms:
            best = [max(p[metric] for p in r["arms"][arm]["curve"]) for r in runs]
            final = [r["arms"][arm]["curve"][-1][metric] for r in runs]
            targets = [max(p[metric] for p in r["arms"]["random"]["curve"]) for r in runs]
            st = [reach(r["arms"][arm]["curve"], metric, t) for r, t in zip(runs, targets)]
            rs = [reach(r["arms"]["random"]["curve"], metric, t) for r, t in zip(runs, targets)]
            cs = [reach(r["arms"]["clip30"]["curve"], metric, t) if "clip30" in r["arms"] else None
                  for r, t in zip(runs, targets)]
            sp = [a / b for a, b in zip(rs, st) if a and b]
            # clip30 never reaching the target: its steps are at least the budget (a lower bound)
            vc = [(c or r["steps"]) / s for c, s, r in zip(cs, st, runs) if s]
            vc_bound = any(s and not c for c, s in zip(cs, st))
            shares = [mean(r["arms"][arm]["trained_on"].get(k, 0.0) for r in runs) for k in kinds]
            ratios, extra = [], []
            for r, s, ri in zip(runs, st, rs):
                if s and ri:
                    fixed, per = arm_costs(r, arm)
                    _, iid = arm_costs(r, "random")
                    ratios.append((fixed + s * per) / (ri * iid))
                    extra.append(extrapolated_ratio(r, arm, s, ri))
            fmt = ", ".join
            lines.append(
                f"| {arm} | {mean(best):.3f} ({fmt(f'{b:.3f}' for b in best)}) | {mean(final):.3f} | "
                f"{fmt(str(s) if s else 'never' for s in st)} | "
                f"{(f'{mean(sp):.2f}x' if len(sp) == len(runs) else 'n/a' if not sp else f'{mean(sp):.2f}x*')} | "
                f"{('>' if vc_bound else '') + ratio_text(vc, len(runs))} | "
                + " | ".join(f"{s:.1%}" for s in shares)
                + f" | {mean(r['arms'][arm]['scored_per_step'] for r in runs):.0f} | "
                f"{fmt(f'{x:.2f}' for x in ratios) or 'n/a'} | {fmt(f'{x:.2f}' for x in extra) or 'n/a'} | "
                f"{break_even(runs, arm, mean(sp) if len(sp) == len(runs) else None)} |")
        pool = [mean(r["pool_composition"].get(k, 0.0) for r in runs) for k in kinds]
        lines.append("| (pool) | | | | | | " + " | ".join(f"{s:.1%}" for s in pool) + " | | | | |")
        lines += budget_table(runs, kinds)
        if "auroc" in r0:
            names = ("learnability", "ref_sim", "easy", "proxy_sim")
            au = {n: mean(r["auroc"].get(n, float("nan")) for r in runs) for n in names if n in r0["auroc"]}
            lines += ["", "AUROC true vs noisy of the cached scores (mean over seeds): " +
                      ", ".join(f"{n} {v:.3f}" for n, v in au.items()) + "."]
        lines += ["", "`*`: mean over the seeds that reached the target; `never`: not within the budget; `>`: clip30 "
                  "never reached it in some seed, counted as the whole budget (a lower bound). "
                  "Online arms: mean proxy and reference loss of what was picked vs the super-batch:"]
        for arm in arms:
            c = [r["arms"][arm]["counters"] for r in runs]
            if r0["arms"][arm]["proxy"]:
                lines.append(f"- {arm}: proxy loss picked {mean(x['mean_proxy_loss_selected'] for x in c):.2f} vs all "
                             f"{mean(x['mean_proxy_loss_all'] for x in c):.2f}; reference loss picked "
                             f"{mean(x['mean_ref_loss_selected'] for x in c):.2f} vs all "
                             f"{mean(x['mean_ref_loss_all'] for x in c):.2f}; distinct examples trained on "
                             f"{mean(r['arms'][arm]['distinct_trained'] for r in runs):.0f}")
        lines += trace_table(runs, arms, kinds)
    return lines


def budget_table(runs, kinds) -> list:
    """What an offline ``curate`` keeps at each budget, by score (mean over seeds)."""
    runs = [r for r in runs if r.get("budget_noise")]
    if not runs:
        return []
    bad = kinds[0]
    names = [n for n in runs[0]["budget_noise"]]
    fracs = list(runs[0]["budget_noise"][names[0]])
    out = ["", f"{bad.capitalize()} share of what an offline curation keeps, by score and budget "
           f"(the cached scores; mean over {len(runs)} seeds):", "",
           "| score | " + " | ".join(f"top {float(f):.0%}" for f in fracs) + " |",
           "|---|" + "---|" * len(fracs)]
    for n in names:
        vals = [mean(r["budget_noise"][n][f].get(bad, 0.0) for r in runs) for f in fracs]
        out.append(f"| {n} | " + " | ".join(f"{v:.1%}" for v in vals) + " |")
    return out


def trace_table(runs, arms, kinds) -> list:
    """Why a proxy picks what it picks: per window of steps, the proxy's and the reference's loss
    gap between the noisy (or duplicate) pairs and the rest of the super-batches, and the share of
    them picked. Learnability keeps them out only while the reference's gap exceeds the proxy's."""
    bad = kinds[0]
    online = [a for a in arms if runs[0]["arms"][a]["proxy"] and runs[0]["arms"][a]["counters"].get("trace")]
    if not online:
        return []
    out = ["", f"Per window of steps (mean over seeds): the proxy's loss gap {bad} minus the rest, the reference's "
           f"gap, and the share of {bad} pairs picked (offered: the pool's share).", "",
           "| arm | window ending at step | proxy gap | reference gap | margin (ref - proxy) | picked share |",
           "|---|---|---|---|---|---|"]

    def gap(d):
        rest = [v for k, v in d.items() if k != bad]
        return d.get(bad, float("nan")) - (mean(rest) if rest else float("nan"))

    for arm in online:
        traces = [r["arms"][arm]["counters"]["trace"] for r in runs]
        n = min(len(t) for t in traces)
        for i in sorted({0, n // 2, n - 1}):
            pg = mean(gap(t[i]["proxy_loss"]) for t in traces)
            rg = mean(gap(t[i]["ref_loss"]) for t in traces)
            share = mean(t[i]["picked_share"].get(bad, 0.0) for t in traces)
            out.append(f"| {arm} | {traces[0][i]['step']} | {pg:+.2f} | {rg:+.2f} | {rg - pg:+.2f} | {share:.1%} |")
    return out


def plot_means(results, out_dir: str) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ds, runs in sorted(by_dataset(results).items()):
        metric = runs[0]["metric"]
        arms = [a for a in runs[0]["arms"] if all(a in r["arms"] for r in runs)]
        fig, ax = plt.subplots(figsize=(8, 5))
        for arm in arms:
            curves = [r["arms"][arm]["curve"] for r in runs]
            steps = [p["step"] for p in curves[0]]
            ys = [mean(c[i][metric] for c in curves) for i in range(len(steps))]
            style = "-" if arm.startswith(("learner", "small")) else "--" if arm.startswith("offline") else ":"
            lw = 2.2 if arm in ("random", "clip30") else 1.3
            ax.plot(steps, ys, style, label=arm, linewidth=lw)
        ax.set_xlabel("learner steps")
        ax.set_ylabel(metric)
        ax.set_title(f"{ds}: online vs offline selection, mean of {len(runs)} seeds")
        ax.legend(fontsize=7, ncol=2)
        path = os.path.join(out_dir, f"online_{ds}.png")
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
