"""Training the reference and the proxy from shards (plain Python, no Beam)."""
