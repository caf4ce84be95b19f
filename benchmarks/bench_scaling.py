"""Wall time and peak memory of ``learnsieve curate`` at 1x, 4x and 8x input (DirectRunner's
in-process FnApiRunner). Each size runs in a fresh process so peak RSS is its own. Wall time
should grow linearly (seconds per example flat) and peak memory stay flat (<= 1.2x from 1x to 8x).

    python benchmarks/bench_scaling.py --base 2000 --factors 1 4 8
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHILD = r"""
import json, resource, sys, time, dataclasses, logging
logging.getLogger().setLevel(logging.ERROR)
import torch; torch.set_num_threads(1)
from learnsieve.config import load_config
from learnsieve.pipeline.run import run
paths = json.loads(sys.argv[1])
cfg = dataclasses.replace(load_config(None, ["score.torch_threads=1", "write.samples_per_shard=1000"]), **paths)
t0 = time.perf_counter()
stats = run(cfg, overwrite=True)
print(json.dumps({"seconds": time.perf_counter() - t0, "read": stats["read"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=int, default=2000, help="examples at 1x")
    ap.add_argument("--per-shard", type=int, default=500, help="input examples per shard")
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args(argv)
    from benchmarks.common import make_pool_and_models
    rows = []
    with tempfile.TemporaryDirectory() as root:
        models = make_pool_and_models(os.path.join(root, "m"), 10, 1)
        for f in args.factors:
            n = args.base * f
            d = os.path.join(root, f"x{f}")
            paths = make_pool_and_models(d, n, max(1, n // args.per_shard), models=False)
            paths.update(reference=models["reference"], proxy=models["proxy"])
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ROOT}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(paths)], capture_output=True,
                                 text=True, env=env, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"factor": f, **r})
            print(f"x{f}: {r}", file=sys.stderr)
    base = rows[0]
    print("| input | examples | wall s | ms / example | wall vs 1x | peak RSS MB | RSS vs 1x |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['factor']}x | {r['read']} | {r['seconds']:.1f} | {1000 * r['seconds'] / r['read']:.2f} | "
              f"{r['seconds'] / base['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.2f} |")


if __name__ == "__main__":
    main()
