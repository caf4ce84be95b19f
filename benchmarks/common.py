"""Shared set-up for benchmarks: a synthetic pool and quickly trained checkpoints."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile

# ../shared/data beside the project root: the real datasets (never copied into the project)
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "shared", "data")


def shared_archive(name: str, folder: str | None = None) -> str:
    """The path of ``NAME`` in ``folder`` (default ``../shared/data``): the archive, or else the
    folder it extracts to (``NAME`` without ``.tar.gz``, as ``learnsieve.datasets.cifar.load_cifar``
    and ``learnsieve.datasets.flickr.load_flickr`` read either); exits with a clear line where
    neither is there."""
    folder = folder or DATA
    path = os.path.join(folder, name)
    extracted = os.path.join(folder, name[:-len(".tar.gz")]) if name.endswith(".tar.gz") else path
    if not os.path.exists(path) and os.path.isdir(extracted):
        return extracted
    if not os.path.exists(path):
        sys.exit(f"{path} not found: this benchmark needs ../shared/data (or --data FOLDER)")
    return path


def build_dataset(dataset: str, out: str, *, seed: int, n_ref: int, n_pool: int, n_test: int,
                  task: str = "retrieval", px: int = 160, shards: int | None = None,
                  folder: str | None = None) -> dict:
    """The benchmarks' pools from ``../shared/data`` (or ``folder``): ``cifar`` / ``classact``
    (CIFAR-10 image-text or image-label with known noise), ``redundant`` (clean but redundant
    CIFAR-10) or ``flickr`` (Flickr8k, 5 captions a photo; ``n_*`` count photos, ``px`` their size)."""
    kw = {"shards": shards} if shards else {}
    if dataset in ("cifar", "classact"):
        from learnsieve.datasets.cifar import build_cifar
        return build_cifar(shared_archive("cifar10-jpg.tar.gz", folder), out, task=task, seed=seed, n_ref=n_ref,
                           n_pool=n_pool, n_test=n_test, **kw)
    if dataset == "redundant":
        from learnsieve.datasets.redundant import build_redundant
        return build_redundant(shared_archive("cifar10-jpg.tar.gz", folder), out, seed=seed, n_ref=n_ref,
                               n_pool=n_pool, n_test=n_test, **kw)
    from learnsieve.datasets.flickr import build_flickr
    return build_flickr(shared_archive("flickr8k-1k.tar.gz", folder), out, seed=seed, n_ref_images=n_ref,
                        n_pool_images=n_pool, n_test_images=n_test, pool_captions_per_image=5, px=px, **kw)


def add_pool_flags(ap) -> None:
    """Where the dataset benchmarks' data comes from and how much of it (defaults per dataset)."""
    ap.add_argument("--data", help="folder of the dataset archives (or their extracted folders; default "
                    "../shared/data)")
    ap.add_argument("--n-ref", type=int, help="clean reference examples (flickr: photos)")
    ap.add_argument("--n-pool", type=int, help="pool examples (flickr: photos, 5 captions each)")
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--shards", type=int, help="input shards of the pool (default: the builder's, 8; Flickr 4)")


def build_from_args(args, spec: dict, out: str) -> dict:
    """``build_dataset`` for ``args.dataset`` at the sizes of ``add_pool_flags``, else ``spec``'s."""
    return build_dataset(args.dataset, out, seed=args.seed, n_ref=args.n_ref or spec["n_ref"],
                         n_pool=args.n_pool or spec["n_pool"], n_test=args.n_test or spec["n_test"],
                         task=spec.get("task", "retrieval"), px=spec["image_size"], shards=args.shards,
                         folder=args.data)


def add_judge_flags(ap) -> None:
    """The judges' flags of the dataset benchmarks (defaults per dataset, in each script)."""
    ap.add_argument("--reference-model", help="default: ls_clip_lit (classact: ls_cls_small)")
    ap.add_argument("--reference-steps", type=int, help="default: 300 (classact: 400)")
    ap.add_argument("--proxy-model", help="the warm-up proxy (default: train.proxy_model; classact: ls_cls_tiny)")
    ap.add_argument("--proxy-steps", type=int, help="default: train.proxy_steps (classact: 100)")


def append_jsonl(path: str | None, row: dict) -> None:
    """One result as one JSON line (seeds run as separate processes append to one file)."""
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_jsonl(paths) -> list:
    rows = []
    for path in paths:
        with open(path) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def make_pool_and_models(root: str, pool: int, shards: int, train_steps: int = 5,
                         image_px: int = 64, reference_model: str = "ls_clip_small",
                         proxy_model: str = "ls_clip_tiny", models: bool = True, clean: int = 600) -> dict:
    """A synthetic noisy pool of ``pool`` examples in ``shards`` shards (``root/pool``) and, with
    ``models``, reference / proxy checkpoints trained for ``train_steps`` steps on ``clean`` clean
    examples (``root/reference``, ``root/proxy``). Returns the paths (``input``, ``output``, ...)."""
    from learnsieve.config import TrainConfig
    from learnsieve.core.paths import shard_pattern
    from learnsieve.datasets.synthetic import NoiseMix, write_split
    from learnsieve.train.clip import train_from_shards
    write_split(os.path.join(root, "pool"), pool, shards, seed=0, mix=NoiseMix(), px=image_px)
    paths = {"input": shard_pattern(os.path.join(root, "pool"), shards),
             "output": os.path.join(root, "curated")}
    if models:
        write_split(os.path.join(root, "clean"), clean, 1, seed=1, mix=None, key_prefix="c")
        tc = dataclasses.replace(TrainConfig(), augment=False, reference_val_fraction=0.0, proxy_val_fraction=0.0)
        for role, name in (("reference", reference_model), ("proxy", proxy_model)):
            paths[role] = os.path.join(root, role)
            train_from_shards(os.path.join(root, "clean", "00000.tar"), paths[role], name, train_steps,
                              tc, image_size=64, role=role)
    return paths


def decoded_pool(pattern: str, size: int) -> list:
    """Every decodable example of ``pattern`` at ``size`` px (the rest are rejected, as the
    pipeline rejects them): ``learnsieve.core.records.Decoded`` records, in stream order."""
    from learnsieve.core.decode import decode_sample
    from learnsieve.core.loaders import decoded_examples
    return decoded_examples(pattern, lambda s: decode_sample(s, size, 64_000_000, 8192))[0]


def score_examples(reference, proxy, examples: list, batch: int = 64) -> dict:
    """{key: every registered score} of ``examples``, as the pipeline's scoring step computes them
    (``learnsieve.core.scoring.score_decoded``: both models, then the score registry); an example
    with a non-finite score is left out, as the pipeline rejects it."""
    from learnsieve.core.records import DeadLetter
    from learnsieve.core.scoring import score_decoded
    out: dict = {}
    for s in range(0, len(examples), batch):
        for r in score_decoded(reference, proxy, examples[s:s + batch]):
            if not isinstance(r, DeadLetter):
                out[r.key] = r.scores
    return out


def reuse_scores(first: str, out: str) -> None:
    """Start the output folder ``out`` from the score files of the finished run ``first`` (its
    ``_scores/`` and its ownership marker, ``learnsieve.core.output``): a curation of the same
    pool with another selection (or another proxy: only the proxy runs again) rescores nothing."""
    from learnsieve.core.output import MARKER, SCORES
    os.makedirs(out, exist_ok=True)
    shutil.copytree(os.path.join(first, SCORES), os.path.join(out, SCORES))
    shutil.copy2(os.path.join(first, MARKER), os.path.join(out, MARKER))


def pick(csv: str, known, ap, what: str) -> list:
    """The comma-separated names of ``csv``, each one of ``known`` (else an argparse error)."""
    names = [c for c in csv.split(",") if c]
    unknown = [c for c in names if c not in known]
    if unknown:
        ap.error(f"unknown {what} {unknown}; known: {', '.join(known)}")
    return names


@contextlib.contextmanager
def workdir(keep: str | None, prefix: str):
    """``keep`` as the benchmark's working folder, or a temporary one removed afterwards."""
    path = keep or tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def finish_result(result: dict, json_path: str | None) -> dict:
    """Stamp the load average after the run and write the result as JSON where asked."""
    result["loadavg_after"] = round(os.getloadavg()[0], 2)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
    return result
