"""``learnsieve eval``: arms trained with the same learner, ground-truth AUROC, compute
accounting, plots and the text report (no Beam)."""
