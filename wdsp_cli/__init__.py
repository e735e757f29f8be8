"""wdsp: batched, iterative knowledge editing of language models with a Wasserstein
distance constraint (WD) and update sparsification (SP).

The package is a library (``wdsp_cli.models``, ``wdsp_cli.covariance``,
``wdsp_cli.methods`` ...) driven by the ``wdsp`` command line (``wdsp_cli.cli``).
Importing it does nothing beyond defining names.
"""

__version__ = "0.1.0"
