"""Quantizable groups: membership, order and counts on hand-built models and Keras Applications."""
import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras

L = keras.layers


def test_residual_cnn_groups(residual_cnn):
    groups = tfmpq.quantizable_groups(residual_cnn)
    assert [g.layers for g in groups] == [
        ("stem", "stem_bn", "stem_relu"),
        ("dw", "dw_bn", "dw_relu6"),
        ("pw",),
        ("fc", "fc_bn"),
        ("head",),
    ]
    assert [g.index for g in groups] == list(range(5))
    assert [g.kind for g in groups] == ["Conv2D", "DepthwiseConv2D", "Conv2D", "Dense", "Dense"]
    assert [g.activation for g in groups] == ["relu", "relu6", "relu", "linear", "linear"]
    stem, dw, pw, fc, head = groups
    # params after folding: kernel + one bias per output channel (BN folded into the bias)
    assert (stem.kernel_params, stem.bias_params, stem.params) == (3 * 3 * 1 * 8, 8, 80)
    assert dw.kernel_params == 3 * 3 * 8 and dw.out_channels == 8
    assert fc.params == 200 * 16 + 16
    # MACs per inference: output pixels x out channels x kernel taps
    assert stem.macs == 10 * 10 * 8 * 9
    assert dw.macs == 10 * 10 * 8 * 9
    assert pw.macs == 10 * 10 * 8 * 8
    assert head.macs == 16 * 10
    assert tfmpq.float_layers(residual_cnn) == {}


def test_gene_order_is_topological_not_alphabetical():
    i = L.Input((16,))
    x = L.Dense(8, name="z_first")(i)
    x = L.Dense(8, name="m_second")(x)
    x = L.Dense(4, name="a_third")(x)
    names = [g.name for g in tfmpq.quantizable_groups(keras.Model(i, x))]
    assert names == ["z_first", "m_second", "a_third"]


def test_bn_with_two_consumers_is_not_folded():
    i = L.Input((8, 8, 3))
    c = L.Conv2D(4, 3, name="c")(i)
    b1 = L.BatchNormalization(name="b1")(c)
    b2 = L.BatchNormalization(name="b2")(c)  # conv output consumed twice: no BN can fold
    m = keras.Model(i, L.Add()([b1, b2]))
    (g,) = tfmpq.quantizable_groups(m)
    assert g.layers == ("c",) and not g.has_bn
    assert set(tfmpq.float_layers(m)) == {"b1", "b2"}


def test_concatenate_branches_and_sequential():
    i = L.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="a")(i)
    b = L.Conv2D(4, 3, padding="same", name="b")(i)
    x = L.Concatenate()([a, b])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(2, name="out")(x)
    assert [g.name for g in tfmpq.quantizable_groups(keras.Model(i, x))] == ["a", "b", "out"]
    seq = keras.Sequential([keras.Input((5, 3)), L.Conv1D(4, 2, name="c1"), L.BatchNormalization(name="bn"),
                            L.Activation("relu", name="act"), L.Flatten(), L.Dense(2, name="d")])
    assert [g.layers for g in tfmpq.quantizable_groups(seq)] == [("c1", "bn", "act"), ("d",)]


def test_unquantizable_layers_are_listed_as_float():
    i = L.Input((6, 4))
    x = L.LSTM(5, return_sequences=True, name="lstm")(i)
    x = L.Lambda(lambda t: t * 2.0, name="double")(x)
    x = L.SeparableConv1D(3, 2, name="sep")(x)
    x = L.Flatten()(x)
    x = L.Dense(2, name="out")(x)
    m = keras.Model(i, x)
    assert [g.name for g in tfmpq.quantizable_groups(m)] == ["out"]
    floats = tfmpq.float_layers(m)
    assert set(floats) == {"lstm", "double", "sep"}
    assert "recurrent" in floats["lstm"] and "Lambda" in floats["double"]


@pytest.mark.parametrize(
    "builder, kwargs, num_groups, num_bn",
    [
        ("MobileNet", dict(alpha=0.25, input_shape=(32, 32, 3), classes=10), 28, 27),
        ("MobileNetV2", dict(alpha=0.35, input_shape=(32, 32, 3), classes=10), 53, 52),
        ("ResNet50", dict(input_shape=(32, 32, 3), classes=10), 54, 53),
    ],
)
def test_keras_applications(builder, kwargs, num_groups, num_bn):
    model = getattr(keras.applications, builder)(weights=None, **kwargs)
    groups = tfmpq.quantizable_groups(model)
    assert len(groups) == num_groups
    assert sum(g.has_bn for g in groups) == num_bn
    assert tfmpq.float_layers(model) == {}
    weighted = [layer for layer in model.layers if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense))]
    assert sorted(g.name for g in groups) == sorted(layer.name for layer in weighted)
    kernels = sum(int(np.prod(layer.weights[0].shape)) for layer in weighted)
    assert sum(g.kernel_params for g in groups) == kernels


def test_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    net = Net()
    net(np.zeros((1, 3), "float32"))
    with pytest.raises(TypeError, match="subclassed"):
        tfmpq.quantizable_groups(net)


def test_keras3_model_is_converted():
    import keras as keras3

    m = keras3.Sequential([keras3.Input((3,)), keras3.layers.Dense(2, name="d")])
    assert [g.name for g in tfmpq.quantizable_groups(m)] == ["d"]  # tests/test_keras3.py: the details
