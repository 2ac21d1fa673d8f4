"""The strategy interface: a strategy proposes chromosomes; the engine evaluates them.

A strategy is written as generators, in the loop-wise style of pymoo's algorithms and Optuna's
ask/tell: ``start`` and ``step`` *yield* an :class:`Ask` (a batch of chromosomes) each time they need
scores, receive the batch's candidates back, and finally *return* the JSON-able state of the
generation::

    def step(self, view, state, generation):
        children = self._breed(view, state)
        candidates = yield Ask(children, desc=f"gen {generation}")
        return {"population": self._survivors(view, state, candidates)}

The engine (``tfmpq.search.engine``) answers every Ask: cache first, the executor for the rest, the
journal, the checkpoint after each generation. A strategy sees the run only through a read-only
:class:`SearchView` (the space, the run's random generators, the objectives and Deb's rule, and the
candidates it was already given); it never holds the engine, its cache or its evaluator, and it never
imports TensorFlow.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Generator, Protocol, Sequence

#: What ``start`` / ``step`` are: generators that yield Asks, receive candidates, return the state.
StrategyRun = Generator["Ask", list, dict]


@dataclasses.dataclass(frozen=True)
class Ask:
    """A batch of chromosomes a strategy wants scored.

    Attributes:
        chromosomes: the chromosomes (duplicates and already scored ones allowed: the cache answers).
        desc: the progress bar's label. Defaults to "evaluating".
        repeat: chromosomes of this batch or earlier ones to hand to the evaluator *again*, although
            scored (BBPSO-Quantizer without its similarity screening, Tmamna et al. 2024, Table 8): the
            repeat is paid and journaled, and the first score stays the one returned. Defaults to ().
    """

    chromosomes: Sequence[Sequence[int]]
    desc: str = "evaluating"
    repeat: Sequence[Sequence[int]] = ()

    def __post_init__(self):
        object.__setattr__(self, "chromosomes", tuple(tuple(int(g) for g in c) for c in self.chromosomes))
        object.__setattr__(self, "repeat", tuple(tuple(int(g) for g in c) for c in self.repeat))


def check_counts(*checks: tuple[str, Any, int]) -> None:
    """Raises a ValueError naming the first ``(name, value, minimum)`` whose value is not an integer >= minimum."""
    for arg, value, low in checks:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"Invalid value for `{arg}`: expected an integer >= {low}. Received: {arg}={value!r}")


class SearchView(Protocol):
    """What a strategy may read of a run (``Engine.view``); nothing in it evaluates or writes.

    Attributes:
        space: the :class:`~tfmpq.search.space.SearchSpace`.
        rng: a ``random.Random`` (checkpointed: draw every random number from it or ``np_rng``).
        np_rng: a ``numpy.random.Generator`` (checkpointed).
        generation: the generation being run (0 = the initial one).
        objectives: ``("accuracy", cost, ...)``.
        weights: DEAP weights of the objectives (+1 maximise, -1 minimise).
        constraint: the run's :class:`~tfmpq.search.constraints.Constraint`, or None.
    """

    space: Any
    rng: Any
    np_rng: Any
    generation: int
    objectives: tuple
    weights: tuple
    constraint: Any

    def values(self, candidate) -> tuple: ...
    def violation(self, candidate) -> float: ...
    def feasible(self, candidate) -> bool: ...
    def better(self, a, b) -> bool: ...
    def candidate(self, genes: Sequence[int]): ...


class Strategy(abc.ABC):
    """A search strategy driven by :class:`tfmpq.search.engine.Engine`.

    A strategy holds no state that matters between generations except the dict its generators return:
    the engine checkpoints that dict (with the RNG states) after every generation, so a resumed run
    continues exactly. Random numbers come from ``view.rng`` / ``view.np_rng`` only; comparisons use
    ``view.better`` (Deb's rule) or ``view.values`` (objectives).

    Attributes:
        name: the strategy's name (stored in the run signature).
        generations: the number of generations after generation 0 (the initial one).
    """

    name: str = ""
    generations: int = 0

    def setup(self, view: SearchView) -> None:
        """Called once before the run (e.g. to size the search on the space). Does nothing by default."""

    @abc.abstractmethod
    def options(self) -> dict:
        """The JSON-able options that define the search (part of the resume signature; exclude
        ``generations`` so a finished run can be extended)."""

    @abc.abstractmethod
    def start(self, view: SearchView) -> StrategyRun:
        """Generation 0: yield the initial population's :class:`Ask`, return the state."""

    @abc.abstractmethod
    def step(self, view: SearchView, state: dict, generation: int) -> StrategyRun:
        """One generation from ``state``: yield Asks, return the new state (do not mutate ``state``)."""

    def population(self, state: dict) -> list:
        """The current population's chromosomes. Defaults to ``state["population"]``."""
        return [tuple(g) for g in state.get("population", [])]

    def finished(self, view: SearchView, state: dict) -> bool:
        """True to stop before ``generations`` (e.g. a space enumerated). Defaults to False."""
        return False

    def report(self, view: SearchView, state: dict) -> dict:
        """Extra per-generation values for ``history.json``. Defaults to none."""
        return {}

    def extras(self, view: SearchView, state: dict) -> dict:
        """What the strategy adds to the run's ``Result`` after the last generation: values of its declared
        fields (``ilp_optimum``, ``pruned``, ...). Defaults to none."""
        return {}
