"""Self-contained HTML pages (inline CSS, images as ``data:`` URIs, nothing fetched from a
network): ``report.html`` of a curation run and ``eval.html`` of ``learnsieve eval``. No Beam.

``write_report(output_dir, score_name, ...)`` reads what the run wrote, in bounded memory
whatever the pool size:

- ``stats.json`` (counts, rejections and filters by reason, the selection policy);
- ``manifest.parquet`` in record batches, twice, only the columns it needs: first the extremes
  of each score column asked for (top, bottom, the kept examples with the lowest value and the
  filtered ones with the highest: for the selection score, the examples just above and just
  below the threshold), then fixed-bin histograms of kept vs filtered;
- the original bytes of just the few dozen examples shown, by byte range from the input shards
  (the spans recorded in the run's score files, ``_scores/``), or for compressed shards a
  streaming pass over just the shards that hold them; each is downscaled to a ~96 px JPEG.

The page is deterministic: the same run gives the same bytes.
"""
from __future__ import annotations

import html
import io
import json
import logging
import os
from typing import Dict, Iterable, Optional, Sequence, Tuple

import fsspec
import numpy as np

from learnsieve.core.layout import REPORT
from learnsieve.core.paths import join
from learnsieve.core.records import FILTERED, KEPT
from learnsieve.report.examples import (  # noqa: F401  (thumbnail, THUMB_PX: the page's API too)
    BINS,
    THUMB_PX,
    ScoreSummary,
    data_uri,
    fetch_thumbnails,
    score_columns,
    summarise_scores,
    thumbnail,
)

log = logging.getLogger(__name__)

GRIDS = ("top", "above", "below", "bottom")

CSS = """
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1240px;
color:#1d2433;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e3e6ea;
padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
.sub{color:#5c6677;margin:0 0 16px}.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #e3e6ea;border-radius:8px;padding:8px 14px;min-width:110px}
.card b{display:block;font-size:22px}.card span{color:#5c6677;font-size:12px}
.kept b{color:#1f7a6d}.filtered b{color:#6c757d}.rejected b{color:#c0392b}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border-bottom:1px solid #eef0f3;padding:3px 10px;
text-align:left}th{color:#5c6677;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:8px}
figure.ex{margin:0;width:124px;border:1px solid #e3e6ea;border-radius:6px;padding:6px;font-size:11px;
background:#fafbfc}figure.ex img.thumb,figure.ex .missing{display:block;width:96px;height:96px;
object-fit:contain;margin:0 auto 4px;background:#eef0f3}
figure.ex .missing{line-height:96px;text-align:center;color:#8a93a3}
figcaption .v{font-weight:600}figcaption .kept{color:#1f7a6d}figcaption .filtered{color:#6c757d}
figcaption .cap{display:block;color:#3b4456;overflow-wrap:anywhere;max-height:5.6em;overflow:hidden}
figcaption .k{display:block;color:#8a93a3;overflow-wrap:anywhere}
img.plot{max-width:100%;border:1px solid #e3e6ea;border-radius:6px}
code{background:#f3f4f6;padding:1px 4px;border-radius:3px}
"""


def _esc(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def page(title: str, body: str) -> str:
    """A whole HTML document: one inline stylesheet, no external resource."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _table(header: Sequence[str], rows: Iterable[Sequence], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f"<td class=\"n\">{_esc(_fmt(c))}</td>" if i >= numeric_from else f"<td>{_esc(_fmt(c))}</td>"
        for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def png_of(fig) -> str:
    """A matplotlib figure as a PNG data URI (no Software/date metadata: deterministic bytes)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    _pyplot().close(fig)
    return data_uri(buf.getvalue(), "image/png")


def _histogram(summ: ScoreSummary, selection: bool) -> Optional[str]:
    if summ.edges is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 2.6))
    ax.stairs(summ.hist[FILTERED], summ.edges, fill=True, alpha=0.55, color="#9aa3ad",
              label=f"filtered ({summ.count[FILTERED]:,})")
    ax.stairs(summ.hist[KEPT], summ.edges, fill=True, alpha=0.6, color="#2a9d8f",
              label=f"kept ({summ.count[KEPT]:,})")
    if selection and np.isfinite(summ.min_kept) and np.isfinite(summ.max_filtered):
        ax.axvline(summ.min_kept, color="#e76f51", ls="--", lw=1.2, label=f"lowest kept {summ.min_kept:.4g}")
    ax.set_xlabel(summ.name)
    ax.set_ylabel("examples")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return png_of(fig)


def _grid_title(grid: str, name: str, selection: bool) -> str:
    if grid == "top":
        return f"Top: highest {name}"
    if grid == "bottom":
        return f"Bottom: lowest {name}"
    if grid == "above":
        return (f"Just above the threshold: kept, lowest {name}" if selection
                else f"Kept with the lowest {name}")
    return (f"Just below the threshold: filtered, highest {name}" if selection
            else f"Filtered with the highest {name}")


