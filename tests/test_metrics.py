"""Cost metrics against hand-computed values (Tmamna et al. eq. 9-11)."""
import math

import pytest

from tfmpq import QuantPolicy, metrics, quantizable_groups


def test_uniform_8_and_4(residual_cnn):
    groups = quantizable_groups(residual_cnn)
    s8 = metrics.summary(residual_cnn, QuantPolicy.uniform(residual_cnn, 8, 8))
    kernel = sum(g.kernel_params for g in groups)
    bias = sum(g.bias_params for g in groups)
    channels = sum(g.out_channels for g in groups)
    assert s8["weight_bytes"] == kernel * 1 + bias * 4 + channels * metrics.QPARAM_BYTES
    assert s8["float_weight_bytes"] == (kernel + bias) * 4
    assert s8["avg_weight_bits"] == 8 and s8["avg_op_bits"] == 8
    assert s8["compression_ratio_eq9"] == 4
    assert s8["bops"] == 64 * sum(g.macs for g in groups)
    s4 = metrics.summary(residual_cnn, QuantPolicy.uniform(residual_cnn, 4, 4))
    # 4-bit activations everywhere, but the stem sees the 8-bit input and `pw` the 8-bit Add output:
    # 4 x (8*7200 + 4*7200 + 8*6400 + 4*3200 + 4*160) = 604,160 BOPs over 24,160 MACs
    assert s4["bops"] == 604_160
    assert s4["avg_op_bits"] == pytest.approx(math.sqrt(604_160 / 24_160))
    assert s4["weight_bytes"] == kernel * 0.5 + bias * 4 + channels * metrics.QPARAM_BYTES
    assert s4["compression_ratio"] == pytest.approx(s4["float_weight_bytes"] / s4["weight_bytes"])


def test_mixed_policy_weighting(residual_cnn):
    groups = quantizable_groups(residual_cnn)
    p = QuantPolicy.from_bits(residual_cnn, [8, 4, 2, 6, 32], [8, 4, 8, 8, 8])
    s = metrics.summary(residual_cnn, p)
    kp = [g.kernel_params for g in groups]
    assert s["avg_weight_bits"] == pytest.approx(sum(b * n for b, n in zip(p.weight_bits, kp)) / sum(kp))
    # the float group counts all its params at 32 bits and no quantization parameters
    assert s["groups"][4]["weight_bytes"] == groups[4].params * 4


def test_bops_count_the_bits_of_the_tensor_that_feeds_each_group(residual_cnn):
    """Issue 12 item 4, by hand: image(12x12x1) -> stem 3x3 valid (8) -> dw 3x3 -> Add(stem, dw) -> pw 1x1 (8)
    -> MaxPool -> Flatten -> fc Dense(16)+BN -> head Dense(10)."""
    groups = quantizable_groups(residual_cnn)
    assert [g.name for g in groups] == ["stem", "dw", "pw", "fc", "head"]
    assert [g.macs for g in groups] == [10 * 10 * 8 * 9, 10 * 10 * 8 * 9, 10 * 10 * 8 * 8, 200 * 16, 16 * 10]
    # stem: the model input; dw: stem's output; pw: the Add (re-quantized at 8 bits); fc: pw's output
    # through MaxPool and Flatten (they keep its grid); head: fc's output.
    assert [g.input_group for g in groups] == [None, "stem", None, "pw", "fc"]
    p = QuantPolicy.from_bits(residual_cnn, weight_bits=[8, 4, 2, 6, 3], activation_bits=[4, 6, 5, 3, 2])
    s = metrics.summary(residual_cnn, p)
    assert [g["input_bits"] for g in s["groups"]] == [8, 4, 8, 5, 3]
    # 8*8*7200 + 4*4*7200 + 2*8*6400 + 6*5*3200 + 3*3*160; head's own 2 activation bits (the
    # softmax output) feed no multiply and cost nothing
    assert s["bops"] == 460_800 + 115_200 + 102_400 + 96_000 + 1_440 == 775_840
    assert s["macs"] == 24_160
    assert s["avg_op_bits"] == pytest.approx(math.sqrt(775_840 / 24_160))
    assert s["avg_activation_bits"] == pytest.approx((8 * 7200 + 4 * 7200 + 8 * 6400 + 5 * 3200 + 3 * 160) / 24_160)
    cheaper_logits = metrics.summary(residual_cnn, QuantPolicy.from_bits(
        residual_cnn, weight_bits=[8, 4, 2, 6, 3], activation_bits=[4, 6, 5, 3, 8]))
    assert cheaper_logits["bops"] == s["bops"]
