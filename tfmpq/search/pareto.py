"""Objectives, Pareto dominance and hypervolume: the one place a search's candidates are ranked.

The engine, the :class:`~tfmpq.search.Result`, ``tfmpq.report`` and the strategies (through their
view of the run) all rank with :class:`Objectives`: accuracy maximised, costs minimised, a failed
candidate below every scored one, and Deb's rule for a constraint (Deb 2000, "An efficient constraint
handling method for genetic algorithms", sec. 3.1; used by Tmamna et al. 2024, Algorithm 1). NSGA-II's
own non-dominated sorting is DEAP's (``deap.tools.sortNondominated``) on the same values.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from tfmpq.search.constraints import FAILED_ACCURACY, Constraint, deb_better

#: Cost given to a failed candidate whose metrics could not even be computed: finite (so DEAP's
#: crowding distance stays finite) and larger than any real size or BOP count.
FAILED_COST = 1e30


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
    wv = [tuple(v * s for v, s in zip(values(x), weights)) for x in items]
    out = []
    for i, a in enumerate(wv):
        dominated = any(
            j != i and all(bk >= ak for ak, bk in zip(a, b)) and any(bk > ak for ak, bk in zip(a, b))
            for j, b in enumerate(wv)
        )
        if not dominated:
            out.append(items[i])
    return out


class Objectives:
    """How a search ranks candidates: accuracy first (maximised), then costs (minimised), and an
    optional constraint handled with Deb's rule.

    Args:
        objectives: ``("accuracy", cost, ...)``. Defaults to ``("accuracy", "weight_bytes")``.
        constraint: ``metric <= target``, or None.
    """

    def __init__(self, objectives: Sequence[str] = ("accuracy", "weight_bytes"), constraint: Constraint | None = None):
        self.objectives = check_objectives(objectives)
        self.weights = (1.0,) + (-1.0,) * (len(self.objectives) - 1)
        self.constraint = constraint

    @property
    def cost(self) -> str:
        """The first cost (what plots and comparisons use)."""
        return self.objectives[1] if len(self.objectives) > 1 else "weight_bytes"

    def values(self, candidate) -> tuple[float, ...]:
        """The objective values (accuracy first); a failed candidate scores ``FAILED_ACCURACY``."""
        acc = candidate.accuracy if candidate.ok else FAILED_ACCURACY
        costs = []
        for name in self.objectives[1:]:
            v = candidate.metrics.get(name)
            costs.append(FAILED_COST if v is None or not math.isfinite(float(v)) else float(v))
        return (float(acc),) + tuple(costs)

    def violation(self, candidate) -> float:
        """The constraint violation (0 when feasible or unconstrained; inf when unknown)."""
        if self.constraint is None:
            return 0.0
        try:
            return self.constraint.violation(candidate.metrics)
        except KeyError:
            return math.inf

    def feasible(self, candidate) -> bool:
        return self.violation(candidate) <= 0.0

    def better(self, a, b) -> bool:
        """Deb's rule on accuracy and the constraint (Tmamna et al. 2024, Algorithm 1)."""
        return deb_better((self.values(a)[0], self.violation(a)), (self.values(b)[0], self.violation(b)))

    def best(self, candidates: Iterable) -> Any:
        """The Deb-best candidate; ties go to the lower costs, then the smaller chromosome, so the
        answer does not depend on the order in which parallel workers finished."""
        best = None
        for c in sorted(candidates, key=lambda c: (self.values(c)[1:], c.genes or ())):
            if best is None or self.better(c, best):
                best = c
        return best

    def front(self, candidates: Iterable) -> list:
        """The Pareto front of scored (and feasible) candidates, sorted by increasing first cost."""
        pool = [c for c in candidates if c.ok and self.feasible(c)]
        front = non_dominated(pool, self.values, self.weights)
        return sorted(front, key=lambda c: (self.values(c)[1:], -self.values(c)[0], c.genes or ()))

    def hypervolume(self, candidates: Sequence) -> float | None:
        """:func:`hypervolume_2d` of the front with reference (0, float cost); None for != 2 objectives."""
        if len(self.objectives) != 2:
            return None
        front = self.front(candidates)
        if not front:
            return 0.0
        ref = reference_cost(self.objectives[1], front[0].metrics)
        if ref is None:  # no float counterpart: 10 % beyond the costliest scored candidate
            ref = 1.1 * max(self.values(c)[1] for c in candidates if c.ok)
        return hypervolume_2d([self.values(c) for c in front], (0.0, ref))
