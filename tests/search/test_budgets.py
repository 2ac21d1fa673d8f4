"""compare_at_budgets (issue 24): at each budget the best-validating searched policy that fits against the largest
uniform one that fits, fine-tuned alike; test only reports; resumed from budgets.json."""
import json

import numpy as np
import pytest

import tfmpq
from tfmpq.recipe import FinetuneRecipe
from tfmpq.search import nsga2
from tfmpq.search.budgets import auto_budgets
from tfmpq.search.handmade import handmade_baselines

RECIPE = FinetuneRecipe(epochs=1, distill=False, schedule="constant")


@pytest.fixture(scope="module")
def searched(digits_mlp, digits, tmp_path_factory):
    (x, y), test = digits
    train, val = (x[:1000], y[:1000]), (x[1000:], y[1000:])
    run_dir = tmp_path_factory.mktemp("budgets") / "run"
    result = nsga2(digits_mlp, train, val, evaluation="ptq", population=6, offspring=6, generations=2, seed=0,
                   bits=(2, 3, 4, 5, 8), learning_rate=1e-3, run_dir=run_dir, verbose=0)
    return result, test


def test_auto_budgets_are_bin_midpoints():
    assert auto_budgets(10.0, 18.0, 4) == [11.0, 13.0, 15.0, 17.0]
    with pytest.raises(ValueError, match="`num_budgets`: expected an integer >= 1"):
        auto_budgets(0.0, 1.0, 0)


def test_each_budget_picks_on_validation_and_reports_on_test(searched):
    result, (xt, yt) = searched
    ev, space = result.evaluator, result.space
    cost_of = lambda g: ev.metrics(space.decode(g))["weight_bytes"]  # noqa: E731
    u2, u5 = (cost_of(g) for g in (space.uniform_chromosomes_by_bits()[0], space.uniform_chromosomes_by_bits()[3]))
    params = [g.params for g in tfmpq.quantizable_groups(result.evaluator.model)]
    out = result.compare_at_budgets(test=(xt, yt), num_budgets=3, recipe=RECIPE, candidates_per_budget=2,
                                    baselines=handmade_baselines(space, params, cost_of), verbose=0)
    assert [r["budget"] for r in out["rows"]] == pytest.approx(auto_budgets(u2, u5, 3))
    for row in out["rows"]:
        front, uniform = row["front"], row["uniform"]
        assert front["cost"] <= row["budget"] and uniform["cost"] <= row["budget"]
        # the largest uniform policy that fits: the next uniform step does not
        steps = sorted(cost_of(g) for g in space.uniform_chromosomes())
        assert uniform["cost"] == max(c for c in steps if c <= row["budget"])
        # the pick is the finalist with the best fine-tuned validation accuracy; finalists fit
        assert front["val_accuracy"] == max(f["val_accuracy"] for f in row["finalists"])
        assert all(f["cost"] <= row["budget"] for f in row["finalists"]) and 1 <= len(row["finalists"]) <= 2
        assert row["gain"] == pytest.approx(front["test_accuracy"] - uniform["test_accuracy"])
        assert 0 <= row["p_value"] <= 1 and row["mcnemar"]["a_only"] + row["mcnemar"]["b_only"] == row["mcnemar"]["n"]
        lo, hi = front["ci"]
        assert lo <= front["test_accuracy"] <= hi and front["test_correct"] == round(front["test_accuracy"] * len(yt))
        assert row["baselines"] and all(b["cost"] <= row["budget"] for b in row["baselines"].values())
        assert row["best_baseline"] in row["baselines"]
    gains = [r["gain"] for r in out["rows"]]
    assert out["mean_gain"] == pytest.approx(np.mean(gains))
    saved = json.loads((result.run_dir / "budgets.json").read_text())
    assert saved["results"]["weight_bytes"]["rows"][0]["front"]["genes"] == list(out["rows"][0]["front"]["genes"])
    # the test set steers nothing: scrambled test labels, the same picks (from the cache: nothing retrained)
    scrambled = np.random.default_rng(1).permutation(yt)
    again = result.compare_at_budgets(test=(xt, scrambled), num_budgets=3, recipe=RECIPE, verbose=0)
    assert [r["front"]["genes"] for r in again["rows"]] == [r["front"]["genes"] for r in out["rows"]]


