"""Deb's rule (Tmamna et al., Algorithm 1) and constrained domination."""
import pytest

from tfmpq.search import Constraint, deb_better
from tfmpq.search.constraints import FAILED_ACCURACY, constrained_objectives

# (a, b, a beats b)
TRUTH_TABLE = [
    ((0.9, 0.0), (0.8, 0.0), True),    # both feasible: better objective
    ((0.8, 0.0), (0.9, 0.0), False),
    ((0.8, 0.0), (0.8, 0.0), False),   # tie keeps the incumbent
    ((0.1, 0.0), (0.99, 0.5), True),   # feasible beats infeasible whatever the objective
    ((0.99, 0.5), (0.1, 0.0), False),
    ((0.1, 0.2), (0.9, 0.7), True),    # both infeasible: smaller violation
    ((0.9, 0.7), (0.1, 0.2), False),
    ((0.9, 0.5), (0.1, 0.5), False),   # equal violation: incumbent kept
]


@pytest.mark.parametrize("a, b, expected", TRUTH_TABLE)
def test_deb_truth_table(a, b, expected):
    assert deb_better(a, b) is expected


def test_deb_minimize():
    assert deb_better((1.0, 0.0), (2.0, 0.0), maximize=False)


def test_constraint_violation_and_errors():
    c = Constraint("avg_op_bits", 4.0)
    assert c.violation({"avg_op_bits": 3.5}) == 0.0
    assert c.violation({"avg_op_bits": 4.25}) == 0.25
    with pytest.raises(KeyError, match="Constraint on `avg_op_bits` cannot be evaluated"):
        c.violation({"weight_bytes": 1})
    with pytest.raises(ValueError, match="Invalid value for `target`: expected a finite number"):
        Constraint("weight_bytes", float("nan"))


def _dominates(a, b):  # accuracy max, cost min
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def test_constrained_objectives_follow_deb():
    feasible = constrained_objectives((0.1, 900.0), 0.0)
    slightly = constrained_objectives((0.99, 10.0), 0.1)
    badly = constrained_objectives((0.99, 10.0), 3.0)
    failed_feasible = constrained_objectives((FAILED_ACCURACY, 500.0), 0.0)
    assert feasible == (0.1, 900.0)
    assert _dominates(feasible, slightly) and _dominates(slightly, badly)
    assert _dominates(failed_feasible, slightly)
