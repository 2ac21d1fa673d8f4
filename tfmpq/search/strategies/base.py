"""The strategy interface: propose chromosomes, keep a JSON-able state; the engine does the rest."""
from __future__ import annotations

import abc


class Strategy(abc.ABC):
    """A search strategy driven by :class:`tfmpq.search.engine.Engine`.

    A strategy holds no state that matters between generations except the dict it returns: the engine
    checkpoints that dict (with the engine's RNG states) after every generation, so a resumed run
    continues exactly. Strategies draw random numbers from ``engine.rng`` / ``engine.np_rng`` only,
    score chromosomes with ``engine.evaluate`` (cache first) and compare with ``engine.better``
    (Deb's rule) or ``engine.values`` (objectives). They never import TensorFlow.

    Attributes:
        name: the strategy's name (stored in the run signature).
        generations: the number of generations after generation 0 (the initial one).
    """

    name: str = ""
    generations: int = 0

    def setup(self, engine) -> None:
        """Called once before the run (e.g. to size the search on the space). Does nothing by default."""

    @abc.abstractmethod
    def options(self) -> dict:
        """The JSON-able options that define the search (part of the resume signature; exclude
        ``generations`` so a finished run can be extended)."""

    @abc.abstractmethod
    def start(self, engine) -> dict:
        """Generation 0: build and evaluate the initial population; return the state."""

    @abc.abstractmethod
    def step(self, engine, state: dict, generation: int) -> dict:
        """One generation from ``state``; return the new state (do not mutate ``state``)."""

    def population(self, state: dict) -> list:
        """The current population's chromosomes. Defaults to ``state["population"]``."""
        return [tuple(g) for g in state.get("population", [])]

    def finished(self, engine, state: dict) -> bool:
        """True to stop before ``generations`` (e.g. a space enumerated). Defaults to False."""
        return False

    def report(self, engine, state: dict) -> dict:
        """Extra per-generation values for ``history.json``. Defaults to none."""
        return {}
