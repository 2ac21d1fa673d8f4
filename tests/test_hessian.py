"""Hutchinson Hessian traces against the exact Hessian of a tiny MLP; folded kernels; the Omega table."""
import math

import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras, tf
from tfmpq.hessian import folded_kernels, hessian_trace, omega_table, quantization_error

L = keras.layers


def _tiny_mlp(with_bn: bool):
    """4 -> Dense(5) [-> BN] -> tanh -> Dense(3, softmax): 35 kernel weights, exact Hessian is cheap."""
    keras.utils.set_random_seed(1)
    i = L.Input((4,))
    x = L.Dense(5, name="hidden")(i)
    if with_bn:
        x = L.BatchNormalization(name="hidden_bn")(x)
    x = L.Activation("tanh", name="act")(x)
    out = L.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(i, out, name="tiny")
    if with_bn:
        bn = model.get_layer("hidden_bn")
        rng = np.random.default_rng(2)
        bn.set_weights([rng.uniform(0.5, 2.0, 5).astype("float32"), rng.normal(0, 0.3, 5).astype("float32"),
                        rng.normal(0, 0.3, 5).astype("float32"), rng.uniform(0.3, 3.0, 5).astype("float32")])
    return model


def _data(n=96):
    rng = np.random.default_rng(3)
    return rng.normal(size=(n, 4)).astype("float32"), rng.integers(0, 3, n).astype("int64")


def _folded_twin(model):
    """The float model with BN folded by hand into Dense weights (an independent construction)."""
    bn = model.get_layer("hidden_bn")
    gamma, beta, mean, var = bn.get_weights()
    s = gamma / np.sqrt(var + bn.epsilon)
    w, b = model.get_layer("hidden").get_weights()
    i = L.Input((4,))
    x = L.Dense(5, name="hidden")(i)
    x = L.Activation("tanh")(x)
    out = L.Dense(3, activation="softmax", name="out")(x)
    twin = keras.Model(i, out)
    twin.get_layer("hidden").set_weights([w * s, (b - mean) * s + beta])
    twin.get_layer("out").set_weights(model.get_layer("out").get_weights())
    return twin


def _exact_hessian(model, x, y):
    """The full Hessian of the mean loss w.r.t. both kernels (flattened, hidden first), by jacobians."""
    kernels = [model.get_layer("hidden").kernel, model.get_layer("out").kernel]
    loss = keras.losses.SparseCategoricalCrossentropy()
    with tf.GradientTape(persistent=True) as outer:
        with tf.GradientTape() as inner:
            value = loss(y, model(x, training=False))
        grads = inner.gradient(value, kernels)
        flat = tf.concat([tf.reshape(g, [-1]) for g in grads], 0)
    blocks = [tf.reshape(outer.jacobian(flat, k), (flat.shape[0], -1)) for k in kernels]
    return np.concatenate([b.numpy() for b in blocks], axis=1).astype(np.float64)


