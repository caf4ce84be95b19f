"""Helpers of the end-to-end tests."""
import glob
import os

OUTPUT_FILES = ("sizes.json", "manifest.parquet", "rejected/rejected.jsonl")


def snapshot(out: str) -> dict:
    """The bytes of everything a curate run's output must reproduce exactly: the shards, their
    ``_stats.json``, sizes.json, manifest.parquet and rejected.jsonl."""
    files = sorted(glob.glob(os.path.join(out, "*.tar")) + glob.glob(os.path.join(out, "*_stats.json")))
    files += [os.path.join(out, f) for f in OUTPUT_FILES]
    return {os.path.relpath(f, out): open(f, "rb").read() for f in files}
