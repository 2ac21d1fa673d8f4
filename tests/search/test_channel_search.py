"""Channel-wise searches end to end (issue 25): the digits MLP, PTQ scoring, each strategy on the shared engine.

Every strategy runs on a channel-wise space (``granularity="channel"``): the run finishes, its best policy is
channel-wise, each candidate's costs are ``metrics.summary``'s of the policy its chromosome decodes to, and a
run killed half-way resumes to the uninterrupted run's candidates.
"""
import json

import pytest

from tfmpq import metrics
from tfmpq.policy import QuantPolicy
from tfmpq.search import Evaluator, bbpso, ctpe, ilp, nsga2

SPACE = dict(bits=(2, 4, 8), granularity="channel", channel_clusters=3)
HESSIAN = dict(num_probes=4, num_samples=128)


def _budget(model) -> float:
    """Weight bytes halfway between uniform 2- and 4-bit: only mixed policies use it well."""
    two, four = (metrics.summary(model, QuantPolicy.uniform(model, b, 8))["weight_bytes"] for b in (2, 4))
    return (two + four) / 2


def _search(name, model, digits, evaluator, **kwargs):
    sensitivity_data = digits[0]
    options = {
        "nsga2": dict(population=4, offspring=4, generations=2),
        "bbpso": dict(swarm=8, iterations=3, budget="weight_bytes", target=_budget(model), search_activations=False),
        "ilp": dict(solutions=2, budget="weight_bytes", target=_budget(model), sensitivity_data=sensitivity_data,
                    **HESSIAN),
        "ctpe": dict(trials=6, startup=3, budget="weight_bytes", target=_budget(model),
                     sensitivity_data=sensitivity_data, **HESSIAN),
    }[name]
    entry = {"nsga2": nsga2, "bbpso": bbpso, "ilp": ilp, "ctpe": ctpe}[name]
    return entry(model, evaluator=evaluator, seed=0, verbose=0, **SPACE, **options, **kwargs)


def _check_costs(result, model):
    for c in result.candidates:
        policy = result.space.decode(c.genes)
        assert c.policy == policy
        want = metrics.summary(model, policy)
        for key in ("weight_bytes", "bops", "avg_weight_bits"):
            assert c.metrics[key] == pytest.approx(want[key], rel=1e-12), key


@pytest.mark.parametrize("name", ["nsga2", "bbpso", "ilp", "ctpe"])
def test_a_channel_wise_search_finishes_with_channel_wise_policies_costed_exactly(name, digits_mlp, digits,
                                                                                  memo_evaluator, tmp_path):
    ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0))
    result = _search(name, digits_mlp, digits, ev, run_dir=tmp_path)
    assert result.space.granularity == "channel" and result.space.num_weight_genes == 6  # 3 clusters x 2 groups
    if name == "nsga2":  # a front: its most accurate member is uniform 8-bit, the cheaper ones mixed
        assert any(c.policy.is_channel_wise for c in result.front), [c.policy for c in result.front]
    else:  # the most accurate policy under a budget between uniform 2- and 4-bit
        assert result.best.ok and result.best.policy.is_channel_wise, result.best.policy
    _check_costs(result, digits_mlp)
    record = json.loads((tmp_path / "run.json").read_text())["space"]
    assert record["granularity"] == "channel" and set(record["channel_order"]) == {"hidden", "out"}


@pytest.mark.parametrize("name", ["nsga2", "bbpso", "ilp", "ctpe"])
def test_a_killed_channel_wise_search_resumes_to_the_uninterrupted_candidates(name, digits_mlp, digits,
                                                                             memo_evaluator, tmp_path):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    memo = {}
    full = _search(name, digits_mlp, digits, memo_evaluator(ev, memo), run_dir=tmp_path / "full")
    total = len(full.candidates)
    killed = memo_evaluator(ev, memo, interrupt_after=total // 2 + 1)
    with pytest.raises(KeyboardInterrupt):
        _search(name, digits_mlp, digits, killed, run_dir=tmp_path / "split")
    resumed_ev = memo_evaluator(ev, memo)
    resumed = _search(name, digits_mlp, digits, resumed_ev, run_dir=tmp_path / "split", resume=True)
    assert [(c.genes, c.accuracy) for c in resumed.candidates] == [(c.genes, c.accuracy) for c in full.candidates]
    assert len(killed.evaluated) + len(resumed_ev.evaluated) == total  # nothing journaled is scored again


def test_a_resumed_channel_wise_run_decodes_with_the_order_it_recorded(digits_mlp, digits, memo_evaluator, tmp_path):
    """The order is read back from run.json (not ranked again): an edited record is what the resume decodes by."""
    from tfmpq.search.problem import build_problem

    ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0))
    _search("nsga2", digits_mlp, digits, ev, run_dir=tmp_path)
    record = json.loads((tmp_path / "run.json").read_text())
    order = record["space"]["channel_order"]
    order["out"] = order["out"][::-1]
    (tmp_path / "run.json").write_text(json.dumps(record))
    problem = build_problem(digits_mlp, evaluator=ev, run_dir=tmp_path, resume=True, **SPACE)
    assert problem.space.config.channel_order["out"] == tuple(order["out"])
    fresh = build_problem(digits_mlp, evaluator=ev, run_dir=tmp_path, **SPACE)
    assert fresh.space.config.channel_order["out"] == tuple(order["out"][::-1])