@pytest.mark.parametrize("with_bn", [False, True])
def test_hutchinson_matches_the_exact_hessian(with_bn):
    model = _tiny_mlp(with_bn)
    x, y = _data()
    twin = _folded_twin(model) if with_bn else model  # the Hessian w.r.t. the folded kernel
    h = _exact_hessian(twin, x, y)
    np.testing.assert_allclose(h, h.T, atol=1e-5)
    sizes = [20, 15]
    blocks = np.split(np.arange(35), np.cumsum(sizes)[:-1])
    m, seed = 300, 5
    est = hessian_trace(model, (x, y), num_probes=m, num_samples=None, batch_size=40, seed=seed)
    assert est.groups == ("hidden", "out") and est.params == {"hidden": 20, "out": 15}

    # 1. Each probe's value is z_g^T (H z)_g for the probe the estimator drew: exact arithmetic.
    rng = np.random.default_rng(seed)
    shapes = [(4, 5), (5, 3)]
    for p in range(m):
        z = np.concatenate([(rng.integers(0, 2, size=s).astype(np.float32) * 2.0 - 1.0).ravel() for s in shapes])
        hz = h @ z
        want = [float(z[b] @ hz[b]) for b in blocks]
        np.testing.assert_allclose(est.samples[p], want, rtol=2e-4, atol=2e-5)

    # 2. The mean is within a derived bound of the exact trace. Per probe, the variance of
    # z_g^T (H z)_g is 2 sum_{i!=j in g} H_ij^2 + sum_{i in g, j not in g} H_ij^2 (module docstring);
    # the mean of m probes has that / m. Chebyshev: |error| > 10 sd has probability <= 1 %.
    for name, b in zip(est.groups, blocks):
        exact = float(np.trace(h[np.ix_(b, b)]))
        inside = h[np.ix_(b, b)]
        off = 2.0 * (np.sum(inside ** 2) - np.sum(np.diag(inside) ** 2))
        cross = np.sum(h[b] ** 2) - np.sum(inside ** 2)
        sd = math.sqrt((off + cross) / m)
        assert abs(est.trace[name] - exact) <= 10 * sd + 1e-6, (name, est.trace[name], exact, sd)
        assert sd < 0.5 * abs(exact), "the bound must be tight enough to mean something"
        # the reported standard error estimates that sd
        assert 0.5 * sd < est.std_error[name] < 2.0 * sd
    # the public face: the same numbers, totals or per-parameter averages (fewer probes: the same draws)
    few = hessian_trace(model, (x, y), num_probes=8, num_samples=None, batch_size=40, seed=seed)
    np.testing.assert_allclose(few.samples, est.samples[:8], rtol=1e-5, atol=1e-6)
    assert tfmpq.sensitivity(model, (x, y), num_probes=8, num_samples=None, batch_size=96, seed=seed) == \
        pytest.approx(few.trace, rel=1e-5, abs=1e-6)  # one batch of 96 = three of 40, weighted by size
    avg = tfmpq.sensitivity(model, (x, y), average=True, num_probes=8, num_samples=None, batch_size=40, seed=seed)
    assert avg == pytest.approx({k: few.trace[k] / few.params[k] for k in few.trace})


def _bn_convnet():
    """Conv2D+BN, DepthwiseConv2D (multiplier 2)+BN, Dense+BN, Dense; random BN statistics."""
    from models_for_tests import randomize_bn

    keras.utils.set_random_seed(4)
    i = L.Input((6, 6, 2))
    x = L.ReLU()(L.BatchNormalization(name="c_bn")(L.Conv2D(3, 3, name="c")(i)))
    x = L.BatchNormalization(name="d_bn")(L.DepthwiseConv2D(3, depth_multiplier=2, name="d")(x))
    x = L.Flatten()(x)
    x = L.BatchNormalization(name="f_bn")(L.Dense(4, name="f")(x))
    x = L.Dense(3, activation="softmax", name="head")(x)
    return randomize_bn(keras.Model(i, x), seed=4)


def test_folded_kernels_are_what_the_qat_layer_folds():
    model = _bn_convnet()
    folded = folded_kernels(model)
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 8))
    layers = tfmpq.group_layers(qat)
    assert list(folded) == ["c", "d", "f", "head"]
    for name, kernel in folded.items():
        np.testing.assert_allclose(kernel, layers[name].folded()[0].numpy(), rtol=1e-6, atol=1e-7)


def test_omega_is_trace_times_squared_error_over_params(residual_cnn):
    groups = tfmpq.quantizable_groups(residual_cnn)
    traces = {g.name: float(i + 1) for i, g in enumerate(groups)}
    traces[groups[0].name] = -3.0  # a negative estimate is clipped to 0
    table = omega_table(residual_cnn, traces, bits=(2, 4, 8, 32))
    err = quantization_error(residual_cnn, bits=(2, 4, 8, 32))
    for g in groups[1:]:
        for b in (2, 4, 8):
            assert table[g.name][b] == pytest.approx(traces[g.name] * err[g.name][b] / g.kernel_params)
        assert table[g.name][2] > table[g.name][4] > table[g.name][8] > 0 == table[g.name][32]
    assert all(v == 0 for v in table[groups[0].name].values())
    # the error is the quantizer's: recompute one group by hand (per-channel symmetric, narrow range)
    g = next(g for g in groups if g.kind == "Conv2D")
    w = folded_kernels(residual_cnn)[g.name].astype(np.float64)
    m = np.abs(w).reshape(-1, w.shape[-1]).max(0)
    scale = m / 7.0
    q = np.clip(np.floor(w / scale + 0.5), -7, 7) * scale
    assert err[g.name][4] == pytest.approx(float(np.sum((q - w) ** 2)), rel=1e-4)


