"""Pruning as a 0-bit choice of channel-wise searches (issue 25, item 1): ``SpaceConfig(prune_channels=True)``.

On the digits MLP (``hidden`` Dense 32 -> ``out`` Dense 10, three clusters each): every cluster gene may be 0
but each group's last, the chromosome <-> policy mapping stays exact, the costs are ``metrics.summary``'s of
the pruned policy (the kernel rows a pruned ``hidden`` channel feeds leave ``out``), every strategy finishes
on such a space and prunes where its budget needs it, a killed run resumes to the same candidates, and a
searched pruned policy exports with LiteRT == TFLite Micro.
"""
import json
import random

import numpy as np
import pytest

from tfmpq import metrics
from tfmpq.errors import PolicyError
from tfmpq.policy import PRUNED, QuantPolicy
from tfmpq.search import Evaluator, SearchSpace, SpaceConfig, bbpso, ctpe, ilp, nsga2

SPACE = dict(bits=(2, 4, 8), granularity="channel", channel_clusters=3, prune_channels=True)
HESSIAN = dict(num_probes=4, num_samples=128)


def _pruned(policy) -> bool:
    return any(isinstance(b, tuple) and PRUNED in b for b in policy.weight_bits)


def _below_two_bit(model) -> float:
    """Weight bytes at 80% of uniform 2-bit's: only a policy that prunes meets it."""
    return 0.8 * metrics.summary(model, QuantPolicy.uniform(model, 2, 8))["weight_bytes"]


@pytest.fixture(scope="module")
def space(digits_mlp):
    return SearchSpace.from_model(digits_mlp, **SPACE)


def test_every_cluster_but_each_groups_last_may_be_pruned(space, digits_mlp):
    assert space.gene_names == ("hidden/w0", "hidden/w1", "hidden/w2", "out/w0", "out/w1", "out/w2")
    assert space.choices == ((0, 2, 4, 8), (0, 2, 4, 8), (2, 4, 8)) * 2
    # the last cluster is cut last from the order: the group's most sensitive channels
    assert space.clusters["hidden"][-1] == space.config.channel_order["hidden"][-10:]
    # overrides keep their listed widths; a pinned group has no gene
    kept = SearchSpace.from_model(digits_mlp, overrides={"out": (4, 8)}, **SPACE)
    assert kept.choices[3:] == ((4, 8),) * 3 and kept.choices[:2] == ((0, 2, 4, 8),) * 2
    pinned = SearchSpace.from_model(digits_mlp, pinned={"out": 8}, **SPACE)
    assert pinned.choices == ((0, 2, 4, 8), (0, 2, 4, 8), (2, 4, 8))
    # one cluster per group: nothing to prune
    assert SearchSpace.from_model(digits_mlp, **{**SPACE, "channel_clusters": 1}).choices == ((2, 4, 8),) * 2
    assert not SearchSpace.from_model(digits_mlp, **{**SPACE, "prune_channels": False}).prune_channels


def test_prune_channels_needs_a_channel_wise_space():
    with pytest.raises(ValueError, match=r"Invalid value for `prune_channels`: expected False with "
                                         r"granularity='layer'.*Received: prune_channels=True"):
        SpaceConfig(prune_channels=True)
    with pytest.raises(ValueError, match="prune_channels"):
        SearchSpace(["a", "b"], prune_channels=True)


