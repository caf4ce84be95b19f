"""``learnsieve shards``: WebDataset shards from your own images, in img2dataset's output layout.

Sources (no Beam, no torch):

- ``images``: a folder of images (``jpg|jpeg|png|webp``, walked recursively, sorted by relative
  path); each image's caption is the ``NAME.txt`` beside it, or the table's row for it;
- ``table``: a captions table, CSV / TSV (by extension; Flickr's ``captions.txt`` is CSV),
  parquet or JSON lines, one row per example: an image column (a path relative to ``images`` or
  to the table's folder, an absolute path, or a ``http(s)://`` / ``gs://`` URL, read with fsspec)
  and a caption column. Several rows may name one image (Flickr's five captions each).

Output (``output``, or ``output/clean`` and ``output/pool`` with ``clean_fraction``):
``00000.tar`` ... holding ``KEY.jpg`` (the image's original bytes and extension; re-encoded only
with ``resize``), ``KEY.txt`` (the caption) and ``KEY.json`` (``uid``, ``url``, ``caption``,
``key``, ``status``, ``width``, ``height``), ``NNNNN_stats.json`` per shard, ``sizes.json``
(open_clip's sample counts) and one ``_stats.json`` (counts, failures by reason, the first
failures named). Keys are img2dataset's: the shard number then the index within it
(``000000012``), in source order, so the same source gives the same shards, byte for byte.
``uid`` is the md5 of url and caption (32 hex digits: DataComp's format, for ``export --uids``).

A failure (a missing file, a download that fails, an image PIL cannot open, an empty caption) is
a counted, named failure in ``_stats.json``, never a crash. With ``clean_fraction`` a seeded
share of the distinct images (all of their captions) goes to ``clean/`` (the reference's set),
the rest to ``pool/``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import fsspec

from learnsieve.core.paths import InputError, shard_pattern
from learnsieve.core.tar_write import TarSink

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp")
IMAGE_COLUMNS = ("image", "url", "path", "file", "filename", "file_name", "image_path")
REMOTE = ("http://", "https://", "gs://", "s3://")
FAILURES_NAMED = 100  # failures listed one by one in _stats.json (all are counted)


class ShardsError(InputError):
    """A source that cannot be read at all (no such folder, no such column): one line."""


@dataclass(frozen=True)
class Row:
    image: str        # what the source names: a path relative to the base, absolute, or a URL
    caption: str
    row: int          # position in the source (table row or sorted file index)


def _is_remote(path: str) -> bool:
    return path.startswith(REMOTE)


def read_table(path: str, image_column: Optional[str], caption_column: str) -> List[Row]:
    """The rows of a CSV / TSV / parquet / JSON-lines table as (image, caption)."""
    lower = path.lower()
    try:
        if lower.endswith(".parquet"):
            import pyarrow.parquet as pq
            with fsspec.open(path, "rb") as f:
                records = pq.read_table(f).to_pylist()
        elif lower.endswith((".jsonl", ".json", ".ndjson")):
            with fsspec.open(path, "r", encoding="utf-8") as f:
                records = [json.loads(line) for line in f if line.strip()]
        else:
            with fsspec.open(path, "r", encoding="utf-8", newline="") as f:
                text = f.read()
            records = list(csv.DictReader(io.StringIO(text), delimiter="\t" if lower.endswith(".tsv") else ","))
    except FileNotFoundError:
        raise ShardsError(f"--table {path} does not exist") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise ShardsError(f"--table {path} cannot be read as "
                          f"{'parquet' if lower.endswith('.parquet') else 'a table'}: {exc}") from None
    if not records:
        raise ShardsError(f"--table {path} has no rows")
    columns = list(records[0])
    if image_column is None:
        image_column = next((c for c in IMAGE_COLUMNS if c in columns), None)
        if image_column is None:
            raise ShardsError(f"--table {path} has none of the image columns {', '.join(IMAGE_COLUMNS)} "
                              f"(its columns: {', '.join(map(str, columns))}): pass --image-column")
    for flag, col in (("--image-column", image_column), ("--caption-column", caption_column)):
        if col not in columns:
            import difflib
            close = difflib.get_close_matches(col, [str(c) for c in columns], n=1)
            raise ShardsError(f"{flag} {col}: no such column in {path} (its columns: "
                              f"{', '.join(map(str, columns))})" + (f"; did you mean {close[0]}?" if close else ""))
    return [Row(str(r.get(image_column) or "").strip(), " ".join(str(r.get(caption_column) or "").split()), i)
            for i, r in enumerate(records)]


def folder_rows(images: str) -> List[Row]:
    """Every image under ``images`` (sorted relative paths) with the caption of its ``NAME.txt``."""
    if not os.path.isdir(images):
        raise ShardsError(f"--images {images} is not a folder")
    found = []
    for top, dirs, files in os.walk(images):
        dirs.sort()
        for name in files:
            if name.lower().endswith(IMAGE_EXTS):
                found.append(os.path.relpath(os.path.join(top, name), images))
    if not found:
        raise ShardsError(f"--images {images} holds no {'/'.join(e[1:] for e in IMAGE_EXTS)} files")
    rows = []
    for i, rel in enumerate(sorted(found)):
        txt = os.path.join(images, os.path.splitext(rel)[0] + ".txt")
        caption = ""
        if os.path.exists(txt):
            with open(txt, encoding="utf-8", errors="replace") as f:
                caption = " ".join(f.read().split())
        rows.append(Row(rel, caption, i))
    return rows


def uid_of(url: str, caption: str) -> str:
    """32 hex digits, the md5 of url and caption: one id per pair, as DataComp's pools have."""
    return hashlib.md5(f"{url}\t{caption}".encode("utf-8")).hexdigest()


