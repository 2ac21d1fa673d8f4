"""The search engine shared by every strategy: ask -> evaluate (cache first) -> tell -> journal.

A strategy (``tfmpq.search.strategies``) only proposes chromosomes and keeps a JSON-able state; the
:class:`Engine` owns everything else: the cache of evaluated chromosomes (a chromosome is never
evaluated twice in a run — BBPSO's "similarity screening", seed 000 sec. 4.3.4, is this cache), the
append-only journal and the per-generation checkpoint (:mod:`tfmpq.search.store`), the random number
generators, objectives and Deb's constraint rule, hypervolume, progress and the outputs. Where the
evaluations run is its :mod:`~tfmpq.search.executors` (serial, local processes, Ray actors).

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
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from tfmpq.errors import CheckpointError
from tfmpq.evaluate import Candidate
from tfmpq.search.constraints import FAILED_ACCURACY, Constraint, deb_better
from tfmpq.search.executors import Executor, describe_error
from tfmpq.search.executors import get as get_executor
from tfmpq.search.space import Chromosome, SearchSpace
from tfmpq.search.store import RUN, RunStore

CHECKPOINT_FORMAT = 1
#: Cost given to a failed candidate whose metrics could not even be computed: finite (so DEAP's
#: crowding distance stays finite) and larger than any real size or BOP count.
FAILED_COST = 1e30
OBJECTIVES = ("accuracy", "weight_bytes", "bops", "avg_weight_bits", "avg_op_bits", "flash_bytes",
              "flash_bytes_int4", "flash_bytes_lut")


def _normalise(obj: Any) -> Any:
    """JSON round trip, so tuples/lists and int/float keys compare as they will after a reload."""
    return json.loads(json.dumps(obj))


def check_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """Validates ``objectives``: ``"accuracy"`` first (maximised), then cost metrics (minimised).

    Raises:
        ValueError: not a sequence of metric names starting with "accuracy".
    """
    if isinstance(objectives, str):
        objectives = (objectives,)
    objectives = tuple(objectives)
    if not objectives or objectives[0] != "accuracy" or not all(isinstance(o, str) and o for o in objectives):
        raise ValueError(
            "Invalid value for `objectives`: expected ('accuracy', <cost metric>, ...) with cost metrics "
            f"such as 'weight_bytes' or 'bops'. Received: objectives={objectives!r}"
        )
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"Invalid value for `objectives`: duplicates. Received: objectives={objectives!r}")
    return objectives


def reference_cost(name: str, metrics: dict) -> float | None:
    """The cost coordinate of the hypervolume reference point: the float model's value.

    ``weight_bytes`` -> ``float_weight_bytes``; ``bops`` -> 32 x 32 x MACs (float32 weights and
    activations); ``avg_*_bits`` -> 32; ``flash_bytes*`` -> ``flash_bytes_int8`` (a full-integer file
    has no float weights: the int8-container file is the reference, and no packing is larger). Every
    quantized policy costs less, so every scored point counts. None when the metric has no counterpart.
    """
    if name == "weight_bytes" and "float_weight_bytes" in metrics:
        return float(metrics["float_weight_bytes"])
    if name.startswith("flash_bytes") and "flash_bytes_int8" in metrics:
        return float(metrics["flash_bytes_int8"])
    if name == "bops" and "macs" in metrics:
        return 32.0 * 32.0 * float(metrics["macs"])
    if name.startswith("avg_") and name.endswith("_bits"):
        return 32.0
    return None


def hypervolume_2d(points: Iterable[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Normalised 2-D hypervolume of (accuracy, cost) points, accuracy maximised, cost minimised.

    The dominated region is bounded by the reference point ``(accuracy_ref, cost_ref)``; the cost axis
    is divided by ``cost_ref`` so the value reads as "accuracy x fraction of the float cost saved":
    1.0 would be 100 % accuracy at zero cost. With the engine's reference (accuracy 0, the float
    model's cost) the value lies in [0, 1] (Zitzler & Thiele 1998, the S-metric).

    Args:
        points: (accuracy, cost) of the candidates (dominated points are allowed, they add nothing).
        reference: (accuracy_ref, cost_ref), cost_ref > 0.

    Returns:
        The hypervolume; 0.0 when no point dominates the reference.
    """
    acc_ref, cost_ref = reference
    pts = sorted((c, a) for a, c in points if a > acc_ref and c < cost_ref)
    if not pts or cost_ref <= 0:
        return 0.0
    # Sweep by increasing cost: between c_i and the next cost the best accuracy reachable is the
    # running maximum, so the area is a sum of rectangles.
    volume, best = 0.0, acc_ref
    for i, (c, a) in enumerate(pts):
        best = max(best, a)
        nxt = pts[i + 1][0] if i + 1 < len(pts) else cost_ref
        volume += (nxt - c) * (best - acc_ref)
    return volume / cost_ref


