"""Wilson interval and McNemar's exact test against values computed independently (scipy/statsmodels-free)."""
import math

import pytest

from tfmpq.stats import binomial_sd, mcnemar, wilson_interval


def test_wilson_interval_known_values():
    # Brown, Cai & DasGupta (2001) / Newcombe (1998) example: 81 of 263 -> (0.2553, 0.3662)
    low, high = wilson_interval(81, 263)
    assert low == pytest.approx(0.2553, abs=5e-5) and high == pytest.approx(0.3662, abs=5e-5)
    assert wilson_interval(0, 10)[0] == 0.0 and 0.0 < wilson_interval(0, 10)[1] < 0.31
    assert wilson_interval(10, 10)[1] == 1.0
    lo, hi = wilson_interval(1800, 2000)  # 90 % on 2,000 images: about +-1.3 pp
    assert 0.886 < lo < 0.887 and 0.912 < hi < 0.913
    with pytest.raises(ValueError, match="Invalid counts"):
        wilson_interval(3, 0)


def test_mcnemar_exact_matches_the_binomial_tail():
    a = [True] * 10 + [False] * 2 + [True] * 50
    b = [False] * 10 + [True] * 2 + [True] * 50
    r = mcnemar(a, b)
    assert (r["a_only"], r["b_only"], r["n"]) == (10, 2, 12)
    expect = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12  # 2 * P(X <= 2), X ~ Bin(12, 1/2)
    assert r["p_value"] == pytest.approx(expect)  # 0.0386
    assert mcnemar(a, a)["p_value"] == 1.0
    assert mcnemar([True, False], [False, True])["p_value"] == 1.0
    big = mcnemar([True] * 600 + [False] * 400, [False] * 600 + [True] * 400)  # large n stays finite
    assert 0 < big["p_value"] < 1e-8
    with pytest.raises(ValueError, match="expected 2 samples"):
        mcnemar([True, False], [True])


def test_binomial_sd():
    assert binomial_sd(0.9, 1000) == pytest.approx(math.sqrt(0.09 / 1000))
