"""The contract every search strategy must pass (Optuna-style shared suite).

Add a strategy by appending a factory to STRATEGIES: ``make(generations) -> Strategy``.
"""
import ast
import pathlib

import pytest

import tfmpq.search
from search_fakes import PARAMS, SENSITIVITY, FakeEvaluator
from tfmpq.search import BBPSO, CTPE, GA, ILP, Constraint, Engine, Exhaustive, NSGA2, SearchSpace, run
from tfmpq.search.pareto import non_dominated

# Tables of the fake problem by group name (pinned groups are resolved by the strategies): Omega like
# the fake's accuracy loss, costs its weight bytes, a budget of 6 bits on average.
FAKE_OMEGA = {g: {b: s / 2 ** b for b in (2, 4, 8)} for g, s in zip("abc", SENSITIVITY)}
FAKE_BYTES = {g: {b: p * b / 8 for b in (2, 4, 8)} for g, p in zip("abc", PARAMS)}
FAKE_BUDGET = sum(PARAMS) * 6 / 8

STRATEGIES = {
    "nsga2": lambda generations: NSGA2(population=6, offspring=6, generations=generations),
    "nsga2_random_init": lambda generations: NSGA2(population=6, offspring=6, generations=generations,
                                                   init="random", crossover="two_point", mutation="per_gene",
                                                   mutation_prob=0.5),
    "exhaustive": lambda generations: Exhaustive(batch_size=10),
    "bbpso": lambda generations: BBPSO(swarm=8, iterations=generations, init="random", gamma=2),
    "ga": lambda generations: GA(population=6, generations=generations),
    "ilp": lambda generations: ILP(FAKE_OMEGA, FAKE_BYTES, FAKE_BUDGET, solutions=2, generations=generations),
    "ctpe": lambda generations: CTPE({g: s / p for g, s, p in zip("abc", SENSITIVITY, PARAMS)}, FAKE_BYTES,
                                     FAKE_BUDGET, trials=4 + generations, startup=4, prune_clusters=1),
}
SPACE = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))


@pytest.fixture(params=sorted(STRATEGIES))
def make(request):
    return STRATEGIES[request.param]


def _run(make, generations=3, evaluator=None, **kwargs):
    evaluator = evaluator or FakeEvaluator()
    kwargs.setdefault("space", SPACE)
    kwargs.setdefault("verbose", 0)
    return run(make(generations), evaluator=evaluator, seed=kwargs.pop("seed", 3), **kwargs), evaluator


def _fingerprint(result):
    return [(c.genes, c.accuracy) for c in result.candidates], [c.genes for c in result.front]


def test_front_is_the_non_dominated_set_of_candidates(make):
    result, ev = _run(make)
    assert result.front, "a front"
    pool = [c for c in result.candidates if c.ok]
    expected = non_dominated(pool, lambda c: (c.accuracy, c.weight_bytes), (1.0, -1.0))
    assert {c.genes for c in result.front} == {c.genes for c in expected}
    costs = [c.weight_bytes for c in result.front]
    assert costs == sorted(costs)


def test_never_evaluates_a_chromosome_twice(make):
    result, ev = _run(make, generations=6)
    assert len(ev.evaluated) == len(set(ev.evaluated)) == len(result.candidates) == result.num_evaluated
    assert len({c.genes for c in result.candidates}) == len(result.candidates)


def test_same_seed_same_run(make):
    a, _ = _run(make)
    b, _ = _run(make)
    assert _fingerprint(a) == _fingerprint(b)
    assert a.history[-1]["hypervolume"] == b.history[-1]["hypervolume"]


def test_resume_after_kill_matches_uninterrupted_run(make, tmp_path):
    full, ev_full = _run(make, generations=4, run_dir=tmp_path / "full")
    total = len(ev_full.evaluated)
    killed = FakeEvaluator(interrupt_after=total // 2 + 1)  # a kill in the middle of the run
    with pytest.raises(KeyboardInterrupt):
        _run(make, generations=4, evaluator=killed, run_dir=tmp_path / "split")
    resumed, ev_resumed = _run(make, generations=4, run_dir=tmp_path / "split", resume=True)
    assert _fingerprint(resumed) == _fingerprint(full)
    assert set(killed.evaluated).isdisjoint(ev_resumed.evaluated), "re-evaluated after resume"
    assert len(killed.evaluated) + len(ev_resumed.evaluated) == total


def test_failing_candidates_do_not_stop_the_run(make):
    ev = FakeEvaluator(fail_when=lambda p: p.weight_bits[2] == 4)
    with pytest.warns(UserWarning):
        result, _ = _run(make, evaluator=ev, verbose=1)
    assert any(not c.ok for c in result.candidates)
    assert all(c.ok for c in result.front)
    assert len(result.history) == make(3).generations + 1 or result.strategy == "exhaustive"


def test_pinned_groups_are_respected(make):
    space = SearchSpace(("a", "b", "c"), bits=(2, 4, 8), pinned={"b": 8})
    result, ev = _run(make, space=space)
    assert all(c.policy.weight_bits[1] == 8 for c in result.candidates)


def test_constraint_best_is_feasible_when_one_was_seen(make):
    result, _ = _run(make, constraint=Constraint("avg_weight_bits", 4.0))
    feasible = [c for c in result.candidates if c.ok and c.metrics["avg_weight_bits"] <= 4.0]
    assert feasible
    assert result.best.metrics["avg_weight_bits"] <= 4.0
    assert result.best.accuracy == max(c.accuracy for c in feasible)
    assert all(c.metrics["avg_weight_bits"] <= 4.0 for c in result.front)


def test_strategies_never_import_tensorflow():
    root = pathlib.Path(tfmpq.search.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert not name.startswith(("tensorflow", "tf_keras", "keras", "tfmpq._keras", "tfmpq.quantize")), (
                    f"{path.name} imports {name}"
                )


def test_engine_uses_its_own_rng_not_the_global_one(make):
    import random

    random.seed(123)
    a, _ = _run(make)
    random.seed(999)  # e.g. keras.utils.set_random_seed inside an evaluator
    b, _ = _run(make)
    assert _fingerprint(a) == _fingerprint(b)
