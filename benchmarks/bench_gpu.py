"""Scoring throughput on a GPU machine: reference + proxy forwards at 64 px and 224 px (bf16
autocast on cuda, as the pipeline does), GPU utilisation while scoring, and the JPEG-decode bound
of the machine's CPU cores (decode + resize with all cores), so scoring can be compared with what
the CPUs can feed it. Scoring is the pipeline's own batch step (``core.scoring.model_quantities``:
both models, every base quantity, the reference embedding). Runs on CPU too (small sizes) so the
script is checked without a GPU.

    python benchmarks/bench_gpu.py                      # cuda when present
    python benchmarks/bench_gpu.py --device cpu --batches 3 --batch-size 32
    python benchmarks/bench_gpu.py --device cpu --sizes 32 --batches 1 --batch-size 4 --decode-images 16 --workers 1
"""
from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import threading
import time

# for benchmarks.*; appended: the installed learnsieve comes first
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _jpegs(n: int, px: int) -> list:
    from PIL import Image

    from learnsieve.datasets.synthetic import concept, draw
    rng = random.Random(0)
    out = []
    for _ in range(n):
        img = Image.open(io.BytesIO(draw(concept(rng), rng, 64))).resize((px, px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _decode_many(args):
    from learnsieve.models.image import decode_image
    blobs, size = args
    for b in blobs:
        decode_image(b, size)
    return len(blobs)


def decode_bound(size: int, src_px: int, n: int, workers: int) -> float:
    """Images per second that ``workers`` processes (0: this one) decode and resize to ``size``."""
    blobs = _jpegs(64, src_px)
    work = [(blobs, size)] * max(1, n // len(blobs))
    if workers == 0:
        _decode_many(work[0])  # warm up
        t0 = time.perf_counter()
        done = sum(map(_decode_many, work))
        return done / (time.perf_counter() - t0)
    # spawn, not fork: forking after torch has started its thread pools can deadlock
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_decode_many, work[:workers])  # warm up
        t0 = time.perf_counter()
        done = sum(pool.map(_decode_many, work))
    return done / (time.perf_counter() - t0)


class GpuSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples, self.stop = [], threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout.split()
                self.samples.append(float(out[0]))
            except Exception:
                return
            time.sleep(0.2)


def score_rate(device: str, size: int, batch: int, batches: int) -> tuple:
    """Examples per second through both models (``ls_clip_small`` reference, ``ls_clip_tiny``
    proxy, random weights, their banks marked full), and the mean GPU utilisation on cuda."""
    import numpy as np
    import torch

    from learnsieve.core.records import Decoded
    from learnsieve.core.scoring import model_quantities, pick_precision
    from learnsieve.models.factory import create_model
    ref = create_model("ls_clip_small", image_size=size).to(device).eval()
    prx = create_model("ls_clip_tiny", image_size=size).to(device).eval()
    for m in (ref, prx):
        m.bank_filled.fill_(True)
    rng = np.random.default_rng(0)
    examples = [Decoded(key=f"{i:05d}", source="bench", shard_index=0, index=i,
                        image=rng.integers(0, 256, (3, size, size), dtype=np.uint8),
                        caption=f"a photo of a small red circle number {i}") for i in range(batch)]
    precision = pick_precision("auto", device)  # bf16 autocast on cuda, as the pipeline does
    amp = device == "cuda"
    sampler = GpuSampler() if amp and shutil.which("nvidia-smi") else None

    def step():
        rows = model_quantities(ref, prx, examples, pad_to=batch, precision=precision)
        assert len(rows) == batch and "ref_loss" in rows[0] and "proxy_loss" in rows[0], rows[0].keys()

    step()
    if amp:
        torch.cuda.synchronize()
    if sampler:
        sampler.start()
    t0 = time.perf_counter()
    for _ in range(batches):
        step()
    if amp:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    util = None
    if sampler:
        sampler.stop.set()
        sampler.join()
        util = sum(sampler.samples) / max(1, len(sampler.samples))
    return batch * batches / dt, util


def main(argv=None) -> list:
    import torch
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--decode-images", type=int, default=20000)
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224], help="model input sides (px)")
    ap.add_argument("--workers", type=int, default=os.cpu_count(),
                    help="decode processes for the decode bound (0: in this process)")
    args = ap.parse_args(argv)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"device: {name}, CPU cores: {os.cpu_count()}", file=sys.stderr)
    print("| px | decode bound img/s (all cores) | scoring samples/s (ref + proxy) | GPU util % "
          "| scoring / decode bound |")
    print("|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        src = {64: 96, 224: 320}.get(size, size * 3 // 2)  # source JPEGs a bit larger than the input
        bound = decode_bound(size, src, args.decode_images, args.workers)
        rate, util = score_rate(args.device, size, args.batch_size, args.batches)
        util_s = f"{util:.0f}" if util is not None else "n/a"
        print(f"| {size} | {bound:.0f} | {rate:.0f} | {util_s} | {rate / bound:.2f} |")
        rows.append({"px": size, "decode_bound": bound, "score_rate": rate, "gpu_util": util})
    return rows


if __name__ == "__main__":
    main()
