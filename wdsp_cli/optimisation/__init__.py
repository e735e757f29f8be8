"""The target-value optimisation (MEMIT's compute_z): prompts, the batched optimiser, what runs once, the per-request oracle."""
