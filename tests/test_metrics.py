"""Cost metrics against hand-computed values (seed 000 eq. 9-11)."""
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
    assert s4["avg_op_bits"] == pytest.approx(4.0)
    assert s4["weight_bytes"] == kernel * 0.5 + bias * 4 + channels * metrics.QPARAM_BYTES
    assert s4["compression_ratio"] == pytest.approx(s4["float_weight_bytes"] / s4["weight_bytes"])


def test_mixed_policy_weighting(residual_cnn):
    groups = quantizable_groups(residual_cnn)
    p = QuantPolicy.from_bits(residual_cnn, [8, 4, 2, 6, 32], [8, 4, 8, 8, 8])
    s = metrics.summary(residual_cnn, p)
    kp = [g.kernel_params for g in groups]
    macs = [g.macs for g in groups]
    assert s["avg_weight_bits"] == pytest.approx(sum(b * n for b, n in zip(p.weight_bits, kp)) / sum(kp))
    expect = math.sqrt(sum(w * a * m for w, a, m in zip(p.weight_bits, p.activation_bits, macs)) / sum(macs))
    assert s["avg_op_bits"] == pytest.approx(expect)
    # the float group counts all its params at 32 bits and no quantization parameters
    assert s["groups"][4]["weight_bytes"] == groups[4].params * 4
