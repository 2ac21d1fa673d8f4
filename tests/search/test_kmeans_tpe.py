"""k-means TPE (Azizi et al. 2023): pruning, the dual threshold, annealing, Optuna proposals; the CTPE strategy."""
import itertools

import pytest

from search_fakes import PARAMS, SENSITIVITY, FakeEvaluator
from tfmpq.search import CTPE, Constraint, SearchSpace, run
from tfmpq.search.kmeans_tpe import (
    annealed_k, cluster_windows, dual_threshold_split, kmeans_1d, prune_bits, tpe_propose,
)


def test_cluster_windows_overlap_and_go_down_with_sensitivity():
    assert cluster_windows((2, 3, 4, 6, 8), 4) == [(8, 6), (8, 6, 4), (4, 3, 2), (3, 2)]
    assert cluster_windows(range(2, 9), 4) == [(8, 7), (7, 6, 5), (5, 4, 3), (3, 2)]
    assert cluster_windows((2, 4, 8), 1) == [(8, 4, 2)]


def test_prune_bits_gives_sensitive_groups_high_bits():
    sens = [3e-1, 2e-3, 1e-3, 4e-6, 6e-6, 5e-1]
    # log10: three pairs of orders of magnitude, three clusters
    assert prune_bits(sens, [tuple(range(2, 9))] * 6, 3) == [(7, 8), (4, 5, 6), (4, 5, 6), (2, 3), (2, 3), (7, 8)]
    # the paper's subsets given explicitly, 4 clusters: the middle pair (a factor 2 apart) splits
    paper = [(8, 6), (6, 4, 3), (4, 3, 2), (3, 2)]
    assert prune_bits(sens, [(2, 3, 4, 6, 8)] * 6, 4, cluster_bits=paper) == [
        (6, 8), (3, 4, 6), (2, 3, 4), (2, 3), (2, 3), (6, 8)]
    # the paper's linear scale: the largest value alone at the top, everything small lumped together
    assert prune_bits(sens, [tuple(range(2, 9))] * 6, 3, scale="linear") == [
        (4, 5, 6), (2, 3), (2, 3), (2, 3), (2, 3), (7, 8)]
    with pytest.raises(ValueError, match="`scale`"):
        prune_bits(sens, [(2, 4)] * 6, scale="ln")
    with pytest.raises(ValueError, match="`cluster_bits`"):
        prune_bits(sens, [(2, 4)] * 6, 4, cluster_bits=[(2,)])


def test_kmeans_1d_ranks_by_centroid_and_caps_k():
    ranks, centroids = kmeans_1d([0.1, 0.9, 0.12, 0.88, 0.5], 3)
    assert list(ranks) == [2, 0, 2, 0, 1] and list(centroids) == sorted(centroids, reverse=True)
    ranks, centroids = kmeans_1d([1.0, 1.0, 2.0], 5)  # two distinct values: two clusters
    assert list(ranks) == [1, 1, 0] and len(centroids) == 2


def test_dual_threshold_leaves_the_middle_out():
    values = [0.90, 0.89, 0.91, 0.70, 0.72, 0.40, 0.41, 0.10]
    top, bottom = dual_threshold_split(values, 4)
    assert top == [0, 1, 2] and bottom == [7]
    assert dual_threshold_split([0.5, 0.5], 4) == ([0, 1], [])


def test_k_anneals_upwards_from_the_papers_values():
    ks = [annealed_k(t) for t in range(60)]
    assert ks[0] == 4 and ks == sorted(ks) and ks[-1] > 4
    assert ks.index(5) == 12  # 0.25 * 0.98^t <= 1/5 from t = 12 on


def test_tpe_proposals_are_seeded_and_follow_l_over_g():
    choices = [(2, 3, 4), (4, 5, 6), (6, 7, 8)]
    good = [((4, 6, 8), 0.9), ((4, 6, 7), 0.89), ((4, 5, 8), 0.88)]
    bad = [((2, 4, 6), 0.3), ((2, 5, 6), 0.2), ((3, 4, 6), 0.25)]
    props = [tpe_propose(choices, good, bad, seed=s) for s in range(20)]
    assert props == [tpe_propose(choices, good, bad, seed=s) for s in range(20)]
    # l/g favours what C_1 holds and C_k lacks: 4 over 2 on gene 0 (C_1 all 4, C_k mostly 2)
    assert sum(p[0] == 4 for p in props) > sum(p[0] == 2 for p in props)
    with pytest.raises(ValueError, match="`good`"):
        tpe_propose(choices, [], bad, seed=0)
    with pytest.raises(ValueError, match="below every value"):
        tpe_propose(choices, good, [((2, 4, 6), 0.95)], seed=0)


