"""VariableBitModel: one traced model for every policy, scoring exactly as the static quantize_model path."""
import numpy as np
import pytest

import tfmpq
from tfmpq import QuantPolicy
from tfmpq._keras import keras, tf
from tfmpq.quantize import VariableBitModel, group_layers

L = keras.layers


def _digits_cnn(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, name="c1")(i)))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", name="dw")(h)))
    h = L.Dense(10, name="out")(L.Flatten()(h))
    m = keras.Model(i, h)
    m.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=2, batch_size=64, verbose=0)
    return m


def _compile(m):
    m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              ["accuracy"])


POLICIES = [((4, 3, 8), (8, 4, 8)), ((2, 8, 6), (8, 8, 8)), ((8, 8, 8), (32, 32, 32)), ((32, 5, 2), (6, 8, 8))]


def test_variable_bits_equal_static_path(digits):
    (x, y), (xt, yt) = digits
    model = _digits_cnn(digits)
    vbm = VariableBitModel(model)
    _compile(vbm.model)
    data = tf.data.Dataset.from_tensor_slices((x[:512], y[:512])).batch(64)
    traces = []
    for wbits, abits in POLICIES:
        policy = QuantPolicy.from_bits(model, list(wbits), list(abits))
        static = tfmpq.quantize_model(model, policy)
        _compile(static)
        vbm.set_policy(policy)
        vbm.reset()
        # before training: the same forward pass
        np.testing.assert_allclose(vbm.model(xt, training=False).numpy(), static(xt, training=False).numpy(),
                                   atol=1e-6)
        keras.utils.set_random_seed(7)
        static.fit(data, epochs=1, verbose=0)
        keras.utils.set_random_seed(7)
        vbm.model.fit(data, epochs=1, verbose=0)
        # after training: the same weights up to float reassociation (outputs are 8-bit quantized, so a
        # 1e-6 difference can flip one level; compare the trained float kernels instead)
        for name, layer in group_layers(static).items():
            np.testing.assert_allclose(group_layers(vbm.model)[name].kernel.numpy(), layer.kernel.numpy(),
                                       atol=1e-4)
        acc_static = static.evaluate(xt, yt, verbose=0)[1]
        acc_var = vbm.model.evaluate(xt, yt, verbose=0)[1]
        assert abs(acc_static - acc_var) <= 1 / len(yt) + 1e-9, (wbits, abits, acc_static, acc_var)
        traces.append(vbm.model.train_function)
        assert tfmpq.policy_of(vbm.model)["c1"]["weight_bits"] == wbits[0]
    assert all(t is traces[0] for t in traces), "the search model must not be re-compiled per candidate"


def test_reset_restores_initial_state(digits):
    (x, y), _ = digits
    model = _digits_cnn(digits)
    vbm = VariableBitModel(model)
    _compile(vbm.model)
    before = [v.numpy().copy() for v in vbm.model.variables]
    vbm.set_policy(QuantPolicy.uniform(model, 4, 4))
    vbm.model.fit(x[:256], y[:256], batch_size=64, epochs=1, verbose=0)
    vbm.reset()
    after = [v.numpy() for v in vbm.model.variables]
    changed = [v.name for v, a, b in zip(vbm.model.variables, before, after) if not np.array_equal(a, b)]
    assert all("tfmpq_bits" in n or "weight_bits" in n for n in changed), changed
    assert all(float(np.max(np.abs(v.numpy()))) == 0.0 for v in vbm.model.optimizer.variables)
    c1 = group_layers(vbm.model)["c1"]
    assert float(c1.weight_bits_var.numpy()) == 4.0


def test_policy_for_another_model_is_refused(digits):
    model = _digits_cnn(digits)
    vbm = VariableBitModel(model)
    i = L.Input((3,))
    other = keras.Model(i, L.Dense(2)(i))
    with pytest.raises(ValueError, match="made for another model"):
        vbm.set_policy(QuantPolicy.uniform(other))