def non_dominated(items: Sequence[Any], values: Callable[[Any], tuple[float, ...]], weights: Sequence[float]) -> list:
    """The items no other item Pareto-dominates (order kept). ``weights``: +1 maximise, -1 minimise."""
    w = [values(x) for x in items]
    wv = [tuple(v * s for v, s in zip(vals, weights)) for vals in w]
    out = []
    for i, a in enumerate(wv):
        dominated = False
        for j, b in enumerate(wv):
            if j != i and all(bk >= ak for ak, bk in zip(a, b)) and any(bk > ak for ak, bk in zip(a, b)):
                dominated = True
                break
        if not dominated:
            out.append(items[i])
    return out


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
        self.objectives = check_objectives(objectives)
        self.weights = (1.0,) + (-1.0,) * (len(self.objectives) - 1)
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
        self._gen_evaluated = self._gen_cached = 0
        self._gen_seconds: list[float] = []

    # -- objectives ----------------------------------------------------------------------------
    def values(self, candidate: Candidate) -> tuple[float, ...]:
        """The objective values (accuracy first); a failed candidate scores ``FAILED_ACCURACY``."""
        acc = candidate.accuracy if candidate.ok else FAILED_ACCURACY
        costs = []
        for name in self.objectives[1:]:
            v = candidate.metrics.get(name)
            costs.append(FAILED_COST if v is None or not math.isfinite(float(v)) else float(v))
        return (float(acc),) + tuple(costs)

    def violation(self, candidate: Candidate) -> float:
        """The constraint violation (0 when feasible or unconstrained; inf when unknown)."""
        if self.constraint is None:
            return 0.0
        try:
            return self.constraint.violation(candidate.metrics)
        except KeyError:
            return math.inf

    def feasible(self, candidate: Candidate) -> bool:
        return self.violation(candidate) <= 0.0

    def better(self, a: Candidate, b: Candidate) -> bool:
        """Deb's rule on accuracy and the constraint (seed 000, Algorithm 1)."""
        return deb_better((self.values(a)[0], self.violation(a)), (self.values(b)[0], self.violation(b)))

    def best(self, candidates: Iterable[Candidate] | None = None) -> Candidate | None:
        """The Deb-best candidate; ties go to the lower costs, then the smaller chromosome, so the
        answer does not depend on the order in which parallel workers finished."""
        pool = list(self.candidates if candidates is None else candidates)
        best = None
        for c in sorted(pool, key=lambda c: (self.values(c)[1:], c.genes or ())):
            if best is None or self.better(c, best):
                best = c
        return best

    def front(self, candidates: Iterable[Candidate] | None = None) -> list[Candidate]:
        """The Pareto front of scored (and feasible) candidates, sorted by increasing first cost."""
        pool = [c for c in (self.candidates if candidates is None else candidates) if c.ok and self.feasible(c)]
        front = non_dominated(pool, self.values, self.weights)
        return sorted(front, key=lambda c: (self.values(c)[1:], -self.values(c)[0], c.genes))

    def hypervolume(self, candidates: Iterable[Candidate] | None = None) -> float | None:
        """:func:`hypervolume_2d` of the front with reference (0, float cost); None for != 2 objectives."""
        if len(self.objectives) != 2:
            return None
        front = self.front(candidates)
        if not front:
            return 0.0
        ref = reference_cost(self.objectives[1], front[0].metrics)
        if ref is None:  # no float counterpart: 10 % beyond the costliest scored candidate
            ref = 1.1 * max(self.values(c)[1] for c in self.candidates if c.ok)
        return hypervolume_2d([self.values(c) for c in front], (0.0, ref))

    @property
    def candidates(self) -> list[Candidate]:
        """Every evaluated candidate, in journal order."""
        return [self.cache[k] for k in self.order]

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self, chromosomes: Sequence[Sequence[int]], desc: str = "evaluating", *, reuse: bool = True
    ) -> list[Candidate]:
        """Scores a batch: the cache first, then the evaluator for the new ones (journaled one by one).

        An evaluator exception or a non-finite accuracy is recorded as a failed candidate and the
        search goes on; ``KeyboardInterrupt``/``SystemExit`` propagate (the journal keeps what was done).

        Args:
            chromosomes: chromosomes of the space (duplicates allowed).
            desc: the progress bar's label.
            reuse: look the cache up first. False re-evaluates every chromosome (for ablations of
                BBPSO's similarity screening, seed 000 Table 9; a resume then re-evaluates too).
                Defaults to True.

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
        bar = tqdm(total=len(todo), desc=desc, disable=self.verbose < 1 or not todo, leave=False, unit="cand")
        policies = [self.space.decode(k) for k in todo]
        try:
            if todo:
                self.executor.ensure_started(self.evaluator)
            # Completion order: each result is journaled as it arrives (a kill loses nothing finished).
            for i, outcome, seconds in self.executor.map(policies) if todo else ():
                key = todo[i]
                candidate = self._complete(key, policies[i], outcome, seconds)
                if key not in self.cache:
                    self.order.append(key)
                self.cache[key] = candidate
                self.store.append(candidate.to_json())
                self.num_evaluated += 1
                self._gen_evaluated += 1
                bar.update(1)
                if candidate.ok:
                    bar.set_postfix(acc=f"{candidate.accuracy:.4f}", refresh=False)
        finally:
            bar.close()
        return [self.cache[k] for k in keys]

    def _complete(self, key: Chromosome, policy, outcome, seconds: float) -> Candidate:
        """The candidate of ``key`` from an executor's outcome (a Candidate or the error it failed with)."""
        if isinstance(outcome, BaseException):
            candidate = Candidate(policy, None, self._metrics_or_empty(policy), seconds, status="failed",
                                  error=describe_error(outcome))
            if self.verbose:
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
            self.num_failed += 1
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
                f"Cannot resume from `{self.store.path('checkpoint.json')}`: it is incomplete or corrupt ({e!r})."
            ) from None

    def _load_journal(self) -> None:
        """Fills the cache from ``evaluations.jsonl`` (the replay of Optuna-style resume)."""
        for record in self.store.records():
            try:
                key = self.space.validate(record["genes"])
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(
                    f"Cannot resume from `{self.store.path('evaluations.jsonl')}`: a record does not fit this "
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

    def _run(self, strategy) -> dict:
        strategy.setup(self)
        signature = self.signature(strategy)
        state = None
        if self.store.resume:
            self.store.check_signature(signature, self.store.read_json(RUN), RUN)
            self._load_journal()
            checkpoint = self.store.load_checkpoint()
            if checkpoint is not None:
                self.store.check_signature(signature, checkpoint.get("signature"), "checkpoint.json")
                state = self._restore(checkpoint)
                if self.verbose:
                    print(f"Resuming {strategy.name} after generation {self.generation} "
                          f"({len(self.cache)} evaluations in the journal).")
        self.store.write_json(RUN, signature)
        total = strategy.generations
        while True:
            if state is not None and (self.generation >= total or strategy.finished(self, state)):
                break
            self._gen_evaluated = self._gen_cached = 0
            start = time.perf_counter()
            if state is None:
                self.generation = 0
                state = strategy.start(self)
            else:
                self.generation += 1
                state = strategy.step(self, state, self.generation)
            seconds = time.perf_counter() - start
            self._gen_seconds.append(seconds)
            self._record(strategy, state, seconds, total)
            self.store.save_checkpoint(self._checkpoint(strategy, state))
            self.store.write_json("history.json", self.history)
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
        record.update(strategy.report(self, state))
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
                feas = f" | best feasible {'none' if bf is None else f'{bf:.4f}'}"
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
