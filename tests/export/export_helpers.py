"""Helpers for the export tests (stock conversion, grid snapping); models in tests/models_for_tests.py,
fixtures in conftest.py."""
import numpy as np

import tfmpq  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfmpq._keras import keras, tf

L = keras.layers


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
