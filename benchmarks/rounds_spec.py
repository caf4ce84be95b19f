"""What ``bench_rounds.py`` runs: datasets with their budgets, and the learner-as-proxy arms."""
from __future__ import annotations

DATASETS = {  # sizes chosen to run in well under an hour per seed on one CPU core
    "cifar": {"archive": "cifar10-jpg.tar.gz", "n_ref": 2000, "n_pool": 6000, "n_test": 1000,
              "image_size": 32, "metric": "zeroshot_top1", "learner": "ls_clip_small"},
    "redundant": {"archive": "cifar10-jpg.tar.gz", "n_ref": 2000, "n_pool": 6000, "n_test": 1000,
                  "image_size": 32, "metric": "zeroshot_top1", "learner": "ls_clip_small"},
    "flickr": {"archive": "flickr8k-1k.tar.gz", "n_ref": 600, "n_pool": 300, "n_test": 100,
               "image_size": 160, "metric": "mean_r@5", "learner": "ls_clip_lit",
               # heads on frozen towers learn 743 pairs in ~20 steps (docs/BENCHMARKS.md)
               "learner_steps": 100, "eval_every": 4, "batch_size": 64},
    # ClassAct: image-label shards, 40% flipped labels; classifiers trained from scratch
    "classact": {"archive": "cifar10-jpg.tar.gz", "n_ref": 4000, "n_pool": 6000, "n_test": 1000,
                 "image_size": 32, "metric": "top1", "learner": "ls_cls_tiny", "task": "classification",
                 "reference_model": "ls_cls_small", "proxy_model": "ls_cls_tiny", "reference_val_fraction": 0.0,
                 "reference_steps": 400, "proxy_steps": 100, "batch_size": 64},
}
ONLINE = "learnability_learner"
# the same, with the learner-as-proxy's negative bank drawn from the clean split (as the
# reference's is) instead of from the pool: both losses then score against alike negatives, as in
# Evans et al., where both are computed on the same super-batch
ONLINE_CLEAN_BANK = "learnability_learner_cleanbank"
ONLINES = {ONLINE: "pool_pattern", ONLINE_CLEAN_BANK: "clean_pattern"}  # arm -> where its bank comes from
