"""Files written safely: the one crash-safe writer (atomic) and reproducible safetensors bytes (tensorfile)."""
