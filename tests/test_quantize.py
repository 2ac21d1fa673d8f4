"""quantize_model: BN folding, the N-bit grid, one gene per group, BN freeze after tracing, save/load."""
import numpy as np
import pytest

import tfmpq
from tfmpq import QuantPolicy
from tfmpq._keras import keras, tf
from tfmpq.quantize import group_layers, policy_of

L = keras.layers


def _levels_per_channel(layer):
    kernel, _ = layer.deployed_weights()
    flat = kernel.reshape(-1, layer.out_channels)  # output channel is the last (flattened) axis
    return [len(np.unique(flat[:, c])) for c in range(flat.shape[1])]


def test_float_policy_equals_float_model(residual_cnn):
    x = np.random.default_rng(1).random((32, 12, 12, 1)).astype("float32")
    qat = tfmpq.quantize_model(residual_cnn, QuantPolicy.uniform(residual_cnn, 32, 32))
    expected = residual_cnn(x, training=False).numpy()
    got = qat(x, training=False).numpy()
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 1e-5
    # BN really was folded: no BatchNormalization layer left, one QuantGroupLayer per group
    assert not [la for la in qat.layers if "batch_norm" in type(getattr(la, "layer", la)).__name__.lower()]
    assert list(group_layers(qat)) == ["stem", "dw", "pw", "fc", "head"]


def test_folded_pre_activation_equals_conv_then_bn():
    keras.utils.set_random_seed(3)
    i = L.Input((6, 6, 2))
    m = keras.Model(i, L.BatchNormalization(name="bn")(L.Conv2D(3, 3, name="c")(i)))
    from models_for_tests import randomize_bn

    randomize_bn(m, 3)
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype("float32")
    layer = group_layers(tfmpq.quantize_model(m, QuantPolicy.uniform(m, 32, 32)))["c"]
    k, b = layer.deployed_weights()
    y = tf.nn.convolution(x, k, padding="VALID").numpy() + b
    np.testing.assert_allclose(y, m(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("per_channel", [True, False])
def test_folded_kernel_is_on_the_n_bit_grid(residual_cnn, bits, per_channel):
    qat = tfmpq.quantize_model(residual_cnn, QuantPolicy.uniform(residual_cnn, bits, 8), per_channel=per_channel,
                               symmetric=per_channel)
    for name, layer in group_layers(qat).items():
        if per_channel:  # symmetric narrow range: 2^b - 1 levels
            assert max(_levels_per_channel(layer)) <= 2**bits - 1, name
        else:
            kernel, _ = layer.deployed_weights()
            assert len(np.unique(kernel)) <= 2**bits, name
    if bits <= 4:  # and a real grid: the levels are integer multiples of one scale per channel (symmetric)
        layer = group_layers(qat)["stem"]
        kernel, _ = layer.deployed_weights()
        flat = kernel.reshape(-1, layer.out_channels)
        scale = np.abs(flat).max(axis=0) / (2 ** (bits - 1) - 1) if per_channel else None
        if per_channel:
            q = flat / scale
            np.testing.assert_allclose(q, np.round(q), atol=1e-3)


def test_each_gene_changes_its_group_and_no_other(residual_cnn):
    base = tfmpq.quantize_model(residual_cnn, QuantPolicy.uniform(residual_cnn, 8, 8))
    base_kernels = {n: la.deployed_weights()[0] for n, la in group_layers(base).items()}
    names = list(base_kernels)
    for i, name in enumerate(names):
        bits = [8] * len(names)
        bits[i] = 2
        qat = tfmpq.quantize_model(residual_cnn, QuantPolicy.from_bits(residual_cnn, bits, 8))
        layers = group_layers(qat)
        assert [policy_of(qat)[n]["weight_bits"] for n in names] == bits
        for other, layer in layers.items():
            kernel = layer.deployed_weights()[0]
            if other == name:
                assert max(_levels_per_channel(layer)) <= 3, (name, "2-bit symmetric: 3 levels")
                assert not np.allclose(kernel, base_kernels[other])
            else:
                np.testing.assert_array_equal(kernel, base_kernels[other])


def test_dense_genes_are_not_silently_8_bit():
    """The trap of seed 003's reference: registries sharing class-level state left Dense genes at 8 bits."""
    keras.utils.set_random_seed(0)
    i = L.Input((20,))
    x = L.Dense(200, name="d1")(i)
    x = L.Dense(32, name="d2")(x)
    m = keras.Model(i, L.Dense(5, name="d3")(x))
    q3 = tfmpq.quantize_model(m, QuantPolicy.from_bits(m, [3, 8, 5], 8))
    q8 = tfmpq.quantize_model(m, QuantPolicy.from_bits(m, [8, 2, 8], 4))  # a second model, other bits
    assert [la.weight_bits for la in group_layers(q3).values()] == [3, 8, 5]
    assert [la.weight_bits for la in group_layers(q8).values()] == [8, 2, 8]
    levels = {n: max(_levels_per_channel(la)) for n, la in group_layers(q3).items()}
    assert levels["d1"] <= 8 and levels["d3"] <= 32 and levels["d2"] > 32
    assert [v["activation_bits"] for v in policy_of(q8).values()] == [4, 4, 4]


def test_qat_trains_on_real_data_and_bn_freeze_works_after_tracing(digits):
    (x, y), (xt, yt) = digits
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(8, 3, name="c1")(i)))
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 3, name="c2")(h)))
    h = L.Dense(10, name="out")(L.Flatten()(h))
    model = keras.Model(i, h)
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  ["accuracy"])
    model.fit(x, y, epochs=10, batch_size=32, verbose=0)
    float_acc = model.evaluate(xt, yt, verbose=0)[1]
    assert float_acc > 0.85

    qat = tfmpq.quantize_model(model, QuantPolicy.from_bits(model, [4, 3, 4], 4))
    qat.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                ["accuracy"])
    c1 = group_layers(qat)["c1"]
    mean0 = c1.moving_mean.numpy().copy()
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)  # traces the train function
    mean1 = c1.moving_mean.numpy().copy()
    assert not np.allclose(mean0, mean1), "moving statistics must follow the batches before the freeze"
    tfmpq.freeze_bn(qat)  # a variable: takes effect in the already-traced train function
    qat.fit(x, y, epochs=1, batch_size=64, verbose=0)
    np.testing.assert_array_equal(c1.moving_mean.numpy(), mean1)
    acc = qat.evaluate(xt, yt, verbose=0)[1]
    assert acc > float_acc - 0.08, (acc, float_acc)
    assert max(_levels_per_channel(c1)) <= 16


