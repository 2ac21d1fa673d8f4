"""NSGA-II: Šafář's initialisation, exactness against exhaustive enumeration, resume, golden front."""
import json

import pytest
from deap import creator

from search_fakes import FakeEvaluator
from tfmpq.errors import CheckpointError
from tfmpq.search import NSGA2, SearchSpace, exhaustive, nsga2

SPACE3 = SearchSpace(("a", "b", "c"), bits=(2, 3, 4, 6, 8))


def test_initial_population_holds_every_uniform_policy():
    ev = FakeEvaluator()
    result = nsga2(evaluator=ev, space=SPACE3, population=8, offspring=8, generations=0, verbose=0)
    first = ev.evaluated[:8]
    assert [g[:3] for g in first[:5]] == [(b, b, b) for b in (2, 3, 4, 6, 8)]
    # the fill: mutants of a uniform policy (exactly one gene changed, Šafář)
    for genes in first[5:]:
        assert any(sum(x != b for x in genes[:3]) == 1 for b in (2, 3, 4, 6, 8))
    assert set(result.uniform) == {"2-bit", "3-bit", "4-bit", "6-bit", "8-bit"}


def test_more_uniform_policies_than_population():
    ev = FakeEvaluator()
    result = nsga2(evaluator=ev, space=SPACE3, population=3, offspring=4, generations=1, verbose=0)
    assert len(ev.evaluated) >= 5 and len(result.population) == 3


def test_front_equals_exhaustive_front_on_a_small_space():
    space = SearchSpace(("a", "b"))
    params, sens = (3000, 400), (0.6, 0.3)
    truth = exhaustive(evaluator=FakeEvaluator(params, sens), space=space, verbose=0)
    found = nsga2(evaluator=FakeEvaluator(params, sens), space=space, population=16, offspring=16,
                  generations=10, seed=0, verbose=0)
    assert len(truth.candidates) == 49 and len(truth.front) == 34  # a smooth fake: most points are optimal
    assert [c.genes for c in found.front] == [c.genes for c in truth.front]
    assert [c.accuracy for c in found.front] == [c.accuracy for c in truth.front]


def test_resume_extends_a_finished_run_without_re_evaluation(tmp_path):
    full_ev = FakeEvaluator()
    full = nsga2(evaluator=full_ev, space=SPACE3, population=8, offspring=8, generations=4, seed=5,
                 run_dir=tmp_path / "full", verbose=0)
    first_ev = FakeEvaluator()
    nsga2(evaluator=first_ev, space=SPACE3, population=8, offspring=8, generations=2, seed=5,
          run_dir=tmp_path / "split", verbose=0)
    assert json.loads((tmp_path / "split" / "checkpoint.json").read_text())["generation"] == 2
    second_ev = FakeEvaluator()
    resumed = nsga2(evaluator=second_ev, space=SPACE3, population=8, offspring=8, generations=4, seed=5,
                    run_dir=tmp_path / "split", resume=True, verbose=0)
    assert [c.genes for c in resumed.front] == [c.genes for c in full.front]
    assert [c.genes for c in resumed.population] == [c.genes for c in full.population]
    assert set(first_ev.evaluated).isdisjoint(second_ev.evaluated)
    assert len(first_ev.evaluated) + len(second_ev.evaluated) == len(full_ev.evaluated)
    assert [h["hypervolume"] for h in resumed.history] == [h["hypervolume"] for h in full.history]
    # resuming a finished run evaluates nothing
    third_ev = FakeEvaluator()
    again = nsga2(evaluator=third_ev, space=SPACE3, population=8, offspring=8, generations=4, seed=5,
                  run_dir=tmp_path / "split", resume=True, verbose=0)
    assert third_ev.calls == 0 and [c.genes for c in again.front] == [c.genes for c in full.front]


