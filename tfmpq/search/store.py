"""The run directory: an append-only evaluation journal, a per-generation checkpoint, outputs.

Layout of ``run_dir``::

    run.json            the problem signature (space, evaluator, strategy options, seed)
    evaluations.jsonl   one JSON line per evaluated chromosome, appended, never rewritten
    checkpoint.json     the strategy state after the last finished generation (atomic replace)
    history.json        one record per generation (evaluations, cache hits, best accuracy, hypervolume)
    front.json ...      outputs written by the engine at the end

Durability (Optuna's journal storage works the same way): a journal line is written with one
``write`` of the complete line, then flushed and ``fsync``-ed, so a kill leaves at most one torn last
line; reloading ignores it and the next append first cuts it off. JSON files are written to a
temporary file, ``fsync``-ed and moved over the old one with ``os.replace`` (atomic on POSIX).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from tfmpq.errors import CheckpointError

EVALUATIONS = "evaluations.jsonl"
CHECKPOINT = "checkpoint.json"
RUN = "run.json"
#: Files this module may remove with ``overwrite=True`` (nothing else in the directory is touched).
OUTPUTS = (
    RUN, EVALUATIONS, CHECKPOINT, "history.json", "front.json", "best.json", "summary.txt",
    "pareto.png", "hypervolume.png", "convergence.png", "finetune.json",
)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as JSON to ``path`` atomically (tmp file + fsync + ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file written by :func:`write_json_atomic`.

    Raises:
        CheckpointError: the file is not valid JSON (the message names the file).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"Cannot read `{path}`: it is not valid JSON ({e}). Delete it or use another run_dir.")


class RunStore:
    """The files of one search run; ``run_dir=None`` keeps everything in memory.

    Args:
        run_dir: the directory, created if missing; None writes nothing. Defaults to None.
        resume: continue the run found in ``run_dir``. Defaults to False.
        overwrite: delete a previous run's files in ``run_dir`` (only the files tfmpq writes) and
            start afresh. Defaults to False.

    Raises:
        CheckpointError: ``run_dir`` already holds a run and neither ``resume`` nor ``overwrite``
            is set.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, *, resume: bool = False, overwrite: bool = False):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = bool(resume)
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        existing = [n for n in (EVALUATIONS, CHECKPOINT, RUN) if (self.run_dir / n).exists()]
        if existing and not resume:
            if not overwrite:
                raise CheckpointError(
                    f"`{self.run_dir}` already holds a search run ({', '.join(existing)}). "
                    "Pass resume=True to continue it, overwrite=True to start afresh, or another run_dir."
                )
            for name in OUTPUTS:
                p = self.run_dir / name
                if p.exists():
                    p.unlink()
        if resume:
            self._cut_torn_tail()

    # -- paths ---------------------------------------------------------------------------------
    def path(self, name: str) -> Path | None:
        """``run_dir / name``, or None for an in-memory run."""
        return None if self.run_dir is None else self.run_dir / name

    @property
    def has_checkpoint(self) -> bool:
        return self.run_dir is not None and (self.run_dir / CHECKPOINT).exists()

    # -- journal -------------------------------------------------------------------------------
    def _cut_torn_tail(self) -> None:
        """Drops a partial last line (a kill in the middle of a write) before appending again."""
        path = self.run_dir / EVALUATIONS
        if not path.exists() or path.stat().st_size == 0:
            return
        with open(path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())

    def append(self, record: dict) -> None:
        """Appends one record to ``evaluations.jsonl`` as a single fsync-ed line."""
        if self.run_dir is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with open(self.run_dir / EVALUATIONS, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def records(self) -> list[dict]:
        """Every complete record of ``evaluations.jsonl``, in order (a torn last line is ignored).

        Raises:
            CheckpointError: a line other than the last is not valid JSON.
        """
        if self.run_dir is None or not (self.run_dir / EVALUATIONS).exists():
            return []
        path = self.run_dir / EVALUATIONS
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        # split() leaves "" after a final newline; anything else there is a torn, unfinished line.
        complete, tail = lines[:-1], lines[-1]
        out = []
        for i, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise CheckpointError(f"Cannot read `{path}`: line {i} is not valid JSON ({e}).") from None
        del tail  # a kill mid-write: ignored, and cut off before the next append
        return out

    # -- checkpoint and outputs ----------------------------------------------------------------
    def save_checkpoint(self, state: dict) -> None:
        if self.run_dir is not None:
            write_json_atomic(self.run_dir / CHECKPOINT, state)

    def load_checkpoint(self) -> dict | None:
        if not self.has_checkpoint:
            return None
        return read_json(self.run_dir / CHECKPOINT)

    def write_json(self, name: str, obj: Any) -> None:
        if self.run_dir is not None:
            write_json_atomic(self.run_dir / name, obj)

    def read_json(self, name: str) -> Any:
        p = self.path(name)
        return None if p is None or not p.exists() else read_json(p)

    def check_signature(self, signature: dict, found: dict | None, where: str) -> None:
        """Raises CheckpointError when a stored signature differs from this run's.

        Args:
            signature: this run's problem signature.
            found: the stored one (None: nothing stored, nothing to check).
            where: the file it came from, named in the message.
        """
        if found is None or found == signature:
            return
        keys = sorted(set(signature) | set(found))
        diff = [k for k in keys if signature.get(k) != found.get(k)]
        details = "; ".join(f"{k}: stored {found.get(k)!r}, now {signature.get(k)!r}" for k in diff[:4])
        raise CheckpointError(
            f"Cannot resume from `{self.path(where)}`: it was made by another search problem ({details}). "
            "Use the same model, space, evaluator and seed, or another run_dir."
        )


def chromosome_key(genes: Iterable[int]) -> tuple[int, ...]:
    """The cache key of a chromosome."""
    return tuple(int(g) for g in genes)