class Fetcher:
    """Image bytes by what the source names; a failure is (reason, detail), never an exception."""

    def __init__(self, base: Optional[str], timeout: float = 20.0, retries: int = 1):
        self.base, self.timeout, self.retries = base, timeout, retries
        self._http = None

    def location(self, image: str) -> str:
        if _is_remote(image) or os.path.isabs(image) or not self.base:
            return image
        return os.path.join(self.base, image)

    def fetch_many(self, images: Sequence[str]) -> List[Tuple[Optional[bytes], Optional[str], str]]:
        """(bytes or None, failure reason or None, detail) for each of ``images``; http(s)
        downloads of one batch run concurrently (fsspec's http, ``timeout`` seconds each)."""
        out: List[Tuple[Optional[bytes], Optional[str], str]] = [(None, None, "")] * len(images)
        http = [i for i, im in enumerate(images) if im.startswith(("http://", "https://"))]
        remote = set(http)
        for i, im in enumerate(images):
            if i not in remote:
                out[i] = self._read(self.location(im))
        if http:
            for i, got in zip(http, self._download([images[i] for i in http])):
                out[i] = got
        return out

    def _read(self, loc: str):
        if not loc:
            return None, "no_image", "empty image field"
        try:
            with fsspec.open(loc, "rb") as f:
                return f.read(), None, ""
        except FileNotFoundError:
            return None, "missing_file", loc
        except (OSError, ValueError) as exc:
            return None, "read_failed", f"{loc}: {type(exc).__name__}: {exc}"[:300]

    def _download(self, urls: Sequence[str]):
        if self._http is None:
            import aiohttp
            self._http = fsspec.filesystem("http", client_kwargs={
                "timeout": aiohttp.ClientTimeout(total=self.timeout)})
        results: Dict[str, object] = {}
        todo = list(dict.fromkeys(urls))
        for attempt in range(self.retries + 1):
            got = self._http.cat(todo, on_error="return") if todo else {}
            if len(todo) == 1 and not isinstance(got, dict):
                got = {todo[0]: got}
            results.update(got)
            todo = [u for u in todo if isinstance(results.get(u), BaseException)
                    and not isinstance(results.get(u), FileNotFoundError)]
            if not todo:
                break
            time.sleep(0.2 * (attempt + 1))
        out = []
        for u in urls:
            r = results.get(u)
            if isinstance(r, (bytes, bytearray)):
                out.append((bytes(r), None, ""))
            else:
                what = "HTTP 404 (not found)" if isinstance(r, FileNotFoundError) else \
                    f"{type(r).__name__}: {r}" if r is not None else "no answer"
                out.append((None, "download_failed", f"{u}: {what}"[:300]))
        return out


