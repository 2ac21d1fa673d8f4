"""compare_with_uniform (issue 12): equal fine-tuning, choices on validation, test for reporting only."""
import json

import numpy as np
import pytest

from tfmpq import QuantPolicy
from tfmpq.search import nsga2


@pytest.fixture(scope="module")
def searched(digits_mlp, digits, tmp_path_factory):
    (x, y), test = digits
    train, val = (x[:1000], y[:1000]), (x[1000:], y[1000:])
    run_dir = tmp_path_factory.mktemp("cmp") / "run"
    result = nsga2(digits_mlp, train, val, evaluation="ptq", population=6, offspring=6, generations=2, seed=0,
                   bits=(2, 4, 8), learning_rate=1e-3, run_dir=run_dir, verbose=0)
    return result, test


def test_choices_use_validation_and_test_only_reports(searched):
    result, (xt, yt) = searched
    cmp = result.compare_with_uniform(test=(xt, yt), finetune_epochs=1, verbose=0)
    u8, uni, front = cmp["uniform8"], cmp["uniform"], cmp["front"]
    assert u8["label"] == "8-bit" and isinstance(uni["policy"], QuantPolicy)
    assert cmp["target_accuracy"] == pytest.approx(u8["test_accuracy"] - 0.005)
    assert cmp["target_val_accuracy"] == pytest.approx(u8["val_accuracy"] - 0.005)
    # the uniform side: the cheapest uniform policy whose fine-tuned *validation* accuracy reaches it;
    # fine-tuning stopped at the first cheaper one that did not
    uniforms = [r for r in cmp["finetuned"] if r["label"]]
    assert uni["val_accuracy"] >= cmp["target_val_accuracy"]
    cheaper = [r for r in uniforms if r["cost"] < uni["cost"]]
    assert len(cheaper) <= 1 and all(r["val_accuracy"] < cmp["target_val_accuracy"] for r in cheaper)
    if front is not None:
        assert front["val_accuracy"] >= cmp["target_val_accuracy"] and front["cost"] <= uni["cost"]
        assert cmp["saving"] == pytest.approx(1 - front["cost"] / uni["cost"])
        assert 0.0 <= cmp["mcnemar"]["p_value"] <= 1.0
    for row in [u8, uni, cmp["float"]] + ([front] if front else []):
        lo, hi = row["ci"]
        assert lo <= row["test_accuracy"] <= hi and row["test_correct"] == round(row["test_accuracy"] * len(yt))
    assert cmp["float"]["val_accuracy"] > 0.8  # the fair float reference, fine-tuned alike
    saved = json.loads((result.run_dir / "comparison.json").read_text())
    assert saved["uniform"]["genes"] == list(uni["genes"]) and saved["num_test"] == len(yt)
    assert "held-out comparison" in result.summary() and "held-out comparison" in (result.run_dir / "summary.txt").read_text()
    from tfmpq.report import load_run, summary_text

    assert "held-out comparison" in summary_text(load_run(result.run_dir))  # `tfmpq report` prints it too

    # The test set does not steer any choice: with scrambled test labels the same policies are chosen.
    scrambled = np.random.default_rng(1).permutation(yt)
    again = result.compare_with_uniform(test=(xt, scrambled), finetune_epochs=1, verbose=0)
    assert again["uniform"]["genes"] == uni["genes"]
    assert (again["front"] or {}).get("genes") == (front or {}).get("genes")
    assert again["uniform"]["val_accuracy"] == uni["val_accuracy"]  # same seeded fine-tune


def test_bad_test_data_is_refused_before_any_finetuning(searched):
    result, (xt, yt) = searched
    with pytest.raises(ValueError, match=r"Invalid value for `test`: expected as many labels as samples"):
        result.compare_with_uniform(test=(xt, yt[:-1]), verbose=0)
    with pytest.raises(ValueError, match=r"Invalid value for `finetune_epochs`"):
        result.compare_with_uniform(test=(xt, yt), finetune_epochs=0, verbose=0)


