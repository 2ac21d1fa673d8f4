"""MobileNets: v1 built here (Howard et al. 2017, Table 1), v2 from ``keras.applications``."""
from __future__ import annotations

from tfmpq._keras import keras

from tfmpq.zoo._common import check_input_shape, check_num_classes, classifier, conv_bn_act, depthwise_he

layers = keras.layers

# (pointwise filters at alpha = 1, depthwise stride) of the 13 separable blocks, Howard et al. Table 1.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def build_mobilenet_v1(input_shape: tuple = (32, 32, 3), num_classes: int = 10, alpha: float = 0.25,
                       first_stride: int | None = None, dropout: float = 0.0,
                       classifier_activation: str | None = "softmax") -> keras.Model:
    """MobileNet v1: a 3x3 conv, 13 depthwise-separable blocks (DepthwiseConv2D-BN-ReLU6, 1x1
    Conv2D-BN-ReLU6), global average pooling and a Dense layer.

    Args:
        input_shape: ``(H, W, C)``, at least 32x32. Defaults to ``(32, 32, 3)``.
        num_classes: Number of classes. Defaults to 10.
        alpha: Width multiplier; filters are ``max(8, int(f * alpha))``. Defaults to 0.25.
        first_stride: Stride of the first conv; None means 1 for inputs under 64 pixels (CIFAR-size,
            so the last blocks still see 2x2 maps) and 2 otherwise, as in the paper. Defaults to None.
        dropout: Dropout rate before the classifier; 0 adds no Dropout layer. Defaults to 0.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model named ``mobilenet_v1_{alpha}`` with 14 Conv2D, 13
        DepthwiseConv2D and 1 Dense layer.

    Raises:
        ValueError: For an input under 32x32, a non-positive ``alpha`` or another invalid argument.
    """
    input_shape = check_input_shape(input_shape, "mobilenet_v1", min_size=32)
    num_classes = check_num_classes(num_classes)
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"Invalid value for `alpha`: expected a positive number. Received: alpha={alpha!r}.")
    if first_stride is None:
        first_stride = 1 if min(input_shape[:2]) < 64 else 2
    inputs = keras.Input(input_shape, name="input")
    x = conv_bn_act(inputs, max(8, int(32 * alpha)), 3, strides=first_stride, activation="relu6", name="conv1")
    for i, (filters, strides) in enumerate(V1_BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   depthwise_initializer=depthwise_he(), name=f"block{i}_dw")(x)
        x = layers.BatchNormalization(name=f"block{i}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"block{i}_dw_relu")(x)
        x = conv_bn_act(x, max(8, int(filters * alpha)), 1, activation="relu6", name=f"block{i}_pw")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name=f"mobilenet_v1_{alpha:g}")


def build_mobilenet_v2(input_shape: tuple = (32, 32, 3), num_classes: int = 10, alpha: float = 0.35,
                       classifier_activation: str | None = "softmax") -> keras.Model:
    """MobileNet v2 (Sandler et al. 2018) from ``keras.applications.MobileNetV2``, untrained.

    Args:
        input_shape: ``(H, W, C)``, at least 32x32. Defaults to ``(32, 32, 3)``.
        num_classes: Number of classes. Defaults to 10.
        alpha: Width multiplier, one of Keras's 0.35, 0.5, 0.75, 1.0, 1.3, 1.4. Defaults to 0.35.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model (Keras's layer names, e.g. ``block_1_expand``).

    Raises:
        ValueError: For an input under 32x32 or another invalid argument.
    """
    input_shape = check_input_shape(input_shape, "mobilenet_v2", min_size=32)
    num_classes = check_num_classes(num_classes)
    if classifier_activation not in ("softmax", None):
        raise ValueError(f"Invalid value for `classifier_activation`: expected 'softmax' or None. "
                         f"Received: classifier_activation={classifier_activation!r}.")
    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, weights=None,
                                          include_top=True, classes=num_classes,
                                          classifier_activation=classifier_activation)
