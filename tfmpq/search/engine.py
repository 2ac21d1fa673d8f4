"""The search engine shared by every strategy: ask -> evaluate (cache first) -> tell -> journal.

A strategy (``tfmpq.search.strategies``) only proposes: its ``start`` / ``step`` generators yield
:class:`~tfmpq.search.strategies.base.Ask` batches and receive the candidates; it reads the run through
a :class:`SearchView`. The :class:`Engine` owns everything else: the cache of evaluated chromosomes (a
chromosome is never evaluated twice in a run — BBPSO-Quantizer's "similarity screening", Tmamna et
al. 2024, sec. 4.3.4, is this cache), the append-only journal and the per-generation checkpoint
(:mod:`tfmpq.search.store`), the random number generators, the ranking (:mod:`tfmpq.search.pareto`:
objectives, Deb's constraint rule, hypervolume), progress and the outputs. Where the evaluations run
is its :mod:`~tfmpq.search.executors` (serial, local processes, Ray actors).

Resume (Optuna-style replay): the journal is loaded into the cache, the strategy state and RNG states
come from the last checkpoint, and the generations after it are replayed — every chromosome the
killed run had already scored is answered by the cache, so nothing is re-evaluated and the run ends
exactly where an uninterrupted one would.
"""
from __future__ import annotations

import json
import math
import random
import time
import warnings
from typing import Any, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from tfmpq.errors import CheckpointError
from tfmpq.candidate import Candidate
from tfmpq.search.constraints import Constraint
from tfmpq.search.executors import Executor, describe_error
from tfmpq.search.executors import get as get_executor
from tfmpq.search.pareto import Objectives
from tfmpq.search.space import Chromosome, SearchSpace
from tfmpq.search.store import CHECKPOINT, EVALUATIONS, HISTORY, RUN, RunStore
from tfmpq.search.strategies.base import Ask

#: 2: strategies keep their own memory in the state (BBPSO), repeats are journaled.
CHECKPOINT_FORMAT = 2


def _normalise(obj: Any) -> Any:
    """JSON round trip, so tuples/lists and int/float keys compare as they will after a reload."""
    return json.loads(json.dumps(obj))


class SearchView:
    """The read-only face of a run that a strategy sees (``tfmpq.search.strategies.base.SearchView``):
    the space, the run's checkpointed random generators, the objectives with Deb's rule, and the
    candidates already scored. Nothing here evaluates, writes or exposes the evaluator."""

    def __init__(self, engine: "Engine"):
        self._engine = engine
        self.space = engine.space
        self.objectives = engine.objectives
        self.weights = engine.weights
        self.constraint = engine.constraint
        self._ranking = engine.ranking

    @property
    def rng(self):
        return self._engine.rng

    @property
    def np_rng(self):
        return self._engine.np_rng

    @property
    def generation(self) -> int:
        return self._engine.generation

    def values(self, candidate) -> tuple[float, ...]:
        return self._ranking.values(candidate)

    def violation(self, candidate) -> float:
        return self._ranking.violation(candidate)

    def feasible(self, candidate) -> bool:
        return self._ranking.feasible(candidate)

    def better(self, a, b) -> bool:
        return self._ranking.better(a, b)

    def candidate(self, genes) -> Candidate:
        """The candidate of a chromosome the strategy was already given (KeyError otherwise)."""
        key = tuple(int(g) for g in genes)
        try:
            return self._engine.cache[key]
        except KeyError:
            raise KeyError(f"Chromosome {key} has not been scored in this run: ask for it first.") from None


