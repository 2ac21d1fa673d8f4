"""The ILP allocation against brute force, the separability check, the linear budgets (no TensorFlow)."""
import itertools
import math
import random

import pytest

from tfmpq.search.allocation import linear_budget, separable_costs, solve_allocation


def _random_problem(rng, groups, bits=(2, 3, 4, 6, 8)):
    omega, costs = [], []
    for _ in range(groups):
        trace = 10 ** rng.uniform(-4, 2)
        params = rng.randint(10, 5000)
        omega.append({b: trace * rng.uniform(0.5, 1.5) / 4 ** b for b in bits})
        costs.append({b: params * b / 8 + 4 * rng.randint(1, 64) for b in bits})
    return omega, costs


def _brute(omega, costs, budget):
    rows = []
    for x in itertools.product(*[sorted(o) for o in omega]):
        cost = math.fsum(c[b] for c, b in zip(costs, x))
        if cost <= budget:
            rows.append((math.fsum(o[b] for o, b in zip(omega, x)), x))
    return sorted(rows)


@pytest.mark.parametrize("case", range(12))
def test_the_k_best_allocations_are_the_brute_force_k_best(case):
    rng = random.Random(case)
    omega, costs = _random_problem(rng, groups=rng.randint(2, 5))
    lo = sum(min(c.values()) for c in costs)
    hi = sum(max(c.values()) for c in costs)
    budget = lo + rng.uniform(0.1, 0.7) * (hi - lo)
    want = _brute(omega, costs, budget)
    got = solve_allocation(omega, costs, budget, num_solutions=6)
    assert len(got) == min(6, len(want))
    # objectives equal the brute-force order (ties may come in any order: compare values, then sets)
    for a, (obj, _) in zip(got, want):
        assert a.objective == pytest.approx(obj, rel=1e-9, abs=1e-15)
        assert a.cost <= budget
        assert a.objective == pytest.approx(math.fsum(o[b] for o, b in zip(omega, a.bits)), rel=1e-12)
    assert got[0].objective == pytest.approx(want[0][0], rel=1e-9, abs=1e-15)
    assert len({a.bits for a in got}) == len(got)


def test_every_feasible_allocation_then_nothing():
    omega = [{2: 3.0, 8: 0.0}, {2: 1.0, 8: 0.0}]
    costs = [{2: 2.0, 8: 8.0}, {2: 2.0, 8: 8.0}]
    got = solve_allocation(omega, costs, 10.0, num_solutions=10)
    assert [a.bits for a in got] == [(8, 2), (2, 8), (2, 2)]
    assert [a.objective for a in got] == [1.0, 3.0, 4.0]
    assert [a.bits for a in solve_allocation(omega, costs, 10.0, num_solutions=10, exclude=[(8, 2)])] == [(2, 8), (2, 2)]
    # accept refuses one: it is skipped, not counted
    assert [a.bits for a in solve_allocation(omega, costs, 10.0, num_solutions=2, accept=lambda b: b != (2, 8))] == \
        [(8, 2), (2, 2)]


def test_budget_below_the_cheapest_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"`budget`.*cheapest allocation's cost 4"):
        solve_allocation([{2: 1.0}, {2: 1.0}], [{2: 2.0}, {2: 2.0}], 3.0)
    with pytest.raises(ValueError, match="same non-empty set of bit-widths"):
        solve_allocation([{2: 1.0, 4: 0.5}], [{2: 2.0}], 3.0)
    with pytest.raises(ValueError, match="`num_solutions`"):
        solve_allocation([{2: 1.0}], [{2: 2.0}], 3.0, num_solutions=0)


def test_tiny_omega_values_are_still_solved_exactly():
    # Omega of a real model can be 1e-9: the scaling keeps HiGHS's absolute gap out of the way
    omega = [{2: 3e-9, 4: 1e-9, 8: 0.0}, {2: 2.9e-9, 4: 1.1e-9, 8: 0.0}, {2: 1e-12, 4: 5e-13, 8: 0.0}]
    costs = [{2: 2.0, 4: 4.0, 8: 8.0}] * 3
    want = _brute(omega, costs, 14.0)
    got = solve_allocation(omega, costs, 14.0, num_solutions=3)
    assert [a.objective for a in got] == pytest.approx([w[0] for w in want[:3]], rel=1e-9, abs=1e-18)


def test_separable_costs_reads_and_checks_the_tables():
    choices = [(2, 4, 8), (2, 8), (3, 5)]
    cost = lambda x: 7.0 + 3 * x[0] + 10 * x[1] + 0.5 * x[2] ** 2  # noqa: E731
    constant, tables = separable_costs(cost, choices)
    for x in itertools.product(*choices):
        assert constant + sum(t[b] for t, b in zip(tables, x)) == pytest.approx(cost(x))
    with pytest.raises(ValueError, match="not a sum of per-group terms"):
        separable_costs(lambda x: x[0] * x[1], choices, name="bops")


def test_avg_op_bits_is_a_bops_bound():
    assert linear_budget("avg_op_bits", 4.0, macs=1000) == ("bops", 16000.0)
    assert linear_budget("weight_bytes", 123.0) == ("weight_bytes", 123.0)
    with pytest.raises(ValueError, match="`budget`"):
        linear_budget("flash_bytes", 1.0)
    with pytest.raises(ValueError, match="`macs`"):
        linear_budget("avg_op_bits", 4.0)
