"""``python -m wdsp_cli`` runs the ``wdsp`` command line."""

from .cli import main

main()