class Engine:
    """Runs one strategy on one space with one evaluator.

    Args:
        space: the :class:`SearchSpace`.
        evaluator: anything with ``evaluate(policy) -> Candidate`` (``tfmpq.search.Evaluator`` or a
            user's own); optional ``metrics(policy)`` (used for failed candidates) and
            ``signature()`` (stored in the checkpoint).
        objectives: ``("accuracy", cost...)``. Defaults to ``("accuracy", "weight_bytes")``.
        constraint: an optional :class:`Constraint` handled by Deb's rule. Defaults to None.
        run_dir: the run directory, None for none. Defaults to None.
        resume: continue the run in ``run_dir``. Defaults to False.
        overwrite: start afresh in a ``run_dir`` holding a previous run. Defaults to False.
        seed: seeds the engine's ``random.Random`` (``rng``) and NumPy ``Generator`` (``np_rng``),
            which strategies must use (never the global ``random``: the evaluator reseeds it).
            Defaults to 0.
        verbose: 0 silent, 1 one line per generation and a progress bar per batch. Defaults to 1.
        executor: where evaluations run: ``"serial"`` (this process), ``"process"`` (local worker
            processes), ``"ray"`` (Ray actors) or an :class:`~tfmpq.search.executors.Executor`. Results
            are recorded as they finish; a strategy sees each batch in its own order, so the run
            does not depend on the order of completion. An executor given by name is started on the
            first evaluation and stopped when :meth:`run` returns. Defaults to "serial".
    """

    def __init__(
        self,
        space: SearchSpace,
        evaluator,
        *,
        objectives: Sequence[str] = ("accuracy", "weight_bytes"),
        constraint: Constraint | None = None,
        run_dir=None,
        resume: bool = False,
        overwrite: bool = False,
        seed: int = 0,
        verbose: int = 1,
        executor: str | Executor = "serial",
    ):
        if not hasattr(evaluator, "evaluate"):
            raise TypeError(
                "Invalid value for `evaluator`: expected an object with `evaluate(policy) -> Candidate` "
                f"(e.g. tfmpq.search.Evaluator). Received: {type(evaluator).__name__}."
            )
        self.space = space
        self.evaluator = evaluator
        self.ranking = Objectives(objectives, constraint)
        self.objectives = self.ranking.objectives
        self.weights = self.ranking.weights
        self.constraint = constraint
        self.seed = int(seed)
        self.verbose = int(verbose)
        self.executor = get_executor(executor)
        self._owns_executor = not isinstance(executor, Executor)
        self.store = RunStore(run_dir, resume=resume, overwrite=overwrite, lock=True)
        self.rng = random.Random(self.seed)
        self.np_rng = np.random.default_rng(self.seed)
        self.cache: dict[Chromosome, Candidate] = {}
        self.order: list[Chromosome] = []  # journal order
        self.num_evaluated = 0  # evaluator calls made by this process
        self.num_cached = 0  # cache hits in this process
        self.num_failed = 0
        self.history: list[dict] = []
        self.generation = -1
        self.num_repeated = 0  # repeats evaluated again (Ask.repeat) by this process
        self._journal_records = 0  # records in the journal, repeats included
        self._journaled_repeats: dict[Chromosome, int] = {}  # repeats a resumed journal already paid
        self._gen_evaluated = self._gen_cached = 0
        self._gen_seconds: list[float] = []
        self.view = SearchView(self)

    # -- objectives (tfmpq.search.pareto.Objectives) -------------------------------------------
    def values(self, candidate: Candidate) -> tuple[float, ...]:
        """The objective values (accuracy first); a failed candidate scores ``FAILED_ACCURACY``."""
        return self.ranking.values(candidate)

    def violation(self, candidate: Candidate) -> float:
        """The constraint violation (0 when feasible or unconstrained; inf when unknown)."""
        return self.ranking.violation(candidate)

    def feasible(self, candidate: Candidate) -> bool:
        return self.ranking.feasible(candidate)

    def better(self, a: Candidate, b: Candidate) -> bool:
        """Deb's rule on accuracy and the constraint (Tmamna et al. 2024, Algorithm 1)."""
        return self.ranking.better(a, b)

    def best(self, candidates: Iterable[Candidate] | None = None) -> Candidate | None:
        """The Deb-best candidate (:meth:`tfmpq.search.pareto.Objectives.best`)."""
        return self.ranking.best(self.candidates if candidates is None else candidates)

    def front(self, candidates: Iterable[Candidate] | None = None) -> list[Candidate]:
        """The Pareto front of scored (and feasible) candidates, sorted by increasing first cost."""
        return self.ranking.front(self.candidates if candidates is None else candidates)

    def hypervolume(self, candidates: Iterable[Candidate] | None = None) -> float | None:
        """``pareto.hypervolume_2d`` of the front with reference (0, float cost); None for != 2 objectives."""
        return self.ranking.hypervolume(list(self.candidates if candidates is None else candidates))

    @property
    def candidates(self) -> list[Candidate]:
        """Every evaluated candidate, in journal order."""
        return [self.cache[k] for k in self.order]

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self, chromosomes: Sequence[Sequence[int]], desc: str = "evaluating", *, reuse: bool = True,
        repeat: Sequence[Sequence[int]] = (),
    ) -> list[Candidate]:
        """Scores a batch: the cache first, then the evaluator for the new ones (journaled one by one).

        An evaluator exception or a non-finite accuracy is recorded as a failed candidate and the
        search goes on; ``KeyboardInterrupt``/``SystemExit`` propagate (the journal keeps what was done).

        Args:
            chromosomes: chromosomes of the space (duplicates allowed).
            desc: the progress bar's label.
            reuse: look the cache up first. False re-evaluates every chromosome and keeps the new
                scores. Defaults to True.
            repeat: chromosomes to hand to the evaluator again after the batch, although scored (BBPSO
                without similarity screening, Tmamna et al. 2024, Table 8): each repeat runs on the
                executor and is journaled as a ``"repeat": true`` record, and the first score stays the
                cached one. A resumed run does not pay again the repeats its journal already holds.
                Defaults to ().

        Returns:
            One :class:`Candidate` per chromosome, in order.
        """
        keys = [self.space.validate(g) for g in chromosomes]
        if reuse:
            todo = [k for i, k in enumerate(keys) if k not in self.cache and k not in keys[:i]]
        else:
            todo = list(keys)
        self.num_cached += len(keys) - len(todo)
        self._gen_cached += len(keys) - len(todo)
        self._run_batch(todo, desc, repeat=False)
        pay = []
        for k in (self.space.validate(g) for g in repeat):
            if self._journaled_repeats.get(k, 0) > 0:  # paid before the kill: the journal says so
                self._journaled_repeats[k] -= 1
            else:
                pay.append(k)
        self._run_batch(pay, f"{desc} (repeats)", repeat=True)
        return [self.cache[k] for k in keys]

    def _run_batch(self, todo: list, desc: str, repeat: bool) -> None:
        """Evaluates ``todo`` on the executor, journaling each result as it arrives."""
        if not todo:
            return
        bar = tqdm(total=len(todo), desc=desc, disable=self.verbose < 1, leave=False, unit="cand")
        policies = [self.space.decode(k) for k in todo]
        try:
            self.executor.ensure_started(self.evaluator)
            # Completion order: each result is journaled as it arrives (a kill loses nothing finished).
            for i, outcome, seconds in self.executor.map(policies):
                key = todo[i]
                if repeat:
                    candidate = self._complete(key, policies[i], outcome, seconds, count=False)
                    self.store.append({**candidate.to_json(), "repeat": True})
                    self._journal_records += 1
                    self.num_repeated += 1
                else:
                    candidate = self._complete(key, policies[i], outcome, seconds)
                    if key not in self.cache:
                        self.order.append(key)
                    self.cache[key] = candidate
                    self.store.append(candidate.to_json())
                    self._journal_records += 1
                    self.num_evaluated += 1
                    self._gen_evaluated += 1
                bar.update(1)
                if candidate.ok:
                    bar.set_postfix(acc=f"{candidate.accuracy:.4f}", refresh=False)
        finally:
            bar.close()

    def _complete(self, key: Chromosome, policy, outcome, seconds: float, count: bool = True) -> Candidate:
        """The candidate of ``key`` from an executor's outcome (a Candidate or the error it failed with)."""
        if isinstance(outcome, BaseException):
            candidate = Candidate(policy, None, self._metrics_or_empty(policy), seconds, status="failed",
                                  error=describe_error(outcome))
            if self.verbose and count:
                warnings.warn(f"Evaluation of {key} failed and is recorded as failed: {candidate.error}", stacklevel=3)
        else:
            candidate = outcome
        if not isinstance(candidate, Candidate):
            raise TypeError(
                f"The evaluator must return a tfmpq.search.Candidate. Received: {type(candidate).__name__} for {key}."
            )
        candidate.genes = key
        candidate.policy = policy
        if candidate.status == "ok" and (candidate.accuracy is None or not math.isfinite(candidate.accuracy)):
            candidate.status, candidate.accuracy = "failed", None
            candidate.error = candidate.error or "non-finite accuracy"
        if not candidate.ok:
            candidate.accuracy = None
            self.num_failed += int(count)
        return candidate

    def _metrics_or_empty(self, policy) -> dict:
        fn = getattr(self.evaluator, "metrics", None)
        if fn is None:
            return {}
        try:
            return dict(fn(policy))
        except Exception:
            return {}

    # -- the loop ------------------------------------------------------------------------------
    def signature(self, strategy) -> dict:
        """What a resumed run must share with the original (everything but the generation count)."""
        sig_fn = getattr(self.evaluator, "signature", None)
        return _normalise(
            {
                "format": CHECKPOINT_FORMAT,
                "strategy": strategy.name,
                "options": strategy.options(),
                "space": self.space.signature(),
                "evaluator": sig_fn() if callable(sig_fn) else type(self.evaluator).__name__,
                "objectives": list(self.objectives),
                "constraint": None if self.constraint is None else self.constraint.to_json(),
                "seed": self.seed,
            }
        )

    def _checkpoint(self, strategy, state: dict) -> dict:
        py_state = self.rng.getstate()
        return {
            "signature": self.signature(strategy),
            "generation": self.generation,
            "state": state,
            "rng": {"python": [py_state[0], list(py_state[1]), py_state[2]],
                    "numpy": _normalise(self.np_rng.bit_generator.state)},
            "history": self.history,
            "journal_records": self._journal_records,
        }

    def _restore(self, checkpoint: dict) -> dict:
        try:
            version, internal, gauss = checkpoint["rng"]["python"]
            self.rng.setstate((version, tuple(internal), gauss))
            self.np_rng.bit_generator.state = checkpoint["rng"]["numpy"]
            self.generation = int(checkpoint["generation"])
            self.history = list(checkpoint["history"])
            return checkpoint["state"]
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(
                f"Cannot resume from `{self.store.path(CHECKPOINT)}`: it is incomplete or corrupt ({e!r})."
            ) from None

    def _load_journal(self, replay_from: int = 0) -> None:
        """Fills the cache from ``evaluations.jsonl`` (the replay of Optuna-style resume).

        Args:
            replay_from: journal records before this index belong to generations the checkpoint
                holds; the repeats (``Ask.repeat``) journaled after it are those the replayed
                generations asked for already, so they are not paid again.
        """
        records = self.store.records()
        self._journal_records = len(records)
        for index, record in enumerate(records):
            try:
                key = self.space.validate(record["genes"])
                if record.get("repeat"):  # a repeat, not a new score
                    if index >= replay_from:
                        self._journaled_repeats[key] = self._journaled_repeats.get(key, 0) + 1
                    continue
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(
                    f"Cannot resume from `{self.store.path(EVALUATIONS)}`: a record does not fit this "
                    f"search space ({e})."
                ) from None
            if key not in self.cache:
                self.cache[key] = Candidate.from_json(record, policy=self.space.decode(key))
                self.order.append(key)

    def close(self) -> None:
        """Stops the executor's workers if the engine started them (from an executor name) and
        releases the run directory."""
        try:
            if self._owns_executor:
                self.executor.close()
        finally:
            self.store.close()

    def run(self, strategy) -> dict:
        """Runs ``strategy`` to ``strategy.generations`` (resuming when asked) and returns its state."""
        try:
            return self._run(strategy)
        finally:
            self.close()

    def _drive(self, run) -> dict:
        """Runs one generation of a strategy: answers each :class:`Ask` it yields with the batch's
        candidates (``evaluate``) until it returns its state."""
        if isinstance(run, dict):  # a generation that needed no evaluation
            return run
        try:
            ask = run.send(None)
            while True:
                if not isinstance(ask, Ask):
                    raise TypeError(f"A strategy must yield tfmpq.search.strategies.Ask batches. Received: "
                                    f"{type(ask).__name__}.")
                ask = run.send(self.evaluate(ask.chromosomes, desc=ask.desc, repeat=ask.repeat))
        except StopIteration as stop:
            if not isinstance(stop.value, dict):
                raise TypeError(f"A strategy's generation must return its state as a dict. Received: "
                                f"{type(stop.value).__name__}.") from None
            return stop.value

    def _run(self, strategy) -> dict:
        strategy.setup(self.view)
        signature = self.signature(strategy)
        state = None
        if self.store.resume:
            self.store.check_signature(signature, self.store.read_json(RUN), RUN)
            checkpoint = self.store.load_checkpoint()
            if checkpoint is not None:
                self.store.check_signature(signature, checkpoint.get("signature"), CHECKPOINT)
            self._load_journal(replay_from=int((checkpoint or {}).get("journal_records", 0)))
            if checkpoint is not None:
                state = self._restore(checkpoint)
                if self.verbose:
                    print(f"Resuming {strategy.name} after generation {self.generation} "
                          f"({len(self.cache)} evaluations in the journal).")
        self.store.write_json(RUN, signature)
        total = strategy.generations
        while True:
            if state is not None and (self.generation >= total or strategy.finished(self.view, state)):
                break
            self._gen_evaluated = self._gen_cached = 0
            start = time.perf_counter()
            if state is None:
                self.generation = 0
                state = self._drive(strategy.start(self.view))
            else:
                self.generation += 1
                state = self._drive(strategy.step(self.view, state, self.generation))
            seconds = time.perf_counter() - start
            self._gen_seconds.append(seconds)
            self._record(strategy, state, seconds, total)
            self.store.save_checkpoint(self._checkpoint(strategy, state))
            self.store.write_json(HISTORY, self.history)
        return state

    def _record(self, strategy, state: dict, seconds: float, total: int) -> None:
        scored = [c for c in self.candidates if c.ok]
        best = self.best()
        record = {
            "generation": self.generation,
            "evaluated": self._gen_evaluated,
            "cached": self._gen_cached,
            "total_evaluations": len(self.cache),
            "failed": sum(1 for c in self.candidates if not c.ok),
            "best_accuracy": max((c.accuracy for c in scored), default=None),
            "best_feasible_accuracy": None if best is None or not best.ok or not self.feasible(best) else best.accuracy,
            "best_genes": None if best is None else list(best.genes),
            "hypervolume": self.hypervolume(),
            "front_size": len(self.front()),
            "seconds": seconds,
        }
        if self.constraint is not None and best is not None:
            try:
                record["best_" + self.constraint.metric] = self.constraint.value(best.metrics)
            except KeyError:
                pass
        record.update(strategy.report(self.view, state))
        self.history.append(record)
        if self.verbose:
            remaining = max(0, total - self.generation)
            mean = sum(self._gen_seconds[-3:]) / len(self._gen_seconds[-3:])
            eta = _fmt_seconds(mean * remaining) if remaining else "0s"
            acc = "n/a" if record["best_accuracy"] is None else f"{record['best_accuracy']:.4f}"
            hv = "" if record["hypervolume"] is None else f" | hv {record['hypervolume']:.4f}"
            feas = ""
            if self.constraint is not None:
                bf = record["best_feasible_accuracy"]
                bv = record.get("best_" + self.constraint.metric)
                feas = (f" | best feasible {'none' if bf is None else f'{bf:.4f}'}"
                        + ("" if bv is None else f" @ {self.constraint.metric} {bv:.4g} <= {self.constraint.target:g}"))
            tqdm.write(
                f"{strategy.name} gen {self.generation}/{total} | evals {self._gen_evaluated} new, "
                f"{self._gen_cached} cached ({len(self.cache)} total) | best acc {acc}{feas}{hv} | "
                f"{_fmt_seconds(seconds)} | ETA {eta}"
            )


def _fmt_seconds(s: float) -> str:
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