def test_bad_arguments_are_named(residual_cnn):
    x = np.zeros((4, 12, 12, 1), "float32")
    y = np.zeros(4, "int64")
    with pytest.raises(ValueError, match="`method`"):
        tfmpq.sensitivity(residual_cnn, (x, y), method="fisher")
    with pytest.raises(ValueError, match="`num_probes`"):
        tfmpq.sensitivity(residual_cnn, (x, y), num_probes=0)
    with pytest.raises(ValueError, match="`data`"):
        tfmpq.sensitivity(residual_cnn, (x[:, :5], y))
    with pytest.raises(ValueError, match="no trace for groups"):
        omega_table(residual_cnn, {"stem": 1.0})


# ---- per channel: what a channel-wise search ranks and clusters channels by (issue 25) ------------------
def test_channel_sensitivity_is_the_channel_error_or_its_omega(residual_cnn):
    from tfmpq.hessian import channel_quantization_error, channel_sensitivity

    groups = tfmpq.quantizable_groups(residual_cnn)
    first = groups[0].name
    errors = channel_quantization_error(residual_cnn, bits=(2, 3))
    weight = channel_sensitivity(residual_cnn, "weight", bits=2, group_bits={first: 3})
    traces = {g.name: np.linspace(-1.0, 2.0, g.out_channels) for g in groups}
    hessian = channel_sensitivity(residual_cnn, "hessian", bits=2, group_bits={first: 3}, channel_traces=traces)
    for g in groups:
        b = 3 if g.name == first else 2
        np.testing.assert_array_equal(weight[g.name], errors[g.name][b])
        # HAWQ-V3 eq. 7 per channel: max(Tr_c, 0) * ||Q_b(w_c) - w_c||^2 / n_c
        want = np.maximum(traces[g.name], 0) * errors[g.name][b] / (g.kernel_params / g.out_channels)
        np.testing.assert_allclose(hessian[g.name], want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"the 'hessian' channel ranking estimates Hessian traces and needs"):
        channel_sensitivity(residual_cnn, "hessian")
    with pytest.raises(ValueError, match=r"Invalid value for `channel_ranking`: expected one of"):
        channel_sensitivity(residual_cnn, "norm")


def test_cluster_omega_of_one_cluster_is_the_groups_omega(residual_cnn):
    from tfmpq.hessian import cluster_omega

    groups = tfmpq.quantizable_groups(residual_cnn)
    rng = np.random.default_rng(0)
    traces = {g.name: rng.uniform(0.0, 1.0, g.out_channels) for g in groups}
    whole = cluster_omega(residual_cnn, traces, {g.name: [range(g.out_channels)] for g in groups}, bits=(2, 4))
    layer = omega_table(residual_cnn, {g: float(t.sum()) for g, t in traces.items()}, bits=(2, 4))
    halves = cluster_omega(residual_cnn, traces, {g.name: [range(0, g.out_channels, 2), range(1, g.out_channels, 2)]
                                                  for g in groups}, bits=(2, 4))
    for g in groups:
        assert whole[g.name][0] == pytest.approx(layer[g.name], rel=1e-9)
        k = list(range(0, g.out_channels, 2))
        per_channel = g.kernel_params / g.out_channels
        err = tfmpq.hessian.channel_quantization_error(residual_cnn, bits=(2,))[g.name][2]
        assert halves[g.name][0][2] == pytest.approx(traces[g.name][k].sum() * err[k].sum() / (per_channel * len(k)))
