"""``python -m wdsp_cli`` runs the ``wdsp`` command line."""

from .cli import main

if __name__ == "__main__":  # not when a worker process of ``wdsp bench --jobs`` imports this module
    main()
