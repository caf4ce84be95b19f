"""Online selection inside the training loop (Evans et al. 2023, ActiveCLIP; JEST 2024).

Every step draws a uniform super-batch of ``ratio x B`` examples, scores it with learnability =
the online proxy's per-example loss (the learner itself, or a small model trained alongside it
on the selected batches) minus the reference's loss, cached offline by ``learnsieve curate``
(``KEY.json``'s ``learnsieve.scores.ref_loss``), and trains on the B it picks. Trainer-agnostic
PyTorch, no Beam: ``selector.py`` (the choice and its counters), ``proxy.py`` (per-example
losses of the learner or of a small online model), ``cached.py`` (reference scores read back
from curated shards), ``batches.py`` (a batch iterator any loop that takes batches can consume),
``open_clip_train.py`` (open_clip's own trainer with online selection). docs/ONLINE.md.
"""
