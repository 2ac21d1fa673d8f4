"""One-shot scoring (issue 14): a shared variable-bit model trained once, candidates re-calibrated on it.

A small Conv+BN CNN on scikit-learn's digits (real data, seeded); one shared training per module.
"""
import json
import math
import os

import numpy as np
import pytest

from tfmpq import QuantPolicy
from tfmpq._keras import keras
from tfmpq.evaluate.qat import make_optimizer

ACT_CHOICES = (2, 8)


@pytest.fixture(scope="module")
def digits_bn_cnn(digits):
    """Conv(8, BN momentum 0.9, ReLU) -> Flatten -> Dense(10, softmax), trained 8 epochs: 2 groups, one with BN."""
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, use_bias=False, name="conv"),
        keras.layers.BatchNormalization(momentum=0.9, name="bn"),
        keras.layers.ReLU(),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ], name="digits_bn_cnn")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


def _evaluator(model, digits, cache_dir=None, **kwargs):
    from tfmpq.evaluate import Evaluator

    train, val = digits
    options = dict(evaluation="oneshot", epochs=1, seed=0, learning_rate=1e-3, batch_size=64,
                   oneshot_activation_bits=ACT_CHOICES, num_random_policies=1, cache_dir=cache_dir)
    options.update(kwargs)
    return Evaluator(model, train, val, **options)


@pytest.fixture(scope="module")
def trained(digits_bn_cnn, digits, tmp_path_factory):
    """An evaluator whose shared model is trained (once for the module), saved in its cache_dir."""
    cache = tmp_path_factory.mktemp("oneshot_cache")
    ev = _evaluator(digits_bn_cnn, digits, cache_dir=cache)
    ev.evaluate(QuantPolicy.uniform(digits_bn_cnn, 8, 8))
    return ev


def _shared_state(ev):
    """Every variable of the shared model but the bit-widths (which each candidate sets)."""
    bits = {id(v) for v in ev._shared.vbm._bit_variables()}
    return [(v.name, v.numpy().copy()) for v in ev._shared.vbm.model.variables if id(v) not in bits]


def test_trains_once_and_reports_the_one_time_cost(trained, digits_bn_cnn):
    info = trained.oneshot_info
    assert trained.num_shared_trainings == 1 and info["source"] == "trained"
    assert info["epochs"] == 1 and info["policies_per_step"] == 3 and info["seconds"] > 0
    assert math.isfinite(info["loss"][0])
    assert os.path.exists(info["path"]) and os.path.exists(info["path"][:-4] + ".json")
    trained.evaluate(QuantPolicy.uniform(digits_bn_cnn, 4, 8))
    assert trained.num_shared_trainings == 1  # later candidates do not train


def test_score_moves_with_bits(trained, digits_bn_cnn, digits):
    n = len(digits[1][1])
    acc8 = trained.evaluate(QuantPolicy.uniform(digits_bn_cnn, 8, 8)).accuracy
    acc2 = trained.evaluate(QuantPolicy.uniform(digits_bn_cnn, 2, 2)).accuracy
    # a difference of three standard errors of two independent binomial proportions on n images
    margin = 3 * math.sqrt(acc8 * (1 - acc8) / n + acc2 * (1 - acc2) / n)
    assert acc8 - acc2 > margin, (acc8, acc2, margin)
    assert acc8 > 0.8  # the shared model at 8 bits is still a digits classifier


def test_shared_weights_exactly_restored_after_each_candidate(trained, digits_bn_cnn):
    before = _shared_state(trained)
    scores = []
    for w, a in ((2, 2), (8, 8), (3, 8), (2, 2)):
        scores.append(trained.evaluate(QuantPolicy.uniform(digits_bn_cnn, w, a)).accuracy)
        after = _shared_state(trained)
        assert [n for n, _ in after] == [n for n, _ in before]
        for (name, a0), (_, a1) in zip(before, after):
            assert np.array_equal(a0, a1), name
    assert scores[0] == scores[3]  # the same candidate again: the same score, whatever came between