def test_a_rescored_front_is_compared_on_its_rescores(searched):
    """A two-stage search (Result.rescore) is compared on its re-scored front and QAT re-scores, not on
    the search scores of the first stage (one-shot scores live on another scale)."""
    result, (xt, yt) = searched
    cost = result.objectives[1]
    mixed = sorted((c for c in result.front if result.space.uniform_label(c.genes) is None),
                   key=lambda c: c.metrics[cost])
    assert mixed, "the fixture's front has no mixed member"
    rescored = result.rescore(1, members=mixed[:2])
    try:
        by_genes = {tuple(c.genes): c.accuracy for c in rescored}
        assert by_genes and all(c.accuracy is not None for c in rescored)
        cmp = result.compare_with_uniform(test=(xt, yt), finetune_epochs=1, slack=1.0, verbose=0)
        tuned = [r for r in cmp["finetuned"] if r["role"] == "front"]
        allowed = {tuple(c.genes) for c in result.rescored_front}
        assert {r["genes"] for r in tuned} <= allowed
        assert all(r["search_accuracy"] == by_genes[r["genes"]] for r in tuned)  # the re-score, not the search score
        if any(c.metrics[cost] < cmp["uniform"]["cost"] for c in result.rescored_front):
            assert tuned  # a cheaper re-scored member was fine-tuned (slack=1: none skipped)
    finally:
        result.rescored, result.rescored_front = [], []


def test_spread_members_keeps_both_ends_and_spreads_the_rest():
    from tfmpq.candidate import Candidate
    from tfmpq.search.result import spread_members

    members = [Candidate(None, 0.5 + i / 100, {"weight_bytes": float(100 - 7 * i)}, 0.0, genes=(i,)) for i in range(9)]
    picked = spread_members(members, "weight_bytes", 3)
    assert [c.metrics["weight_bytes"] for c in picked] == [44.0, 72.0, 100.0]  # cheapest, middle, dearest
    assert spread_members(members, "weight_bytes", 9) == sorted(members, key=lambda c: c.metrics["weight_bytes"])
    assert spread_members(members, "weight_bytes", 1)[0].genes == (8,)  # one: the most accurate
    assert len(spread_members(members, "weight_bytes", 5)) == 5


def test_rescore_members_is_checked_before_searching(digits_mlp, digits):
    (x, y), _ = digits
    for bad in (0, 2.5):
        with pytest.raises(ValueError, match=r"Invalid value for `rescore_members`"):
            nsga2(digits_mlp, (x, y), (x, y), rescore="qat", rescore_members=bad, verbose=0)


def test_rescore_caps_members_and_resumes_from_rescored_json(searched):
    """max_members re-scores an even spread; rescored.json is written after each member, so a second
    call (a resumed run after a kill) trains only the members not yet re-scored, and gives the same
    scores; another number of epochs is not taken from it."""
    result, _ = searched
    cost = result.objectives[1]
    members = sorted({c.genes: c for c in result.candidates if c.ok}.values(), key=lambda c: c.metrics[cost])[:6]
    assert len(members) == 6
    ev, real = result.evaluator, result.evaluator.finetune
    trained = []
    (result.run_dir / "rescored.json").unlink(missing_ok=True)  # an earlier test's re-scores

    def killed_after_two(policy, epochs, reuse=False):
        if len(trained) == 2:
            raise KeyboardInterrupt  # the kill, while the third member trains
        trained.append(policy)
        return real(policy, epochs, reuse=reuse)

    def counting(policy, epochs, reuse=False):
        trained.append(policy)
        return real(policy, epochs, reuse=reuse)

    try:
        ev.finetune = killed_after_two
        with pytest.raises(KeyboardInterrupt):
            result.rescore(1, members=members, max_members=4)
        saved = json.loads((result.run_dir / "rescored.json").read_text())
        assert len(saved["members"]) == 2 and saved["front"] is None
        ev.finetune = counting
        rescored = result.rescore(1, members=members, max_members=4)
        assert len(trained) == 4  # two before the kill, the other two after it
        want = [members[i] for i in (0, 2, 3, 5)]  # rank positions round(i * 5 / 3)
        assert [c.genes for c in rescored] == [c.genes for c in want]
        scores = [c.accuracy for c in rescored]
        del trained[:]
        again = result.rescore(1, members=members, max_members=4)
        assert not trained and [c.accuracy for c in again] == scores  # all four re-used
        fresh = [real(c.policy, 1, reuse=True)[0].accuracy for c in want]
        assert fresh == scores  # what the re-used scores would have been
        result.rescore(2, members=members[:1])
        assert len(trained) == 1  # another number of epochs: trained again
    finally:
        del ev.finetune
        result.rescored, result.rescored_front = [], []
        (result.run_dir / "rescored.json").unlink(missing_ok=True)
