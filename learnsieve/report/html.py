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

import base64
import html
import io
import json
import logging
import os
from types import SimpleNamespace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import fsspec
import numpy as np

from learnsieve.core.layout import REPORT
from learnsieve.core.paths import join
from learnsieve.core.records import FILTERED, KEPT

log = logging.getLogger(__name__)

THUMB_PX = 96
BINS = 40
BATCH_ROWS = 65536
CAPTION_CHARS = 160
GRIDS = ("top", "above", "below", "bottom")
_BASE_COLUMNS = ("key", "source", "shard_index", "index", "decision", "output_shard", "uid", "label")

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


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


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


# --- reading the manifest in bounded memory ------------------------------------------------------

class _Extremes:
    """The ``n`` rows with the largest (``largest``) or smallest values offered so far; ties go to
    stream order (input shard, then position), so the choice does not depend on batching."""

    def __init__(self, n: int, largest: bool):
        self.n, self.largest = n, largest
        self.items: List[Tuple[tuple, dict]] = []

    def offer(self, values: np.ndarray, shard_index: np.ndarray, index: np.ndarray, positions: np.ndarray,
              take) -> None:
        if self.n <= 0 or len(values) == 0:
            return
        primary = -values if self.largest else values
        cand = np.arange(len(primary))
        if len(primary) > 4 * self.n:  # O(batch) pre-selection; ties at the cut all stay in
            kth = np.partition(primary, self.n - 1)[self.n - 1]
            cand = np.nonzero(primary <= kth)[0]
        order = cand[np.lexsort((index[cand], shard_index[cand], primary[cand]))[:self.n]]
        rows = take(positions[order])
        fresh = [((float(primary[i]), int(shard_index[i]), int(index[i])), row) for i, row in zip(order, rows)]
        self.items = sorted(self.items + fresh, key=lambda t: t[0])[:self.n]

    def rows(self) -> List[dict]:
        return [row for _, row in self.items]


class _ScoreSummary:
    def __init__(self, name: str, n: int):
        self.name = name
        self.grids = {"top": _Extremes(n, True), "bottom": _Extremes(n, False),
                      "above": _Extremes(n, False), "below": _Extremes(n, True)}
        self.lo, self.hi = np.inf, -np.inf
        self.count = {KEPT: 0, FILTERED: 0}
        self.total = {KEPT: 0.0, FILTERED: 0.0}
        self.min_kept, self.max_filtered = np.inf, -np.inf
        self.edges: Optional[np.ndarray] = None
        self.hist = {KEPT: np.zeros(BINS, np.int64), FILTERED: np.zeros(BINS, np.int64)}


def _columns(fs, path: str) -> List[str]:
    import pyarrow.parquet as pq
    with fs.open(path, "rb") as f:
        return list(pq.read_schema(f).names)


def _batches(fs, path: str, columns: List[str]):
    import pyarrow.parquet as pq
    with fs.open(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS, columns=columns)


def _summarise(fs, manifest: str, scores: List[str], n: int) -> Tuple[Dict[str, _ScoreSummary], dict]:
    """Two passes over the manifest: extremes and ranges, then histograms."""
    import pyarrow as pa
    names = set(_columns(fs, manifest))
    base = [c for c in _BASE_COLUMNS if c in names]
    extra = [c for c in ("reference_sha256", "proxy_sha256") if c in names]
    columns = list(dict.fromkeys(base + scores + extra))
    summaries = {s: _ScoreSummary(s, n) for s in scores}
    models: dict = {}
    for batch in _batches(fs, manifest, columns):
        if not models and batch.num_rows and extra:
            first = batch.slice(0, 1).to_pylist()[0]
            models = {k: first.get(k) for k in extra}
        decision = batch.column("decision").to_numpy(zero_copy_only=False)
        kept, filtered = decision == KEPT, decision == FILTERED
        shard_index = batch.column("shard_index").to_numpy(zero_copy_only=False)
        index = batch.column("index").to_numpy(zero_copy_only=False)
        shown = [c for c in base + scores if c in names]

        def take(pos, batch=batch, shown=shown):
            return batch.select(list(dict.fromkeys(shown))).take(pa.array(pos, pa.int64())).to_pylist()

        for s in scores:
            v = np.asarray(batch.column(s).to_numpy(zero_copy_only=False), dtype=np.float64)
            ok = (kept | filtered) & np.isfinite(v)
            summ = summaries[s]
            if not ok.any():
                continue
            summ.lo, summ.hi = min(summ.lo, float(v[ok].min())), max(summ.hi, float(v[ok].max()))
            for label, mask in ((KEPT, kept & ok), (FILTERED, filtered & ok)):
                summ.count[label] += int(mask.sum())
                summ.total[label] += float(v[mask].sum())
            for grid, mask in (("top", ok), ("bottom", ok), ("above", kept & ok), ("below", filtered & ok)):
                pos = np.nonzero(mask)[0]
                summ.grids[grid].offer(v[pos], shard_index[pos], index[pos], pos, take)
            if (kept & ok).any():
                summ.min_kept = min(summ.min_kept, float(v[kept & ok].min()))
            if (filtered & ok).any():
                summ.max_filtered = max(summ.max_filtered, float(v[filtered & ok].max()))
    for summ in summaries.values():
        if np.isfinite(summ.lo):
            lo, hi = (summ.lo, summ.hi) if summ.hi > summ.lo else (summ.lo - 0.5, summ.hi + 0.5)
            summ.edges = np.linspace(lo, hi, BINS + 1)
    wanted = [s for s in scores if summaries[s].edges is not None]
    if wanted:
        for batch in _batches(fs, manifest, ["decision"] + wanted):
            decision = batch.column("decision").to_numpy(zero_copy_only=False)
            for s in wanted:
                v = np.asarray(batch.column(s).to_numpy(zero_copy_only=False), dtype=np.float64)
                for label in (KEPT, FILTERED):
                    mask = (decision == label) & np.isfinite(v)
                    summaries[s].hist[label] += np.histogram(v[mask], bins=summaries[s].edges)[0]
    return summaries, models


