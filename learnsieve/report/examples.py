"""What ``report.html`` shows, read in bounded memory whatever the pool size: per score column the
extremes (top, bottom, either side of the threshold) and fixed-bin histograms of kept vs filtered,
from ``manifest.parquet`` in record batches; then the original bytes of just the few dozen
examples shown, by byte range from the input shards (spans from ``_scores/``) or one streaming
pass over the shards that hold them, downscaled to ~96 px JPEG thumbnails. No Beam."""
from __future__ import annotations

import base64
import io
import json
import logging
from types import SimpleNamespace
from typing import Dict, Iterable, List, Optional, Tuple

import fsspec
import numpy as np

from learnsieve.core.records import FILTERED, KEPT

log = logging.getLogger(__name__)
THUMB_PX = 96
BINS = 40
BATCH_ROWS = 65536
CAPTION_CHARS = 160
_BASE_COLUMNS = ("key", "source", "shard_index", "index", "decision", "output_shard", "uid", "label")


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"



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


class ScoreSummary:
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


def score_columns(fs, path: str) -> List[str]:
    import pyarrow.parquet as pq
    with fs.open(path, "rb") as f:
        return list(pq.read_schema(f).names)


def _batches(fs, path: str, columns: List[str]):
    import pyarrow.parquet as pq
    with fs.open(path, "rb") as f:
        yield from pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS, columns=columns)


def summarise_scores(fs, manifest: str, scores: List[str], n: int) -> Tuple[Dict[str, ScoreSummary], dict]:
    """Two passes over the manifest: extremes and ranges, then histograms."""
    import pyarrow as pa
    names = set(score_columns(fs, manifest))
    base = [c for c in _BASE_COLUMNS if c in names]
    extra = [c for c in ("reference_sha256", "proxy_sha256") if c in names]
    columns = list(dict.fromkeys(base + scores + extra))
    summaries = {s: ScoreSummary(s, n) for s in scores}
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


def fetch_thumbnails(output: str, rows: Iterable[dict]) -> Dict[Tuple[int, int], Tuple[Optional[str], str]]:
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
