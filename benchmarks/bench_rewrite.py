"""Shard rewrite given a keep list: learnsieve's write path (streaming re-read of each input
shard with ``read_kept`` + deterministic ``TarSink``) against a straightforward webdataset loop
(``wds.WebDataset`` -> filter by key -> ``wds.ShardWriter``), the way DataComp-style
resharders are usually written. Same shards, same keep list, alternated, medians; ratio > 1
means learnsieve is faster.

    python benchmarks/bench_rewrite.py --pool 8000 --shards 8 --keep 0.5 --repeats 3
    python benchmarks/bench_rewrite.py --pool 40 --shards 2 --per-shard 10 --repeats 1   # a quick check
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

# for benchmarks.*; appended: the installed learnsieve comes first
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def learnsieve_rewrite(urls, keep, out_dir, per_shard) -> int:
    from learnsieve.core.records import Scored
    from learnsieve.core.tar_write import TarSink
    from learnsieve.pipeline.write import read_kept
    n, sink, chunk = 0, None, 0
    for i, url in enumerate(urls):
        kept = {k: Scored(key=k, source=url, shard_index=i, index=0, scores={}) for k in keep[url]}
        for s, files in read_kept(url, i, kept):
            if sink is None or sink.count >= per_shard:
                if sink:
                    sink.close()
                sink, chunk = TarSink(os.path.join(out_dir, f"{chunk:05d}.tar")), chunk + 1
            sink.write(s.key, files)
            n += 1
    if sink:
        sink.close()
    return n


def webdataset_rewrite(urls, keep, out_dir, per_shard) -> int:
    import webdataset as wds
    allowed = {(u, k) for u in urls for k in keep[u]}
    n = 0
    with wds.ShardWriter(os.path.join(out_dir, "%05d.tar"), maxcount=per_shard, verbose=0) as sink:
        for sample in wds.WebDataset(urls, shardshuffle=False):
            if (sample["__url__"], sample["__key__"]) in allowed:
                sink.write({k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"})
                n += 1
    return n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=8000)
    ap.add_argument("--shards", type=int, default=8)
    ap.add_argument("--keep", type=float, default=0.5)
    ap.add_argument("--per-shard", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import warnings
    warnings.simplefilter("ignore", ResourceWarning)
    from benchmarks.common import make_pool_and_models
    from learnsieve.core.paths import expand_pattern
    from learnsieve.core.records import Sample
    from learnsieve.core.tar import iter_shard
    from learnsieve.pipeline.write import read_kept  # noqa: F401  (its import, Apache Beam's, is not timed)
    with tempfile.TemporaryDirectory() as root:
        paths = make_pool_and_models(root, args.pool, args.shards, models=False)
        urls = expand_pattern(paths["input"])
        rng = random.Random(0)
        keep = {u: [s.key for s in iter_shard(u, i) if isinstance(s, Sample) and rng.random() < args.keep]
                for i, u in enumerate(urls)}
        times = {"learnsieve": [], "webdataset": []}
        counts = set()
        for rep in range(args.repeats):
            for name, fn in (("webdataset", webdataset_rewrite), ("learnsieve", learnsieve_rewrite)):
                out = os.path.join(root, f"{name}{rep}")
                os.makedirs(out)
                t0 = time.perf_counter()
                n = fn(urls, keep, out, args.per_shard)
                times[name].append(time.perf_counter() - t0)
                counts.add(n)
                print(f"{name:10s} rep {rep}: {n} kept in {times[name][-1]:.2f}s", file=sys.stderr)
    if len(counts) != 1:
        raise RuntimeError(f"the two rewrites kept different counts: {sorted(counts)}")
    ls, wd = statistics.median(times["learnsieve"]), statistics.median(times["webdataset"])
    print("| pool | shards | kept | webdataset loop ex/s (kept) | learnsieve ex/s (kept) | ratio |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.pool} | {args.shards} | {n} | {n / wd:.0f} | {n / ls:.0f} | **{wd / ls:.2f}** |")
    return {"kept": n, "seconds": times, "ratio": wd / ls}


if __name__ == "__main__":
    main()