def test_decode_and_encode_are_exact_with_pruned_clusters(space, digits_mlp):
    rng = random.Random(0)
    chromosomes = [space.random(rng) for _ in range(200)] + [(0, 0, 2, 0, 0, 2)]
    assert sum(0 in c for c in chromosomes) > 100  # 1 - (3/4)^4 of them hold a 0
    for genes in chromosomes:
        policy = space.decode(genes)
        assert space.encode(policy) == genes
        by_hand = [[0] * n for n in (32, 10)]
        for g, (name, clusters) in enumerate(space.clusters.items()):
            for cluster, width in zip(clusters, genes[3 * g:3 * g + 3]):
                for c in cluster:
                    by_hand[g][c] = width
        assert policy == QuantPolicy.from_bits(digits_mlp, weight_bits=by_hand, activation_bits=8, allow_pruning=True)
    cheapest = space.decode((0, 0, 2, 0, 0, 2)).weight_bits
    assert cheapest[0].count(PRUNED) == 22 and cheapest[1].count(PRUNED) == 7
    with pytest.raises(PolicyError, match=r"gene `hidden/w2` must be one of \(2, 4, 8\)"):
        space.decode((0, 0, 0, 2, 2, 2))  # the whole group: never
    plain = SearchSpace.from_model(digits_mlp, **{**SPACE, "prune_channels": False})
    with pytest.raises(PolicyError, match=r"gene `hidden/w0` must be one of \(2, 4, 8\)"):
        plain.encode(space.decode((0, 2, 2, 2, 2, 2)))


def test_costs_of_a_pruned_cluster_are_summarys_and_below_its_lowest_width(space, digits_mlp):
    pruned, two = (space.decode((0, 4, 8, 8, 8, 8)), space.decode((2, 4, 8, 8, 8, 8)))
    by_hand = QuantPolicy.from_bits(digits_mlp, weight_bits=list(pruned.weight_bits), allow_pruning=True)
    s, s_two, s_hand = (metrics.summary(digits_mlp, p) for p in (pruned, two, by_hand))
    for key in ("weight_bytes", "bops", "avg_weight_bits", "flash_bytes", "flash_bytes_int4", "macs"):
        assert s[key] == s_hand[key], key
        assert s[key] < s_two[key], key
    # hidden's 11 pruned channels leave out's kernel with 21 of its 32 rows (and their MACs)
    assert s["macs"] == 21 * 64 + 21 * 10
    # the ILP's separable bound keeps those rows: above the deployed cost, below the 2-bit one
    bound = metrics.summary(digits_mlp, pruned, keep_fed_rows=True)
    assert s["weight_bytes"] < bound["weight_bytes"] < s_two["weight_bytes"]
    assert s["weight_bytes"] == bound["weight_bytes"] - 11 * 10 * 8 / 8  # out's 11 rows x 10 channels at 8 bits


def test_the_option_is_recorded_and_read_back(space):
    again = SearchSpace.from_signature(json.loads(json.dumps(space.signature())))
    assert again == space and again.prune_channels and again.choices == space.choices
    rng = random.Random(1)
    for genes in (space.random(rng) for _ in range(20)):
        assert again.bits_of(genes) == space.bits_of(genes)
    config = SpaceConfig.from_json(json.loads(json.dumps(space.config.to_json())))
    assert config == space.config
    old = space.config.to_json()
    del old["prune_channels"]  # a run directory written before the option
    assert SpaceConfig.from_json(old).prune_channels is False
    assert "prune_channels" not in space.layer_space().signature()  # the default is not in the signature


def test_pruned_omega_is_the_whole_weights(digits_mlp):
    from tfmpq.hessian import channel_quantization_error, cluster_omega, folded_kernels

    errors = channel_quantization_error(digits_mlp, bits=(0, 2))
    kernel = folded_kernels(digits_mlp)["hidden"]
    np.testing.assert_allclose(errors["hidden"][0], np.sum(kernel.astype(np.float64) ** 2, axis=0), rtol=1e-12)
    assert np.all(errors["hidden"][0] > errors["hidden"][2])
    omega = cluster_omega(digits_mlp, {"hidden": np.ones(32)}, {"hidden": [[0, 1], [2]]}, bits=(0, 2))["hidden"]
    want = float(np.sum(kernel[:, :2].astype(np.float64) ** 2)) * 2 / (64 * 2)
    assert omega[0][0] == pytest.approx(want, rel=1e-12) and omega[0][0] > omega[0][2]


