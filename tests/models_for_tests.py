"""Small real models shared by the test folders (importable by name: tests/ is on pytest's pythonpath)."""
import numpy as np

import tfmpq  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from tfmpq._keras import keras

L = keras.layers


def randomize_bn(model, seed=0):
    """Give every BatchNormalization non-trivial statistics so folding is really exercised."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.3, beta.shape).astype("float32"),
                rng.normal(0, 0.3, mean.shape).astype("float32"),
                rng.uniform(0.5, 2.0, var.shape).astype("float32"),
            ])
    return model


def build_residual_cnn(seed=0, size=12, stem_padding="valid", random_bn=True):
    """Conv+BN+ReLU, DepthwiseConv+BN+ReLU6, Add, Conv with relu attribute, pooling, Dense+BN, softmax Dense.

    Args:
        size: input height and width (8 for scikit-learn's digits).
        stem_padding: the first conv's padding.
        random_bn: give the BatchNormalization layers random statistics (:func:`randomize_bn`).
    """
    keras.utils.set_random_seed(seed)
    i = L.Input((size, size, 1), name="image")
    x = L.Conv2D(8, 3, padding=stem_padding, name="stem")(i)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    y = L.BatchNormalization(name="dw_bn")(y)
    y = L.ReLU(6.0, name="dw_relu6")(y)
    x = L.Add(name="residual")([x, y])
    x = L.Conv2D(8, 1, activation="relu", name="pw")(x)
    x = L.MaxPooling2D(name="pool")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(16, name="fc")(x)
    x = L.BatchNormalization(name="fc_bn")(x)
    x = L.Dense(10, activation="softmax", name="head")(x)
    model = keras.Model(i, x, name="residual_cnn")
    return randomize_bn(model, seed) if random_bn else model
