"""wdsp: batched, iterative knowledge editing of language models with a Wasserstein
distance constraint (WD) and update sparsification (SP).

The package is a library (``wdsp_cli.models``, ``wdsp_cli.covariance``,
``wdsp_cli.methods`` ...) driven by the ``wdsp`` command line (``wdsp_cli.cli``).
Importing it does nothing beyond defining names.
"""

__version__ = "0.1.0"

#: The version of what an edit computes. Bump it with every change that alters an edit's diff
#: (the golden test, tests/golden/, is regenerated in the same commit); every iteration records it,
#: and ``wdsp bench`` refuses to continue a run with another one (a run must not mix engines).
#: 2: requests that share a key share one delta; 3: a request that changes a fact in force gets 2x the steps.
ENGINE_VERSION = "3"