def test_bn_freeze_step_option(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(1)
    i = L.Input((8, 8, 1))
    m = keras.Model(i, L.Dense(10)(L.Flatten()(L.BatchNormalization(name="bn")(L.Conv2D(4, 3, name="c")(i)))))
    qat = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 8, 8), bn_freeze_step=5)
    qat.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    layer = group_layers(qat)["c"]
    qat.fit(x[:320], y[:320], batch_size=64, epochs=1, verbose=0)  # 5 steps: all before the freeze
    after5 = layer.moving_variance.numpy().copy()
    assert int(layer.train_step.numpy()) == 5
    qat.fit(x[:320], y[:320], batch_size=64, epochs=1, verbose=0)  # steps 6..10: frozen
    np.testing.assert_array_equal(layer.moving_variance.numpy(), after5)


def test_calibrate_sets_activation_ranges_from_data(residual_cnn):
    x = np.random.default_rng(2).random((64, 12, 12, 1)).astype("float32")
    qat = tfmpq.quantize_model(residual_cnn, QuantPolicy.uniform(residual_cnn, 8, 8))
    tfmpq.calibrate(qat, x, batch_size=16)
    ranges = {w.name: float(w.numpy()) for w in qat.weights if w.name.endswith(("_min:0", "_max:0"))}
    in_max = [v for k, v in ranges.items() if "image_quant" in k and k.endswith("_max:0")]
    assert in_max and in_max[0] == pytest.approx(x.max(), rel=1e-6)
    stem_max = [v for k, v in ranges.items() if k.startswith("quant_stem/") and k.endswith("_max:0")][0]
    stem_out = keras.Model(qat.input, qat.get_layer("quant_stem").output)
    # calibrated on the model's own (quantized-input) data path: the range covers what flows there
    assert stem_max >= stem_out(x, training=False).numpy().max() - 1e-3
    qat_out = qat(x, training=False).numpy()
    ref = residual_cnn(x, training=False).numpy()
    assert np.abs(qat_out - ref).max() < 0.1  # 8-bit calibrated model tracks the float one


def test_asymmetric_per_tensor_weights(residual_cnn):
    qat = tfmpq.quantize_model(residual_cnn, QuantPolicy.uniform(residual_cnn, 4, 8), per_channel=False,
                               symmetric=False)
    for layer in group_layers(qat).values():
        assert not layer.symmetric and not layer.per_channel
        assert len(np.unique(layer.deployed_weights()[0])) <= 16


def test_save_and_load_round_trip(residual_cnn, tmp_path):
    x = np.random.default_rng(4).random((8, 12, 12, 1)).astype("float32")
    qat = tfmpq.quantize_model(residual_cnn, QuantPolicy.from_bits(residual_cnn, [8, 4, 3, 6, 8], 6))
    tfmpq.calibrate(qat, x)
    # .h5: tfmot 0.8.1's QuantizeLayer cannot be reloaded from the .keras format (stock tfmot fails too)
    path = tmp_path / "qat.h5"
    qat.save(path)
    with tfmpq.quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), qat(x).numpy(), atol=1e-6)
    assert policy_of(loaded) == policy_of(qat)


def test_errors(residual_cnn):
    with pytest.raises(ValueError, match="bn_freeze_step"):
        tfmpq.quantize_model(residual_cnn, QuantPolicy.uniform(residual_cnn), bn_freeze_step=-1)
    with pytest.raises(ValueError, match="not a tfmpq QAT model"):
        tfmpq.calibrate(residual_cnn, np.zeros((1, 12, 12, 1), "float32"))
    i = L.Input((4,))
    lstm_only = keras.Model(i, L.Reshape((4, 1))(i))
    with pytest.raises(ValueError, match="no quantizable layer"):
        tfmpq.quantize_model(lstm_only, QuantPolicy.from_bits(lstm_only, [], []))