def _search(name, model, digits, evaluator, target, **kwargs):
    options = {
        "nsga2": dict(population=6, offspring=6, generations=2),
        "bbpso": dict(swarm=8, iterations=3, budget="weight_bytes", target=target),
        "ilp": dict(solutions=3, budget="weight_bytes", target=target, sensitivity_data=digits[0], **HESSIAN),
        "ctpe": dict(trials=6, startup=3, budget="weight_bytes", target=target, sensitivity_data=digits[0],
                     **HESSIAN),
    }[name]
    entry = {"nsga2": nsga2, "bbpso": bbpso, "ilp": ilp, "ctpe": ctpe}[name]
    return entry(model, evaluator=evaluator, seed=0, verbose=0, **{**SPACE, **options, **kwargs})


def _check_costs(result, model):
    for c in result.candidates:
        policy = result.space.decode(c.genes)
        assert c.policy == policy
        want = metrics.summary(model, policy)
        for key in ("weight_bytes", "bops", "avg_weight_bits", "macs"):
            assert c.metrics[key] == pytest.approx(want[key], rel=1e-12), key


@pytest.mark.parametrize("name", ["nsga2", "bbpso", "ilp", "ctpe"])
def test_each_strategy_prunes_on_a_pruning_space(name, digits_mlp, digits, memo_evaluator, tmp_path):
    """Under 80% of uniform 2-bit's bytes only pruned policies fit: the budgeted strategies' best prunes; NSGA-II
    (no budget) draws pruned chromosomes into its population."""
    ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0))
    target = _below_two_bit(digits_mlp)
    result = _search(name, digits_mlp, digits, ev, target, run_dir=tmp_path)
    assert result.space.prune_channels and any(0 in c for c in result.space.choices)
    _check_costs(result, digits_mlp)
    pruned = [c for c in result.candidates if _pruned(c.policy)]
    assert pruned and all(c.ok for c in pruned)
    if name != "nsga2":
        assert result.best.ok and _pruned(result.best.policy), result.best.policy
        assert result.best.metrics["weight_bytes"] <= target
        if name != "bbpso":  # the ILP and clustered TPE propose only what meets the budget
            assert all(c.metrics["weight_bytes"] <= target for c in result.candidates)
    else:
        assert any(_pruned(c.policy) for c in result.front)  # the cheap end of the front prunes
    assert json.loads((tmp_path / "run.json").read_text())["space"]["prune_channels"] is True


def test_the_ilp_allocates_under_the_bound_and_checks_the_deployed_cost(digits_mlp, digits, memo_evaluator):
    """Its tables credit a pruned cluster with its own weights only (``keep_fed_rows``): each allocation's
    deployed cost is at most the tables' sum, which is at most the budget."""
    from tfmpq.search.sensitivity import budget_tables

    ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0))
    space = SearchSpace.from_model(digits_mlp, **SPACE)
    target = _below_two_bit(digits_mlp)
    tables, bound, accept = budget_tables(ev, space, "weight_bytes", target)
    assert tables[0][0] < tables[0][2]  # pruning is cheaper than the lowest width
    rng = random.Random(0)
    constant = target - bound
    for genes in [space.random(rng) for _ in range(50)]:
        deployed = ev.metrics(space.decode(genes))["weight_bytes"]
        linear = constant + sum(t[g] for t, g in zip(tables, genes))
        assert deployed <= linear + 1e-9
        assert linear == pytest.approx(ev.metrics(space.decode(genes), keep_fed_rows=True)["weight_bytes"], rel=1e-12)
        assert accept(genes) == (deployed <= target)


def test_nsga2_budget_seeds_of_a_pruning_space(digits_mlp, digits, memo_evaluator):
    """Below uniform 2-bit's bytes no hand-made (per-layer) policy fits: the ILP's pruned allocation is the seed;
    at uniform 4-bit's a hand-made policy is encoded into the pruning space as well."""
    ev = memo_evaluator(Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0))
    low, four = _below_two_bit(digits_mlp), metrics.summary(digits_mlp, QuantPolicy.uniform(digits_mlp, 4, 8))[
        "weight_bytes"]
    result = nsga2(digits_mlp, digits[0], evaluator=ev, population=8, offspring=2, generations=0,
                   seed_budgets=[low, four], seed=0, verbose=0, **SPACE)
    seeded = [c for c in result.candidates if c.metrics["weight_bytes"] <= four
              and c.genes not in result.space.uniform_chromosomes()]
    assert any(_pruned(c.policy) and c.metrics["weight_bytes"] <= low for c in seeded), [c.genes for c in seeded]
    assert any(not c.policy.is_channel_wise for c in seeded)  # a hand-made per-layer policy


