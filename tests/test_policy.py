"""QuantPolicy: constructors, validation errors, equality, hashing and JSON round trip."""
import pytest

import tfmpq
from tfmpq import QuantPolicy
from tfmpq._keras import keras


def test_uniform_and_from_bits(residual_cnn):
    p = QuantPolicy.uniform(residual_cnn, 4, 8)
    assert p.genes == (4, 4, 4, 4, 4) and p.activation_bits == (8,) * 5
    q = QuantPolicy.from_bits(residual_cnn, weight_bits=[8, 4, 3, 4, 8], activation_bits=8)
    assert q.genes == (8, 4, 3, 4, 8)
    assert q.bits_of("dw") == (4, 8)
    by_name = QuantPolicy.from_bits(residual_cnn, {"stem": 8, "dw": 4, "pw": 3, "fc": 4, "head": 8}, 6)
    assert by_name.weight_bits == q.weight_bits and by_name.activation_bits == (6,) * 5
    assert QuantPolicy.from_genes(residual_cnn, (8, 4, 3, 4, 8)) == q


def test_equality_hash_json(residual_cnn):
    a = QuantPolicy.from_bits(residual_cnn, [8, 4, 3, 4, 32], [8, 8, 4, 8, 16])
    b = QuantPolicy.from_json(a.to_json())
    assert a == b and hash(a) == hash(b)
    assert len({a, b, QuantPolicy.uniform(residual_cnn, 8, 8)}) == 2
    assert a.replace(dw=2).genes == (8, 2, 3, 4, 32)
    assert a.replace(dw=2) != a


@pytest.mark.parametrize("bits", [1, 9, 12, 64, 4.0, "4", True])
def test_bit_width_out_of_range_names_the_group(residual_cnn, bits):
    with pytest.raises(ValueError, match=r"expected an integer in 2\.\.8, or 16/32.*group `dw`"):
        QuantPolicy.from_bits(residual_cnn, weight_bits=[8, bits, 8, 8, 8])


def test_wrong_length(residual_cnn):
    with pytest.raises(ValueError, match=r"expected 5 bit-widths.*stem, dw, pw, fc, head.*Received 3"):
        QuantPolicy.from_bits(residual_cnn, weight_bits=[8, 4, 4])
    with pytest.raises(ValueError, match="unknown group"):
        QuantPolicy.from_bits(residual_cnn, weight_bits={"nope": 4})


def test_policy_for_another_model(residual_cnn):
    i = keras.Input((4,))
    other = keras.Model(i, keras.layers.Dense(2, name="only")(i))
    p = QuantPolicy.uniform(other, 8, 8)
    with pytest.raises(ValueError, match="made for another model: the model has 5 groups, the policy 1"):
        tfmpq.quantize_model(residual_cnn, p)
    with pytest.raises(ValueError, match="made for another model"):
        tfmpq.metrics.summary(residual_cnn, p)
