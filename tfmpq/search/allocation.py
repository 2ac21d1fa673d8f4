"""Bit allocation as an integer linear program (HAWQ-V3), pure: tables in, allocations out.

Yao et al. 2021 (HAWQ-V3, sec. 3.4, eq. 7-8) choose one bit-width per layer to minimise the summed
second-order loss estimate ``sum_g Omega_g(b_g)`` under a resource budget that is linear in the
choices. With a binary variable ``x_{g,b}`` per group and candidate width:

    minimise    sum_{g,b} Omega_g(b) x_{g,b}
    subject to  sum_b x_{g,b} = 1                      for every group g
                sum_{g,b} cost_g(b) x_{g,b} <= budget
                x_{g,b} in {0, 1}

:func:`solve_allocation` solves it exactly with HiGHS through ``scipy.optimize.milp`` (SciPy >= 1.9),
and returns the next-best allocations too: after each solution ``s`` a *no-good cut*
``sum_g x_{g, s_g} <= G - 1`` forbids exactly that allocation (Balas and Jeroslow 1972), so the
``k``-th solve returns the ``k``-th best allocation (ties in any fixed order).

Which budgets are linear: ``weight_bytes`` (each group's bytes at its bits, plus constants),
``avg_weight_bits`` (a parameter-weighted mean, the denominator fixed), ``bops`` when activation
bits are fixed (``MACs_g * w_g * m_g``, ``m_g`` the fixed bits feeding group g, see
``tfmpq.metrics.input_bits``), ``flash_bytes_int4`` / ``flash_bytes_lut`` (each group's storage
depends on its own bits only); ``avg_op_bits <= T`` is ``bops <= T^2 * MACs`` (:func:`linear_budget`).
``flash_bytes`` (``packed="auto"``) is not: a group's storage depends on whether any other group is
LUT-compressed. :func:`separable_costs` reads the per-group tables off any cost function and checks
that the sum reproduces it, so a non-linear budget is refused instead of solved wrongly.

No TensorFlow here: the Omega table comes from ``tfmpq.hessian.omega_table``.
"""
from __future__ import annotations

import dataclasses
import math
import random
from typing import Callable, Mapping, Sequence

import numpy as np

from tfmpq.metrics import LINEAR_METRICS

#: Budgets whose cost is a sum of per-group terms when activation bits are fixed (see module docstring).
LINEAR_BUDGETS = LINEAR_METRICS
#: The objective is shifted per group and scaled to this largest value before solving, so HiGHS's
#: absolute optimality gap (1e-6) is negligible against the differences between allocations.
OBJECTIVE_SCALE = 1e6
#: Solves spent on allocations ``accept`` rejects, per solution asked for, before giving up.
MAX_REJECTED_PER_SOLUTION = 20


@dataclasses.dataclass(frozen=True)
class Allocation:
    """One solution of the allocation ILP.

    Attributes:
        bits: the chosen bit-width of each group, in the tables' order.
        objective: ``sum_g Omega_g(bits_g)``, recomputed in float64 from the table.
        cost: ``sum_g cost_g(bits_g)``, recomputed in float64 (the budget side).
    """

    bits: tuple
    objective: float
    cost: float


def _tables(omega, costs) -> tuple[list[tuple[int, ...]], list[dict], list[dict]]:
    """Validated per-group tables: (sorted choices, omega dicts, cost dicts)."""
    omega = list(omega.values()) if isinstance(omega, Mapping) else list(omega)
    costs = list(costs.values()) if isinstance(costs, Mapping) else list(costs)
    if not omega:
        raise ValueError("Invalid value for `omega`: expected one table per group. Received: none.")
    if len(omega) != len(costs):
        raise ValueError(f"Invalid value for `costs`: expected {len(omega)} tables (one per group, like `omega`). "
                         f"Received: {len(costs)}.")
    choices, om, co = [], [], []
    for g, (o, c) in enumerate(zip(omega, costs)):
        o = {int(b): float(v) for b, v in dict(o).items()}
        c = {int(b): float(v) for b, v in dict(c).items()}
        if not o or set(o) != set(c):
            raise ValueError(f"Invalid tables for group {g}: `omega` and `costs` must have the same non-empty set of "
                             f"bit-widths. Received: omega {sorted(o)}, costs {sorted(c)}.")
        bad = [v for v in list(o.values()) + list(c.values()) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"Invalid tables for group {g}: expected finite values. Received: {bad[:3]}.")
        choices.append(tuple(sorted(o)))
        om.append(o)
        co.append(c)
    return choices, om, co


