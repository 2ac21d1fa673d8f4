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

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Iterable

from tfmpq._io import write_json_atomic, write_text_atomic
from tfmpq.errors import CheckpointError

EVALUATIONS = "evaluations.jsonl"
CHECKPOINT = "checkpoint.json"
RUN = "run.json"
LOCK = ".lock"
HISTORY = "history.json"
FRONT = "front.json"
BEST = "best.json"
COMPARISON = "comparison.json"
#: A two-stage search's QAT re-scores of its front (``Result.rescore``), written after each member.
RESCORED = "rescored.json"
#: What ``tfmpq search`` records to rebuild the model, the data and the evaluator (export, --resume).
CLI_RECORD = "cli.json"
SUMMARY = "summary.txt"
#: ``Result.finetune``'s record of the fine-tuned front.
FINETUNE = "finetune.json"
#: The Hessian traces a sensitivity-guided search used (``tfmpq.search.sensitivity``).
SENSITIVITY = "sensitivity.json"
#: ``Result.compare_at_budgets``' fine-tunes (with their test hits) and its comparison per cost metric, written after
#: each fine-tune; ``budget_curve.png`` is the report module's picture of it.
BUDGETS = "budgets.json"
BUDGET_PLOT = "budget_curve.png"
#: The plots the report module's ``write_plots`` draws: the front, and the history of an unconstrained (hypervolume)
#: or a budgeted (convergence) search; ``report.md`` is ``tfmpq report``'s.
PARETO_PLOT = "pareto.png"
HYPERVOLUME_PLOT = "hypervolume.png"
CONVERGENCE_PLOT = "convergence.png"
REPORT = "report.md"
#: Files this module may remove with ``overwrite=True`` (nothing else in the directory is touched).
OUTPUTS = (
    RUN, EVALUATIONS, CHECKPOINT, HISTORY, FRONT, BEST, SUMMARY,
    PARETO_PLOT, HYPERVOLUME_PLOT, CONVERGENCE_PLOT, FINETUNE, COMPARISON, SENSITIVITY, RESCORED, BUDGETS, BUDGET_PLOT,
)
#: Any of these marks a directory as a search run.
RUN_MARKERS = (EVALUATIONS, FRONT, RUN)
#: Any of these marks a run as started: a new search there needs ``resume`` or ``overwrite``.
STARTED = (EVALUATIONS, CHECKPOINT, RUN)


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
        lock: hold an exclusive lock on ``run_dir`` (``run_dir/.lock``, ``flock``) until :meth:`close`,
            so a second search on the same directory is refused instead of interleaving its journal
            lines with this one's. The operating system drops the lock when the process dies, so a
            killed run never leaves a stale lock behind. Defaults to False (readers need none).

    Raises:
        CheckpointError: ``run_dir`` already holds a run and neither ``resume`` nor ``overwrite``
            is set, or (``lock=True``) another process is running a search in it.
    """

    def __init__(self, run_dir: str | os.PathLike | None = None, *, resume: bool = False, overwrite: bool = False,
                 lock: bool = False):
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.resume = bool(resume)
        self._lock_file = None
        if self.run_dir is None:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"Cannot use `{self.run_dir}` as the run directory: {e.strerror or e}.") from None
        if lock:
            self._lock()  # before anything is deleted or cut
        try:
            existing = [n for n in STARTED if (self.run_dir / n).exists()]
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
        except BaseException:
            self.close()
            raise

    # -- the lock ------------------------------------------------------------------------------
    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks; the run directory is not protected
            return
        path = self.run_dir / LOCK
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise CheckpointError(
                f"`{self.run_dir}` is in use by another search (process {holder}): two searches writing one "
                "journal would corrupt it. Wait for that search to end, stop it, or use another run_dir."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock_file = f

    def close(self) -> None:
        """Releases the run-directory lock (if held). Safe to call more than once."""
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor drops the flock
            self._lock_file = None

    @property
    def locked(self) -> bool:
        """Whether this store holds the run directory's lock."""
        return self._lock_file is not None

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
        """Appends one record to ``evaluations.jsonl`` as a single fsync-ed line.

        Raises:
            CheckpointError: the line cannot be written (e.g. the disk is full).
        """
        if self.run_dir is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        path = self.run_dir / EVALUATIONS
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # disk full, quota, a vanished mount: stop, keeping what is recorded
            raise CheckpointError(
                f"Cannot write to the journal `{path}`: {e.strerror or e}. The search stopped; every evaluation "
                "recorded before this one is kept (a partly written line is dropped on resume): free the space "
                "and resume the run."
            ) from e

    def records(self) -> list[dict]:
        """Every complete record of ``evaluations.jsonl``, in order (:func:`read_journal`)."""
        return [] if self.run_dir is None else read_journal(self.run_dir / EVALUATIONS)

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
        """Raises CheckpointError when a stored signature differs from this run's, naming what differs.

        Args:
            signature: this run's problem signature.
            found: the stored one (None: nothing stored, nothing to check).
            where: the file it came from, named in the message.
        """
        if found is None or found == signature:
            return
        diff = signature_diff(found, signature)
        details = "; ".join(f"{describe_key(k)} ({k}): stored {a!r}, now {b!r}" for k, a, b in diff[:4])
        if len(diff) > 4:
            details += f"; and {len(diff) - 4} more"
        raise CheckpointError(
            f"Cannot resume from `{self.path(where)}`: it was made by another search problem. What differs: "
            f"{details}. Use the same model, data, space, evaluator and seed, or another run_dir."
        )