def test_a_killed_pruning_search_resumes_to_the_same_candidates(digits_mlp, digits, memo_evaluator, tmp_path):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    memo = {}
    target = _below_two_bit(digits_mlp)
    full = _search("ilp", digits_mlp, digits, memo_evaluator(ev, memo), target, run_dir=tmp_path / "full")
    killed = memo_evaluator(ev, memo, interrupt_after=2)
    with pytest.raises(KeyboardInterrupt):
        _search("ilp", digits_mlp, digits, killed, target, run_dir=tmp_path / "split")
    resumed_ev = memo_evaluator(ev, memo)
    resumed = _search("ilp", digits_mlp, digits, resumed_ev, target, run_dir=tmp_path / "split", resume=True)
    assert [(c.genes, c.policy, c.accuracy) for c in resumed.candidates] == [
        (c.genes, c.policy, c.accuracy) for c in full.candidates]
    assert any(_pruned(c.policy) for c in resumed.candidates)
    assert len(killed.evaluated) + len(resumed_ev.evaluated) == len(full.candidates)
    with pytest.raises(ValueError, match=r"Cannot resume from .*made by another search problem"):  # another space
        _search("ilp", digits_mlp, digits, memo_evaluator(ev, memo), target, run_dir=tmp_path / "split",
                resume=True, prune_channels=False)


def test_oneshot_scoring_of_pruned_policies(digits_mlp, digits, tmp_path):
    """The shared variable-bit model scores pruned policies by assigning its bit and row variables (no rebuild):
    a search finishes with pruned candidates, and pruning most of both groups costs accuracy there."""
    result = nsga2(digits_mlp, *digits, evaluation="oneshot", epochs=1, population=6, offspring=6, generations=1,
                   seed=0, verbose=0, run_dir=tmp_path, **SPACE)
    pruned = [c for c in result.candidates if _pruned(c.policy)]
    assert pruned and all(c.ok and 0.0 <= c.accuracy <= 1.0 for c in pruned)
    _check_costs(result, digits_mlp)
    space, ev = result.space, result.evaluator
    cheapest, widest = (ev.evaluate(space.decode(g)) for g in ((0, 0, 8, 0, 0, 8), (8,) * 6))
    assert cheapest.ok and widest.ok and cheapest.accuracy < widest.accuracy - 0.2, (cheapest.accuracy,
                                                                                     widest.accuracy)


def test_a_searched_pruned_policy_exports_and_runs_alike_on_litert_and_tflite_micro(digits_mlp, digits, tmp_path):
    """The ILP's pick under 80% of uniform 2-bit's bytes prunes: its file holds no pruned channel (nor the rows of
    ``out`` they fed), its weights take ``summary``'s INT4 flash bytes, and both runtimes agree bit for bit."""
    from tfmpq.export import export_tflite, run_tflite

    _, (xt, _) = digits
    result = _search("ilp", digits_mlp, digits, Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0),
                     _below_two_bit(digits_mlp), solutions=1)
    policy = result.best.policy
    assert _pruned(policy)
    model, _, _ = result.evaluator.build(policy)
    report = export_tflite(model, tmp_path / "pruned.tflite", representative_data=xt[:128], packed="int4")
    for g in report.groups:
        bits = policy.bits_of(g["name"])[0]
        if isinstance(bits, tuple):
            kept = sorted(c for s in g["segments"] for c in s["channels"])
            assert kept == [c for c, b in enumerate(bits) if b != PRUNED], g["name"]
    assert report.flash_bytes == metrics.summary(digits_mlp, policy, packing="int4")["flash_bytes"]
    np.testing.assert_array_equal(run_tflite(report.path, xt, "litert"), run_tflite(report.path, xt, "tflm"))