def test_oneshot_scoring_of_a_channel_wise_space(digits_mlp, digits, tmp_path):
    """One shared model trained once scores channel-wise policies by assigning its bit variables (no rebuild)."""
    result = nsga2(digits_mlp, *digits, evaluation="oneshot", epochs=1, population=4, offspring=4, generations=1,
                   seed=0, verbose=0, run_dir=tmp_path, **SPACE)
    assert any(c.ok and c.policy.is_channel_wise for c in result.candidates)
    _check_costs(result, digits_mlp)


def test_from_model_orders_each_groups_channels_least_sensitive_first(digits_mlp, digits):
    import numpy as np

    from tfmpq.hessian import channel_sensitivity
    from tfmpq.search import SearchSpace

    space = SearchSpace.from_model(digits_mlp, overrides={"out": (4, 8)}, **SPACE)
    scores = channel_sensitivity(digits_mlp, "weight", bits=2, group_bits={"out": 4})
    for name, order in space.config.channel_order.items():
        assert list(order) == list(np.argsort(scores[name], kind="stable"))
    assert [len(c) for c in space.clusters["hidden"]] == [11, 11, 10] and space.config.channel_ranking == "weight"
    with pytest.raises(ValueError, match=r"the 'hessian' channel ranking estimates Hessian traces and needs"):
        SearchSpace.from_model(digits_mlp, channel_ranking="hessian", **SPACE)
    by_hessian = SearchSpace.from_model(digits_mlp, data=digits[0], channel_ranking="hessian", **SPACE)
    assert by_hessian.config.channel_ranking == "hessian" and set(by_hessian.clusters) == {"hidden", "out"}


def test_santini_neuron_wise_configuration_has_one_gene_per_channel(digits_mlp, digits, tmp_path):
    """Santini's neuron-wise NSGA-II with PTQ scoring: 32 + 10 channels, 42 genes, a random initial population."""
    from tfmpq.search import SANTINI_NEURON_WISE

    options = {**SANTINI_NEURON_WISE, "generations": 1}
    result = nsga2(digits_mlp, *digits, population=4, offspring=4, seed=0, verbose=0, run_dir=tmp_path, **options)
    assert result.space.num_genes == 42 and all(len(c) == 1 for c in result.space.clusters["hidden"])
    assert len(result.candidates) == 8 and all(c.ok for c in result.candidates)
    assert all(c.policy.is_channel_wise for c in result.candidates[:4])  # random: no uniform policy among them
    _check_costs(result, digits_mlp)
    with pytest.raises(TypeError):
        SANTINI_NEURON_WISE["generations"] = 5  # a read-only configuration


def test_nsga2_seeds_of_a_channel_wise_space(digits_mlp, digits, memo_evaluator):
    """The ILP's allocation and the hand-made (per-layer) policies at a budget join the initial population as
    chromosomes of the channel-wise space."""
    ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0))
    budget = _budget(digits_mlp)
    result = nsga2(digits_mlp, digits[0], evaluator=ev, population=8, offspring=2, generations=0,
                   seed_budgets=[budget], seed=0, verbose=0, **SPACE)
    space = result.space
    seeded = [c for c in result.candidates if c.metrics["weight_bytes"] <= budget and c.genes not in
              space.uniform_chromosomes()]
    assert seeded, [c.genes for c in result.candidates]
    assert any(c.policy.is_channel_wise for c in seeded)  # the ILP's allocation of clusters
    assert any(not c.policy.is_channel_wise for c in seeded)  # a hand-made per-layer policy, encoded


def test_the_channel_wise_ilp_weighs_every_cluster_with_its_groups_trace(digits_mlp, digits):
    """A cluster whose own Hutchinson trace came out negative is not free: its Omega is the group's per-weight
    trace times its own error (a negative channel trace clamped to 0 made the ILP give such a cluster 2 bits in
    every DS-CNN allocation), and a group's clusters at one width add up to its layer-wise Omega."""
    import numpy as np

    from tfmpq.hessian import channel_quantization_error, hessian_trace, omega_table
    from tfmpq.search import SearchSpace
    from tfmpq.search.sensitivity import omega_tables, per_parameter

    space = SearchSpace.from_model(digits_mlp, **SPACE)
    traces = hessian_trace(digits_mlp, digits[0], **HESSIAN, seed=0)
    first = space.clusters["hidden"][0]
    noisy = {g: np.array(t, np.float64) for g, t in traces.channel_trace.items()}
    noisy["hidden"][list(first)] = -1.0  # the probes restricted to these channels came out negative
    traces.channel_trace = noisy
    tables = omega_tables(digits_mlp, space, traces)
    errors = channel_quantization_error(digits_mlp, bits=(2, 8))
    layer = omega_table(digits_mlp, traces.trace, bits=(2, 8))
    assert traces.trace["hidden"] > 0
    per_weight = traces.trace["hidden"] / traces.params["hidden"]
    assert tables[0][2] == pytest.approx(per_weight * errors["hidden"][2][list(first)].sum(), rel=1e-9)
    assert tables[0][2] > tables[0][8] > 0
    for g in ("hidden", "out"):
        genes = [t for t, n in zip(tables, space.gene_groups) if n == g]
        assert sum(t[2] for t in genes) == pytest.approx(layer[g][2], rel=1e-9)
    assert per_parameter(digits_mlp, space, traces)[0] == pytest.approx(per_weight, rel=1e-9)