#: Plain words for the signature entries a user is most likely to change between two runs.
_KEY_WORDS = {
    "evaluator.weights_sha1": "the model's weights",
    "evaluator.model_config_sha1": "the model's architecture",
    "evaluator.model": "the model's name",
    "evaluator.num_params": "the model's parameter count",
    "evaluator.data_sha1": "the training or validation data",
    "evaluator.data_shapes": "the shapes of the training or validation data",
    "evaluator.evaluation": "the evaluation mode",
    "evaluator.epochs": "the epochs per candidate",
    "evaluator.learning_rate": "the learning rate",
    "evaluator.batch_size": "the batch size",
    "evaluator.seed": "the evaluator's seed",
    "space": "the search space",
    "seed": "the seed",
    "strategy": "the strategy",
    "options": "the strategy's options",
    "objectives": "the objectives",
    "constraint": "the constraint",
}


def describe_key(path: str) -> str:
    """Plain words for a signature path such as ``evaluator.weights_sha1``."""
    for key in sorted(_KEY_WORDS, key=len, reverse=True):
        if path == key or path.startswith(key + "."):
            return _KEY_WORDS[key]
    return "the setting"


def signature_diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``[(dotted path, value in a, value in b)]`` for every leaf where two signatures differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in a or k not in b:
                out.append((path, a.get(k), b.get(k)))
            elif a[k] != b[k]:
                out += signature_diff(a[k], b[k], path)
        return out
    return [] if a == b else [(prefix, a, b)]


def read_journal(path: str | os.PathLike) -> list[dict]:
    """The one reader of ``evaluations.jsonl``: every complete record, in order.

    A torn last line (a kill in the middle of a write) is ignored, as the writer cuts it off before
    its next append; repeat records (``"repeat": true``, see ``Ask.repeat``) are returned as they are.

    Raises:
        CheckpointError: a line other than the last is not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    # split() leaves "" after a final newline; anything else there is a torn, unfinished line.
    out = []
    for i, line in enumerate(lines[:-1], 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"Cannot read `{path}`: line {i} is not valid JSON ({e}).") from None
    return out


def write_output(run_dir: str | os.PathLike, name: str, obj: Any, default=None) -> None:
    """Writes one file of a run directory atomically: ``obj`` as JSON, or as text when it is a str.

    Args:
        run_dir: the run directory.
        name: one of this module's file names.
        obj: what to write.
        default: ``json.dump``'s ``default`` for objects JSON does not know. Defaults to None.
    """
    path = Path(run_dir) / name
    if isinstance(obj, str):
        write_text_atomic(path, obj)
    else:
        write_json_atomic(path, obj, default=default)


def read_output(run_dir: str | os.PathLike, name: str) -> Any:
    """A JSON file of a run directory; None when it is missing or damaged (not valid JSON)."""
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except (OSError, ValueError, CheckpointError):
        return None


def read_signature(run_dir: str | os.PathLike) -> Any:
    """``run.json`` of a run directory (the problem a resume must match), or None when there is none."""
    path = Path(run_dir) / RUN
    return read_json(path) if path.is_file() else None


def read_cli_record(run_dir: str | os.PathLike) -> dict | None:
    """``cli.json`` (``tfmpq search``'s record), or None when the run was not made by the command line."""
    path = Path(run_dir) / CLI_RECORD
    return read_json(path) if path.is_file() else None


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` holds a run a new search would refuse to overwrite (a journal, a checkpoint or
    a signature): :class:`RunStore`'s own test."""
    return any((Path(run_dir) / n).exists() for n in STARTED)


def is_run_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a search run directory (it holds a journal, a front or a run signature)."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in RUN_MARKERS)


@dataclasses.dataclass
class RunFiles:
    """What a run directory holds, read once (:func:`read_run`). Missing files are None / empty.

    Attributes:
        run_dir: the directory.
        signature: ``run.json`` (the problem: space, evaluator, strategy options, seed).
        records: the journal's scored records (first score of each chromosome, in order; no repeats).
        repeats: the journal's repeat records (``Ask.repeat``).
        front: ``front.json`` records, or None.
        best: ``best.json`` (a budgeted search's also holds its ``report``), or None.
        history: ``history.json``.
        comparison: ``comparison.json`` (``Result.compare_with_uniform``), or None.
        cli: ``cli.json`` (``tfmpq search``'s record), or None.
    """

    run_dir: Path
    signature: dict
    records: list
    repeats: list
    front: list | None
    best: dict | None
    history: list
    comparison: dict | None
    cli: dict | None


def read_run(run_dir: str | os.PathLike) -> RunFiles:
    """The one reader of a run directory (``tfmpq report``, ``tfmpq export``, the engine's resume).

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or holds no run.
        CheckpointError: a file of the run is not valid JSON.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"Run directory not found: {str(d)!r}. Expected the RUN_DIR of `tfmpq search`.")
    if not is_run_dir(d):
        raise FileNotFoundError(f"No search run in {str(d)!r}: expected {', '.join(RUN_MARKERS)}. "
                                "Run `tfmpq search MODEL -o RUN_DIR` first.")

    def optional(name):
        return read_json(d / name) if (d / name).is_file() else None

    records, repeats, seen = [], [], set()
    for record in read_journal(d / EVALUATIONS):
        if record.get("repeat"):
            repeats.append(record)
            continue
        key = tuple(record.get("genes") or ())
        if key in seen:
            continue
        seen.add(key)
        records.append(record)
    return RunFiles(run_dir=d, signature=optional(RUN) or {}, records=records, repeats=repeats, front=optional(FRONT),
                    best=optional(BEST), history=optional(HISTORY) or [], comparison=optional(COMPARISON),
                    cli=optional(CLI_RECORD))


def chromosome_key(genes: Iterable[int]) -> tuple[int, ...]:
    """The cache key of a chromosome."""
    return tuple(int(g) for g in genes)