def solve_allocation(
    omega: Sequence[Mapping[int, float]] | Mapping[str, Mapping[int, float]],
    costs: Sequence[Mapping[int, float]] | Mapping[str, Mapping[int, float]],
    budget: float,
    *,
    num_solutions: int = 1,
    exclude: Sequence[Sequence[int]] = (),
    accept: Callable[[tuple], bool] | None = None,
    time_limit: float | None = None,
) -> list[Allocation]:
    """The ``num_solutions`` best allocations of the ILP in the module docstring, best first.

    Args:
        omega: per group, ``{bits: Omega_g(bits)}`` (a sequence in group order, or a name -> table
            mapping in group order).
        costs: per group, ``{bits: cost_g(bits)}`` with the same bit-widths as ``omega``; constant
            costs (pinned groups, float layers) belong in ``budget``.
        budget: the largest allowed ``sum_g cost_g(b_g)``.
        num_solutions: how many allocations to return (fewer when the feasible set is smaller).
            Defaults to 1.
        exclude: allocations to cut off before solving (e.g. those already returned). Defaults to ().
        accept: a final check of each allocation (e.g. the exact metric against its target, where the
            linear form could round); a rejected one is cut off and does not count. Defaults to None.
        time_limit: seconds per solve (None: HiGHS's default, no limit). Defaults to None.

    Returns:
        Up to ``num_solutions`` :class:`Allocation`\\ s, in non-decreasing objective.

    Raises:
        ValueError: inconsistent tables, ``num_solutions < 1``, or a budget below the cheapest allocation
            (the message gives that cost).
        ImportError: SciPy < 1.9 (no ``scipy.optimize.milp``).

    Example:
    >>> omega = [{2: 9.0, 4: 1.0, 8: 0.0}, {2: 4.0, 4: 2.0, 8: 0.0}]
    >>> costs = [{2: 2.0, 4: 4.0, 8: 8.0}, {2: 2.0, 4: 4.0, 8: 8.0}]
    >>> [a.bits for a in solve_allocation(omega, costs, budget=8.0, num_solutions=2)]
    [(4, 4), (4, 2)]
    """
    try:
        from scipy.optimize import Bounds, LinearConstraint, milp
    except ImportError as e:  # pragma: no cover - scipy is a dependency
        raise ImportError("tfmpq's ILP allocation needs SciPy >= 1.9 (scipy.optimize.milp): "
                          "pip install 'tfmpq[search]' or pip install 'scipy>=1.9'.") from e
    if isinstance(num_solutions, bool) or not isinstance(num_solutions, int) or num_solutions < 1:
        raise ValueError(f"Invalid value for `num_solutions`: expected an integer >= 1. Received: {num_solutions!r}")
    if not isinstance(budget, (int, float)) or not math.isfinite(budget):
        raise ValueError(f"Invalid value for `budget`: expected a finite number. Received: budget={budget!r}")
    choices, om, co = _tables(omega, costs)
    cheapest = sum(min(c.values()) for c in co)
    if cheapest > budget:
        raise ValueError(f"Invalid value for `budget`: no allocation fits. Expected at least the cheapest allocation's "
                         f"cost {cheapest:.6g}. Received: budget={budget:.6g}.")
    index = [(g, b) for g, ch in enumerate(choices) for b in ch]
    column = {key: i for i, key in enumerate(index)}
    num_groups, n = len(choices), len(index)
    # Objective: shift each group by its smallest Omega (one choice per group: the argmin is unchanged)
    # and scale to OBJECTIVE_SCALE (see the constant).
    shifted = np.array([om[g][b] - min(om[g].values()) for g, b in index])
    top = float(shifted.max())
    c = shifted * (OBJECTIVE_SCALE / top) if top > 0 else shifted
    one_hot = np.zeros((num_groups, n))
    for i, (g, _) in enumerate(index):
        one_hot[g, i] = 1.0
    scale = max(abs(budget), 1.0)  # the budget row in units of the budget: tolerances are relative
    cost_row = np.array([co[g][b] for g, b in index]) / scale
    base = [LinearConstraint(one_hot, 1.0, 1.0), LinearConstraint(cost_row[None, :], -np.inf, budget / scale)]

    def cut(bits) -> np.ndarray:
        row = np.zeros(n)
        for g, b in enumerate(bits):
            row[column[(g, int(b))]] = 1.0
        return row

    cuts = [cut(tuple(e)) for e in exclude if all((g, int(b)) in column for g, b in enumerate(e))]
    found: list[Allocation] = []
    rejected = 0
    options = {"mip_rel_gap": 0.0, "presolve": True}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    while len(found) < num_solutions:
        constraints = list(base)
        if cuts:
            constraints.append(LinearConstraint(np.array(cuts), -np.inf, num_groups - 1.0))
        res = milp(c, constraints=constraints, integrality=np.ones(n), bounds=Bounds(0.0, 1.0), options=options)
        if res.x is None:  # infeasible: every allocation under the budget has been returned or cut off
            break
        x = np.round(res.x).astype(int)
        bits = tuple(next(b for b in choices[g] if x[column[(g, b)]] == 1) for g in range(num_groups))
        cuts.append(cut(bits))
        cost = math.fsum(co[g][b] for g, b in enumerate(bits))
        if cost > budget * (1 + 1e-12) + 1e-12 or (accept is not None and not accept(bits)):
            rejected += 1  # over the budget by the solver's tolerance, or refused by the caller
            if rejected > MAX_REJECTED_PER_SOLUTION * num_solutions:
                break
            continue
        found.append(Allocation(bits, math.fsum(om[g][b] for g, b in enumerate(bits)), cost))
    return found


