"""Evaluator and Candidate on a real (tiny) problem: an MLP on scikit-learn's digits."""
import json
import math

import numpy as np
import pytest

from tfmpq import QuantPolicy
from tfmpq.errors import PolicyError
from tfmpq.evaluate import Candidate, Evaluator


def test_ptq_is_deterministic_and_does_not_train(digits_mlp, digits):
    before = [w.copy() for w in digits_mlp.get_weights()]
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=0)
    a = ev.evaluate(QuantPolicy.uniform(digits_mlp, 4))
    b = ev.evaluate(QuantPolicy.uniform(digits_mlp, 4))
    assert a.ok and a.accuracy == b.accuracy
    assert all(np.array_equal(u, v) for u, v in zip(before, digits_mlp.get_weights()))
    float_acc = digits_mlp.evaluate(*digits[1], verbose=0)[1]
    c8 = ev.evaluate(QuantPolicy.uniform(digits_mlp, 8))
    c2 = ev.evaluate(QuantPolicy.uniform(digits_mlp, 2))
    assert abs(c8.accuracy - float_acc) < 0.02
    assert c2.accuracy < c8.accuracy
    assert c8.metrics["weight_bytes"] > a.metrics["weight_bytes"] > c2.metrics["weight_bytes"]
    assert c8.seconds > 0 and ev.num_evaluations == 4


def test_qat_scores_the_best_epoch(digits_mlp, digits):
    ev = Evaluator(digits_mlp, *digits, evaluation="qat", epochs=2, seed=0, learning_rate=1e-3)
    c = ev.evaluate(QuantPolicy.uniform(digits_mlp, 2))
    assert len(c.info["val_accuracy"]) == 2
    assert c.accuracy == max(c.info["val_accuracy"])  # Šafář: best epoch's validation accuracy
    again = ev.evaluate(QuantPolicy.uniform(digits_mlp, 2))
    assert again.accuracy == c.accuracy  # seeded: same policy, same score, whatever came before


def test_diverged_training_is_a_failed_candidate(digits_mlp, digits):
    # A learning rate of 1e20 puts weights near 1e20 after the first Adam step: the next logits
    # overflow float32 (max 3.4e38) on any CPU, so the loss is NaN whatever the instruction set.
    ev = Evaluator(digits_mlp, *digits, evaluation="qat", epochs=1, seed=0, learning_rate=1e20)
    c = ev.evaluate(QuantPolicy.uniform(digits_mlp, 8))
    assert c.status == "failed" and c.accuracy is None and not c.ok
    assert "diverged" in c.error and c.metrics["weight_bytes"] > 0
    assert not all(math.isfinite(v) for v in c.info["loss"])
    healthy = Evaluator(digits_mlp, *digits, evaluation="qat", epochs=1, seed=0, learning_rate=1e-4)
    assert healthy.evaluate(QuantPolicy.uniform(digits_mlp, 8)).ok  # the same recipe at a sane rate is fine


def test_tf_data_input(digits_mlp, digits):
    from tfmpq._keras import tf

    (x, y), (xv, yv) = digits
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(64)
    ev = Evaluator(digits_mlp, train, val, evaluation="ptq", calibration_batches=2)
    assert ev.representative_data().shape == (128, 8, 8, 1)
    ref = Evaluator(digits_mlp, (x, y), (xv, yv), evaluation="ptq", calibration_batches=2)
    p = QuantPolicy.uniform(digits_mlp, 4)
    assert ev.evaluate(p).accuracy == ref.evaluate(p).accuracy


def test_candidate_json_round_trip(digits_mlp, digits):
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq")
    c = ev.evaluate(QuantPolicy.from_bits(digits_mlp, weight_bits=[3, 8]))
    c.genes = (3, 8)
    back = Candidate.from_json(json.loads(json.dumps(c.to_json())))
    assert back.policy == c.policy and back.accuracy == c.accuracy and back.metrics == c.metrics
    assert back.genes == (3, 8)