def _figure(row: dict, name: str, others: Sequence[str], shown: Dict[Tuple[int, int], tuple]) -> str:
    thumb, caption = shown.get((row["shard_index"], row["index"]), (None, ""))
    img = (f"<img class=\"thumb\" src=\"{thumb}\" alt=\"{_esc(row['key'])}\">" if thumb
           else "<div class=\"missing\">no image</div>")
    decision = row.get("decision") or ""
    extra = "".join(f" &middot; {_esc(o)} {_esc(_fmt(row.get(o)))}" for o in others if row.get(o) is not None)
    uid = f" &middot; uid {_esc(row['uid'])}" if row.get("uid") else ""
    return (f"<figure class=\"ex\">{img}<figcaption><span class=\"v\">{_esc(name)} "
            f"{_esc(_fmt(row.get(name)))}</span> <span class=\"{_esc(decision)}\">{_esc(decision)}</span>"
            f"{extra}<span class=\"cap\">{_esc(caption)}</span>"
            f"<span class=\"k\">{_esc(row['key'])}{uid}</span></figcaption></figure>")


def _select_line(select: dict) -> str:
    if not select:
        return ""
    mode = select.get("mode", "?")
    parts = [f"{mode} by {select.get('score', '?')}"]
    if mode == "top_k":
        parts.append(f"k={select.get('k')}")
    elif mode == "threshold":
        parts.append(f"threshold {select.get('threshold')}")
    elif mode != "all":
        parts.append(f"fraction {select.get('fraction')}")
    for key, off in (("sampling", "greedy"), ("dedup", "none")):
        if select.get(key, off) != off:
            parts.append(f"{key} {select[key]}")
    if select.get("ranked"):
        parts.append("ranked")
    return ", ".join(parts)


def _counts(stats: dict) -> str:
    read = stats.get("read", 0) or 0

    def card(label, n, cls=""):
        share = f" &middot; {n / read:.1%}" if read and cls else ""
        return f"<div class=\"card {cls}\"><b>{_esc(_fmt(n))}</b><span>{label}{share}</span></div>"

    cards = [card("read", read), card("kept", stats.get(KEPT, 0), "kept"),
             card("filtered", stats.get(FILTERED, 0), "filtered"),
             card("rejected", stats.get("rejected", 0), "rejected"),
             card("output shards", stats.get("output_shards", 0))]
    if "input_shards" in stats:
        cards.append(card("input shards", stats["input_shards"]))
    out = f"<div class=\"cards\">{''.join(cards)}</div>"
    for field, title in (("rejected_by_reason", "Rejected by reason"),
                         ("filtered_by_reason", "Filtered before selection, by reason")):
        reasons = stats.get(field) or {}
        if reasons:
            rows = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
            out += f"<h3>{title}</h3>" + _table(
                ["reason", "examples", "share of read"],
                [(r, n, f"{n / read:.1%}" if read else "-") for r, n in rows])
    return out


def render_report(stats: dict, summaries: Dict[str, ScoreSummary], shown: Dict[Tuple[int, int], tuple],
                  score_name: str, models: dict, title: str) -> str:
    body = [f"<h1>learnsieve curation report</h1><p class=\"sub\">{_esc(title)}</p>"]
    line = _select_line(stats.get("select") or {})
    if line:
        body.append(f"<p>Selection: <code>{_esc(line)}</code>")
        if stats.get("input_shards") is not None:
            body.append(f" &middot; input shards scored this run: {_esc(_fmt(stats.get('rescored_shards')))}"
                        f" of {_esc(_fmt(stats.get('input_shards')))}")
        body.append("</p>")
    if models:
        body.append("<p class=\"sub\">" + " &middot; ".join(
            f"{_esc(k.replace('_sha256', ''))} <code>{_esc((v or '')[:12])}</code>" for k, v in models.items())
                    + "</p>")
    body.append("<h2>Counts</h2>" + _counts(stats))
    names = list(summaries)
    for name in names:
        summ = summaries[name]
        selection = name == score_name
        body.append(f"<h2>{_esc(name)}{' (selection score)' if selection else ''}</h2>")
        if summ.edges is None:
            body.append("<p>No scored example has this score.</p>")
            continue
        means = [f"{label} mean {summ.total[label] / summ.count[label]:.4g}"
                 for label in (KEPT, FILTERED) if summ.count[label]]
        body.append(f"<p class=\"sub\">range {summ.lo:.4g} .. {summ.hi:.4g}; {'; '.join(means)}</p>")
        plot = _histogram(summ, selection)
        body.append(f"<img class=\"plot\" src=\"{plot}\" alt=\"histogram of {_esc(name)}\">")
        others = [o for o in names if o != name][:2]
        for grid in GRIDS:
            rows = summ.grids[grid].rows()
            if not rows:
                continue
            body.append(f"<h3>{_esc(_grid_title(grid, name, selection))}</h3><div class=\"grid\">"
                        + "".join(_figure(r, name, others, shown) for r in rows) + "</div>")
    return page(f"learnsieve report: {title}", "\n".join(body))


