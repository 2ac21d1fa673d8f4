"""Small models for 28x28 images: the demo CNN and Santini's 784-100-10 MLP."""
from __future__ import annotations

from tfmpq._keras import keras

from tfmpq.zoo._common import check_input_shape, check_num_classes, classifier, conv_bn_act

layers = keras.layers


def build_small_cnn(input_shape: tuple = (28, 28, 1), num_classes: int = 10, filters: tuple = (16, 32, 64),
                    classifier_activation: str | None = "softmax") -> keras.Model:
    """The tfmpq demo CNN: three Conv2D-BN-ReLU blocks with 2x2 max pooling, then one Dense layer.

    About 30k parameters at the defaults; 4 quantization groups (3 Conv2D + 1 Dense).

    Args:
        input_shape: ``(H, W, C)`` of the images. Defaults to ``(28, 28, 1)``.
        num_classes: Number of classes. Defaults to 10.
        filters: Filters of the three conv blocks. Defaults to ``(16, 32, 64)``.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model named ``small_cnn``.

    Raises:
        ValueError: For an invalid shape, class count or activation.

    Example:

    >>> model = build_small_cnn()
    >>> model.output_shape
    (None, 10)
    """
    input_shape = check_input_shape(input_shape, "small_cnn", min_size=8)
    num_classes = check_num_classes(num_classes)
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for i, f in enumerate(filters, start=1):
        x = conv_bn_act(x, f, 3, name=f"conv{i}")
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name="small_cnn")


def build_mlp(input_shape: tuple = (28, 28, 1), num_classes: int = 10, hidden_units: int = 100,
              classifier_activation: str | None = "softmax") -> keras.Model:
    """A one-hidden-layer perceptron, 784-100-10 at the defaults (the MLP of Santini et al.).

    Args:
        input_shape: Shape of one input; it is flattened. Defaults to ``(28, 28, 1)``.
        num_classes: Number of classes. Defaults to 10.
        hidden_units: Width of the hidden ReLU layer. Defaults to 100.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model named ``mlp`` with two Dense layers.

    Raises:
        ValueError: For an invalid class count, width or activation.
    """
    num_classes = check_num_classes(num_classes)
    if not isinstance(hidden_units, int) or hidden_units < 1:
        raise ValueError(f"Invalid value for `hidden_units`: expected a positive integer. "
                         f"Received: hidden_units={hidden_units!r}.")
    inputs = keras.Input(tuple(input_shape), name="input")
    x = layers.Flatten(name="flatten")(inputs)
    x = layers.Dense(hidden_units, activation="relu", name="dense1")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name="mlp")