def test_recalibration_changes_bn_statistics_of_the_policy(trained, digits_bn_cnn):
    """The re-calibrated model (returned by build) holds the policy's own BN statistics, not the shared ones.

    Exactly checked with the two-convolution forward, whose batch statistics are those of the float
    convolution; the default one-convolution forward normalises the quantized convolution's output
    (Krishnamoorthi 2018, sec. 3.2), so there the statistics only have to move."""
    from tfmpq.quantize import VariableBitModel, oneshot

    shared = trained._shared.vbm
    vbm2 = VariableBitModel(digits_bn_cnn, bn_fold="two_conv")
    assert len(vbm2.model.variables) == len(shared.model.variables)
    for mine, theirs in zip(vbm2.model.variables, shared.model.variables):
        mine.assign(theirs)
    for vbm in (shared, vbm2):
        conv = vbm._groups["conv"][1]
        shared_mean = conv.moving_mean.numpy().copy()
        vbm.set_policy(QuantPolicy.uniform(digits_bn_cnn, 2, 2))
        snapshot = [v.numpy() for v in oneshot.recalibration_variables(vbm)]
        try:
            oneshot.recalibrate(vbm, trained.representative_data(), trained.batch_size)
            assert not np.allclose(conv.moving_mean.numpy(), shared_mean)
            if vbm is vbm2:  # the batch statistics of the float conv output (no BN before it)
                x = trained.representative_data()
                y = conv._op(x, conv.kernel).numpy()
                batch_means = [y[i:i + 64].mean(axis=(0, 1, 2)) for i in range(0, len(x), 64)]
                # the conv sees the 8-bit-quantized input (range within [0, 1]: a step <= 1/255, error
                # <= half a step)
                bound = 0.5 / 255 * np.abs(conv.kernel.numpy()).sum(axis=(0, 1, 2)) + 1e-5
                assert np.all(np.abs(conv.moving_mean.numpy() - np.mean(batch_means, axis=0)) <= bound)
        finally:
            for v, value in zip(oneshot.recalibration_variables(vbm), snapshot):
                v.assign(value)


def test_resumed_evaluator_loads_instead_of_training(trained, digits_bn_cnn, digits):
    policies = [QuantPolicy.uniform(digits_bn_cnn, 2, 2), QuantPolicy.from_bits(digits_bn_cnn, [3, 8], [8, 2])]
    want = [trained.evaluate(p).accuracy for p in policies]
    again = _evaluator(digits_bn_cnn, digits, cache_dir=trained.cache_dir)
    got = [again.evaluate(p).accuracy for p in policies]
    assert again.num_shared_trainings == 0 and again.oneshot_info["source"] == "loaded"
    assert got == want
    # another option, another fingerprint: never the stale weights
    other = _evaluator(digits_bn_cnn, digits, cache_dir=trained.cache_dir, distill=True)
    assert other.oneshot_path() != trained.oneshot_path()


def test_a_cache_of_another_variable_layout_is_trained_again(trained, digits_bn_cnn, digits, tmp_path):
    """A shared model saved by an older tfmpq (one bit-width per group, before channel-wise bits) has other
    variable shapes: it is trained again, with a warning, and the file replaced (not a crash, not stale weights)."""
    import shutil

    ev = _evaluator(digits_bn_cnn, digits, cache_dir=tmp_path)
    path = ev.oneshot_path()
    shutil.copy(trained.oneshot_path()[:-4] + ".json", path[:-4] + ".json")
    np.savez(path, *[np.zeros(3, np.float32)])  # another layout
    with pytest.warns(UserWarning, match="saved by another version of tfmpq"):
        c = ev.evaluate(QuantPolicy.uniform(digits_bn_cnn, 8, 8))
    assert ev.num_shared_trainings == 1 and ev.oneshot_info["source"] == "trained" and c.ok
    with np.load(path) as f:
        assert len(f.files) == len(ev._shared.vbm.model.variables)


def test_shared_training_has_its_own_learning_rate(trained, digits_bn_cnn, digits):
    """oneshot_learning_rate trains the shared model; learning_rate is the QAT one (fine-tunes, re-scores)."""
    policy = QuantPolicy.from_bits(digits_bn_cnn, [3, 8], [8, 2])
    # the fixture trained with learning_rate=1e-3 (and no oneshot_learning_rate): the same shared training
    same = _evaluator(digits_bn_cnn, digits, cache_dir=trained.cache_dir, learning_rate=1e-4,
                      oneshot_learning_rate=1e-3)
    assert same.oneshot_path() == trained.oneshot_path()
    assert same.evaluate(policy).accuracy == trained.evaluate(policy).accuracy
    assert same.num_shared_trainings == 0 and same.oneshot_info["options"]["learning_rate"] == 1e-3
    assert float(make_optimizer(same.config).learning_rate) == pytest.approx(1e-4)  # what finetune/rescore train with
    other = _evaluator(digits_bn_cnn, digits, cache_dir=trained.cache_dir, oneshot_learning_rate=1e-4)
    assert other.oneshot_path() != trained.oneshot_path()


@pytest.mark.slow
def test_spec_ships_the_trained_weights(trained, digits_bn_cnn):
    spec = trained.spec()
    assert spec.shared is not None
    rebuilt = spec()
    policy = QuantPolicy.from_bits(digits_bn_cnn, [2, 5], [2, 8])
    assert rebuilt.evaluate(policy).accuracy == trained.evaluate(policy).accuracy
    assert rebuilt.num_shared_trainings == 0 and rebuilt.oneshot_info["source"] == "shipped"


def test_oneshot_build_refuses_a_standalone_model(trained, digits_bn_cnn):
    with pytest.raises(ValueError, match="Invalid value for `reuse`: a one-shot evaluator"):
        trained.build(QuantPolicy.uniform(digits_bn_cnn, 8, 8))