# --- the shown examples' bytes ---------------------------------------------------------------

def _spans_from_score_file(output: str, source: str, wanted: Dict[int, dict]) -> Dict[int, dict]:
    """index -> member spans of the wanted examples, from the run's score file of ``source``."""
    import pyarrow.parquet as pq

    from learnsieve.core.score_file import cache_path
    fs, p = fsspec.core.url_to_fs(cache_path(output, source))
    if not fs.exists(p):
        return {}
    with fs.open(p, "rb") as f:
        table = pq.read_table(f, columns=["key", "index", "spans"])
    out = {}
    for row in table.to_pylist():
        i = row["index"]
        if i in wanted and row["spans"] and row["key"] == wanted[i]["key"]:
            out[i] = json.loads(row["spans"])
    return out


def _members(output: str, source: str, shard_index: int, wanted: Dict[int, dict]):
    """(index, files) of the wanted examples of one input shard: ranged reads where the score
    file has their spans (uncompressed shards), else one streaming pass that stops once all
    are found."""
    from learnsieve.core.records import Sample
    from learnsieve.core.tar import iter_shard, read_spans
    spans = _spans_from_score_file(output, source, wanted)
    if spans and len(spans) == len(wanted):
        records = [SimpleNamespace(index=i, spans=sp) for i, sp in sorted(spans.items())]
        for r, files in read_spans(source, records):
            yield r.index, files
        return
    left = dict(wanted)
    for item in iter_shard(source, shard_index):
        if isinstance(item, Sample) and item.index in left and item.key == left[item.index]["key"]:
            del left[item.index]
            yield item.index, item.files
            if not left:
                return


def thumbnail(data: bytes, px: int = THUMB_PX) -> Optional[str]:
    """Image bytes -> a JPEG data URI at most ``px`` on a side; None when it does not decode."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (2 * px, 2 * px))  # JPEG: decode at a reduced scale
            im = im.convert("RGB")
            im.thumbnail((px, px), Image.BICUBIC)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=82, optimize=True)
    except Exception:  # decompression bombs, truncated files: the page shows a placeholder
        return None
    return data_uri(buf.getvalue(), "image/jpeg")


def _caption_of(files: Dict[str, bytes]) -> str:
    from learnsieve.core.decode import caption_bytes
    raw = caption_bytes(files)
    if raw is None:
        label = files.get("cls")
        return f"class {label.decode('utf-8', 'replace').strip()}" if label is not None else ""
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= CAPTION_CHARS else text[:CAPTION_CHARS - 1] + "\u2026"


def _fetch(output: str, rows: Iterable[dict]) -> Dict[Tuple[int, int], Tuple[Optional[str], str]]:
    """(shard_index, index) -> (thumbnail data URI or None, caption) for the shown rows."""
    from learnsieve.core.tar import IMAGE_EXTS
    by_shard: Dict[Tuple[int, str], Dict[int, dict]] = {}
    for r in rows:
        by_shard.setdefault((r["shard_index"], r["source"]), {})[r["index"]] = r
    out: Dict[Tuple[int, int], Tuple[Optional[str], str]] = {}
    for (shard_index, source), wanted in sorted(by_shard.items()):
        try:
            for index, files in _members(output, source, shard_index, wanted):
                ext = next((e for e in IMAGE_EXTS if e in files), None)
                out[(shard_index, index)] = (thumbnail(files[ext]) if ext else None, _caption_of(files))
        except Exception as exc:  # an input shard gone or changed since the run: placeholders
            log.warning(f"report: cannot read examples back from {source}: {exc}")
    return out


# --- the curation report -----------------------------------------------------------------------

def _histogram(summ: _ScoreSummary, selection: bool) -> Optional[str]:
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


def render_report(stats: dict, summaries: Dict[str, _ScoreSummary], shown: Dict[Tuple[int, int], tuple],
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
    summaries: Dict[str, _ScoreSummary] = {}
    models: dict = {}
    if fs.exists(manifest):
        present = set(_columns(fs, manifest))
        missing = [s for s in wanted if s not in present]
        if missing:
            log.warning(f"report: no column {', '.join(missing)} in the manifest; shown: the others")
        summaries, models = _summarise(fs, manifest, [s for s in wanted if s in present], examples)
    rows = {(r["shard_index"], r["index"]): r for s in summaries.values()
            for g in s.grids.values() for r in g.rows()}
    shown = _fetch(output_dir, rows.values())
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
    if "compute" in results:
        from learnsieve.evaluate.report import compute_summary
        body.append(f"<h2>Compute</h2><p>{_esc(compute_summary(results['compute']))}</p>")
    return page("learnsieve eval", "\n".join(body))


def write_eval_page(results: dict, path: str) -> str:
    """``eval.html`` (beside eval.json): the arms, their curves, AUROCs and compute, one page."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_eval(results))
    return path
