"""bn_fold (issue 19): "one_conv" and "two_conv" train BN-folded groups differently (the batch statistics of
the quantized conv vs. of a float one), but after training they are one folded model: the same inference
outputs and the same exported file on the same weights; and on a small real model both train as well."""
import math

import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras
from tfmpq.export import export_tflite
from tfmpq.quantize import group_layers

from export_helpers import compile_model, copy_model, keras_accuracy

MODES = ("one_conv", "two_conv")
BITS = 3  # where the two modes' batch statistics differ most (float statistics vs 3-bit ones)


def _qat(float_cnn, bn_fold):
    base = copy_model(float_cnn)
    policy = tfmpq.QuantPolicy.from_bits(base, weight_bits=BITS, activation_bits=8)
    qat = tfmpq.quantize_model(base, policy, bn_fold=bn_fold)
    compile_model(qat, 1e-3)
    return qat


@pytest.fixture(scope="module")
def trained(float_cnn, digits):
    """Both modes fine-tuned 2 epochs from the float CNN, same seed and data order."""
    (x, y), _ = digits
    out = {}
    for mode in MODES:
        qat = _qat(float_cnn, mode)
        keras.utils.set_random_seed(1)
        qat.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=True)
        out[mode] = qat
    return out


@pytest.mark.slow
def test_both_modes_train_as_well(trained, float_cnn, digits):
    """3-bit QAT from the float CNN on 1,400 digits, scored on the 397 held-out ones.

    Margin: 4 standard deviations of the difference of two accuracies measured on n = 397 images,
    4 * sqrt(2 p (1 - p) / n) at the float accuracy p (5.8 pp at p = 0.957), a bound that training
    noise between two correct forwards stays under, while a broken forward (wrong statistics, no
    gradient) loses tens of points."""
    _, (xt, yt) = digits
    p = keras_accuracy(float_cnn, xt, yt)
    margin = 4 * math.sqrt(2 * p * (1 - p) / len(yt))
    acc = {mode: keras_accuracy(trained[mode], xt, yt) for mode in MODES}
    print(f"float {p:.4f}, 3-bit QAT {acc}, margin {margin:.4f}")
    assert abs(acc["one_conv"] - acc["two_conv"]) <= margin, (acc, margin)
    for mode in MODES:
        assert acc[mode] >= p - margin, (mode, acc, p, margin)


def test_both_modes_are_the_same_folded_model(float_cnn, digits, tmp_path):
    """one_conv-trained weights (10 steps: kernels and moving statistics moved) in a two_conv model:
    bit-equal inference, deployed weights and exported file."""
    (x, y), (xt, _) = digits
    one = _qat(float_cnn, "one_conv")
    keras.utils.set_random_seed(1)
    one.fit(x[:320], y[:320], epochs=1, batch_size=32, verbose=0)
    two = _qat(float_cnn, "two_conv")
    two.set_weights(one.get_weights())
    np.testing.assert_array_equal(two.predict(xt, verbose=0), one.predict(xt, verbose=0))
    layers_one, layers_two = group_layers(one), group_layers(two)
    for name, layer in layers_one.items():
        for a, b in zip(layer.deployed_weights(), layers_two[name].deployed_weights()):
            np.testing.assert_array_equal(a, b)
    files = {}
    for mode, model in (("one_conv", one), ("two_conv", two)):
        path = tmp_path / f"{mode}.tflite"
        export_tflite(model, path, representative_data=xt[:100])
        files[mode] = path.read_bytes()
    assert files["one_conv"] == files["two_conv"]