SPACE = SearchSpace(("a", "b", "c"), bits=(2, 3, 4, 5, 6, 7, 8))
COSTS = {g: {b: p * b / 8 for b in SPACE.bits} for g, p in zip("abc", PARAMS)}
BUDGET = sum(PARAMS) * 4 / 8  # uniform 4-bit bytes


def _ctpe(**kwargs):
    options = dict(trials=24, startup=6)
    options.update(kwargs)
    sens = {g: s / p for g, s, p in zip("abc", SENSITIVITY, PARAMS)}
    return CTPE(sens, COSTS, BUDGET, **options)


def test_ctpe_scores_only_feasible_configurations_and_records_the_rest():
    ev = FakeEvaluator()
    result = run(_ctpe(prune_clusters=1), evaluator=ev, space=SPACE, constraint=Constraint("weight_bytes", BUDGET),
                 seed=1, verbose=0)
    assert all(c.metrics["weight_bytes"] <= BUDGET for c in result.candidates)
    assert len(result.candidates) == 24 == len(ev.evaluated)
    assert result.history[-1]["ctpe_infeasible"] > 0  # TPE did propose over the budget; never trained
    assert all(h["ctpe_k"] >= 4 for h in result.history[1:])
    # Pruned by sensitivity per weight (b most, then c, then a): b in {8, 7}, c in {6, 5, 4}, a in {3, 2};
    # 6 of those 12 fit the budget: the run scores them all and stops early.
    strategy = _ctpe()
    result = run(strategy, evaluator=FakeEvaluator(), space=SPACE, constraint=Constraint("weight_bytes", BUDGET),
                 seed=1, verbose=0)
    assert strategy.pruned == [(2, 3), (7, 8), (4, 5, 6)]
    fits = {x for x in itertools.product(*strategy.pruned) if sum(p * b / 8 for p, b in zip(PARAMS, x)) <= BUDGET}
    assert {c.genes for c in result.candidates} == fits and len(fits) == 6
    assert len(result.history) < 24 - 6 + 1


def test_tpe_proposals_score_better_than_the_random_start_on_the_fake_problem():
    """Model-based search: on the fake (accuracy 0.97 - sum s_g / 2^b_g under a 4-bit byte budget), the
    configurations TPE proposes score higher on average than the random configurations it started from,
    summed over three seeds (what a TPE that ignored l/g, i.e. random search, would not show)."""
    import statistics

    start_means, tpe_means = [], []
    for seed in range(3):
        strategy = _ctpe(trials=24, startup=6, prune_clusters=1, seed=seed)  # the TPE samplers' seeds too
        result = run(strategy, evaluator=FakeEvaluator(), space=SPACE, constraint=Constraint("weight_bytes", BUDGET),
                     seed=seed, verbose=0)
        accs = [c.accuracy for c in result.candidates]
        assert len(accs) == 24
        start_means.append(statistics.mean(accs[:6]))
        tpe_means.append(statistics.mean(accs[6:]))
    assert sum(tpe_means) > sum(start_means) + 0.1, (start_means, tpe_means)


def test_ctpe_refuses_searched_activations_and_a_budget_nothing_meets():
    space = SearchSpace(("a", "b", "c"), bits=(2, 8), search_activations=True)
    with pytest.raises(ValueError, match="activation bits are searched"):
        run(_ctpe(), evaluator=FakeEvaluator(), space=space, verbose=0)
    with pytest.raises(ValueError, match="no configuration of the space meets it"):
        run(CTPE([1.0, 1.0, 1.0], COSTS, 10.0, trials=5), evaluator=FakeEvaluator(), space=SPACE, verbose=0)
    with pytest.raises(ValueError, match="`startup`"):
        _ctpe(trials=4, startup=5)


def test_optuna_and_scipy_are_imported_lazily_with_a_clear_error(monkeypatch):
    import ast
    import pathlib
    import sys

    import tfmpq.search

    for path in pathlib.Path(tfmpq.search.__file__).parent.rglob("*.py"):  # no module-level import of either
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.startswith(("optuna", "scipy", "sklearn")) for n in names), (path.name, names)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'tfmpq\[search\]'"):
        tpe_propose([(2, 4)], [((4,), 1.0)], [], seed=0)
