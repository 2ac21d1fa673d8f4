"""``python -m tfmpq.search ...`` is ``tfmpq search ...``: one search command line (``tfmpq.cli``)."""
import sys

from tfmpq.cli import main

if __name__ == "__main__":
    sys.exit(main(["search"] + sys.argv[1:]))
