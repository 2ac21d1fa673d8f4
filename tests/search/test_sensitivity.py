"""Sensitivity-guided searches end to end on real data: the digits MLP (2 groups), ptq scoring."""
import itertools
import json

import pytest

import tfmpq
from tfmpq import hessian as hessian_module
from tfmpq.search import Evaluator, bbpso, ctpe, ilp, make_space, nsga2

FAST = dict(num_probes=8, num_samples=256)


@pytest.fixture(scope="module")
def digits_traces(digits_mlp, digits):
    from tfmpq.hessian import hessian_trace

    return hessian_trace(digits_mlp, digits[0], num_probes=8, num_samples=256, seed=0)


def _u4_bytes(model):
    return tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4))["weight_bytes"]


def test_ilp_scores_the_omega_optimal_allocations_within_the_budget(digits_mlp, digits, digits_traces,
                                                                    memo_evaluator, tmp_path, monkeypatch):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    memo = {}
    target = _u4_bytes(digits_mlp)
    result = ilp(digits_mlp, digits[0], digits[1], evaluator=memo_evaluator(ev, memo), budget="weight_bytes",
                 target=target, solutions=3, sensitivity=digits_traces, run_dir=tmp_path, seed=0, verbose=0)
    # the brute-force Omega order of every allocation under the budget
    omega = tfmpq.omega_table(digits_mlp, digits_traces.trace)
    rows = []
    for x in itertools.product(range(2, 9), repeat=2):
        m = ev.metrics(tfmpq.QuantPolicy.from_bits(digits_mlp, list(x)))
        if m["weight_bytes"] <= target:
            rows.append((omega["hidden"][x[0]] + omega["out"][x[1]], x))
    rows.sort()
    assert [c.genes for c in result.population] == [x for _, x in rows[:3]]
    assert result.ilp_optimum.genes == rows[0][1]
    assert len(result.candidates) == 3 and all(c.weight_bytes <= target for c in result.candidates)
    assert result.best.accuracy == max(c.accuracy for c in result.candidates)
    assert result.report["feasible"] and result.report["budget"] == {"metric": "weight_bytes", "target": target}
    stored = json.loads((tmp_path / "sensitivity.json").read_text())
    assert stored["trace"] == pytest.approx(digits_traces.trace)
    # resume: the tables come from the run's signature; the Hessian is not estimated again
    def no_hessian(*args, **kwargs):
        raise AssertionError("the traces were estimated again on resume")

    monkeypatch.setattr(hessian_module, "hessian_trace", no_hessian)
    again = memo_evaluator(ev, memo)
    resumed = ilp(digits_mlp, digits[0], digits[1], evaluator=again, budget="weight_bytes", target=target,
                  solutions=3, generations=1, run_dir=tmp_path, resume=True, seed=0, verbose=0)
    assert [c.genes for c in resumed.population] == [x for _, x in rows[:6]]
    assert again.calls == 3  # only the next three were scored


def test_ilp_under_avg_op_bits_and_bops_uses_the_metrics_formulas(digits_mlp, digits, digits_traces):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    result = ilp(digits_mlp, evaluator=ev, budget="avg_op_bits", target=5.0, solutions=2,
                 sensitivity=digits_traces.trace, verbose=0)
    assert all(c.metrics["avg_op_bits"] <= 5.0 for c in result.candidates)
    bops = result.candidates[0].metrics["bops"]
    tight = ilp(digits_mlp, evaluator=ev, budget="bops", target=bops, solutions=1, sensitivity=digits_traces.trace,
                verbose=0)
    assert tight.best.genes == result.candidates[0].genes  # the same optimum at its own cost
    with pytest.raises(ValueError, match="not a sum of per-group terms"):  # activations searched: w x a
        ilp(digits_mlp, evaluator=ev, budget="bops", target=1e12, sensitivity=digits_traces.trace,
            space=make_space(digits_mlp, search_activations=True), verbose=0)
    with pytest.raises(ValueError, match="`budget`"):
        ilp(digits_mlp, evaluator=ev, budget="flash_bytes", target=1e9, sensitivity=digits_traces.trace, verbose=0)
    with pytest.raises(ValueError, match="`target`"):
        ilp(digits_mlp, evaluator=ev, budget="weight_bytes", sensitivity=digits_traces.trace, verbose=0)
    with pytest.raises(ValueError, match="no allocation fits"):
        ilp(digits_mlp, evaluator=ev, budget="weight_bytes", target=100.0, sensitivity=digits_traces.trace, verbose=0)


def test_ctpe_end_to_end_estimates_prunes_and_stays_in_budget(digits_mlp, digits, tmp_path):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    target = _u4_bytes(digits_mlp)
    result = ctpe(digits_mlp, digits[0], digits[1], evaluator=ev, budget="weight_bytes", target=target, trials=6,
                  startup=3, run_dir=tmp_path, seed=0, verbose=0, **FAST)
    assert set(result.pruned) == {"hidden", "out"}
    assert all(c.weight_bytes <= target for c in result.candidates) and 1 <= len(result.candidates) <= 6
    for c in result.candidates:
        assert all(b in result.pruned[g] for g, b in zip(("hidden", "out"), c.genes))
    stored = json.loads((tmp_path / "sensitivity.json").read_text())
    assert stored["pruned"] == {g: list(p) for g, p in result.pruned.items()}
    assert result.best.accuracy == max(c.accuracy for c in result.candidates)


def test_ilp_seeds_go_into_nsga2_and_bbpso(digits_mlp, digits, digits_traces, memo_evaluator):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    memo = {}
    plain = nsga2(digits_mlp, evaluator=memo_evaluator(ev, memo), population=10, offspring=4, generations=0,
                  seed=0, verbose=0)
    seeded = nsga2(digits_mlp, evaluator=memo_evaluator(ev, memo), population=10, offspring=4, generations=0,
                   seed=0, verbose=0, seed_ilp=3, sensitivity=digits_traces)
    first = [c.genes for c in seeded.candidates]
    uniforms = [tuple([b, b]) for b in range(2, 9)]
    assert first[:7] == uniforms  # the uniform policies first, then the ILP allocations
    seeds = first[7:10]
    assert all(s[0] != s[1] for s in seeds) and seeds != [c.genes for c in plain.candidates][7:10]
    target = _u4_bytes(digits_mlp)
    swarm = bbpso(digits_mlp, evaluator=memo_evaluator(ev, memo), budget="weight_bytes", target=target, swarm=6,
                  iterations=0, init="random", search_activations=False, seed=0, verbose=0, seed_ilp=2,
                  sensitivity=digits_traces)
    positions = [c.genes for c in swarm.population]
    assert len(positions) == 6
    assert all(c.weight_bytes <= target for c in swarm.population[-2:])  # seeds: the last particles, in budget
