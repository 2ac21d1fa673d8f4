"""Resource constraints and Deb's constraint-handling rule, shared by every strategy.

Deb's rule (Tmamna et al., BBPSO-Quantizer, Algorithm 1; K. Deb, "An efficient constraint handling method
for genetic algorithms", 2000) compares two solutions:

1. both feasible: the better objective wins;
2. one feasible: the feasible one wins, whatever the objectives;
3. both infeasible: the smaller constraint violation wins.

It is written once here (:func:`deb_better`); BBPSO uses it for personal/global bests and local search,
and NSGA-II's constrained mode uses the same order through :func:`constrained_objectives`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

#: The accuracy a failed (diverged / crashed) candidate scores in comparisons: below any real
#: accuracy in [0, 1], yet finite so that crowding distances and hypervolumes stay finite.
FAILED_ACCURACY = -1.0
#: The cost an infeasible candidate is ranked with by :func:`constrained_objectives` (above any real
#: size or BOP count, and above the engine's ``FAILED_COST``).
INFEASIBLE_COST = 2e30


@dataclass(frozen=True)
class Constraint:
    """``metric <= target`` on one of the candidate's metrics (Tmamna et al., eq. 3).

    Args:
        metric: a key of ``Candidate.metrics``, e.g. ``"weight_bytes"``, ``"avg_weight_bits"``,
            ``"avg_op_bits"``, ``"bops"``.
        target: the budget; a candidate is feasible when ``metrics[metric] <= target``.

    Example:
    >>> c = Constraint("avg_weight_bits", 4.0)
    >>> c.violation({"avg_weight_bits": 4.5})
    0.5
    """

    metric: str
    target: float

    def __post_init__(self):
        if not isinstance(self.metric, str) or not self.metric:
            raise ValueError(f"Invalid value for `metric`: expected a metric name. Received: metric={self.metric!r}")
        if not isinstance(self.target, (int, float)) or not math.isfinite(self.target):
            raise ValueError(
                f"Invalid value for `target`: expected a finite number. Received: target={self.target!r}"
            )

    def value(self, metrics: Mapping[str, Any]) -> float:
        """The constrained metric's value.

        Raises:
            KeyError: ``metrics`` lacks the metric (message lists the keys it has).
        """
        if self.metric not in metrics:
            raise KeyError(
                f"Constraint on `{self.metric}` cannot be evaluated: the candidate's metrics have "
                f"{sorted(metrics)}."
            )
        return float(metrics[self.metric])

    def violation(self, metrics: Mapping[str, Any]) -> float:
        """``max(0, value - target)``: 0 for a feasible candidate, the overshoot otherwise."""
        return max(0.0, self.value(metrics) - float(self.target))

    def to_json(self) -> dict:
        return {"metric": self.metric, "target": float(self.target)}


def deb_better(a: tuple[float, float], b: tuple[float, float], *, maximize: bool = True) -> bool:
    """Whether ``a`` beats ``b`` by Deb's rule (Tmamna et al., Algorithm 1).

    Args:
        a: ``(objective, violation)`` of the challenger; violation >= 0, 0 means feasible.
        b: ``(objective, violation)`` of the incumbent.
        maximize: True when a larger objective is better (accuracy). Defaults to True.

    Returns:
        True when ``a`` is strictly better than ``b``; ties keep the incumbent (False).

    Example:
    >>> deb_better((0.90, 0.0), (0.95, 1.0))   # feasible beats infeasible
    True
    >>> deb_better((0.90, 2.0), (0.10, 1.0))   # smaller violation wins
    False
    """
    obj_a, viol_a = a
    obj_b, viol_b = b
    if viol_a <= 0.0 and viol_b <= 0.0:  # Alg. 1 lines 1-6: both feasible, compare objectives
        return obj_a > obj_b if maximize else obj_a < obj_b
    return viol_a < viol_b  # Alg. 1 lines 7-12: feasible (0) beats infeasible (>0); else less violation


def deb_key(objective: float, violation: float) -> tuple:
    """A sort key (larger is better) that orders ``(objective, violation)`` pairs as :func:`deb_better`
    does: feasible ones by objective (maximised), above every infeasible one, infeasible ones by
    decreasing violation (Deb 2000, sec. 3.1)."""
    if violation <= 0.0:
        return (1, objective)
    return (0, -violation)


def constrained_objectives(values: tuple[float, ...], violation: float) -> tuple[float, ...]:
    """Objective values whose Pareto dominance follows Deb's rule (constrained domination, Deb et al.
    2002, NSGA-II sec. V), for ``values = (accuracy, cost, ...)``: accuracy maximised, costs minimised.

    A feasible candidate keeps its values. An infeasible one gets accuracy
    ``FAILED_ACCURACY - 1 - violation`` (below every feasible or failed candidate, lower for a larger
    violation) and every cost at ``INFEASIBLE_COST`` (above every real cost). So every feasible
    candidate dominates every infeasible one, and of two infeasible ones the less violating dominates.

    Args:
        values: the objective values, accuracy first.
        violation: the constraint violation (0 = feasible).

    Returns:
        The values to rank with.
    """
    if violation <= 0.0:
        return tuple(values)
    return (FAILED_ACCURACY - 1.0 - violation,) + (INFEASIBLE_COST,) * (len(values) - 1)
