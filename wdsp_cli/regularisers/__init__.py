"""The paper's regularisers of the target optimisation: WD (Wasserstein distance) and SP (sparsification)."""