def _read_stats(fs, root: str) -> dict:
    for name in ("stats.json", "stats.failed.json"):
        path = join(root, name)
        if fs.exists(path):
            with fs.open(path, "r") as f:
                return json.load(f)
    return {}


def write_report(output_dir: str, score_name: str, scores: Sequence[str] = (), examples: int = 8,
                 path: Optional[str] = None) -> Optional[str]:
    """Write ``report.html`` into the output of a finished run (``path`` elsewhere); returns its
    path, or None when it could not be made (logged: a report never fails a finished run).
    ``scores``: the score columns to plot and show (default: the selection score);
    ``examples``: thumbnails per grid."""
    try:
        return _write_report(output_dir, score_name, scores, examples, path)
    except Exception as exc:
        log.warning(f"report.html not written: {type(exc).__name__}: {exc}")
        return None


def _write_report(output_dir, score_name, scores, examples, path):
    fs, root = fsspec.core.url_to_fs(output_dir)
    stats = _read_stats(fs, root)
    manifest = join(root, "manifest.parquet")
    wanted = list(dict.fromkeys(scores or [score_name]))
    summaries: Dict[str, ScoreSummary] = {}
    models: dict = {}
    if fs.exists(manifest):
        present = set(score_columns(fs, manifest))
        missing = [s for s in wanted if s not in present]
        if missing:
            log.warning(f"report: no column {', '.join(missing)} in the manifest; shown: the others")
        summaries, models = summarise_scores(fs, manifest, [s for s in wanted if s in present], examples)
    rows = {(r["shard_index"], r["index"]): r for s in summaries.values()
            for g in s.grids.values() for r in g.rows()}
    shown = fetch_thumbnails(output_dir, rows.values())
    doc = render_report(stats, summaries, shown, score_name, models, output_dir.rstrip("/"))
    target = path or join(output_dir, REPORT)
    tfs, tp = fsspec.core.url_to_fs(target)
    with tfs.open(tp, "w", encoding="utf-8") as f:
        f.write(doc)
    return target


# --- the eval page -------------------------------------------------------------------------------

def _png_file(path: Optional[str]) -> Optional[str]:
    if not path or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return data_uri(f.read(), "image/png")


def render_eval(results: dict) -> str:
    m = results.get("metric", "")
    sp = results.get("speedup") or {}
    body = ["<h1>learnsieve eval</h1>",
            f"<p class=\"sub\">learner {_esc(results.get('learner'))}, task {_esc(results.get('task'))}, "
            f"{_esc(_fmt(results.get('steps')))} steps, evaluated every {_esc(_fmt(results.get('eval_every')))}, "
            f"seed {_esc(results.get('seed'))}; test {_esc(results.get('test'))}</p>"]
    rows = []
    for name, arm in (results.get("arms") or {}).items():
        s = (sp.get("arms") or {}).get(name, {})
        best = max((p.get(m) for p in arm.get("curve", []) if p.get(m) is not None), default=None)
        ratio = f"{s['speedup_vs_reference']:.2f}x" if s.get("speedup_vs_reference") else "-"
        rows.append((name, arm.get("examples"), (arm.get("final") or {}).get(m), best,
                     s.get("steps_to_target") or "not reached", ratio))
    body.append(f"<h2>Arms</h2><p>Speed-up: steps to reach {_esc(sp.get('reference_arm'))}'s best {_esc(m)}"
                f" ({_esc(_fmt(sp.get('target')))}).</p>")
    body.append(_table(["arm", "examples", f"final {m}", f"best {m}", "steps to target", "speed-up"], rows))
    # the test set's bootstrap intervals and, when it cannot tell the arms apart, its warning
    body += [f"<p>{_esc(line)}</p>" for line in (results.get("bootstrap") or {}).get("lines", [])]
    curves = _png_file(results.get("curves_png"))
    if curves:
        body.append(f"<img class=\"plot\" src=\"{curves}\" alt=\"metric vs learner steps\">")
    judges = results.get("judges")
    if judges:
        body.append("<h2>Scores vs ground truth</h2>")
        if "pool_noise" in judges:
            body.append(f"<p>noisy share: pool {judges['pool_noise']:.1%}, kept {judges.get('kept_noise', 0):.1%}</p>")
        auroc = judges.get("auroc") or {}
        if auroc:
            body.append(_table(["score", "AUROC clean vs noisy"], sorted(auroc.items(), key=lambda kv: -kv[1])))
        hist = _png_file(judges.get("histograms_png"))
        if hist:
            body.append(f"<img class=\"plot\" src=\"{hist}\" alt=\"score histograms by ground truth\">")
    if "compute" in results:  # its line is the evaluation's (evaluate/accounting.compute_summary)
        c = results["compute"]
        body.append(f"<h2>Compute</h2><p>{_esc(c.get('summary') or c.get('note', 'not measured'))}</p>")
    return page("learnsieve eval", "\n".join(body))


def write_eval_page(results: dict, path: str) -> str:
    """``eval.html`` (beside eval.json): the arms, their curves, AUROCs and compute, one page."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_eval(results))
    return path
