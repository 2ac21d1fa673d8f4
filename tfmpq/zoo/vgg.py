"""VGG-Small, the CIFAR VGG of the quantization literature (Zhang et al., "LQ-Nets", ECCV 2018):
conv(128)x2, pool, conv(256)x2, pool, conv(512)x2, pool, Dense; every conv is 3x3 + BN + ReLU."""
from __future__ import annotations

from tfmpq._keras import keras

from tfmpq.zoo._common import check_input_shape, check_num_classes, classifier, conv_bn_act

layers = keras.layers


def build_vgg_small(input_shape: tuple = (32, 32, 3), num_classes: int = 10, width: float = 1.0,
                    classifier_activation: str | None = "softmax") -> keras.Model:
    """VGG-Small: six 3x3 Conv2D-BN-ReLU layers in three pooled stages, then one Dense layer.

    Args:
        input_shape: ``(H, W, C)``, at least 8x8. Defaults to ``(32, 32, 3)``.
        num_classes: Number of classes. Defaults to 10.
        width: Multiplier of the filters 128, 256, 512 (about 4.7M parameters at 1.0, 0.3M at 0.25).
            Defaults to 1.0.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model named ``vgg_small``.

    Raises:
        ValueError: For an invalid width or another invalid argument.
    """
    input_shape = check_input_shape(input_shape, "vgg_small", min_size=8)
    num_classes = check_num_classes(num_classes)
    if not isinstance(width, (int, float)) or width <= 0:
        raise ValueError(f"Invalid value for `width`: expected a positive number. Received: width={width!r}.")
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for stage, filters in enumerate((128, 256, 512), start=1):
        for j in (1, 2):
            x = conv_bn_act(x, max(8, int(filters * width)), 3, name=f"conv{stage}_{j}")
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.Flatten(name="flatten")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name="vgg_small")