def test_extra_candidates_join_the_finalists_and_win_on_validation_only(searched):
    """``candidates`` (e.g. the ILP's allocation) are finalists of the pick beside the front members: the pick is
    the best of all on validation, and a candidate that does not fit the budget is left out."""
    result, test = searched
    ev, space = result.evaluator, result.space
    cost_of = lambda g: ev.metrics(space.decode(g))["weight_bytes"]  # noqa: E731
    u4 = space.uniform_chromosomes_by_bits()[2]
    budgets = [cost_of(u4) + 1.0, cost_of(u4) - 1.0]  # uniform 4-bit fits the first budget only
    out = result.compare_at_budgets(test=test, budgets=budgets, recipe=RECIPE, candidates_per_budget=1,
                                    candidates={"u4": lambda b: u4}, verbose=0)
    short, fits = sorted(out["rows"], key=lambda r: r["budget"])
    assert tuple(u4) in [f["genes"] for f in fits["finalists"]] and len(fits["finalists"]) == 2
    assert fits["front"]["val_accuracy"] == max(f["val_accuracy"] for f in fits["finalists"])
    assert fits["pick_source"] == ("u4" if fits["front"]["genes"] == tuple(u4) else "front")
    assert len(short["finalists"]) == 1 and short["pick_source"] == "front"
    assert "pick_source" in json.loads((result.run_dir / "budgets.json").read_text())["results"]["weight_bytes"]["rows"][0]


