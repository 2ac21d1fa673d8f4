"""Every entry point builds the same problem: each space and evaluator option reaches what it configures."""
import json

import pytest

import tfmpq
from search_fakes import FakeEvaluator

#: Traces of the digits MLP's two groups (plain values: the searches read them as given, no Hessian).
TRACES = {"hidden": 2.0, "out": 0.5}


def _weight_bytes_at(model, bits):
    return tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, bits))["weight_bytes"]


# -- regression (issue 26): bbpso and ga dropped `activation_choices` --------------------------------------------
@pytest.mark.parametrize("entry, sizes", [("bbpso", dict(swarm=4, iterations=1)),
                                          ("ga", dict(population=4, generations=1))])
def test_activation_choices_reach_the_space_of_bbpso_and_ga(entry, sizes, digits_mlp):
    search = getattr(tfmpq.search, entry)
    result = search(digits_mlp, evaluator=FakeEvaluator(params=(2048, 320), sensitivity=(0.6, 0.3)),
                    bits=(2, 4, 8), activation_choices=(4, 8), target=6.0, float_accuracy=0.97, verbose=0, **sizes)
    assert result.space.search_activations and result.space.activation_choices == (4, 8)
    assert {b for c in result.candidates for b in c.policy.activation_bits} <= {4, 8}


# -- regression (issue 26): ilp, ctpe and seed_ilp dropped `distill` and `oneshot_learning_rate` -----------------
ONESHOT = dict(evaluation="oneshot", epochs=1, distill=True, oneshot_learning_rate=3e-4, batch_size=64)


@pytest.mark.parametrize("entry", ["ilp", "ctpe", "nsga2", "bbpso"])
def test_oneshot_options_reach_the_evaluator_of_every_sensitivity_guided_search(entry, digits_mlp, digits,
                                                                                 tmp_path):
    (x, y), (xv, yv) = digits
    train, val = (x[:256], y[:256]), (xv[:128], yv[:128])
    u6 = _weight_bytes_at(digits_mlp, 6)
    sizes = {"ilp": dict(budget="weight_bytes", target=u6, solutions=1),
             "ctpe": dict(budget="weight_bytes", target=u6, trials=2, startup=2, prune_clusters=1),
             "nsga2": dict(seed_ilp=1, population=2, offspring=2, generations=0),
             "bbpso": dict(seed_ilp=1, budget="weight_bytes", target=u6, swarm=2, iterations=0, init="random",
                           search_activations=False)}[entry]
    result = getattr(tfmpq.search, entry)(digits_mlp, train, val, bits=(4, 8), sensitivity=TRACES,
                                          run_dir=tmp_path, seed=0, verbose=0, **ONESHOT, **sizes)
    ev = result.evaluator
    assert (ev.evaluation, ev.distill, ev.oneshot_learning_rate) == ("oneshot", True, 3e-4)
    assert ev.oneshot_bits == (4, 8)  # the shared model is trained for the bits the space asks for
    stored = json.loads((tmp_path / "run.json").read_text())["evaluator"]["oneshot"]
    assert (stored["distill"], stored["learning_rate"], stored["bits"]) == (True, 3e-4, [4, 8])
    assert ev.oneshot_info["source"] == "trained" and ev.oneshot_path().startswith(str(tmp_path))
