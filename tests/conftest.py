"""Shared fixtures: small real models, seeded."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tfmpq._keras import keras  # noqa: E402

L = keras.layers


def _randomize_bn(model, seed=0):
    """Give every BatchNormalization non-trivial statistics so folding is really exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.3, beta.shape).astype("float32"),
                rng.normal(0, 0.3, mean.shape).astype("float32"),
                rng.uniform(0.5, 2.0, var.shape).astype("float32"),
            ])
    return model


def build_residual_cnn(seed=0):
    """Conv+BN+ReLU, DepthwiseConv+BN+ReLU6, Add, Conv with relu attribute, pooling, Dense+BN, softmax Dense."""
    keras.utils.set_random_seed(seed)
    i = L.Input((12, 12, 1), name="image")
    x = L.Conv2D(8, 3, name="stem")(i)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.ReLU(6.0, name="dw_relu6")(y)
    x = L.Add(name="residual")([x, y])
    x = L.Conv2D(8, 1, activation="relu", name="pw")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(16, name="fc")(x)
    x = L.BatchNormalization(name="fc_bn")(x)
    x = L.Dense(10, activation="softmax", name="head")(x)
    return _randomize_bn(keras.Model(i, x, name="residual_cnn"), seed)


@pytest.fixture(scope="session")
def residual_cnn():
    return build_residual_cnn()


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's bundled digits (real data, no download): 8x8x1 in [0, 1]."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = d.target.astype("int64")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    x, y = x[idx], y[idx]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])