def test_resumes_from_budgets_json_without_retraining(searched, monkeypatch):
    result, (xt, yt) = searched
    first = result.compare_at_budgets(test=(xt, yt), budgets=[result.front[len(result.front) // 2].metrics["weight_bytes"]],
                                      recipe=RECIPE, verbose=0)
    calls = []
    real = type(result.evaluator).finetune
    monkeypatch.setattr(type(result.evaluator), "finetune", lambda self, *a, **k: calls.append(a) or real(self, *a, **k))
    again = result.compare_at_budgets(test=(xt, yt), budgets=[first["rows"][0]["budget"]], recipe=RECIPE, verbose=0)
    assert calls == [] and again["rows"][0]["front"]["test_accuracy"] == first["rows"][0]["front"]["test_accuracy"]
    assert again["rows"][0]["p_value"] == first["rows"][0]["p_value"]
    # another recipe is another comparison: it trains
    result.compare_at_budgets(test=(xt, yt), budgets=[first["rows"][0]["budget"]], candidates_per_budget=1,
                              recipe=FinetuneRecipe(epochs=1, distill=False, schedule="cosine"), verbose=0)
    assert calls


def test_bad_budgets_and_costs_are_refused(searched):
    result, test = searched
    with pytest.raises(ValueError, match="`budgets`: expected 'auto' or a list of numbers"):
        result.compare_at_budgets(test=test, budgets="some", verbose=0)
    with pytest.raises(ValueError, match="`budgets`: expected positive finite numbers"):
        result.compare_at_budgets(test=test, budgets=[-1], verbose=0)
    with pytest.raises(ValueError, match="`cost`: expected a cost metric"):
        result.compare_at_budgets(test=test, cost="watts", verbose=0)
    with pytest.raises(ValueError, match="`candidates_per_budget`"):
        result.compare_at_budgets(test=test, candidates_per_budget=0, verbose=0)


def test_handmade_families_take_their_widest_fitting_member():
    from tfmpq.search import SearchSpace

    space = SearchSpace(("first", "mid", "big", "last"), bits=(2, 3, 4, 8))
    params = [10, 1_000, 10_000, 50]
    cost = lambda g: sum(p * b for p, b in zip(params, g))  # noqa: E731
    fams = handmade_baselines(space, params, cost)
    assert set(fams) == {"largest-1", "largest-2", "first-last-8", "small-8"}
    assert fams["largest-1"](cost((4, 4, 3, 4))) == (4, 4, 3, 4)
    assert fams["largest-1"](cost((4, 4, 3, 4)) - 1) == (3, 3, 2, 3)
    assert fams["largest-2"](cost((8, 8, 4, 8))) == (8, 8, 4, 8)  # 8 - 2 = 6 is not in the space: at most 6 is 4
    assert fams["first-last-8"](cost((8, 3, 3, 8))) == (8, 3, 3, 8)
    assert fams["small-8"](cost((8, 4, 3, 8))) == (8, 4, 3, 8)  # first (0.1%) and last (0.5%) are small
    assert fams["largest-1"](1) is None
    with pytest.raises(ValueError, match="`params`: expected one count per group"):
        handmade_baselines(space, params[:2], cost)


def test_budget_curve_is_drawn(searched, tmp_path):
    pytest.importorskip("matplotlib")
    from tfmpq.report import plot_budget_curve

    result, test = searched
    out = result.compare_at_budgets(test=test, num_budgets=3, recipe=RECIPE, verbose=0)
    saved = json.loads((result.run_dir / "budgets.json").read_text())["results"]["weight_bytes"]
    plot_budget_curve(saved, tmp_path / "budget_curve.png")
    assert (tmp_path / "budget_curve.png").stat().st_size > 10_000 and out["rows"]
    # another search's picks beside these (the bench's --paired-with): one more legend entry, one point per budget
    fig = plot_budget_curve(saved, tmp_path / "two.png", label="channel-wise pick", others={"layer-wise pick": saved})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[-3:] == ["largest uniform that fits", "channel-wise pick", "layer-wise pick"]
    picks = {c.get_label(): c.lines[0].get_xdata() for c in fig.axes[0].containers}
    assert len(picks["layer-wise pick"]) == len(out["rows"])
    assert all(b > a for a, b in zip(picks["channel-wise pick"], picks["layer-wise pick"]))  # drawn to the right


def test_nsga2_seeds_the_ilp_and_handmade_policies_at_each_budget(digits_mlp, digits, tmp_path):
    """seed_budgets puts, at every budget, the ILP's allocation and each hand-made family's widest fitting policy
    into the initial population (issue 24: a front at least as good as what a user writes by hand)."""
    from tfmpq.search import make_space
    from tfmpq.search.budgets import auto_budgets, auto_range

    (x, y), _ = digits
    train, val = (x[:1000], y[:1000]), (x[1000:], y[1000:])
    space = make_space(digits_mlp, bits=(2, 3, 4, 5, 8))
    ev_metrics = tfmpq.search.Evaluator(digits_mlp, train, val, evaluation="ptq").metrics
    cost_of = lambda g: ev_metrics(space.decode(g))["weight_bytes"]  # noqa: E731
    budgets = auto_budgets(*auto_range(space, cost_of), 3)
    params = [g.params for g in tfmpq.quantizable_groups(digits_mlp)]
    expected = {f(b) for f in handmade_baselines(space, params, cost_of).values() for b in budgets} - {None}
    result = nsga2(digits_mlp, train, val, evaluation="ptq", population=4, offspring=4, generations=1, seed=0,
                   bits=(2, 3, 4, 5, 8), seed_budgets="auto", run_dir=tmp_path / "run", verbose=0)
    evaluated = {c.genes for c in result.candidates}
    assert expected <= evaluated
    stored = json.loads((tmp_path / "run" / "run.json").read_text())
    initial = {tuple(g) for g in stored["options"]["initial"]}
    assert expected <= initial and len(initial) > len(expected)  # the ILP's allocations too
    again = nsga2(digits_mlp, train, val, evaluation="ptq", population=4, offspring=4, generations=2, seed=0,
                  bits=(2, 3, 4, 5, 8), seed_budgets="auto", run_dir=tmp_path / "run", resume=True, verbose=0)
    assert {c.genes for c in again.candidates} >= evaluated
