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
    """The trap of Šafář's reference: registries sharing class-level state left Dense genes at 8 bits."""
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


# -- the training forward of folded BatchNormalization (issue 19; issue 12, item 5(a)) ----------------------
def _conv_bn_relu(kind, momentum, seed=0):
    """kind -> BN(momentum) -> ReLU with random BN statistics far from any batch's (so a sigma read after
    the moving-variance update instead of before it shows)."""
    from models_for_tests import randomize_bn

    keras.utils.set_random_seed(seed)
    if kind == "Dense":
        i = L.Input((12,))
        h = L.Dense(6, name="c")(i)
    elif kind == "DepthwiseConv2D":
        i = L.Input((8, 8, 3))
        h = L.DepthwiseConv2D(3, depth_multiplier=2, name="c")(i)
    else:
        i = L.Input((8, 8, 3))
        h = L.Conv2D(6, 3, name="c")(i)
    h = L.BatchNormalization(momentum=momentum, name="bn")(h)
    return randomize_bn(keras.Model(i, L.ReLU(name="relu")(h)), seed + 1)


def _rel(got, want):
    got, want = np.asarray(got), np.asarray(want)
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))


@pytest.mark.parametrize("bn_fold", ["one_conv", "two_conv"])
@pytest.mark.parametrize("kind, momentum", [("Conv2D", 0.5), ("Conv2D", 0.9), ("Conv2D", 0.99),
                                            ("DepthwiseConv2D", 0.5), ("Dense", 0.5)])
def test_float_bits_training_equals_keras_bn(kind, momentum, bn_fold):
    """With quantization off, a group in training mode is Keras's conv -> BN(training=True) -> ReLU: outputs,
    moving statistics (Bessel-corrected variance for 4-D outputs, as Keras's fused BN) and gradients, over
    consecutive steps. Float32 rounding gives ~1e-6 here; the old code (sigma read on both sides of the
    moving-variance update) was off by 55% at momentum 0.5 and 8% at 0.99 on this model."""
    m = _conv_bn_relu(kind, momentum)
    qat = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 32, 32), bn_fold=bn_fold)
    layer, bn, conv = group_layers(qat)["c"], m.get_layer("bn"), m.get_layer("c")
    rng = np.random.default_rng(0)
    for step in range(4):
        x = (rng.normal(size=(16,) + tuple(m.input_shape[1:])) * (1 + step) + step).astype("float32")
        weights = rng.normal(size=m.output_shape[-1]).astype("float32")  # a loss that weighs channels apart
        with tf.GradientTape(persistent=True) as tape:
            want = m(x, training=True)
            got = qat(x, training=True)
            loss_want, loss_got = tf.reduce_sum(want * weights), tf.reduce_sum(got * weights)
        assert _rel(got, want) <= 1e-3, (step, _rel(got, want))
        assert _rel(layer.moving_mean.numpy(), bn.moving_mean.numpy()) <= 1e-3, step
        assert _rel(layer.moving_variance.numpy(), bn.moving_variance.numpy()) <= 1e-3, step
        grads_want = tape.gradient(loss_want, [conv.weights[0], bn.gamma, bn.beta])
        grads_got = tape.gradient(loss_got, [layer.kernel, layer.gamma, layer.beta])
        for g, w in zip(grads_got, grads_want):
            assert _rel(g, w) <= 1e-3, step


def test_one_conv_with_a_zero_gamma_channel_is_keras_bn():
    """gamma = 0 makes a channel's folded kernel 0; one_conv must not divide 0 by 0 there, and the channel
    must still learn (gamma's gradient is Keras's sum of x_hat-weighted output gradients, not 0)."""
    m = _conv_bn_relu("Conv2D", 0.9)
    bn = m.get_layer("bn")
    gamma = bn.gamma.numpy()
    gamma[[1, 4]] = 0.0
    bn.gamma.assign(gamma)
    x = np.random.default_rng(3).normal(size=(16, 8, 8, 3)).astype("float32")
    weights = np.arange(1.0, 7.0, dtype="float32")
    qat_float = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 32, 32), bn_fold="one_conv")
    qat_4bit = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 4, 32), bn_fold="one_conv")
    with tf.GradientTape(persistent=True) as tape:
        want = m(x, training=True)
        got = qat_float(x, training=True)
        got4 = qat_4bit(x, training=True)
        losses = [tf.reduce_sum(y * weights) for y in (want, got, got4)]
    grad_want = tape.gradient(losses[0], bn.gamma).numpy()
    grad_got = tape.gradient(losses[1], group_layers(qat_float)["c"].gamma).numpy()
    grad_4bit = tape.gradient(losses[2], group_layers(qat_4bit)["c"].gamma).numpy()
    assert _rel(got, want) <= 1e-3 and _rel(grad_got, grad_want) <= 1e-3
    assert np.all(grad_want[[1, 4]] != 0.0)
    layer4 = group_layers(qat_4bit)["c"]
    for value in (got4.numpy(), grad_4bit, layer4.moving_mean.numpy(), layer4.moving_variance.numpy()):
        assert np.all(np.isfinite(value))
    assert np.all(grad_4bit[[1, 4]] != 0.0)
    np.testing.assert_allclose(layer4.moving_mean.numpy()[[1, 4]], bn.moving_mean.numpy()[[1, 4]], rtol=1e-5, atol=1e-6)


