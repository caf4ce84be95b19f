"""Per-record logic shared by the Beam job, training, eval and benchmarks (no Beam): records,
paths, tar I/O, decoding, batch scoring, score files, shard layout, run summaries."""
