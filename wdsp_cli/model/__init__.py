"""The model side: loading and fingerprinting, architecture templates, hooks, weight diffs."""