def test_invalid_options(digits_bn_cnn, digits):
    with pytest.raises(ValueError, match="Invalid value for `oneshot_bits`"):
        _evaluator(digits_bn_cnn, digits, oneshot_bits=(1, 8))
    with pytest.raises(ValueError, match="Invalid value for `num_random_policies`"):
        _evaluator(digits_bn_cnn, digits, num_random_policies=-1)
    with pytest.raises(ValueError, match="Invalid value for `epochs`"):
        _evaluator(digits_bn_cnn, digits, epochs=0)
    for bad in (0.0, -1e-3, float("nan"), "1e-3"):
        with pytest.raises(ValueError, match="Invalid value for `oneshot_learning_rate`: expected a positive"):
            _evaluator(digits_bn_cnn, digits, oneshot_learning_rate=bad)
    with pytest.raises(ValueError, match="Invalid value for `learning_rate`: expected a positive"):
        _evaluator(digits_bn_cnn, digits, learning_rate=-1.0)


@pytest.mark.slow
def test_same_seed_same_shared_weights_and_scores(trained, digits_bn_cnn, digits, tmp_path):
    fresh = _evaluator(digits_bn_cnn, digits, cache_dir=tmp_path)
    policies = [QuantPolicy.uniform(digits_bn_cnn, b, a) for b, a in ((2, 2), (5, 8), (8, 8))]
    assert [fresh.evaluate(p).accuracy for p in policies] == [trained.evaluate(p).accuracy for p in policies]
    assert fresh.num_shared_trainings == 1
    with np.load(fresh.oneshot_path()) as a, np.load(trained.oneshot_path()) as b:
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.slow
def test_distill_trains_and_scores(digits_bn_cnn, digits):
    ev = _evaluator(digits_bn_cnn, digits, distill=True)
    c = ev.evaluate(QuantPolicy.uniform(digits_bn_cnn, 8, 8))
    assert ev.oneshot_info["distill"] is True and c.accuracy > 0.8


@pytest.mark.slow
def test_search_resumes_without_retraining_and_rescores_with_qat(digits_bn_cnn, digits, tmp_path):
    from tfmpq import search
    from tfmpq.evaluate import Evaluator

    train, val = digits
    run_dir = tmp_path / "run"
    # the shared training at 1e-3, the re-scores at the QAT learning rate 3e-4
    common = dict(evaluation="oneshot", epochs=1, learning_rate=3e-4, oneshot_learning_rate=1e-3, population=4,
                  offspring=4, run_dir=run_dir, seed=0, verbose=0, bits=(2, 4, 8))
    first = search.nsga2(digits_bn_cnn, train, val, generations=1, **common)
    assert first.evaluator.num_shared_trainings == 1
    saved = [p for p in os.listdir(run_dir) if p.startswith("oneshot-")]
    assert sorted(p.rsplit(".", 1)[1] for p in saved) == ["json", "npz"]
    second = search.nsga2(digits_bn_cnn, train, val, generations=2, resume=True, rescore="qat", rescore_epochs=1,
                          rescore_members=2, **common)
    # the shared model is loaded on first use: score a policy in case the resumed generation asked for nothing new
    second.evaluator.evaluate(second.space.decode(second.space.uniform_chromosomes()[0]))
    assert second.evaluator.num_shared_trainings == 0 and second.evaluator.oneshot_info["source"] == "loaded"
    record = json.loads((run_dir / "rescored.json").read_text())
    assert len(second.front) > 2  # so that rescore_members chose
    cheapest, dearest = second.front[0], second.front[-1]  # the front is sorted by weight_bytes
    assert [m["genes"] for m in record["members"]] == [list(cheapest.genes), list(dearest.genes)]
    # the second stage is a stand-alone QAT score: what a QAT evaluator gives the same policy
    member = second.rescored[0]
    assert second.evaluator.oneshot_info["options"]["learning_rate"] == 1e-3
    qat = Evaluator(digits_bn_cnn, train, val, evaluation="qat", epochs=1, learning_rate=3e-4, seed=0)
    assert member.accuracy == qat.evaluate(member.policy).accuracy
    assert "re-scored with stand-alone QAT" in (run_dir / "summary.txt").read_text()


@pytest.mark.slow
def test_process_workers_load_the_shipped_shared_model(trained, digits_bn_cnn, digits):
    """Workers score with the driver's trained weights (info["shared"] == "shipped"), never retrain,
    and give the driver's scores."""
    from tfmpq.search import SearchSpace
    from tfmpq.search.engine import Engine
    from tfmpq.search.executors import ProcessExecutor
    from tfmpq.search.strategies import Exhaustive

    space = SearchSpace.from_model(digits_bn_cnn, bits=(2, 8))
    with ProcessExecutor(workers=1) as executor:
        engine = Engine(space, trained, executor=executor, verbose=0)
        engine.run(Exhaustive())
    assert len(engine.candidates) == 4
    for c in engine.candidates:
        assert c.info["shared"] == "shipped"
        assert c.accuracy == trained.evaluate(c.policy).accuracy
