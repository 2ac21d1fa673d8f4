"""End to end on real data: an MLP on scikit-learn's digits (2 groups), ptq evaluation (Santini)."""
import json

import pytest

from tfmpq import report
from tfmpq.search import Evaluator, exhaustive, nsga2


def _genes_acc(result):
    return [(c.genes, c.accuracy) for c in result.front]


def test_nsga2_front_equals_exhaustive_front_small_space(digits_mlp, digits, memo_evaluator, tmp_path):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    memo = {}
    truth = exhaustive(digits_mlp, evaluator=memo_evaluator(ev, memo), bits=(2, 3, 8), verbose=0)
    assert len(truth.candidates) == 9
    found = nsga2(digits_mlp, evaluator=memo_evaluator(ev, memo), bits=(2, 3, 8), population=4, offspring=4,
                  generations=3, seed=0, run_dir=tmp_path, verbose=0)
    assert _genes_acc(found) == _genes_acc(truth)
    assert found.front[-1].accuracy >= found.uniform["8-bit"].accuracy
    report.write_plots(found)
    assert (tmp_path / "pareto.png").stat().st_size > 0
    assert json.loads((tmp_path / "front.json").read_text())[0]["policy"]["groups"] == ["hidden", "out"]


@pytest.mark.slow
def test_nsga2_front_equals_exhaustive_front_full_space(digits_mlp, digits, memo_evaluator):
    """The 2-group, 2..8-bit space (49 policies, Santini's "better enumerated" case)."""
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    memo = {}
    truth = exhaustive(digits_mlp, evaluator=memo_evaluator(ev, memo), verbose=0)
    assert len(truth.candidates) == 49
    found = nsga2(digits_mlp, evaluator=memo_evaluator(ev, memo), population=12, offspring=12, generations=6,
                  seed=0, verbose=0)
    assert _genes_acc(found) == _genes_acc(truth)
    assert len(found.candidates) < 49  # found with fewer evaluations than the enumeration


@pytest.mark.slow
def test_real_kill_and_resume(digits_mlp, digits, memo_evaluator, tmp_path):
    """A kill mid-generation, then resume: same front as an uninterrupted run, nothing re-evaluated.
    Uses fresh Evaluators (no memo): the scores are recomputed, so this also checks seeding."""
    kwargs = dict(population=6, offspring=6, generations=2, bits=(2, 3, 4, 6, 8), seed=1, verbose=0)
    full = nsga2(digits_mlp, *digits, evaluation="ptq", run_dir=tmp_path / "full", **kwargs)
    killed = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=1), interrupt_after=9)
    with pytest.raises(KeyboardInterrupt):
        nsga2(digits_mlp, evaluator=killed, run_dir=tmp_path / "split", **kwargs)
    resumed_ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=1))
    resumed = nsga2(digits_mlp, evaluator=resumed_ev, run_dir=tmp_path / "split", resume=True, **kwargs)
    assert _genes_acc(resumed) == _genes_acc(full)
    assert len(killed.evaluated) == 8 and not set(killed.evaluated) & set(resumed_ev.evaluated)
    assert len(killed.evaluated) + len(resumed_ev.evaluated) == len(full.candidates)


@pytest.mark.slow
def test_finetune_and_export(digits_mlp, digits, tmp_path):
    from tfmpq._keras import keras

    # The functional twin of the Sequential MLP (tfmpq.export's deploy builder reads functional configs).
    i = keras.Input((8, 8, 1))
    x = keras.layers.Dense(32, activation="relu", name="hidden")(keras.layers.Flatten()(i))
    model = keras.Model(i, keras.layers.Dense(10, activation="softmax", name="out")(x), name="digits_mlp_functional")
    model.set_weights(digits_mlp.get_weights())
    result = nsga2(model, *digits, evaluation="ptq", bits=(4, 8), population=4, offspring=2, generations=1,
                   run_dir=tmp_path, verbose=0)
    tuned = result.finetune(epochs=1, members=result.front[:2])
    assert len(tuned) == 2 and all(c.ok for c in tuned)
    record = json.loads((tmp_path / "finetune.json").read_text())
    assert [r["genes"] for r in record] == [list(c.genes) for c in result.front[:2]]
    reports = result.export(tmp_path / "export")
    assert len(reports) == 2
    assert len(list((tmp_path / "export").glob("*.tflite"))) == 2
    assert (tmp_path / "export" / "export.json").exists()
