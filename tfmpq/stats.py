"""Statistics for reporting accuracies honestly: confidence intervals and a paired test (pure Python).

- :func:`wilson_interval`: the Wilson score interval of a binomial proportion (Wilson 1927), which
  keeps its coverage near 0 and 1 where the normal approximation does not (Brown, Cai and DasGupta
  2001, "Interval Estimation for a Binomial Proportion", Statistical Science 16(2)).
- :func:`mcnemar`: McNemar's exact test of two classifiers scored on the *same* test samples
  (McNemar 1947; Dietterich 1998, "Approximate Statistical Tests for Comparing Supervised
  Classification Learning Algorithms", Neural Computation 10(7), sec. 3.1): only the samples the two
  disagree on carry information, and under "equally accurate" each disagreement goes either way with
  probability 1/2.
"""
from __future__ import annotations

import math
from typing import Sequence

__all__ = ["wilson_interval", "mcnemar", "binomial_sd"]

#: z for a two-sided 95 % interval.
Z95 = 1.959963984540054


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of ``correct / total`` (95 % by default).

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` (Wilson 1927, eq. for the score interval).

    Args:
        correct: successes (correctly classified samples).
        total: trials (samples), > 0.
        z: the normal quantile. Defaults to 1.96 (95 %).

    Returns:
        ``(low, high)`` in [0, 1].

    Raises:
        ValueError: ``total`` < 1 or ``correct`` outside 0..total.
    """
    if total < 1 or not 0 <= correct <= total:
        raise ValueError(f"Invalid counts: expected 0 <= correct <= total and total >= 1. Received: {correct}/{total}.")
    n, p = float(total), correct / total
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = max(0.0, center - half), min(1.0, center + half)
    # at p = 0 or 1 the interval touches the bound exactly (rounding would leave 1 - 1e-16)
    return (0.0 if correct == 0 else low), (1.0 if correct == total else high)


def binomial_sd(p: float, total: int) -> float:
    """The standard deviation of an accuracy ``p`` measured on ``total`` samples: sqrt(p(1-p)/n)."""
    return math.sqrt(max(p * (1 - p), 0.0) / total) if total else float("nan")


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict:
    """McNemar's exact (binomial) test of two classifiers on the same samples.

    Args:
        correct_a: per sample, whether classifier A was right.
        correct_b: the same for classifier B, same samples in the same order.

    Returns:
        ``{"a_only": b, "b_only": c, "n": b + c, "p_value": p}``: ``b`` samples only A got right, ``c``
        only B; ``p = min(1, 2·P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)`` (two-sided), 1.0
        when they never disagree.

    Raises:
        ValueError: the two sequences differ in length.
    """
    a, b_ = list(map(bool, correct_a)), list(map(bool, correct_b))
    if len(a) != len(b_):
        raise ValueError(f"Invalid value for `correct_b`: expected {len(a)} samples like `correct_a`. "
                         f"Received: {len(b_)}.")
    b = sum(1 for x, y in zip(a, b_) if x and not y)
    c = sum(1 for x, y in zip(a, b_) if y and not x)
    n = b + c
    if n == 0:
        return {"a_only": 0, "b_only": 0, "n": 0, "p_value": 1.0}
    k = min(b, c)
    # exact binomial tail in log space (n can be thousands)
    logs = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2) for i in range(k + 1)]
    top = max(logs)
    tail = math.exp(top) * sum(math.exp(v - top) for v in logs)
    return {"a_only": b, "b_only": c, "n": n, "p_value": min(1.0, 2.0 * tail)}
