"""Execute Jupyter notebooks with nbclient; the executed copies go to a temporary folder.

Usage: python .ci/run_notebooks.py notebooks/*.ipynb [--timeout 900]

Each notebook runs with its own folder as the working directory, so relative paths in it resolve as
they do in Jupyter. Exits non-zero on the first notebook whose cell raises.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient


def run(paths: list[str], timeout: int = 900) -> str:
    """Execute each notebook and write the executed copy to a new temporary folder.

    Args:
        paths: Notebook files.
        timeout: Seconds one cell may run. Defaults to 900.

    Returns:
        The folder holding the executed copies (printed first; a notebook that fails is written
        there too, up to its failing cell).

    Raises:
        nbclient.exceptions.CellExecutionError: When a cell raises.
    """
    out_dir = tempfile.mkdtemp(prefix="tfmpq-notebooks-")
    print(f"executed copies in {out_dir}", flush=True)
    for path in paths:
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}})
        try:
            client.execute()
        finally:  # a failed notebook is written too, with the outputs up to the failing cell
            nbformat.write(nb, os.path.join(out_dir, os.path.basename(path)))
        print(f"ran {path} in {time.perf_counter() - start:.0f} s")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Execute notebooks with nbclient.")
    p.add_argument("paths", nargs="+")
    p.add_argument("--timeout", type=int, default=900)
    a = p.parse_args(argv)
    run(a.paths, a.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