def test_kill_during_generation_zero_then_resume(tmp_path):
    full_ev = FakeEvaluator()
    full = nsga2(evaluator=full_ev, space=SPACE3, population=8, offspring=8, generations=2, seed=2, verbose=0)
    killed = FakeEvaluator(interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):
        nsga2(evaluator=killed, space=SPACE3, population=8, offspring=8, generations=2, seed=2,
              run_dir=tmp_path, verbose=0)
    assert not (tmp_path / "checkpoint.json").exists()
    ev = FakeEvaluator()
    resumed = nsga2(evaluator=ev, space=SPACE3, population=8, offspring=8, generations=2, seed=2,
                    run_dir=tmp_path, resume=True, verbose=0)
    assert [c.genes for c in resumed.front] == [c.genes for c in full.front]
    assert len(killed.evaluated) == 3 and set(killed.evaluated).isdisjoint(ev.evaluated)


@pytest.mark.parametrize(
    "change, where",
    [({"seed": 6}, "run.json"), ({"space": SearchSpace(("a", "b", "c"), bits=(2, 4))}, "run.json")],
)
def test_resume_of_another_problem_raises(tmp_path, change, where):
    kwargs = dict(evaluator=FakeEvaluator(), space=SPACE3, population=4, offspring=4, generations=1, seed=5,
                  run_dir=tmp_path, verbose=0)
    nsga2(**kwargs)
    kwargs.update(change, resume=True)
    with pytest.raises(CheckpointError, match=rf"Cannot resume from `.*{where}`: it was made by another search"):
        nsga2(**kwargs)


def test_tampered_checkpoint_signature_names_the_checkpoint(tmp_path):
    kwargs = dict(evaluator=FakeEvaluator(), space=SPACE3, population=4, offspring=4, generations=1, seed=5,
                  run_dir=tmp_path, verbose=0)
    nsga2(**kwargs)
    ckpt = json.loads((tmp_path / "checkpoint.json").read_text())
    ckpt["signature"]["seed"] = 99
    (tmp_path / "checkpoint.json").write_text(json.dumps(ckpt))
    with pytest.raises(CheckpointError, match=r"checkpoint.json`: it was made by another search problem\. What differs: the seed \(seed\): "
                                                r"stored 99, now 5"):
        nsga2(**kwargs, resume=True)


def test_golden_front():
    """Pins the front of a tiny seeded search; a change here means the algorithm changed."""
    result = nsga2(evaluator=FakeEvaluator(), space=SPACE3, population=8, offspring=8, generations=4,
                   seed=7, verbose=0)
    assert [c.genes for c in result.front] == [
        (2, 2, 2), (2, 2, 4), (2, 3, 2), (2, 3, 3), (2, 4, 2), (3, 4, 2), (2, 6, 4), (2, 6, 6), (3, 6, 2),
        (2, 8, 6), (3, 6, 6), (4, 6, 6), (4, 8, 8), (8, 6, 6), (8, 6, 8), (8, 8, 6), (8, 8, 8),
    ]
    assert result.hypervolume == pytest.approx(0.867435, abs=1e-6)
    assert (len(result.candidates), result.num_cached) == (35, 5)


def test_no_global_deap_creator_classes():
    before = set(vars(creator))
    nsga2(evaluator=FakeEvaluator(), space=SPACE3, population=4, offspring=4, generations=1, verbose=0,
          objectives=("accuracy", "bops"))
    nsga2(evaluator=FakeEvaluator(), space=SPACE3, population=4, offspring=4, generations=1, verbose=0)
    assert set(vars(creator)) == before


def test_bops_objective():
    result = nsga2(evaluator=FakeEvaluator(), space=SPACE3, population=6, offspring=6, generations=2, verbose=0,
                   objectives=("accuracy", "bops"))
    bops = [c.bops for c in result.front]
    assert bops == sorted(bops) and result.hypervolume > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"population": 1}, "Invalid value for `population`: expected an integer >= 2. Received: population=1"),
        ({"generations": -1}, "Invalid value for `generations`"),
        ({"init": "lhs"}, r"Invalid value for `init`: expected one of \('uniform', 'random'\)"),
        ({"mutation_prob": 1.5}, r"Invalid value for `mutation_prob`: expected a probability in \[0, 1\]"),
    ],
)
def test_invalid_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NSGA2(**kwargs)
