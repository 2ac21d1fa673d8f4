"""Helpers for the export tests (models, stock conversion, grid snapping); fixtures live in conftest.py."""
import numpy as np

import tfmpq  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfmpq._keras import keras, tf

L = keras.layers


def build_cnn(seed: int = 0):
    """Conv2D+BN+ReLU, DepthwiseConv2D+BN+ReLU6, Conv2D(relu, stride 2), Flatten, Dense logits."""
    keras.utils.set_random_seed(seed)
    i = L.Input((8, 8, 1), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(i)
    x = L.BatchNormalization(name="conv1_bn")(x)
    x = L.ReLU(name="conv1_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu6")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(10, name="logits")(x)
    return keras.Model(i, x, name="digits_cnn")


def build_plain_cnn(seed: int = 0):
    """BN-free CNN (Conv2D, DepthwiseConv2D, Conv2D, GAP, Dense) for stock-conversion tests."""
    keras.utils.set_random_seed(seed)
    i = L.Input((8, 8, 1))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(i)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(10, name="logits")(x)
    return keras.Model(i, x, name="plain_cnn")


def compile_model(model, lr: float):
    model.compile(
        keras.optimizers.Adam(lr),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def copy_model(model):
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def keras_accuracy(model, x, y) -> float:
    return float(np.mean(model.predict(x, verbose=0, batch_size=256).argmax(axis=-1) == y))


def convert_int8(model, x_calib, int8_io=True) -> bytes:
    """Stock full-integer conversion of a plain Keras model (what users do without tfmpq)."""

    def representative_dataset():
        for i in range(len(x_calib)):
            yield [x_calib[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def bake_grid(model, bits: int):
    """A copy of a BN-free model whose kernels are snapped to the symmetric per-channel `bits`-bit grid."""
    baked = copy_model(model)
    q = 2 ** (bits - 1) - 1
    for layer in baked.layers:
        if not layer.weights:
            continue
        kernel, *rest = layer.get_weights()
        flat = kernel.reshape(kernel.shape[:2] + (-1,)) if isinstance(layer, L.DepthwiseConv2D) else kernel
        axes = tuple(range(flat.ndim - 1))
        scale = np.maximum(np.abs(flat).max(axis=axes, keepdims=True), 1e-8) / q
        layer.set_weights([(np.round(flat / scale) * scale).reshape(kernel.shape).astype("float32"), *rest])
    return baked