def _image_info(data: bytes, resize: int):
    """(bytes to store, extension, width, height) or a failure (None, reason, detail, 0)."""
    from PIL import Image, UnidentifiedImageError
    try:
        img = Image.open(io.BytesIO(data))
        fmt = (img.format or "").lower()
        if resize:
            from learnsieve.datasets.flickr import resize_jpeg
            data, (w, h), _ = resize_jpeg(data, resize)
            return data, "jpg", w, h
        img.verify()  # header and structure, without decoding every pixel
        w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        return None, "undecodable_image", f"{type(exc).__name__}: {exc}"[:300], 0
    ext = {"jpeg": "jpg", "mpo": "jpg", "png": "png", "webp": "webp"}.get(fmt)
    if ext is None:
        return None, "unsupported_format", f"{fmt or 'unknown'} (curate reads jpg, png, webp)", 0
    return data, ext, w, h


def split_clean(rows: Sequence[Row], fraction: float, seed: int) -> Tuple[List[Row], List[Row]]:
    """(clean, pool): a seeded ``fraction`` of the distinct images, with all their rows, is clean."""
    if not 0.0 < fraction < 1.0:
        raise ShardsError(f"--clean-fraction must be in (0, 1), got {fraction}")
    distinct = sorted({r.image for r in rows})
    if len(distinct) < 2:
        raise ShardsError("--clean-fraction needs at least 2 distinct images")
    n = min(len(distinct) - 1, max(1, round(fraction * len(distinct))))
    random.Random(seed).shuffle(distinct)
    clean = set(distinct[:n])
    return [r for r in rows if r.image in clean], [r for r in rows if r.image not in clean]


def _batches(rows: Sequence[Row], n: int) -> Iterator[Sequence[Row]]:
    for start in range(0, len(rows), n):
        yield rows[start:start + n]


