"""The one shard writer of the dataset builders: examples -> ``shards`` numbered tars
(``00000.tar`` ...) with img2dataset's ``_stats.json`` beside each, and the ground truth."""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Sequence, Tuple, TypeVar

from learnsieve.core.tar_write import TarSink

T = TypeVar("T")
# (item, key) -> (the sample's files {ext: bytes}, its ground-truth kind: "clean" or a noise kind)
Render = Callable[[T, str], Tuple[Dict[str, bytes], str]]


def write_examples(out_dir: str, items: Sequence[T], shards: int, render: Render,
                   key_prefix: str = "") -> Dict[str, str]:
    """Write ``items`` in order into ``shards`` tars of equal size (the last may be shorter; at
    least one, at most one per item); keys are ``{prefix}{shard:05d}{index:04d}``. Rendering
    happens in write order, so a seeded renderer gives the same bytes every time.
    Returns {key: kind}."""
    os.makedirs(out_dir, exist_ok=True)
    shards = max(1, min(shards, len(items)))
    per = -(-len(items) // shards)
    truth: Dict[str, str] = {}
    for s in range(shards):
        chunk = items[s * per:(s + 1) * per]
        sink = TarSink(os.path.join(out_dir, f"{s:05d}.tar"))
        for i, item in enumerate(chunk):
            key = f"{key_prefix}{s:05d}{i:04d}"
            files, kind = render(item, key)
            sink.write(key, files)
            truth[key] = kind
        sink.close()
        with open(os.path.join(out_dir, f"{s:05d}_stats.json"), "w") as f:
            json.dump({"count": len(chunk), "successes": len(chunk)}, f)
    return truth
