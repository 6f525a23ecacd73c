"""``python -m sklfm``: the same as the ``sklfm`` command (see ``sklfm/cli.py``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
