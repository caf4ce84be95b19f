"""Curating from object storage against curating from local disk, side by side in one run.

Setup (untimed): a synthetic pool (``learnsieve.datasets.synthetic``) in ``--shards`` shards,
reference / proxy checkpoints trained for a handful of steps (``ls_clip_small`` /
``ls_clip_tiny``, 64 px), and a GCS JSON API server on loopback (``gcp-storage-emulator``, the
test extra; started as tests/e2e/test_gcs_flow.py does) holding a copy of the pool.

Timed, alternately, ``--repeats`` times (medians reported), each ``learnsieve curate`` as a user
runs it (a subprocess, no runner flags, so interpreter and Beam start-up are in every arm):

* ``local``: local shards -> a local output folder;
* ``gs``: ``gs://B/pool/{...}.tar`` -> ``gs://B/out``: every input read, score file, output
  shard, manifest through gcsfs.

Reported: examples per second of wall time, the ratio gs / local (target >= 0.8), and the
emulator's media GETs (``GET /download/...``) per input shard during the gs arm. Then the
stream read alone (``iter_shard`` over every shard, in this process): local, gs:// through
learnsieve's reader, and one shard through a plain ``fsspec.open`` file (how shards were read
before: one ranged GET per small read).

    python benchmarks/bench_remote.py --pool 4000 --shards 8 --repeats 2
    python benchmarks/bench_remote.py --pool 40 --shards 2 --repeats 1 --arms gs --models test   # a quick check
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUCKET = "bench"
# --models: reference, proxy, decode px (None: the config's score.image_size, as a user runs it)
MODELS = {"small": ("ls_clip_small", "ls_clip_tiny", None), "test": ("ls_clip_test", "ls_clip_test", 32)}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", type=int, default=4000, help="examples in the pool")
    ap.add_argument("--shards", type=int, default=8, help="input shards of the pool")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each arm")
    ap.add_argument("--train-steps", type=int, default=5, help="training steps per checkpoint")
    ap.add_argument("--models", choices=sorted(MODELS), default="small",
                    help="judges: ls_clip_small / ls_clip_tiny, or the tests' ls_clip_test (at 32 px)")
    ap.add_argument("--arms", default="local,gs", help="comma-separated, of local,gs (the ratio needs both)")
    ap.add_argument("--workdir", default=None, help="keep data and outputs here (default: a temp dir)")
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    args.arms = [a for a in args.arms.split(",") if a]
    if not args.arms or set(args.arms) - {"local", "gs"}:
        ap.error(f"--arms takes local and/or gs, not {','.join(args.arms)}")
    return args


def _curate(paths: dict, input_pattern: str, output: str, env: dict) -> dict:
    argv = [sys.executable, "-m", "learnsieve", "curate", "--input", input_pattern, "--output", output,
            "--reference", paths["reference"], "--proxy", paths["proxy"], "--progress-every", "0"]
    if paths.get("image_size"):
        argv += ["--set", f"score.image_size={paths['image_size']}"]
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"curate {input_pattern} -> {output} failed:\n{out.stderr[-3000:]}")
    m = re.search(r"read (\d+)\s+kept (\d+)", out.stdout)
    if not m:
        raise RuntimeError(f"no summary line in:\n{out.stdout[-2000:]}")
    return {"wall": wall, "read": int(m.group(1)), "kept": int(m.group(2))}


def _media_gets(lines, shards: int) -> list:
    return [sum(1 for ln in lines if ln.startswith(f'"GET /download/storage/v1/b/{BUCKET}/o/pool%2F{i:05d}.tar'))
            for i in range(shards)]


def _read_all(urls) -> tuple:
    from learnsieve.core.tar import iter_shard
    t0 = time.perf_counter()
    n = sum(1 for i, u in enumerate(urls) for _ in iter_shard(u, i))
    return n, time.perf_counter() - t0


def _read_plain_fsspec(url: str) -> tuple:
    """One shard through a plain fsspec file object (the reader before the buffering)."""
    import fsspec

    from learnsieve.core.tar import iter_file
    t0 = time.perf_counter()
    with fsspec.open(url, "rb") as raw:
        n = sum(1 for _ in iter_file(raw, url))
    return n, time.perf_counter() - t0


def main(argv=None) -> dict:
    args = parse_args(argv)
    # before anything imports gcsfs: its zonal/HNS bucket probe (gRPC) waits 60 s per bucket here
    os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    sys.path.append(ROOT)  # for benchmarks.*; after the installed learnsieve
    from benchmarks.common import finish_result, make_pool_and_models, workdir
    from tests.e2e.test_gcs_flow import emulator
    result = {"date": datetime.date.today().isoformat(), "pool": args.pool, "shards": args.shards,
              "repeats": args.repeats, "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
              "loadavg_before": round(os.getloadavg()[0], 2)}
    with workdir(args.workdir, "bench_remote_") as root:
        t0 = time.perf_counter()
        reference_model, proxy_model, image_size = MODELS[args.models]
        paths = make_pool_and_models(root, args.pool, args.shards, train_steps=args.train_steps,
                                     reference_model=reference_model, proxy_model=proxy_model)
        paths["image_size"] = image_size
        pool_dir = os.path.join(root, "pool")
        print(f"setup: {args.pool} examples in {args.shards} shards, models trained, "
              f"{time.perf_counter() - t0:.0f}s", file=sys.stderr)
        with emulator(os.path.join(root, "emulator.log"), BUCKET) as emu:
            os.environ.update(emu.env)  # before gcsfs is imported: no zonal/HNS probes (60 s each)
            fs = emu.fs()
            shard_bytes = 0
            for i in range(args.shards):
                local = os.path.join(pool_dir, f"{i:05d}.tar")
                shard_bytes += os.path.getsize(local)
                fs.put_file(local, f"{BUCKET}/pool/{i:05d}.tar")
            result["mb_per_shard"] = round(shard_bytes / args.shards / 1e6, 2)
            env = {**os.environ, **emu.env, "PYTHONWARNINGS": "ignore"}
            gs_pattern = f"gs://{BUCKET}/pool/{{00000..{args.shards - 1:05d}}}.tar"
            runs = {a: [] for a in args.arms}
            gets = []
            for rep in range(args.repeats):
                for arm in args.arms if rep % 2 == 0 else args.arms[::-1]:
                    if arm == "local":
                        r = _curate(paths, paths["input"], os.path.join(root, "out", f"local{rep}"), env)
                    else:
                        before = len(emu.requests())
                        r = _curate(paths, gs_pattern, f"gs://{BUCKET}/out{rep}", env)
                        lines = emu.requests()[before:]
                        r["media_gets_per_shard"] = _media_gets(lines, args.shards)
                        r["requests"] = len(lines)
                        gets.append(r["media_gets_per_shard"])
                    runs[arm].append(r)
                    print(f"run {rep + 1}/{args.repeats} {arm:5s} {r['read']} examples {r['wall']:6.1f}s "
                          f"{r['read'] / r['wall']:6.1f} ex/s" + (f"  media GETs/shard {r['media_gets_per_shard']}"
                                                                  if arm == "gs" else ""), file=sys.stderr)
            if len({r["read"] for rs in runs.values() for r in rs}) != 1 or \
                    len({r["kept"] for rs in runs.values() for r in rs}) != 1:
                raise RuntimeError(f"the arms disagree on read/kept: {runs}")
            n = runs[args.arms[0]][0]["read"]
            med = {a: statistics.median(r["wall"] for r in rs) for a, rs in runs.items()}
            result["runs"] = runs
            result["ex_s"] = {a: n / w for a, w in med.items()}
            if "local" in med and "gs" in med:
                result["gs_over_local"] = med["local"] / med["gs"]
            if gets:
                result["max_media_gets_per_shard"] = max(max(g) for g in gets)
            # the stream read alone, in this process
            import fsspec
            fsspec.config.conf.setdefault("gcs", {})["token"] = "anon"
            local_urls = [os.path.join(pool_dir, f"{i:05d}.tar") for i in range(args.shards)]
            gs_urls = [f"gs://{BUCKET}/pool/{i:05d}.tar" for i in range(args.shards)]
            n_local, t_local = _read_all(local_urls)
            before = len(emu.requests())
            n_gs, t_gs = _read_all(gs_urls)
            read_gets = _media_gets(emu.requests()[before:], args.shards)
            before = len(emu.requests())
            n_plain, t_plain = _read_plain_fsspec(gs_urls[0])
            plain_gets = _media_gets(emu.requests()[before:], 1)[0]
            if n_local != n_gs or n_plain != _read_all(local_urls[:1])[0]:
                raise RuntimeError(f"read-only counts disagree: {n_local} {n_gs} {n_plain}")
            result["read_only"] = {
                "local_items_s": n_local / t_local, "gs_items_s": n_gs / t_gs,
                "gs_media_gets_per_shard": max(read_gets),
                "plain_fsspec_items_s": n_plain / t_plain, "plain_fsspec_media_gets_one_shard": plain_gets}
            print(markdown(result))
    return finish_result(result, args.json)


def markdown(r: dict) -> str:
    ro = r["read_only"]
    head = ["examples", "shards", "MB/shard", "local ex/s", "gs ex/s", "gs / local", "media GETs per shard (curate)",
            "read only: local / gs / plain fsspec items/s", "read only: GETs per shard gs / plain fsspec"]
    ex_s = {a: f"{r['ex_s'][a]:.0f}" if a in r["ex_s"] else "-" for a in ("local", "gs")}
    vals = [r["pool"], r["shards"], r["mb_per_shard"], ex_s["local"], ex_s["gs"],
            f"**{r['gs_over_local']:.2f}**" if "gs_over_local" in r else "-", r.get("max_media_gets_per_shard", "-"),
            f"{ro['local_items_s']:.0f} / {ro['gs_items_s']:.0f} / {ro['plain_fsspec_items_s']:.0f}",
            f"{ro['gs_media_gets_per_shard']} / {ro['plain_fsspec_media_gets_one_shard']}"]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
                      "| " + " | ".join(str(v) for v in vals) + " |"])


if __name__ == "__main__":
    main()