def separable_costs(
    cost: Callable[[tuple], float],
    choices: Sequence[Sequence[int]],
    *,
    num_checks: int = 16,
    seed: int = 0,
    rtol: float = 1e-9,
    name: str = "cost",
) -> tuple[float, list[dict]]:
    """Per-gene cost tables of a cost function that is a sum of per-gene terms, checked.

    ``cost(x) = constant + sum_j table_j[x_j]``: read off by changing one gene at a time from the
    chromosome of every gene's first choice, then verified on ``num_checks`` random chromosomes.

    Args:
        cost: chromosome (a tuple of ints, one per gene) -> cost.
        choices: each gene's allowed values.
        num_checks: random chromosomes the sum is checked on. Defaults to 16.
        seed: seeds those chromosomes. Defaults to 0.
        rtol: relative tolerance of the check. Defaults to 1e-9.
        name: the cost's name in the error message. Defaults to "cost".

    Returns:
        ``(constant, tables)``, ``tables[j] = {value: cost term}`` (0 for the first choice).

    Raises:
        ValueError: the cost is not a sum of per-gene terms (e.g. ``flash_bytes`` with LUT packing,
            or ``bops`` with searched activation bits).
    """
    choices = [tuple(c) for c in choices]
    base = tuple(c[0] for c in choices)
    constant = float(cost(base))
    tables = []
    for j, ch in enumerate(choices):
        tables.append({b: float(cost(base[:j] + (b,) + base[j + 1:])) - constant for b in ch})
    rng = random.Random(seed)
    for _ in range(num_checks):
        x = tuple(rng.choice(c) for c in choices)
        want = float(cost(x))
        got = constant + math.fsum(t[v] for t, v in zip(tables, x))
        if not math.isclose(got, want, rel_tol=rtol, abs_tol=rtol * max(abs(constant), 1.0)):
            raise ValueError(
                f"Invalid budget `{name}`: it is not a sum of per-group terms in this search space (at {x} the "
                f"per-group tables give {got:.9g}, the metric {want:.9g}), so an integer linear program cannot "
                f"hold it. Expected one of {LINEAR_BUDGETS} with activation bits not searched."
            )
    return constant, tables


def linear_budget(budget: str, target: float, macs: float | None = None) -> tuple[str, float]:
    """The linear form of ``budget <= target``: ``avg_op_bits <= T`` becomes ``bops <= T^2 * MACs``
    (Tmamna et al. 2024, eq. 11: ``avg_op_bits = sqrt(bops / MACs)``); the others are themselves.

    Args:
        budget: a metric name (see ``LINEAR_BUDGETS``).
        target: its bound.
        macs: the model's MACs (``tfmpq.metrics.summary(...)["macs"]``), needed for ``avg_op_bits``.

    Returns:
        ``(metric, bound)`` with ``metric`` linear in the per-group choices.

    Raises:
        ValueError: a budget not in ``LINEAR_BUDGETS``, or ``avg_op_bits`` without ``macs``.
    """
    if budget not in LINEAR_BUDGETS:
        raise ValueError(f"Invalid value for `budget`: expected one of {LINEAR_BUDGETS} (linear in each group's "
                         f"bits). Received: budget={budget!r}")
    if budget == "avg_op_bits":
        if not macs:
            raise ValueError("Invalid value for `macs`: the avg_op_bits budget needs the model's MACs. Received: "
                             f"macs={macs!r}")
        return "bops", float(target) ** 2 * float(macs)
    return budget, float(target)
