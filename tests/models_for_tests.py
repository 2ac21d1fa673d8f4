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