def _manual_training_forward(layer, x, bn_fold):
    """The formulas of the module docstring of tfmpq.quantize.layers, written out with numpy statistics."""
    eps = layer.bn_config["epsilon"]
    gamma, beta = layer.gamma.numpy(), layer.beta.numpy()
    sigma = np.sqrt(layer.moving_variance.numpy() + eps)
    s = gamma / sigma
    q_kernel, _ = layer.deployed_weights()  # Q(W * s) with the moving sigma: what is deployed
    bias = layer.bias.numpy() if layer.bias is not None else 0.0
    conv = lambda k: tf.nn.convolution(x, k, padding="VALID").numpy()  # noqa: E731
    if bn_fold == "one_conv":
        y_c = conv(q_kernel) / s + bias
        mu, var = y_c.mean(axis=(0, 1, 2)), y_c.var(axis=(0, 1, 2))
        return gamma * (y_c - mu) / np.sqrt(var + eps) + beta
    y_f = conv(layer.kernel.numpy()) + bias
    mu, var = y_f.mean(axis=(0, 1, 2)), y_f.var(axis=(0, 1, 2))
    sigma_b = np.sqrt(var + eps)
    return conv(q_kernel) * sigma / sigma_b + beta - gamma * (mu - bias) / sigma_b


@pytest.mark.parametrize("bn_fold", ["one_conv", "two_conv"])
def test_quantized_training_forward_follows_its_formula(bn_fold):
    """At 3 bits the two modes differ in training and agree in inference (the same folded model)."""
    i = L.Input((8, 8, 3))
    m = keras.Model(i, L.BatchNormalization(momentum=0.9, name="bn")(L.Conv2D(5, 3, name="c")(i)))
    from models_for_tests import randomize_bn

    randomize_bn(m, 2)
    x = np.random.default_rng(5).normal(size=(16, 8, 8, 3)).astype("float32")
    qat = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 3, 32), bn_fold=bn_fold)
    layer = group_layers(qat)["c"]
    want = _manual_training_forward(layer, x, bn_fold)  # before the call updates the moving statistics
    got = qat(x, training=True).numpy()
    assert _rel(got, want) <= 1e-4
    other = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 3, 32),
                                 bn_fold={"one_conv": "two_conv", "two_conv": "one_conv"}[bn_fold])
    other_layer = group_layers(other)["c"]
    assert _rel(other(x, training=True).numpy(), got) > 1e-3  # 3-bit batch statistics differ from float ones
    other.set_weights(qat.get_weights())
    np.testing.assert_array_equal(other(x, training=False).numpy(), qat(x, training=False).numpy())
    np.testing.assert_array_equal(other_layer.deployed_weights()[0], layer.deployed_weights()[0])


def test_bn_fold_option_is_serialized_and_checked(tmp_path):
    m = _conv_bn_relu("Conv2D", 0.9)
    qat = tfmpq.quantize_model(m, QuantPolicy.uniform(m, 4, 8), bn_fold="two_conv")
    assert group_layers(qat)["c"].get_config()["bn_fold"] == "two_conv"
    path = tmp_path / "qat.h5"
    qat.save(path)
    with tfmpq.quantize_scope():
        loaded = keras.models.load_model(path)
    assert group_layers(loaded)["c"].bn_fold == "two_conv"
    assert group_layers(tfmpq.quantize_model(m, QuantPolicy.uniform(m, 4, 8)))["c"].bn_fold == "one_conv"
    with pytest.raises(ValueError, match=r"Invalid value for `bn_fold`: expected one of \('one_conv', 'two_conv'\). "
                                         r"Received: bn_fold='fused'"):
        tfmpq.quantize_model(m, QuantPolicy.uniform(m, 4, 8), bn_fold="fused")


def test_fake_quant_at_bits_is_tensorflows_kernel_at_a_variable_width():
    """Activations: one traced graph, TensorFlow's FakeQuantWithMinMaxVars at whatever width the variable holds."""
    from tfmpq.quantize.quantizers import fake_quant, fake_quant_at_bits

    x = tf.constant(np.random.default_rng(0).normal(size=4096).astype("float32") * 3)
    lo, hi = tf.constant(-2.5), tf.constant(4.0)
    bits = tf.Variable(2.0)
    traced = tf.function(lambda: fake_quant_at_bits(x, lo, hi, bits))
    for b in range(2, 9):
        bits.assign(float(b))
        got = traced().numpy()
        np.testing.assert_array_equal(got, tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=b).numpy())
        assert len(np.unique(got)) == 2**b
        # the grid of tfmpq's own `fake_quant` (weights), up to float rounding
        np.testing.assert_allclose(got, fake_quant(x, lo, hi, float(b), False).numpy(), rtol=0, atol=1e-6)
    bits.assign(32.0)
    np.testing.assert_array_equal(traced().numpy(), x.numpy())
    bits.assign(4.0)
    upstream = tf.constant(np.linspace(-1.0, 1.0, 4096, dtype="float32"))
    with tf.GradientTape() as tape:
        tape.watch([x, lo, hi])
        loss = tf.reduce_sum(fake_quant_at_bits(x, lo, hi, bits) * upstream)
    grad_x, grad_lo, grad_hi = tape.gradient(loss, [x, lo, hi])
    want = tf.quantization.fake_quant_with_min_max_vars_gradient(upstream, x, lo, hi, num_bits=4)[0]
    np.testing.assert_array_equal(grad_x.numpy(), want.numpy())  # straight through inside, 0 outside
    assert 0 < np.count_nonzero(grad_x.numpy()) < x.shape[0]
    assert grad_lo is None and grad_hi is None  # the range is an EMA, not trained
