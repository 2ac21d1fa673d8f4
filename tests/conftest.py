"""Shared fixtures: small real models, seeded."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from models_for_tests import build_residual_cnn  # noqa: E402


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


@pytest.fixture(scope="session")
def digits_mlp(digits):
    """Flatten -> Dense(32, relu) -> Dense(10, softmax) trained 15 epochs on `digits`: 2 quantizable groups.
    Shared by the evaluator and search tests; nothing may change its weights."""
    from tfmpq._keras import keras

    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((8, 8, 1)), keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu", name="hidden"),
        keras.layers.Dense(10, activation="softmax", name="out"),
    ], name="digits_mlp")
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    return model
