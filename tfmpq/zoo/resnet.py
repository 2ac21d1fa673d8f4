"""CIFAR ResNets (He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2).

Depth ``6n + 2``: a 3x3 conv with 16 filters, three stages of ``n`` basic blocks with 16, 32 and 64
filters (the first block of stages 2 and 3 strides by 2), global average pooling and a Dense layer.
A basic block is conv3x3-BN-ReLU, conv3x3-BN, ``Add`` with the shortcut, ReLU. Where the shape
changes the shortcut is a 1x1 strided conv + BN (the paper's option B); elsewhere it is the identity.
Option A's zero-padded identity needs a non-standard layer, which quantizers and TFLite would treat
as an unknown op, so it is not offered.
"""
from __future__ import annotations

from tfmpq._keras import keras

from tfmpq.zoo._common import check_input_shape, check_num_classes, classifier, conv_bn_act

layers = keras.layers


def _basic_block(x, filters: int, strides: int, name: str):
    shortcut = x
    y = conv_bn_act(x, filters, 3, strides=strides, name=f"{name}_conv1")
    y = conv_bn_act(y, filters, 3, activation=None, name=f"{name}_conv2")
    if strides != 1 or x.shape[-1] != filters:
        shortcut = conv_bn_act(x, filters, 1, strides=strides, activation=None, name=f"{name}_shortcut")
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def build_resnet(depth: int = 20, input_shape: tuple = (32, 32, 3), num_classes: int = 10,
                 classifier_activation: str | None = "softmax") -> keras.Model:
    """A CIFAR ResNet of the given depth.

    Args:
        depth: ``6n + 2``: 20, 32, 44, 56, 110, ... Defaults to 20.
        input_shape: ``(H, W, C)``, at least 8x8. Defaults to ``(32, 32, 3)``.
        num_classes: Number of classes. Defaults to 10.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model named ``resnet{depth}``: ``depth - 1`` 3x3 convs, 2 shortcut
        convs, 1 Dense layer and ``(depth - 2) / 2`` Add layers.

    Raises:
        ValueError: If ``depth`` is not ``6n + 2`` or another argument is invalid.

    Example:

    >>> build_resnet(20).count_params() < 300_000
    True
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"Invalid value for `depth`: expected 6n + 2 (20, 32, 44, 56, ...). Received: depth={depth!r}.")
    input_shape = check_input_shape(input_shape, f"resnet{depth}", min_size=8)
    num_classes = check_num_classes(num_classes)
    n = (depth - 2) // 6
    inputs = keras.Input(input_shape, name="input")
    x = conv_bn_act(inputs, 16, 3, name="conv1")
    for stage, filters in enumerate((16, 32, 64), start=1):
        for block in range(1, n + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _basic_block(x, filters, strides, name=f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=f"resnet{depth}")


def build_resnet20(input_shape: tuple = (32, 32, 3), num_classes: int = 10, **kwargs) -> keras.Model:
    """ResNet-20 (n = 3, about 0.27M parameters); see :func:`build_resnet`."""
    return build_resnet(20, input_shape, num_classes, **kwargs)


def build_resnet32(input_shape: tuple = (32, 32, 3), num_classes: int = 10, **kwargs) -> keras.Model:
    """ResNet-32 (n = 5, about 0.47M parameters); see :func:`build_resnet`."""
    return build_resnet(32, input_shape, num_classes, **kwargs)


def build_resnet56(input_shape: tuple = (32, 32, 3), num_classes: int = 10, **kwargs) -> keras.Model:
    """ResNet-56 (n = 9, about 0.86M parameters); see :func:`build_resnet`."""
    return build_resnet(56, input_shape, num_classes, **kwargs)
