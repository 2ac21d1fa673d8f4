"""Fixtures for the export tests: small CNNs trained on `digits` (tests/conftest.py), QAT variants.

Everything is seeded. Trained models are cached per session: the float CNN trains once (~8 s on two
cores), and each QAT variant (bits, per-channel) trains once from a copy of it (~10 s).
"""
import pytest

import tfmpq
from tfmpq._keras import keras

from export_helpers import bake_grid, compile_model, convert_int8, copy_model
from models_for_tests import build_cnn, build_plain_cnn


@pytest.fixture(scope="session")
def float_cnn(digits):
    """build_cnn trained in float on digits (8 epochs). Shared: copy it before changing it."""
    (x, y), _ = digits
    model = build_cnn()
    compile_model(model, 3e-3)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def train_qat(float_cnn, digits):
    """A function (weight_bits, per_channel=True, symmetric=True, epochs=2) -> trained QAT model, cached.

    epochs=0 calibrates the activation ranges on 256 training samples instead of training.
    """
    (x, y), _ = digits
    cache = {}

    def make(weight_bits, per_channel=True, symmetric=True, epochs=2):
        bits_key = tuple(weight_bits) if isinstance(weight_bits, (list, tuple)) else weight_bits
        key = (bits_key, per_channel, symmetric, epochs)
        if key not in cache:
            base = copy_model(float_cnn)
            policy = tfmpq.QuantPolicy.from_bits(base, weight_bits=weight_bits, activation_bits=8)
            qat = tfmpq.quantize_model(base, policy, per_channel=per_channel, symmetric=symmetric)
            compile_model(qat, 1e-3)
            keras.utils.set_random_seed(1)
            if epochs:
                qat.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
            else:
                tfmpq.calibrate(qat, x[:256])
            cache[key] = qat
        return cache[key]

    return make


@pytest.fixture(scope="session")
def plain_cnn(digits):
    """build_plain_cnn trained in float for 6 epochs."""
    (x, y), _ = digits
    model = build_plain_cnn()
    compile_model(model, 3e-3)
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def plain_int8(plain_cnn, digits):
    """(float-weights int8 model, 4-bit-grid int8 model) as bytes: stock converter, int8 I/O."""
    (x, _), _ = digits
    return convert_int8(plain_cnn, x[:100]), convert_int8(bake_grid(plain_cnn, 4), x[:100])