def write_shards(out_dir: str, rows: Sequence[Row], fetcher: Fetcher, samples_per_shard: int = 1000,
                 resize: int = 0, progress_every: float = 10.0) -> dict:
    """img2dataset-style shards of ``rows`` in ``out_dir``; returns the folder's stats."""
    os.makedirs(out_dir, exist_ok=True)
    shard_count = max(1, -(-len(rows) // samples_per_shard))
    width = max(5, len(str(shard_count - 1)))
    index_width = max(4, len(str(samples_per_shard - 1)))
    sizes: Dict[str, int] = {}
    failed: Dict[str, int] = {}
    failures: List[dict] = []
    written = 0
    last = t0 = time.perf_counter()
    for s, chunk in enumerate(_batches(rows, samples_per_shard)):
        name = f"{s:0{width}d}.tar"
        sink = TarSink(os.path.join(out_dir, name))
        got = fetcher.fetch_many([r.image for r in chunk])
        count = ok = 0
        shard_failed: Dict[str, int] = {}
        for i, (r, (data, reason, detail)) in enumerate(zip(chunk, got)):
            count += 1
            key = f"{s:0{width}d}{i:0{index_width}d}"
            if reason is None and not r.caption:
                reason, detail = "empty_caption", ""
            if reason is None:
                data, ext_or_reason, w, h = _image_info(data, resize)
                if data is None:
                    reason, detail = ext_or_reason, w
            if reason is not None:
                shard_failed[reason] = shard_failed.get(reason, 0) + 1
                if len(failures) < FAILURES_NAMED:
                    failures.append({"row": r.row, "image": r.image, "key": key, "reason": reason,
                                     "detail": detail})
                continue
            meta = {"uid": uid_of(r.image, r.caption), "url": r.image, "caption": r.caption, "key": key,
                    "status": "success", "width": w, "height": h}
            sink.write(key, {ext_or_reason: data, "txt": r.caption.encode("utf-8"),
                             "json": json.dumps(meta, sort_keys=True).encode()})
            ok += 1
        sink.close()
        with open(os.path.join(out_dir, f"{s:0{width}d}_stats.json"), "w") as f:
            json.dump({"count": count, "successes": ok, "failed_to_download": shard_failed.get("download_failed", 0),
                       "failed_to_resize": shard_failed.get("undecodable_image", 0),
                       "status_dict": {"success": ok, **shard_failed}}, f, indent=1, sort_keys=True)
        sizes[name] = ok
        written += ok
        for k, v in shard_failed.items():
            failed[k] = failed.get(k, 0) + v
        now = time.perf_counter()
        if progress_every and (now - last >= progress_every or s == shard_count - 1):
            last = now
            log.info(f"shards: {s + 1}/{shard_count} shards of {out_dir}, {written:,} examples written, "
                     f"{sum(failed.values()):,} failed, {now - t0:.0f}s")
    with open(os.path.join(out_dir, "sizes.json"), "w") as f:
        json.dump(sizes, f, indent=1, sort_keys=True)
    return {"folder": out_dir, "pattern": shard_pattern(out_dir, len(sizes)), "shards": len(sizes),
            "rows": len(rows), "successes": written, "failed": sum(failed.values()),
            "failed_by_reason": dict(sorted(failed.items())), "failures": failures,
            "distinct_images": len({r.image for r in rows})}


def build_shards(output: str, images: Optional[str] = None, table: Optional[str] = None,
                 caption_column: str = "caption", image_column: Optional[str] = None,
                 samples_per_shard: int = 1000, clean_fraction: float = 0.0, seed: int = 0, resize: int = 0,
                 timeout: float = 20.0, progress_every: float = 10.0) -> dict:
    """Write the shards (module docstring) into ``output``, a folder the caller has claimed;
    returns what ``_stats.json`` holds."""
    if not images and not table:
        raise ShardsError("pass --images DIR (captions in NAME.txt beside each image, or --table) "
                          "or --table FILE (an image column of paths or URLs, and a caption column)")
    if samples_per_shard < 1:
        raise ShardsError(f"--samples-per-shard must be >= 1, got {samples_per_shard}")
    if images and not os.path.isdir(images):
        raise ShardsError(f"--images {images} is not a folder")
    if table:
        rows = read_table(table, image_column, caption_column)
        base = images or (os.path.dirname(table) if not _is_remote(table) else table.rsplit("/", 1)[0])
    else:
        rows, base = folder_rows(images), images
    fetcher = Fetcher(base, timeout=timeout)
    stats: dict = {"source": {"images": images, "table": table, "caption_column": caption_column,
                              "image_column": image_column}, "rows": len(rows)}
    if clean_fraction:
        clean, pool = split_clean(rows, clean_fraction, seed)
        parts = {"clean": write_shards(os.path.join(output, "clean"), clean, fetcher, samples_per_shard, resize,
                                       progress_every),
                 "pool": write_shards(os.path.join(output, "pool"), pool, fetcher, samples_per_shard, resize,
                                      progress_every)}
        stats["clean_fraction"] = clean_fraction
        stats["seed"] = seed
    else:
        parts = {"": write_shards(output, rows, fetcher, samples_per_shard, resize, progress_every)}
    stats["parts"] = parts
    stats["successes"] = sum(p["successes"] for p in parts.values())
    stats["failed"] = sum(p["failed"] for p in parts.values())
    by_reason: Dict[str, int] = {}
    for p in parts.values():
        for k, v in p["failed_by_reason"].items():
            by_reason[k] = by_reason.get(k, 0) + v
    stats["failed_by_reason"] = dict(sorted(by_reason.items()))
    with open(os.path.join(output, "_stats.json"), "w") as f:
        json.dump(stats, f, indent=1, sort_keys=True)
    return stats


def describe(stats: dict) -> List[str]:
    """What the command prints: counts per folder, failures, and the next commands."""
    lines = []
    for name, p in stats["parts"].items():
        fails = ", ".join(f"{k} {v}" for k, v in p["failed_by_reason"].items())
        lines.append(f"{name or 'shards'}: {p['successes']:,} examples of {p['distinct_images']:,} images in "
                     f"{p['shards']} shards: {p['pattern']}" + (f" ({p['failed']} failed: {fails})" if fails else ""))
    return lines

