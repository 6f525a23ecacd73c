"""Command-line entry: ``python -m sklfm demo`` (see ``sklfm/_demo.py``)."""

import sys

from ._demo import main

if __name__ == "__main__":
    sys.exit(main())