def test_evaluator_errors(digits_mlp, digits):
    with pytest.raises(ValueError, match=r"Invalid value for `evaluation`: expected one of \('qat', 'ptq', 'oneshot'\). "
                                         r"Received: evaluation='int8'"):
        Evaluator(digits_mlp, *digits, evaluation="int8")
    with pytest.raises(ValueError, match="Invalid value for `epochs`: expected an integer >= 1 for QAT"):
        Evaluator(digits_mlp, *digits, epochs=0)
    with pytest.raises(ValueError, match="Invalid value for `optimizer`"):
        Evaluator(digits_mlp, *digits, optimizer="lion")
    with pytest.raises(ValueError, match=r"Invalid value for `bn_fold`: expected one of \('one_conv', 'two_conv'\). "
                                         r"Received: bn_fold='fused'"):
        Evaluator(digits_mlp, *digits, bn_fold="fused")
    ev = Evaluator(digits_mlp, *digits, evaluation="ptq")
    other = QuantPolicy(("a", "b", "c"), (8, 8, 8), (8, 8, 8))
    with pytest.raises(PolicyError, match="made for another model"):
        ev.evaluate(other)


def test_signature_is_json(digits_mlp, digits):
    sig = Evaluator(digits_mlp, *digits, evaluation="ptq", seed=3).signature()
    assert json.loads(json.dumps(sig)) == sig
    assert sig["evaluation"] == "ptq" and sig["seed"] == 3 and sig["model"] == "digits_mlp"


def test_bn_fold_option_reaches_the_models_and_the_signature(digits_mlp, digits):
    from tfmpq.quantize import group_layers

    ev = Evaluator(digits_mlp, *digits, evaluation="qat", bn_fold="two_conv")
    assert ev.signature()["bn_fold"] == "two_conv"
    assert Evaluator(digits_mlp, *digits, evaluation="qat").signature()["bn_fold"] == "one_conv"
    # ptq never trains: its signature (and old ptq checkpoints) do not depend on the option
    assert "bn_fold" not in Evaluator(digits_mlp, *digits, evaluation="ptq", bn_fold="two_conv").signature()
    assert ev.spec().options["bn_fold"] == "two_conv"
    policy = QuantPolicy.uniform(digits_mlp, 4)
    assert {la.bn_fold for la in group_layers(ev._reused_model(policy)).values()} == {"two_conv"}


@pytest.mark.parametrize("evaluation", ["qat", "ptq"])
def test_reused_search_model_scores_like_a_rebuilt_model(digits_mlp, digits, evaluation):
    """Issue 7: one variable-bit model for the whole search gives the static path's scores."""
    (x, y), (xv, yv) = digits
    train, val = (x[:640], y[:640]), (xv, yv)
    policies = [QuantPolicy.from_bits(digits_mlp, [4, 8], 8), QuantPolicy.from_bits(digits_mlp, [2, 6], [8, 4]),
                QuantPolicy.from_bits(digits_mlp, [8, 3], 32), QuantPolicy.from_bits(digits_mlp, [32, 5], 8)]
    fresh = Evaluator(digits_mlp, train, val, evaluation=evaluation, epochs=1, seed=3, learning_rate=1e-3, reuse_model=False)
    reused = Evaluator(digits_mlp, train, val, evaluation=evaluation, epochs=1, seed=3, learning_rate=1e-3, reuse_model=True)
    for p in policies:
        a, b = fresh.evaluate(p), reused.evaluate(p)
        assert abs(a.accuracy - b.accuracy) <= 1.0 / len(yv) + 1e-12, (p.genes, a.accuracy, b.accuracy)
    # and the reused model was built and compiled once
    assert reused._qat.search_model is not None
    train_functions = {id(reused._qat.search_model.model.train_function)} if evaluation == "qat" else set()
    reused.evaluate(policies[0])
    if evaluation == "qat":
        assert {id(reused._qat.search_model.model.train_function)} == train_functions


@pytest.mark.parametrize("ending, from_logits", [("dense_softmax", False), ("softmax_layer", False),
                                                 ("activation_softmax", False), ("logits", True)])
def test_default_loss_matches_how_the_model_ends(digits, ending, from_logits):
    """Issue 12 item 5b: a model ending in a Softmax layer was trained with from_logits=True."""
    from tfmpq._keras import keras

    L = keras.layers
    i = L.Input((8, 8, 1))
    x = L.Flatten()(i)
    if ending == "dense_softmax":
        x = L.Dense(10, activation="softmax")(x)
    else:
        x = L.Dense(10)(x)
        x = {"softmax_layer": L.Softmax(), "activation_softmax": L.Activation("softmax")}.get(ending, L.Identity())(x)
    ev = Evaluator(keras.Model(i, x), *digits, evaluation="ptq")
    assert type(ev.loss).__name__ == "SparseCategoricalCrossentropy"
    assert ev.loss.get_config()["from_logits"] is from_logits
