"""Engine: cache (never evaluate twice), failures recorded, hypervolume, outputs, progress."""
import json
import math

import pytest

from search_fakes import FakeEvaluator
from tfmpq import report
from tfmpq.search import Engine, SearchSpace, hypervolume_2d, nsga2
from tfmpq.search.pareto import non_dominated

SPACE = SearchSpace(("a", "b", "c"), bits=(2, 4, 8))


def test_cache_hits_counted_and_no_second_evaluation():
    ev = FakeEvaluator()
    engine = Engine(SPACE, ev, verbose=0)
    engine.evaluate([(2, 4, 8), (2, 4, 8), (8, 8, 8)])
    engine.evaluate([(8, 8, 8), (4, 4, 4)])
    assert ev.calls == 3 and engine.num_evaluated == 3
    assert engine.num_cached == 2
    assert len(ev.evaluated) == len(set(ev.evaluated))


def test_failures_are_recorded_and_search_goes_on(tmp_path):
    ev = FakeEvaluator(fail_when=lambda p: p.weight_bits[0] == 2, nan_when=lambda p: p.weight_bits[1] == 2)
    with pytest.warns(UserWarning, match="recorded as failed: RuntimeError: simulated crash"):
        result = nsga2(evaluator=ev, space=SPACE, population=8, offspring=8, generations=3, seed=1,
                       run_dir=tmp_path, verbose=1)
    failed = [c for c in result.candidates if not c.ok]
    assert failed and all(c.accuracy is None and c.status == "failed" for c in failed)
    assert {c.error for c in failed} >= {"RuntimeError: simulated crash", "non-finite accuracy"}
    assert all(c.ok for c in result.front)
    assert result.num_failed == len(failed)
    records = [json.loads(line) for line in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert sum(r["status"] == "failed" for r in records) == len(failed)
    assert len(result.history) == 4


def test_hypervolume_2d_known_values():
    # one point (0.5, 50) with reference (0, 100): a 0.5 x 50 rectangle / 100
    assert hypervolume_2d([(0.5, 50.0)], (0.0, 100.0)) == pytest.approx(0.25)
    # staircase: (0.4, 20) and (0.8, 60): 0.4*(60-20) + 0.8*(100-60) = 16 + 32 = 48 -> 0.48
    assert hypervolume_2d([(0.8, 60.0), (0.4, 20.0), (0.3, 70.0)], (0.0, 100.0)) == pytest.approx(0.48)
    assert hypervolume_2d([(0.5, 150.0)], (0.0, 100.0)) == 0.0
    assert hypervolume_2d([], (0.0, 100.0)) == 0.0


def test_non_dominated():
    pts = [(0.9, 10), (0.8, 5), (0.7, 7), (0.9, 12)]
    assert non_dominated(pts, lambda p: p, (1.0, -1.0)) == [(0.9, 10), (0.8, 5)]


def test_outputs_written(tmp_path):
    result = nsga2(evaluator=FakeEvaluator(), space=SPACE, population=8, offspring=8, generations=2,
                   run_dir=tmp_path, verbose=0)
    for name in ("run.json", "evaluations.jsonl", "checkpoint.json", "history.json", "front.json", "summary.txt"):
        assert (tmp_path / name).exists(), name
    assert not list(tmp_path.glob("*.png"))  # the search draws nothing: its caller does
    assert sorted(report.write_plots(result)) == [str(tmp_path / "hypervolume.png"), str(tmp_path / "pareto.png")]
    front = json.loads((tmp_path / "front.json").read_text())
    assert [tuple(c["genes"]) for c in front] == [c.genes for c in result.front]
    assert front[0]["policy"]["weight_bits"] == list(result.front[0].policy.weight_bits)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["generation"] for h in history] == [0, 1, 2]
    hv = [h["hypervolume"] for h in history]
    assert hv == sorted(hv) and 0 < hv[-1] < 1  # archive front: never gets worse
    assert "uniform 8-bit" in result.summary()


def test_verbose_zero_is_silent(capsys):
    nsga2(evaluator=FakeEvaluator(), space=SPACE, population=4, offspring=4, generations=1, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_verbose_prints_one_line_per_generation(capsys):
    nsga2(evaluator=FakeEvaluator(), space=SPACE, population=4, offspring=4, generations=2, verbose=1)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("nsga2 gen")]
    assert len(lines) == 3
    assert "evals" in lines[1] and "cached" in lines[1] and "best acc" in lines[1] and "hv" in lines[1]
    assert "ETA" in lines[1]


def test_summary_makes_no_claim_from_validation_scores():
    result = nsga2(evaluator=FakeEvaluator(), space=SearchSpace(("a", "b", "c")), generations=6, verbose=0)
    text = result.summary()
    assert "smaller" not in text and "compare_with_uniform(test=...)" in text
    with pytest.raises(TypeError, match="the evaluator FakeEvaluator has no `finetune`"):
        result.compare_with_uniform(test=(None, None))


def test_evaluator_must_return_candidate():
    class Bad:
        def evaluate(self, policy):
            return 0.5

    with pytest.raises(TypeError, match="must return a tfmpq.search.Candidate"):
        Engine(SPACE, Bad(), verbose=0).evaluate([(2, 2, 2)])
    with pytest.raises(TypeError, match="expected an object with `evaluate"):
        Engine(SPACE, object(), verbose=0)


def test_objectives_validation():
    with pytest.raises(ValueError, match=r"Invalid value for `objectives`: expected \('accuracy'"):
        Engine(SPACE, FakeEvaluator(), objectives=("weight_bytes", "accuracy"))


def test_reuse_false_re_evaluates():
    ev = FakeEvaluator()
    engine = Engine(SPACE, ev, verbose=0)
    engine.evaluate([(2, 4, 8)])
    engine.evaluate([(2, 4, 8), (2, 4, 8)], reuse=False)
    assert ev.calls == 3 and engine.num_cached == 0 and len(engine.candidates) == 1


def test_finetune_needs_an_evaluator_that_can():
    result = nsga2(evaluator=FakeEvaluator(), space=SPACE, population=4, offspring=4, generations=0, verbose=0)
    with pytest.raises(TypeError, match="Cannot fine-tune: the evaluator FakeEvaluator has no `finetune"):
        result.finetune(epochs=1)
    with pytest.raises(ValueError, match="Invalid value for `representative_data`"):
        result.export("unused")
