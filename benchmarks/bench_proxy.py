"""Does the proxy's warm-up on the noisy pool learn anything? Flickr8k (or CIFAR-10) image-text.

For each seed: build the noisy pool from ``../shared/data`` (Flickr8k: 600 clean reference
photos x 5 captions; a pool of 300 other photos x 5 captions with 40% of the captions moved to
other pool photos, 5% junk alt-text, 1% corrupt; 100 held-out test photos x 1 caption; CIFAR-10:
class-name captions, the same noise, ``--n-pool`` examples), train the reference ``ls_clip_lit``
on the clean split with early stopping (the README's judges recipe), then warm up each candidate
proxy with ``train_from_shards`` (what ``learnsieve train-proxy`` runs) on every pair of a seeded
half of the pool's images (``--warmup-share``; ``sample`` caps it as ``--sample`` does), and score
the whole pool with both checkpoints, reloaded. The pool pairs whose image the proxy never saw
("unseen") stand for the bulk of a pool much larger than ``train.proxy_sample``; "seen" are those
it trained on. Per candidate:

- warm-up loss: the saved proxy's in-batch CLIP loss on its warm-up sample (eval mode, batches of
  64 with one caption per image), against chance ln(64); ``train_loss_last20`` in the JSON is the
  mean training loss of the run's last 20 steps (not the kept step's, with early stopping) and
  ``curve`` the training curve, both from the checkpoint's metadata (``final_loss``, ``loss_curve``);
- held-out loss: its in-batch CLIP loss over the clean test split in one batch, chance ln(pairs);
  and its mean bank loss on the pool (the manifest's ``proxy_loss``; chance ln(bank + 1));
- the AUROC of ``proxy_sim``, ``learnability`` and ``ref_sim`` for true vs noisy pool pairs
  (mismatched + junk; corrupt records never reach scoring), seen / unseen / all, and the noisy
  share of the top half by learnability and by ref_sim.

The pool is scored as the pipeline scores it (``learnsieve.core.scoring.score_decoded``: the
reference and the candidate in one pass per batch, every registered score). Frozen towers cache
their features per process for training, so the reference and every frozen-tower proxy read each
training image's and caption's features once per seed (``proxy_s`` is training time only).
Run seeds as separate processes (two cores: two seeds at once). 1 torch thread.

    .venv/bin/python benchmarks/bench_proxy.py --seed 0 --json proxy.jsonl
    .venv/bin/python benchmarks/bench_proxy.py --dataset cifar --n-pool 6000 --seed 0 --candidates default,tiny
    .venv/bin/python benchmarks/bench_proxy.py --summarise proxy.jsonl   # the tables, over seeds
    .venv/bin/python benchmarks/bench_proxy.py --dataset flickr --n-ref 10 --n-pool 10 --n-test 5 \
        --reference-model ls_clip_test --reference-steps 2 --candidates tiny --steps 2   # a quick check
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.append(ROOT)  # for benchmarks.*; after the installed learnsieve

import torch  # noqa: E402

# name: proxy model (registered, or a variant in VARIANTS), steps, lr; sample = pool pairs the
# warm-up draws (None: train.proxy_sample's default, i.e. the whole pool here).
CANDIDATES: Dict[str, dict] = {
    # what TrainConfig's defaults train (train.proxy_model, proxy_steps, lr, proxy_val_fraction,
    # val_every, proxy_sample), read at run time
    "default": dict(model=None),
    # from-scratch towers (the default before this benchmark: ls_clip_tiny, 200 steps, lr 2e-3)
    "tiny": dict(model="ls_clip_tiny", steps=200, lr=2e-3),
    "tiny_es": dict(model="ls_clip_tiny", steps=200, lr=2e-3, val=0.1),
    "tiny_1000": dict(model="ls_clip_tiny", steps=1000, lr=2e-3),
    "photo_tiny": dict(model="ls_clip_photo_tiny", steps=200, lr=2e-3),
    # linear heads on the reference's frozen towers (EfficientNet-Lite0 160 px + MiniLM):
    # ls_clip_lit's heads (256-d), 128-d, and ls_clip_lit_proxy's (64-d), all with dropout 0.5
    "lit": dict(model="ls_clip_lit", steps=200, lr=2e-3),
    "lit_25": dict(model="ls_clip_lit", steps=25, lr=2e-3),
    "lit_50": dict(model="ls_clip_lit", steps=50, lr=2e-3),
    "lit_lr5e-4": dict(model="ls_clip_lit", steps=200, lr=5e-4),
    "lit_proxy": dict(model="ls_clip_lit_proxy", steps=200, lr=2e-3),
    "lit_proxy_25": dict(model="ls_clip_lit_proxy", steps=25, lr=2e-3),
    # + early stopping on 10% of the warm-up sample's images (noisy held-out loss, every 10 steps)
    "lit_es": dict(model="ls_clip_lit", steps=200, lr=2e-3, val=0.1),
    "lit_e128_es": dict(model="ls_clip_lit_e128", steps=200, lr=2e-3, val=0.1),
    "lit_proxy_es": dict(model="ls_clip_lit_proxy", steps=200, lr=2e-3, val=0.1),
    "lit_proxy_es_lr5e-4": dict(model="ls_clip_lit_proxy", steps=200, lr=5e-4, val=0.1),
    "lit_proxy_es_1000": dict(model="ls_clip_lit_proxy", steps=1000, lr=2e-3, val=0.1),
    "lit_proxy_es_every25": dict(model="ls_clip_lit_proxy", steps=200, lr=2e-3, val=0.1, val_every=25),
    "lit_proxy_es_s250": dict(model="ls_clip_lit_proxy", steps=200, lr=2e-3, val=0.1, sample=250),
    "lit_proxy_es_s500": dict(model="ls_clip_lit_proxy", steps=200, lr=2e-3, val=0.1, sample=500),
}

# Variants registered here for the runs only.
VARIANTS = {
    "ls_clip_lit_e128": ("ls_clip_lit", dict(embed_dim=128)),
}

DATASETS = {
    "flickr": dict(archive="flickr8k-1k.tar.gz", image_size=160),
    "cifar": dict(archive="cifar10-jpg.tar.gz", image_size=32),
}


def register_variants() -> None:
    from learnsieve.models.registry import MODELS, model_config
    for name, (base, overrides) in VARIANTS.items():
        if name not in MODELS and base in MODELS:
            cfg = dataclasses.replace(model_config(base), name=name, **overrides)
            MODELS.register(name)(lambda cfg=cfg: cfg)


def build(dataset: str, seed: int, out: str, n_ref: int, n_pool: int, n_test: int, folder: str = None) -> dict:
    from benchmarks.common import build_dataset
    return build_dataset(dataset, out, seed=seed, n_ref=n_ref, n_pool=n_pool, n_test=n_test,
                         px=DATASETS[dataset]["image_size"], folder=folder)


def warmup_split(pool_pattern: str, out_dir: str, share: float, seed: int) -> tuple:
    """Shards holding every pair of a seeded ``share`` of the pool's images (all their captions,
    noisy ones included): the proxy's warm-up sample. Returns (pattern, keys in it). The other
    images' pairs are never seen by the proxy, as most of a pool much larger than
    ``train.proxy_sample`` is not."""
    import hashlib
    import random

    from learnsieve.core.loaders import sample_shards
    from learnsieve.core.tar_write import TarSink
    samples = sample_shards(pool_pattern, None)
    photo = {s.key: hashlib.sha1(next((v for k, v in sorted(s.files.items()) if k in ("jpg", "jpeg", "png", "webp")),
                                      b"")).hexdigest() for s in samples}
    photos = sorted(set(photo.values()))
    random.Random(seed + 11).shuffle(photos)
    chosen = set(photos[:max(1, round(share * len(photos)))])
    os.makedirs(out_dir, exist_ok=True)
    sink = TarSink(os.path.join(out_dir, "00000.tar"))
    keys = set()
    for s in samples:
        if photo[s.key] in chosen:
            sink.write(s.key, s.files)
            keys.add(s.key)
    sink.close()
    return os.path.join(out_dir, "00000.tar"), keys


def test_pairs(pattern: str, size: int):
    """(uint8 images, captions) of every decodable record of the held-out split."""
    from benchmarks.common import decoded_pool
    kept = decoded_pool(pattern, size)
    return torch.stack([torch.from_numpy(d.image) for d in kept]), [d.caption for d in kept]


@torch.no_grad()
def heldout_loss(model, images: torch.Tensor, captions: List[str]) -> float:
    """In-batch CLIP loss over all held-out pairs in one batch (chance: ln(len(captions)))."""
    from learnsieve.models.train import clip_loss
    model.eval()
    return float(clip_loss(model.encode_image(images), model.encode_text(captions), model.scale))


def train_reference(data: dict, root: str, seed: int, size: int, steps: int, model: str = "ls_clip_lit",
                    val_fraction: float = 0.1) -> str:
    from learnsieve.config import TrainConfig
    from learnsieve.train.clip import train_from_shards
    tc = dataclasses.replace(TrainConfig(), seed=seed, torch_threads=1, batch_size=64, lr=2e-3,
                             reference_val_fraction=val_fraction, val_every=10)
    out = os.path.join(root, "reference")
    train_from_shards(data["clean_pattern"], out, model, steps, tc, size, role="reference")
    return out


def run_candidate(name: str, spec: dict, data: dict, root: str, seed: int, size: int, pool: list, test,
                  reference) -> dict:
    from benchmarks.common import score_examples
    from learnsieve.config import TrainConfig
    from learnsieve.models.checkpoint import load_checkpoint
    from learnsieve.models.metrics import auroc
    from learnsieve.train.clip import train_from_shards
    default = TrainConfig()
    if spec["model"] is None:  # the shipped defaults
        spec = dict(model=default.proxy_model, steps=default.proxy_steps, lr=default.lr,
                    val=default.proxy_val_fraction, val_every=default.val_every, sample=default.proxy_sample)
    tc = dataclasses.replace(default, seed=seed, torch_threads=1, batch_size=64, lr=spec["lr"],
                             proxy_val_fraction=spec.get("val", 0.0), val_every=spec.get("val_every", 10))
    out_dir = os.path.join(root, f"proxy-{name}")
    t0 = time.perf_counter()
    train_from_shards(data["warmup_pattern"], out_dir, spec["model"], spec["steps"], tc, size,
                      sample=spec.get("sample") or tc.proxy_sample, role="proxy")
    seconds = time.perf_counter() - t0
    proxy, meta = load_checkpoint(out_dir)
    from learnsieve.train.clip import EarlyStopping, load_grouped_pairs
    warm = load_grouped_pairs(data["warmup_pattern"], size, spec.get("sample") or tc.proxy_sample, seed)
    warm_loss = EarlyStopping((warm[0], warm[1], warm[2]), tc.batch_size).loss(proxy.eval())
    scores = score_examples(reference, proxy, pool)
    keys = [d.key for d in pool if d.key in scores]
    truth = data["truth"]
    bank = proxy.cfg.bank_size
    res = {
        "candidate": name, "seed": seed, "model": spec["model"], "steps": spec["steps"], "lr": spec["lr"],
        "val": spec.get("val", 0.0),
        "pairs": meta["pairs"], "batch": meta["batch_size"],
        # the saved proxy's in-batch loss on its warm-up sample (eval mode, one caption per image in
        # each batch of 64); last20: the mean training loss of the run's last 20 steps
        "train_loss": round(warm_loss, 3), "train_chance": round(math.log(min(tc.batch_size, len(set(warm[2])))), 3),
        "train_loss_last20": round(meta["final_loss"], 3),
        "curve": [tuple(p) for p in meta.get("loss_curve", [])],
        "heldout_loss": round(heldout_loss(proxy, test[0], test[1]), 3),
        "heldout_chance": round(math.log(len(test[1])), 3),
        "pool_bank_loss": round(statistics.fmean(scores[k]["proxy_loss"] for k in keys), 3),
        "bank_chance": round(math.log(bank + 1), 3),
        "proxy_s": round(seconds, 1), "kept_step": meta.get("best_step") or spec["steps"],
    }
    cols = {col: [scores[k][col] for k in keys] for col in ("proxy_sim", "learnability", "ref_sim")}
    for part, pick in (("seen", lambda k: k in data["warmup_keys"]), ("unseen", lambda k: k not in data["warmup_keys"]),
                       ("all", lambda k: True)):
        idx = [i for i, k in enumerate(keys) if pick(k)]
        clean = [truth[keys[i]] == "clean" for i in idx]
        for col, vals in cols.items():
            res[f"{part}_auroc_{col}"] = round(auroc([vals[i] for i in idx], clean), 3)
        for col in ("learnability", "ref_sim"):  # noisy share of the top half by this score
            top = sorted(idx, key=lambda i: -cols[col][i])[:len(idx) // 2]
            res[f"{part}_kept_noise_{col}"] = round(sum(truth[keys[i]] != "clean" for i in top) / max(1, len(top)), 3)
    return res


COLUMNS = ("candidate", "seed", "model", "steps", "kept_step", "lr", "pairs", "train_loss", "train_chance",
           "heldout_loss", "heldout_chance", "pool_bank_loss", "bank_chance",
           "seen_auroc_proxy_sim", "seen_auroc_learnability", "seen_auroc_ref_sim",
           "unseen_auroc_proxy_sim", "unseen_auroc_learnability", "unseen_auroc_ref_sim",
           "unseen_kept_noise_learnability", "unseen_kept_noise_ref_sim", "proxy_s")

SUMMARY = (("kept_step", "kept step", "{:.0f}"), ("train_loss", "warm-up loss (chance {train_chance})", "{:.2f}"),
           ("heldout_loss", "held-out loss (chance {heldout_chance})", "{:.2f}"),
           ("unseen_auroc_proxy_sim", "proxy_sim AUROC, unseen", "{:.3f}"),
           ("seen_auroc_learnability", "learnability AUROC, seen", "{:.3f}"),
           ("unseen_auroc_learnability", "learnability AUROC, unseen", "{:.3f}"),
           ("seen_auroc_ref_sim", "ref_sim AUROC, seen", "{:.3f}"),
           ("unseen_auroc_ref_sim", "ref_sim AUROC, unseen", "{:.3f}"),
           ("unseen_kept_noise_learnability", "noise in the top half of unseen pairs by learnability", "{:.1%}"))


def summarise(rows: List[dict]) -> List[str]:
    """A markdown table per dataset, a row per candidate: means over seeds (per-seed values in
    brackets where they differ)."""
    lines: List[str] = []
    def table(r):
        return r.get("dataset", "flickr"), r.get("reference", "ls_clip_lit")

    for dataset, reference in sorted({table(r) for r in rows}):
        by: Dict[str, List[dict]] = {}
        for r in rows:
            if table(r) == (dataset, reference):
                by.setdefault(r["candidate"], []).append(r)
        first = next(iter(by.values()))[0]
        head = ["candidate", "proxy", "steps", "lr", "early stopping", "seeds"] + [
            label.format(**first) for _, label, _ in SUMMARY]
        lines += [f"{dataset}, reference {reference}:", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        order = list(CANDIDATES)
        for cand, rs in sorted(by.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)):
            rs = sorted(rs, key=lambda r: r["seed"])
            cells = [cand, rs[0]["model"], str(rs[0]["steps"]), f"{rs[0]['lr']:g}",
                     f"{rs[0].get('val', 0.0):g} of the sample" if rs[0].get("val") else "no",
                     ",".join(str(r["seed"]) for r in rs)]
            for col, _, fmt in SUMMARY:
                vals = [r[col] for r in rs]
                cell = fmt.format(statistics.fmean(vals))
                if len(set(vals)) > 1:
                    cell += " (" + ", ".join(fmt.format(v) for v in vals) + ")"
                if col == "unseen_kept_noise_learnability":
                    cell += "; ref_sim " + fmt.format(statistics.fmean(r["unseen_kept_noise_ref_sim"] for r in rs))
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="flickr")
    ap.add_argument("--candidates", default="tiny,photo_tiny,lit,lit_proxy",
                    help=f"comma list of {', '.join(CANDIDATES)}")
    ap.add_argument("--seed", type=int, default=0, help="split and training seed")
    ap.add_argument("--n-ref", type=int, help="clean reference images (Flickr, default 600) / examples "
                    "(CIFAR, default 2000)")
    ap.add_argument("--n-pool", type=int, help="pool images (Flickr, 5 captions each; default 300) / "
                    "examples (CIFAR, default 2000)")
    ap.add_argument("--n-test", type=int, help="held-out test images (default 100 / 500)")
    ap.add_argument("--reference-model", default="ls_clip_lit")
    ap.add_argument("--reference-val-fraction", type=float, default=0.1,
                    help="early stopping of the reference (0: keep its last step)")
    ap.add_argument("--reference-steps", type=int, default=300)
    ap.add_argument("--warmup-share", type=float, default=0.5, help="share of the pool's images whose "
                    "pairs the proxy warms up on (the rest: pool pairs it never saw)")
    ap.add_argument("--steps", type=int, help="every candidate's training steps (default: the candidate's)")
    ap.add_argument("--data", help="folder of the dataset archives (or their extracted folders; default "
                    "../shared/data)")
    ap.add_argument("--work", help="working folder (default: a temp dir, removed at the end)")
    ap.add_argument("--json", default="", help="append results as JSON lines to this file")
    ap.add_argument("--summarise", nargs="+", metavar="JSONL", help="no runs: the table of earlier --json files")
    args = ap.parse_args(argv)
    if args.summarise:
        from benchmarks.common import read_jsonl
        rows = read_jsonl(args.summarise)
        print("\n".join(summarise(rows)))
        return 0
    torch.set_num_threads(1)
    from benchmarks.common import append_jsonl, pick, workdir
    names = pick(args.candidates, CANDIDATES, ap, "candidates")
    register_variants()
    flickr = args.dataset == "flickr"
    n_ref = args.n_ref or (600 if flickr else 2000)
    n_pool = args.n_pool or (300 if flickr else 2000)
    n_test = args.n_test or (100 if flickr else 500)
    size = DATASETS[args.dataset]["image_size"]
    with workdir(args.work, "bench_proxy_") as work:
        root = os.path.join(work, f"{args.dataset}-seed{args.seed}")
        t0 = time.perf_counter()
        data = build(args.dataset, args.seed, os.path.join(root, "data"), n_ref, n_pool, n_test, args.data)
        data["warmup_pattern"], data["warmup_keys"] = warmup_split(
            data["pool_pattern"], os.path.join(root, "data", "warmup"), args.warmup_share, args.seed)
        ref_dir = train_reference(data, root, args.seed, size, args.reference_steps, args.reference_model,
                                  args.reference_val_fraction)
        from learnsieve.models.checkpoint import load_checkpoint
        reference, ref_meta = load_checkpoint(ref_dir)
        from benchmarks.common import decoded_pool
        pool = decoded_pool(data["pool_pattern"], size)
        test = test_pairs(data["test_pattern"], size)
        print(f"# {args.dataset} seed {args.seed}: reference {args.reference_model} kept step "
              f"{ref_meta.get('best_step') or args.reference_steps} "
              f"of {args.reference_steps}; pool {len(pool)} decoded pairs, test {len(test[1])}; "
              f"{time.perf_counter() - t0:.0f}s", flush=True)
        print("| " + " | ".join(COLUMNS) + " |", flush=True)
        for name in names:
            spec = dict(CANDIDATES[name])
            if args.steps:
                spec["steps"] = args.steps  # the default candidate's steps stay TrainConfig's
            res = run_candidate(name, spec, data, root, args.seed, size, pool, test, reference)
            res["dataset"] = args.dataset
            res["ref_kept_step"] = ref_meta.get("best_step") or args.reference_steps
            res["reference"] = args.reference_model
            print("| " + " | ".join(str(res[c]) for c in COLUMNS) + " |", flush=True)
            append_jsonl(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
