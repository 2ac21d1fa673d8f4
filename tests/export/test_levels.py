"""count_levels: how many distinct weight values a .tflite really deploys (the trap the exporter avoids)."""
import numpy as np

from tfmpq.export import count_levels
from tfmpq.export.flatbuffer import _unpack_int4, operator_names, weight_tensors


def test_stock_conversion_of_float_weights_is_not_a_4_bit_model(plain_int8):
    float_weights, on_grid = plain_int8
    stock = count_levels(float_weights)
    baked = count_levels(on_grid)
    assert set(stock) == set(baked) and len(stock) == 4  # conv1, dw, conv2, logits
    conv2 = next(v for k, v in stock.items() if "conv2" in k)
    assert conv2["op"] == "CONV_2D" and conv2["type"] == "INT8" and conv2["per_channel"]
    assert conv2["shape"] == [16, 3, 3, 8] and conv2["channel_axis"] == 0 and conv2["params"] == 1152
    # the converter re-quantizes float weights to 8 bits: far more than 16 values in a 72-weight channel
    assert conv2["max_levels_per_channel"] > 40
    # weights already on the 4-bit grid stay on it: <= 2^4 - 1 values (symmetric narrow range) per channel
    for name, levels in baked.items():
        assert levels["max_levels_per_channel"] <= 15, name
    dw = next(v for k, v in baked.items() if "/dw/" in k)
    assert dw["op"] == "DEPTHWISE_CONV_2D" and dw["channel_axis"] == 3


def test_weight_tensors_reads_values_scales_and_ops(plain_int8):
    weights = weight_tensors(plain_int8[1])
    assert [w.op for w in weights] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    for w in weights:
        assert w.values.dtype == np.int8 and w.values.shape == w.shape
        assert np.all(w.zero_points == 0)  # TFLite int8 weights are symmetric
        assert len(w.scales) == w.shape[w.channel_axis]
    assert operator_names(plain_int8[1]) == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "MEAN", "FULLY_CONNECTED"]


def test_int4_tensors_are_unpacked_low_nibble_first():
    # TFLite INT4 (type 17): two's-complement nibbles, element 2i in the low nibble of byte i
    packed = np.array([0x21, 0xF8, 0x07], np.uint8)  # (1, 2), (-8, -1), (7, 0)
    np.testing.assert_array_equal(_unpack_int4(packed, 6), [1, 2, -8, -1, 7, 0])
    np.testing.assert_array_equal(_unpack_int4(packed, 5), [1, 2, -8, -1, 7])
