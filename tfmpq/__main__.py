"""``python -m tfmpq``: the ``tfmpq`` command line (see ``tfmpq.cli``)."""
import sys

from tfmpq.cli import main

if __name__ == "__main__":
    sys.exit(main())
