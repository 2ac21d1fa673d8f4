"""Issue 27, item 4: nothing stays in float silently.

`quantize_model` and every search name the layers that stay in float and their share of the weights in
one UserWarning per model (`strict=True`: a FloatLayerError instead), and `metrics.summary` counts them at
32 bits in every average and ratio and reports `float_weight_share`.
"""
import math
import warnings

import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras

L = keras.layers


def lstm_model():
    """An LSTM (float) between the input and a Dense group: 200 float weights, 62 in the group."""
    keras.utils.set_random_seed(0)
    i = L.Input((6, 4))
    x = L.LSTM(5, return_sequences=True, name="lstm")(i)
    x = L.Flatten(name="flat")(x)
    return keras.Model(i, L.Dense(2, name="out")(x), name="with_lstm")


def float_warnings(record):
    return [str(w.message) for w in record if issubclass(w.category, UserWarning) and "stay" in str(w.message)]


def test_quantize_model_warns_once_naming_the_layers_and_their_share():
    model = lstm_model()
    policy = tfmpq.QuantPolicy.uniform(model, 4)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tfmpq.quantize_model(model, policy)
        tfmpq.quantize_model(model, policy)  # the same model: no second warning
    (text,) = float_warnings(record)
    assert text.startswith("1 layer of model `with_lstm` stays in float (not quantized), holding 76.3% of its "
                           "weights (200 of 262): `lstm` (recurrent layers stay in float).")
    assert "strict=True" in text


def test_a_model_without_float_layers_does_not_warn():
    keras.utils.set_random_seed(0)
    i = L.Input((8,))
    model = keras.Model(i, L.Dense(3)(L.Dense(4)(i)))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 8))
    assert float_warnings(record) == []


def test_strict_turns_the_warning_into_an_error():
    model = lstm_model()
    with pytest.raises(tfmpq.FloatLayerError,
                       match=r"`lstm` \(recurrent layers stay in float\)\. Received: strict=True"):
        tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 4), strict=True)


def test_a_search_warns_once_and_strict_refuses_before_any_work(tmp_path):
    model = lstm_model()
    x = np.random.default_rng(0).normal(size=(32, 6, 4)).astype("float32")
    y = np.arange(32) % 2
    with pytest.raises(tfmpq.FloatLayerError, match="`lstm`"):
        tfmpq.search.exhaustive(model, (x, y), (x, y), run_dir=tmp_path / "strict", verbose=0, bits=(4, 8),
                                strict=True)
    assert not (tmp_path / "strict").exists()  # refused before the run directory was made
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        result = tfmpq.search.exhaustive(lstm_model(), (x, y), (x, y), verbose=0, bits=(4, 8))
    assert len(result.candidates) == 2  # the search ran: every candidate quantized without another warning
    assert len(float_warnings(record)) == 1


def test_summary_counts_float_layers_at_32_bits():
    model = lstm_model()
    groups = tfmpq.quantizable_groups(model)
    float_weights, float_macs = tfmpq.graph.float_costs(model)["lstm"]
    assert float_weights == 4 * 5 * 4 + 5 * 4 * 5 + 4 * 5  # kernel, recurrent kernel, bias
    assert float_macs == (4 * 5 * 4 + 5 * 4 * 5) * 6  # every kernel weight once per time step
    s = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4, 4))
    (out,) = groups
    assert s["float_weight_share"] == pytest.approx(200 / 262)
    assert tfmpq.float_weight_share(model) == pytest.approx(200 / 262)
    assert s["avg_weight_bits"] == pytest.approx((4 * out.kernel_params + 32 * 200) / (out.kernel_params + 200))
    assert s["compression_ratio_eq9"] == pytest.approx(32 / s["avg_weight_bits"])
    assert s["macs"] == out.macs + float_macs
    # the Dense is fed by the float LSTM's output (re-quantized at 8 bits); the LSTM multiplies at 32 x 32
    assert s["bops"] == pytest.approx(out.macs * 4 * 8 + float_macs * 32 * 32)
    assert s["avg_op_bits"] == pytest.approx(math.sqrt(s["bops"] / s["macs"]))
    assert s["avg_activation_bits"] == pytest.approx((8 * out.macs + 32 * float_macs) / s["macs"])
    assert s["weight_bytes"] == pytest.approx(tfmpq.metrics.group_weight_bytes(out, 4) + 4 * 200)
    assert s["compression_ratio"] == pytest.approx(s["float_weight_bytes"] / s["weight_bytes"])
    # from the groups alone there is nothing outside them
    assert tfmpq.metrics.summary(groups, tfmpq.QuantPolicy.uniform(model, 4, 4))["float_weight_share"] == 0.0


def test_a_nested_block_is_quantized_not_reported_float():
    """The issue's case: a Sequential Conv+BN+ReLU block in a functional model was 96% float and
    summarised as 4-bit; flattened, every weight is in a group."""
    keras.utils.set_random_seed(0)
    block = keras.Sequential([L.Conv2D(32, 3, padding="same", name="conv"), L.BatchNormalization(name="bn"),
                              L.ReLU(name="relu"), L.Conv2D(32, 3, padding="same", name="conv2")], name="block")
    i = L.Input((8, 8, 3))
    x = L.GlobalAveragePooling2D()(block(i))
    model = keras.Model(i, L.Dense(2, name="head")(x))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 4))
    assert float_warnings(record) == []
    s = tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4))
    assert s["float_weight_share"] == 0.0 and s["avg_weight_bits"] == 4.0
    assert [g.name for g in tfmpq.quantizable_groups(model)] == ["block/conv", "block/conv2", "head"]
