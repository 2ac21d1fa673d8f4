"""Issue 27, item 2: SeparableConv2D as its two groups, Conv2DTranspose as a group.

A SeparableConv2D is split (``tfmpq.convert.flatten``) into ``<name>/depthwise`` (DepthwiseConv2D) and
``<name>/pointwise`` (a 1x1 Conv2D with the bias, the activation and the BatchNormalization after it),
each with its own bits; a Conv2DTranspose is one group with its BN and ReLU folded in
(``QuantTransposeGroupLayer``). Both export on their trained grids and run bit-exact on LiteRT and TFLite
Micro.
"""
import numpy as np
import pytest

import tfmpq
from tfmpq._keras import keras

from export_helpers import compile_model
from models_for_tests import randomize_bn

L = keras.layers


def separable_model():
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(i)
    x = L.SeparableConv2D(16, 3, strides=2, padding="same", depth_multiplier=2, name="sep")(x)
    x = L.BatchNormalization(momentum=0.9, name="sep_bn")(x)
    x = L.ReLU(6.0, name="sep_relu6")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return randomize_bn(keras.Model(i, L.Dense(10, name="logits")(x), name="separable"))


def transpose_model():
    keras.utils.set_random_seed(0)
    i = L.Input((8, 8, 1), name="image")
    x = L.Conv2D(8, 3, strides=2, padding="same", name="down")(i)
    x = L.Conv2DTranspose(6, 3, strides=2, padding="same", name="up")(x)
    x = L.BatchNormalization(momentum=0.9, name="up_bn")(x)
    x = L.ReLU(name="up_relu")(x)
    x = L.Conv2DTranspose(4, 2, strides=2, use_bias=False, name="up2")(x)
    x = L.Flatten(name="flat")(x)
    return randomize_bn(keras.Model(i, L.Dense(10, name="logits")(x), name="transposed"))


def test_separable_conv2d_is_two_groups_with_the_bn_in_the_pointwise_one():
    model = separable_model()
    groups = {g.name: g for g in tfmpq.quantizable_groups(model)}
    assert list(groups) == ["stem", "sep/depthwise", "sep/pointwise", "logits"]
    dw, pw = groups["sep/depthwise"], groups["sep/pointwise"]
    assert (dw.kind, dw.layers, dw.has_bn, dw.bias_params) == ("DepthwiseConv2D", ("sep/depthwise",), False, 0)
    assert (pw.kind, pw.layers, pw.activation) == ("Conv2D", ("sep/pointwise", "sep_bn", "sep_relu6"), "relu6")
    sep = model.get_layer("sep")
    assert dw.kernel_params == int(np.prod(sep.depthwise_kernel.shape)) == 3 * 3 * 8 * 2
    assert pw.kernel_params == int(np.prod(sep.pointwise_kernel.shape)) == 16 * 16
    assert dw.macs == 4 * 4 * 16 * 9 and pw.macs == 4 * 4 * 16 * 16  # stride 2 on the depthwise part
    assert pw.input_group == "sep/depthwise"  # the pointwise part reads the depthwise output's grid
    assert tfmpq.float_layers(model) == {}
    x = np.random.default_rng(0).random((16, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(tfmpq.as_tf_keras(model)(x), model(x), rtol=0, atol=1e-5)
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 32, 32))  # no quantization: the float model
    np.testing.assert_allclose(qat(x, training=False), model(x), rtol=0, atol=1e-5)


def test_conv2d_transpose_is_a_group_with_bn_and_relu_folded():
    model = transpose_model()
    groups = {g.name: g for g in tfmpq.quantizable_groups(model)}
    up, up2 = groups["up"], groups["up2"]
    assert (up.kind, up.layers, up.has_bn, up.activation) == ("Conv2DTranspose", ("up", "up_bn", "up_relu"), True,
                                                               "relu")
    assert (up.kernel_params, up.out_channels, up.bias_params) == (3 * 3 * 6 * 8, 6, 6)
    assert up.macs == 4 * 4 * 3 * 3 * 6 * 8  # every input position meets the whole kernel
    assert (up2.out_channels, up2.bias_params, up2.macs) == (4, 0, 8 * 8 * 2 * 2 * 4 * 6)
    x = np.random.default_rng(0).random((32, 8, 8, 1)).astype("float32")
    qat = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 32, 32))
    np.testing.assert_allclose(qat(x, training=False), model(x), rtol=0, atol=1e-5)
    # training forward (batch statistics) as Keras's Conv2DTranspose -> BatchNormalization(training=True)
    np.testing.assert_allclose(qat(x, training=True), model(x, training=True), rtol=0, atol=1e-4)
    assert isinstance(tfmpq.group_layers(qat)["up"], tfmpq.quantize.QuantTransposeGroupLayer)
    # the Hessian's folded kernel is the QAT layer's, in Keras's (kh, kw, out, in) layout
    fresh = tfmpq.quantize_model(model, tfmpq.QuantPolicy.uniform(model, 32, 32))
    folded = tfmpq.group_layers(fresh)["up"].folded()[0].numpy()
    np.testing.assert_allclose(tfmpq.hessian.folded_kernels(model)["up"], folded.transpose(0, 1, 3, 2), atol=1e-6)


@pytest.mark.parametrize("builder,bits", [(separable_model, {"sep/depthwise": 3, "sep/pointwise": 5}),
                                          (transpose_model, {"up": 4, "up2": 3})], ids=["separable", "transpose"])
def test_trained_groups_export_on_their_grids(builder, bits, digits, tmp_path):
    (x, y), (xt, yt) = digits
    model = builder()
    compile_model(model, 3e-3)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    names = [g.name for g in tfmpq.quantizable_groups(model)]
    policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=[bits.get(n, 8) for n in names])
    qat = tfmpq.quantize_model(model, policy)
    compile_model(qat, 1e-3)
    qat.fit(x, y, epochs=2, batch_size=32, verbose=0)
    report = tfmpq.export_tflite(qat, tmp_path / "m.tflite", representative_data=x[:256])
    by_name = {g["name"]: g for g in report.groups}
    for name, b in bits.items():
        g = by_name[name]
        assert g["weight_bits"] == b and g["exact_grid"], g
        assert g["max_levels_per_channel"] <= 2**b - 1
    raw_litert = tfmpq.run_tflite(tmp_path / "m.tflite", xt, runtime="litert")
    raw_tflm = tfmpq.run_tflite(tmp_path / "m.tflite", xt, runtime="tflm")
    np.testing.assert_array_equal(raw_litert, raw_tflm)
    keras_acc = float(np.mean(qat.predict(xt, verbose=0).argmax(-1) == yt))
    assert abs(tfmpq.evaluate_tflite(tmp_path / "m.tflite", xt, yt) - keras_acc) <= 0.02
