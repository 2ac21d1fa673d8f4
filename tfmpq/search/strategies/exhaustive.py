"""Exhaustive enumeration of a small space: the ground truth the searches are tested against.

Seed 001 (sec. V) notes that a two-layer, layer-wise space (512 individuals) is better enumerated
than searched. The space is scored in batches of ``batch_size`` chromosomes; each batch is one
"generation" of the engine, so an enumeration is journaled, checkpointed and resumable too.
"""
from __future__ import annotations

import itertools
import math

from tfmpq.search.strategies.base import Ask, Strategy, check_counts


class Exhaustive(Strategy):
    """Scores every chromosome of the space.

    Args:
        batch_size: chromosomes per generation (checkpoint granularity). Defaults to 64.
        max_size: refuse spaces larger than this (use a search strategy). Defaults to 4096.

    Raises:
        ValueError: ``batch_size`` or ``max_size`` below 1; at run time, a space over ``max_size``.
    """

    name = "exhaustive"

    def __init__(self, batch_size: int = 64, max_size: int = 4096):
        check_counts(("batch_size", batch_size, 1), ("max_size", max_size, 1))
        self.batch_size = batch_size
        self.max_size = max_size
        self.generations = 0

    def options(self) -> dict:
        return {"batch_size": self.batch_size}

    def setup(self, view) -> None:
        size = view.space.size()
        if size > self.max_size:
            raise ValueError(
                f"The search space has {size} chromosomes, more than max_size={self.max_size} to enumerate. "
                "Use tfmpq.search.nsga2, restrict `bits`, pin groups, or raise `max_size`."
            )
        self.generations = math.ceil(size / self.batch_size) - 1  # generation 0 is the first batch

    def _batch(self, view, start: int):
        chunk = list(itertools.islice(view.space.enumerate(), start, start + self.batch_size))
        yield Ask(chunk, desc=f"batch {view.generation}")
        return {"next": start + len(chunk)}

    def start(self, view):
        return (yield from self._batch(view, 0))

    def step(self, view, state: dict, generation: int):
        return (yield from self._batch(view, state["next"]))

    def population(self, state: dict) -> list:
        return []

    def finished(self, view, state: dict) -> bool:
        return state["next"] >= view.space.size()
