"""The output folder's last step, after every shard is written (no Beam): shards renamed from
``_tmp/`` into place with their ``_stats.json``, sizes.json, the wids shard index and the HF
dataset card. Both graphs' writers (pipeline/write.py) and the streaming graph's finish
(pipeline/manifest.py) call it."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, List

import fsspec
from fsspec.implementations.local import LocalFileSystem

from learnsieve.core.layout import CARD_MARK, DATASET_CARD, TMP, WIDS_INDEX, dataset_card, final_names, wids_index
from learnsieve.core.paths import join
from learnsieve.core.records import WrittenShard


def move_file(fs, src: str, dst: str) -> None:
    """Rename one file, literally: ``os.replace`` on local disk; on object stores a copy then a
    delete (what GCS's own move is; ``fs.mv`` would expand glob characters in the name, and
    stores or emulators without a server-side move answer it slowly or not at all)."""
    if isinstance(fs, LocalFileSystem):
        os.replace(src, dst)
    else:
        fs.cp_file(src, dst)
        fs.rm_file(src)


def finalize_shards(output: str, written: List[WrittenShard]) -> Dict[str, str]:
    """Rename ``_tmp/*`` to sequential names; write ``_stats.json`` per shard and sizes.json."""
    fs, root = fsspec.core.url_to_fs(output)
    names = final_names([w.provisional for w in written])
    sizes = {}
    for w in sorted(written, key=lambda w: w.provisional):
        final = names[w.provisional]
        move_file(fs, join(root, TMP, w.provisional), join(root, final))
        stem = final[:-len(".tar")]
        with fs.open(join(root, f"{stem}_stats.json"), "w") as f:
            json.dump({"count": w.count, "successes": w.count, "sources": list(w.sources)}, f,
                      indent=1, sort_keys=True)
        sizes[final] = w.count
    with fs.open(join(root, "sizes.json"), "w") as f:
        json.dump(sizes, f, indent=1, sort_keys=True)
    write_loader_files(fs, root, sizes)
    if fs.exists(join(root, TMP)) and not fs.ls(join(root, TMP)):
        fs.rm(join(root, TMP), recursive=True)
    return names


def write_loader_files(fs, root: str, sizes: Dict[str, int]) -> None:
    """Beside sizes.json: the wids shard index, and the dataset card that points HF datasets'
    folder loader at the shards (a README.md that learnsieve did not write is left alone)."""
    index = wids_index(sizes, {name: int(fs.size(join(root, name))) for name in sizes})
    with fs.open(join(root, WIDS_INDEX), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    card = join(root, DATASET_CARD)
    if fs.exists(card):
        with fs.open(card, "r") as f:
            if CARD_MARK not in f.read(64 << 10):
                return
    run_id = hashlib.blake2b(json.dumps(index, sort_keys=True).encode(), digest_size=6).hexdigest()
    with fs.open(card, "w") as f:
        f.write(dataset_card(run_id, sorted(sizes)))
