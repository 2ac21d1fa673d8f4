"""The fine-tune recipe (tfmpq.recipe) and its Keras side (tfmpq.training): checked options, a cosine schedule
that acts on an already traced train step, distillation targets and loss against their formulas, and the
Evaluator fine-tuning with both."""
import math

import numpy as np
import pytest

from tfmpq import QuantPolicy
from tfmpq.recipe import FinetuneRecipe


def test_recipe_round_trips_and_refuses_bad_options():
    r = FinetuneRecipe(epochs=8, learning_rate=3e-4, schedule="constant", distill=False)
    assert FinetuneRecipe.from_dict(r.to_dict()) == r and hash(r) == hash(FinetuneRecipe.from_dict(r.to_dict()))
    assert FinetuneRecipe().label() == "3 epochs, cosine, peak lr 0.001, distilled"
    for kwargs, match in (({"epochs": 0}, "`epochs`: expected an integer >= 1"),
                          ({"epochs": 2.5}, "`epochs`"),
                          ({"learning_rate": -1.0}, "`learning_rate`: expected None or a positive"),
                          ({"schedule": "step"}, r"`schedule`: expected one of \('cosine', 'constant'\)"),
                          ({"distill_weight": 1.5}, r"`distill_weight`: expected a number in \[0, 1\]"),
                          ({"temperature": 0}, "`temperature`: expected a positive"),
                          ({"distill": "yes"}, "`distill`: expected True or False")):
        with pytest.raises(ValueError, match=match):
            FinetuneRecipe(**kwargs)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['warmup'\]"):
        FinetuneRecipe.from_dict({"epochs": 3, "warmup": 1})


def test_cosine_schedule_acts_on_a_traced_step():
    """SGD on loss = sum(w) moves each weight by exactly -lr per step: after training, the weight has moved by
    the sum of the rates the traced step really used (a Python value changed after tracing would not)."""
    from tfmpq._keras import keras
    from tfmpq.training import CosineDecay

    steps, peak = 8, 0.1
    x = np.ones((steps, 1), np.float32)
    model = keras.Sequential([keras.layers.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(keras.optimizers.SGD(peak), loss=lambda y, p: keras.backend.sum(model.trainable_weights[0]) + 0 * p)
    model.fit(x, x, batch_size=1, epochs=1, verbose=0, shuffle=False)  # traced, constant rate: moved by steps * peak
    w0 = float(model.get_weights()[0][0, 0])
    assert w0 == pytest.approx(-steps * peak, rel=1e-5)
    cosine = CosineDecay(peak, steps)
    model.fit(x, x, batch_size=1, epochs=1, verbose=0, shuffle=False, callbacks=[cosine])
    moved = float(model.get_weights()[0][0, 0]) - w0
    expected = sum(0.5 * peak * (1 + math.cos(math.pi * t / steps)) for t in range(steps))
    assert moved == pytest.approx(-expected, rel=1e-5)
    assert cosine.rate(0) == peak and cosine.rate(steps) == 0.0
    assert float(keras.backend.get_value(model.optimizer.learning_rate)) == pytest.approx(peak)  # restored


def test_distillation_loss_matches_its_formula():
    from tfmpq._keras import tf
    from tfmpq.training import DistillationLoss, distill_targets, packed_accuracy

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
    t = rng.dirichlet(np.ones(4), size=6).astype(np.float32)
    y = rng.integers(0, 4, 6)
    packed = distill_targets(y, t)
    assert packed.shape == (6, 8) and np.array_equal(packed[:, :4].argmax(1), y)
    for weight, temp in ((0.5, 1.0), (0.3, 2.0)):
        got = DistillationLoss(4, weight, temp)(tf.constant(packed), tf.constant(p)).numpy()

        def soft(q):
            z = np.exp(np.log(q) / temp)
            return z / z.sum(1, keepdims=True)
        ce = -np.log(p[np.arange(6), y])
        kd = -(soft(t) * np.log(soft(p))).sum(1) * temp ** 2
        assert got == pytest.approx(np.mean((1 - weight) * ce + weight * kd), rel=1e-4)
    # plain labels (validation): the cross-entropy alone, and the same accuracy as Keras'
    plain = DistillationLoss(4)(tf.constant(y), tf.constant(p)).numpy()
    assert plain == pytest.approx(np.mean(-np.log(p[np.arange(6), y])), rel=1e-5)
    acc = packed_accuracy(4)
    assert np.array_equal(acc(tf.constant(packed), tf.constant(p)).numpy(), (p.argmax(1) == y).astype(np.float32))
    assert np.array_equal(acc(tf.constant(y), tf.constant(p)).numpy(), (p.argmax(1) == y).astype(np.float32))


def test_evaluator_finetunes_with_a_recipe(digits_mlp, digits):
    from tfmpq.evaluate import Evaluator

    ev = Evaluator(digits_mlp, *digits, evaluation="qat", epochs=1, seed=0, learning_rate=1e-3)
    policy = QuantPolicy.uniform(digits_mlp, 2)
    plain, _ = ev.finetune(policy, 2)
    recipe = FinetuneRecipe(epochs=2, distill=True)
    distilled, model = ev.finetune(policy, recipe=recipe)
    again, _ = ev.finetune(policy, recipe=recipe)
    cosine, _ = ev.finetune(policy, recipe=FinetuneRecipe(epochs=2, distill=False))
    assert distilled.ok and len(distilled.info["val_accuracy"]) == 2 and distilled.accuracy == again.accuracy
    assert distilled.accuracy == max(distilled.info["val_accuracy"])
    # each ingredient changes the training (losses differ from the plain constant-rate recipe)
    assert distilled.info["loss"] != plain.info["loss"] and cosine.info["loss"] != plain.info["loss"]
    assert distilled.accuracy > 0.6  # 2-bit digits MLP, 2 epochs: far above chance (0.1)
    # the model is standalone and scores as the evaluator said
    assert ev.correct(model, digits[1]).mean() == pytest.approx(distilled.accuracy, abs=1e-6)
    val_f, _ = ev.finetune_float(recipe=recipe)
    assert math.isfinite(val_f)
    with pytest.raises(ValueError, match="pass `epochs` or a `recipe`"):
        ev.finetune(policy)
