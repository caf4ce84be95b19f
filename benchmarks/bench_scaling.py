"""Wall time and peak memory of ``learnsieve curate`` (the real command, no runner flags: the
in-process runner) at 10k, 100k and 1M examples. Each size runs in a fresh process, so its peak
RSS is its own. Wall time should grow linearly (ms per example flat) and peak RSS stay flat
(target: 1M <= 2x the 10k run).

Up to ``--distinct`` examples are generated (small synthetic images, ``--px``); larger pools
list copies of those shards under new names (copies, not hard links: curate reads two names of
one file once; every copy is read, decoded, scored and written like a new shard, and the run
fails unless every example of every shard was read). The judges are tiny (5 training steps): this
measures the pipeline, not the models.

    python benchmarks/bench_scaling.py --sizes 10000 100000 1000000
    python benchmarks/bench_scaling.py --sizes 40 --per-shard 20 --model ls_clip_test --train-steps 1   # a quick check
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # for benchmarks.*; after the installed learnsieve

# a fresh process per size: ru_maxrss of its only child is that run's peak
MEASURE = r"""
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).returncode
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def pool_of(base_shards, n_shards: int, folder: str) -> str:
    """``n_shards`` input shards in ``folder``: the base shards (hard links), then copies of them
    under new names. Copies, not links: curate reads two spellings of one file (the same inode)
    once, as it should, so a linked copy would not be read again."""
    os.makedirs(folder, exist_ok=True)
    for i in range(n_shards):
        dst = os.path.join(folder, f"{i:06d}.tar")
        if not os.path.exists(dst):
            src = base_shards[i % len(base_shards)]
            os.link(src, dst) if i < len(base_shards) else shutil.copyfile(src, dst)
    return os.path.join(folder, "{%06d..%06d}.tar" % (0, n_shards - 1))


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--per-shard", type=int, default=1000, help="input examples per shard")
    ap.add_argument("--distinct", type=int, default=100_000, help="examples generated; the rest are copies")
    ap.add_argument("--px", type=int, default=32, help="side of the synthetic images")
    ap.add_argument("--fraction", type=float, default=0.5)
    ap.add_argument("--model", default="ls_clip_tiny", help="reference and proxy model")
    ap.add_argument("--train-steps", type=int, default=5, help="training steps per checkpoint")
    ap.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    args = ap.parse_args(argv)
    from benchmarks.common import make_pool_and_models
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or tmp
        distinct = min(args.distinct, max(args.sizes))
        base_dir = os.path.join(root, "base")
        t0 = time.perf_counter()
        if not os.path.exists(os.path.join(base_dir, "reference")):
            make_pool_and_models(base_dir, distinct, max(1, distinct // args.per_shard), image_px=args.px,
                                 train_steps=args.train_steps, reference_model=args.model, proxy_model=args.model)
        print(f"pool of {distinct} distinct examples in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        base = sorted(glob.glob(os.path.join(base_dir, "pool", "*.tar")))
        for n in args.sizes:
            pattern = pool_of(base, max(1, n // args.per_shard), os.path.join(root, f"in{n}"))
            out = os.path.join(root, f"out{n}")
            cmd = [os.path.join(os.path.dirname(sys.executable), "learnsieve"), "curate", "--input", pattern,
                   "--output", out, "--reference", os.path.join(base_dir, "reference"),
                   "--proxy", os.path.join(base_dir, "proxy"), "--overwrite", "--quiet",
                   "--set", f"score.image_size={args.px}", "--set", f"select.fraction={args.fraction}",
                   "--set", "write.report=false"]
            r = json.loads(subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True,
                                          check=True).stdout.strip().splitlines()[-1])
            if r["rc"] != 0:
                raise SystemExit(f"curate of {n} examples failed with rc {r['rc']}: {' '.join(cmd)}")
            with open(os.path.join(out, "stats.json")) as f:
                stats = json.load(f)
            shards = max(1, n // args.per_shard)
            if stats["read"] != shards * args.per_shard:  # every shard read, the copies included
                raise SystemExit(f"curate of {n} examples read {stats['read']}, not {shards * args.per_shard}")
            r.update(examples=stats["read"], kept=stats["kept"], shards=shards)
            rows.append(r)
            print(f"{n}: {r}", file=sys.stderr)
            if not args.keep:
                subprocess.run(["rm", "-rf", out])
    first = rows[0]
    print("| examples | input shards | kept | wall s | ms / example | ms/ex vs first | peak RSS MB | RSS vs first |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        per = 1000 * r["seconds"] / r["examples"]
        per0 = 1000 * first["seconds"] / first["examples"]
        print(f"| {r['examples']:,} | {r['shards']:,} | {r['kept']:,} | {r['seconds']:.0f} | {per:.2f} | "
              f"{per / per0:.2f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / first['peak_rss_mb']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
