"""``learnsieve export``: the kept examples of a finished ``curate`` output in other tools'
formats. No Beam, no torch.

``--uids OUT.npy`` writes a DataComp subset file, the format DataComp's resharder
(``resharder.py --subset_file``) and its filtering track take: a numpy array of dtype
``np.dtype("u8,u8")`` (a structured array of pairs of unsigned 64-bit integers), shape
``(subset_size,)``, holding the 128-bit ``uid`` of each kept example (32 hex digits in the
pool's parquet and in each ``KEY.json``; the first 16 digits are the first integer, the last 16
the second), in lexicographic sorted order, without duplicates, saved with ``np.save``. The uids
are the manifest's ``uid`` column, which curate fills from the input's ``KEY.json``.

The manifest is read in record batches (two columns); what is held is the uids themselves, 16
bytes per kept example, as numpy (DataComp loads the whole array too).
"""
from __future__ import annotations

from typing import List

import fsspec
import numpy as np

from learnsieve.core.paths import InputError, join
from learnsieve.core.records import KEPT

UID_DTYPE = np.dtype("u8,u8")
HEX_UID = r"^[0-9a-fA-F]{32}$"


class ExportError(InputError):
    """Nothing to export, or uids missing or not DataComp's: a one-line message (exit status 2)."""


def uids_to_array(uids: List[str]) -> np.ndarray:
    """DataComp's representation of 32-hex-digit uids: (int(uid[:16], 16), int(uid[16:], 16))."""
    out = np.empty(len(uids), UID_DTYPE)
    if uids:
        pairs = np.frombuffer(bytes.fromhex("".join(uids)), dtype=">u8").reshape(-1, 2)
        out["f0"], out["f1"] = pairs[:, 0], pairs[:, 1]
    return out


def array_to_uids(arr: np.ndarray) -> List[str]:
    return [f"{int(a):016x}{int(b):016x}" for a, b in zip(arr["f0"], arr["f1"])]


def kept_uids(output: str) -> np.ndarray:
    """Sorted unique uids of the kept examples of a curate output, as DataComp's ``u8,u8``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    fs, root = fsspec.core.url_to_fs(output)
    manifest = join(root, "manifest.parquet")
    if not fs.exists(manifest):
        raise ExportError(f"no manifest.parquet in {output}: export reads the output folder of a "
                          f"finished `learnsieve curate` run")
    with fs.open(manifest, "rb") as f:
        pf = pq.ParquetFile(f)
        if "uid" not in pf.schema_arrow.names:
            raise ExportError(f"{output}/manifest.parquet has no uid column (written by an older "
                              f"learnsieve): run curate again with --overwrite")
        parts, kept, missing, example = [], 0, 0, None
        for batch in pf.iter_batches(batch_size=1 << 16, columns=["key", "decision", "uid"]):
            batch = batch.filter(pc.equal(batch.column("decision"), KEPT))
            kept += batch.num_rows
            uid = batch.column("uid").cast(pa.string())
            nulls = uid.null_count
            if nulls:
                missing += nulls
                if example is None:
                    example = batch.filter(pc.is_null(uid)).column("key")[0].as_py()
                batch = batch.filter(pc.is_valid(uid))
                uid = batch.column("uid").cast(pa.string())
            bad = pc.invert(pc.match_substring_regex(uid, HEX_UID))
            if pc.any(bad).as_py():
                row = batch.filter(bad).slice(0, 1).to_pylist()[0]
                raise ExportError(f"kept example {row['key']!r} has uid {row['uid'][:60]!r}, not "
                                  f"DataComp's 32 hex digits: --uids needs DataComp / img2dataset uids")
            parts.append(uids_to_array(uid.to_pylist()))
    if missing:
        raise ExportError(f"{missing} of {kept} kept examples have no uid in their KEY.json (e.g. key "
                          f"{example!r}): a DataComp subset names examples by the pool's uids; make the pool "
                          f"with `learnsieve shards` (a uid per example: the md5 of url and caption, as "
                          f"32 hex digits) or add a 32-hex-digit uid to each KEY.json, then curate again")
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, UID_DTYPE)


def export_uids(output: str, path: str, overwrite: bool = False) -> int:
    """Write the DataComp subset file of ``output``'s kept examples to ``path``; returns its size.
    An existing ``path`` is replaced only with ``overwrite``; a folder never."""
    fs, where = fsspec.core.url_to_fs(path)
    if fs.isdir(where):
        raise ExportError(f"--uids {path} is a folder: pass a file name, e.g. {path.rstrip('/')}/subset.npy")
    if fs.exists(where) and not overwrite:
        raise ExportError(f"--uids {path} already exists: pass --overwrite to replace it, or another file")
    arr = kept_uids(output)
    with fsspec.open(path, "wb") as f:
        np.save(f, arr, allow_pickle=False)
    return len(arr)
