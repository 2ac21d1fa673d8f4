"""Helpers the model builders share: input checks and the classifier head."""
from __future__ import annotations

from tfmpq._keras import keras

layers = keras.layers


def check_input_shape(input_shape, name: str, min_size: int = 1) -> tuple:
    """Validates an ``(H, W, C)`` image input shape.

    Args:
        input_shape: The shape to check.
        name: The builder's name, for the error message.
        min_size: Smallest height and width the architecture accepts. Defaults to 1.

    Returns:
        The shape as a tuple of ints.

    Raises:
        ValueError: If the shape is not three positive ints or is smaller than ``min_size``.
    """
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(f"Invalid value for `input_shape` of `{name}`: expected (height, width, channels) "
                         f"of positive ints. Received: input_shape={input_shape!r}.")
    if min(shape[:2]) < min_size:
        raise ValueError(f"Invalid value for `input_shape` of `{name}`: height and width must be at least "
                         f"{min_size}. Received: input_shape={shape}. Resize the images (e.g. "
                         f"tf.image.resize) or use another model.")
    return shape


def check_num_classes(num_classes) -> int:
    """Validates a class count (>= 2)."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Invalid value for `num_classes`: expected an integer >= 2. "
                         f"Received: num_classes={num_classes!r}.")
    return num_classes


def conv_bn_act(x, filters: int, kernel_size, strides: int = 1, activation: str | None = "relu",
                name: str = "conv", bn_momentum: float = 0.99):
    """Conv2D (no bias) -> BatchNormalization -> activation, named ``{name}``, ``{name}_bn``, ``{name}_relu``.

    The explicit names keep quantization group names stable however many models a session builds.
    ``bn_momentum`` is the BatchNormalization momentum (Keras's default 0.99 unless a builder asks).
    """
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False,
                      kernel_initializer="he_normal", name=name)(x)
    x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
    if activation == "relu":
        x = layers.ReLU(name=f"{name}_relu")(x)
    elif activation == "relu6":
        x = layers.ReLU(6.0, name=f"{name}_relu")(x)
    return x


def depthwise_he():
    """He initialisation for a DepthwiseConv2D kernel.

    Each output of a depthwise 3x3 filter sees 3x3 inputs, but Keras computes the fans of the
    ``(3, 3, C, 1)`` kernel as fan_in = 9C, fan_out = 9, so ``mode="fan_out"`` is the filter's true
    fan-in. The default glorot_uniform (fan_in = 9C) starts deep blocks with outputs ~C times too small.
    """
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


def classifier(x, num_classes: int, activation: str | None, name: str = "predictions"):
    """The Dense output layer; ``activation`` is ``"softmax"`` or None for logits."""
    if activation not in ("softmax", None):
        raise ValueError(f"Invalid value for `classifier_activation`: expected 'softmax' or None. "
                         f"Received: classifier_activation={activation!r}.")
    return layers.Dense(num_classes, activation=activation, name=name)(x)
