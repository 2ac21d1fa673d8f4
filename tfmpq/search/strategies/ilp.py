"""Sensitivity + integer linear programming (HAWQ-V3) as a search strategy.

Yao et al. 2021 (HAWQ-V3, sec. 3.4) allocate bits in seconds: the Hessian-trace cost table
``Omega_g(b)`` (``tfmpq.hessian``) is minimised under a linear budget by an ILP
(:func:`tfmpq.search.allocation.solve_allocation`). As a strategy on the shared engine,
:class:`ILP` scores the optimal allocation and the next-best ones with the evaluator (generation 0:
the ``solutions`` best; each further generation: the next ``solutions``), so the engine's cache,
journal, resume and executors apply, and ``Result.best`` is the most accurate of them on validation
within the budget.

The tables are computed once before the run (``tfmpq.search.sensitivity``: the Hessian traces need
TensorFlow, the strategy does not) and stored in the run's signature (``run.json``): a resumed run
reads them back instead of estimating the traces again, and a resume with other tables is refused.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

from tfmpq.search.allocation import solve_allocation
from tfmpq.search.strategies.base import Ask, Strategy, check_counts
from tfmpq.search.tables import normalise_tables, sig, tables_json, weight_tables

class ILP(Strategy):
    """Omega-optimal allocations under a linear budget, scored best first (HAWQ-V3 sec. 3.4).

    Args:
        omega: ``{bits: Omega_g(bits)}`` per gene of the space (free groups' weight bits, in order), or
            ``{group name: table}``.
        costs: ``{bits: cost term}`` per gene, or ``{group name: table}`` for every group (pinned groups
            count at their pinned bits): the budget metric is ``constant + sum of terms``.
        budget: the largest allowed sum of cost terms (the target minus the constant).
        solutions: allocations scored per generation: the optimum and the next-best. Defaults to 4.
        generations: further generations, each scoring the next ``solutions``. Defaults to 0.
        accept: an exact check of an allocation (e.g. the metric against its target); allocations it
            refuses are skipped. Not part of the resume signature. Defaults to None.

    Raises:
        ValueError: empty or inconsistent tables, ``solutions < 1``; at setup, a space whose
            activation bits are searched or whose genes the tables do not cover.
    """

    name = "ilp"

    def __init__(self, omega: Sequence[Mapping[int, float]], costs: Sequence[Mapping[int, float]], budget: float, *,
                 solutions: int = 4, generations: int = 0, accept: Callable[[tuple], bool] | None = None):
        check_counts(("solutions", solutions, 1), ("generations", generations, 0))
        self.omega = normalise_tables(omega, "omega")
        self.costs = normalise_tables(costs, "costs")
        self.budget = sig(budget)
        self.solutions = solutions
        self.generations = generations
        self.accept = accept

    def setup(self, view) -> None:
        space = view.space
        tables, costs, constant = weight_tables(
            space, self.name, "BOPs would be a product of two choices, and the ILP allocates weight bits only",
            self.costs, omega=self.omega)
        omega = tables["omega"]
        # the tables restricted to what the space allows
        self._omega = [{b: om[b] for b in allowed} for allowed, om in zip(space.choices, omega)]
        self._costs = [{b: co[b] for b in allowed} for allowed, co in zip(space.choices, costs)]
        self._budget = self.budget - constant

    def options(self) -> dict:
        return {"omega": tables_json(self.omega), "costs": tables_json(self.costs), "budget": self.budget,
                "solutions": self.solutions}

    def _next(self, view, state: dict):
        """Asks for the next ``solutions`` allocations (those already scored excluded); returns the state."""
        done = [tuple(s) for s in state.get("solutions", [])]
        found = solve_allocation(self._omega, self._costs, self._budget, num_solutions=self.solutions,
                                 exclude=done, accept=self.accept)
        if found:
            yield Ask([a.bits for a in found], desc=f"ilp {view.generation}")
        return {
            "solutions": [list(s) for s in done] + [list(a.bits) for a in found],
            "objectives": list(state.get("objectives", [])) + [a.objective for a in found],
            "budget_costs": list(state.get("budget_costs", [])) + [a.cost for a in found],
            "exhausted": len(found) < self.solutions,
        }

    def start(self, view):
        return (yield from self._next(view, {}))

    def step(self, view, state: dict, generation: int):
        return (yield from self._next(view, state))

    def population(self, state: dict) -> list:
        return [tuple(s) for s in state.get("solutions", [])]

    def finished(self, view, state: dict) -> bool:
        return bool(state.get("exhausted"))

    def report(self, view, state: dict) -> dict:
        obj = state.get("objectives") or [None]
        return {"ilp_solutions": len(state.get("solutions", [])), "ilp_best_objective": obj[0]}

    def extras(self, view, state: dict) -> dict:
        """``ilp_optimum``: the candidate of the Omega-optimal allocation (None when none fits)."""
        solutions = state.get("solutions") or []
        return {"ilp_optimum": view.candidate(solutions[0]) if solutions else None}
