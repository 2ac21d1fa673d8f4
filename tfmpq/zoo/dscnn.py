"""A depthwise-separable CNN for 28x28 images, built for mixed-precision search.

The layout follows MobileNet v1 (Howard et al. 2017, Sec. 3.1: a full 3x3 conv, then blocks of a
depthwise 3x3 conv and a pointwise 1x1 conv, each followed by BatchNormalization and ReLU) and the
DS-CNN of Zhang et al. 2017 ("Hello Edge: Keyword Spotting on Microcontrollers", Sec. 3.5), but ends
in Flatten and one Dense layer instead of global average pooling, so that the layers differ in size by
more than two orders of magnitude: the first conv and the depthwise convs hold a few hundred weights
each (9 per output channel) while the pointwise convs hold thousands and the classifier most of the
model. Few weights per output channel make a layer sensitive to low bit-widths and leave little to
save (its per-channel scale, zero point and bias cost the same at any width); the large layers are
where fewer bits pay. Uniform policies must treat both alike, a mixed-precision policy need not.
"""
from __future__ import annotations

from tfmpq._keras import keras

from tfmpq.zoo._common import check_input_shape, check_num_classes, classifier, conv_bn_act, depthwise_he

layers = keras.layers

DEFAULT_BLOCKS = ((64, 1), (128, 2), (128, 1))


def _check_blocks(blocks) -> tuple:
    ok = isinstance(blocks, (tuple, list)) and len(blocks) > 0
    parsed = []
    for b in blocks if ok else ():
        if (not isinstance(b, (tuple, list)) or len(b) != 2 or not isinstance(b[0], int) or b[0] < 1
                or b[1] not in (1, 2)):
            ok = False
            break
        parsed.append((int(b[0]), int(b[1])))
    if not ok:
        raise ValueError(f"Invalid value for `blocks`: expected a non-empty sequence of (pointwise filters, "
                         f"depthwise stride) pairs with filters >= 1 and stride 1 or 2. Received: blocks={blocks!r}.")
    return tuple(parsed)


def build_dscnn(input_shape: tuple = (28, 28, 1), num_classes: int = 10, filters: int = 32, first_stride: int = 2,
                blocks: tuple = DEFAULT_BLOCKS, dropout: float = 0.4, bn_momentum: float = 0.9,
                classifier_activation: str | None = "softmax") -> keras.Model:
    """A depthwise-separable CNN: Conv2D 3x3, separable blocks, Flatten, Dense.

    Every conv is followed by BatchNormalization and ReLU, so each is one quantization group with its
    BN folded in. At the defaults (28x28x1 input): ``conv1`` 3x3 with 32 filters and stride 2 (14x14),
    then blocks ``b1`` (depthwise stride 1, pointwise 64), ``b2`` (stride 2 to 7x7, pointwise 128) and
    ``b3`` (stride 1, pointwise 128), Flatten (6,272 features), Dropout 0.4 and the Dense classifier:
    8 groups, 93,962 parameters (92,234 with BN folded), of which the classifier holds 62,730 and
    the first and depthwise convs 2,560. The large classifier overfits Fashion-MNIST: without
    dropout, 95.6% training against 90.4% validation accuracy after 3 of 54,000-image epochs; with
    dropout 0.4 but no augmentation, 99% against 92.1% (90.6% test) after 30. The shipped
    checkpoint also had flip-and-shift augmentation (models/README.md in the repository).

    Args:
        input_shape: ``(H, W, C)``, at least 8x8. Defaults to ``(28, 28, 1)``.
        num_classes: Number of classes. Defaults to 10.
        filters: Filters of the first 3x3 conv. Defaults to 32.
        first_stride: Stride of the first conv, 1 or 2. Defaults to 2.
        blocks: ``(pointwise filters, depthwise stride)`` of each separable block, block ``i`` named
            ``b{i}_dw`` / ``b{i}_pw``. Defaults to ``((64, 1), (128, 2), (128, 1))``.
        dropout: Dropout rate before the classifier; 0 adds no Dropout layer. Defaults to 0.4.
        bn_momentum: Momentum of every BatchNormalization. 0.9 rather than Keras's 0.99, so that the
            moving statistics follow the weights within ~50 steps, also in short QAT fine-tuning
            runs. Defaults to 0.9.
        classifier_activation: ``"softmax"`` or None (logits). Defaults to ``"softmax"``.

    Returns:
        A tf_keras functional model named ``dscnn`` with ``1 + len(blocks)`` Conv2D, ``len(blocks)``
        DepthwiseConv2D and 1 Dense layer.

    Raises:
        ValueError: For an input under 8x8, invalid ``blocks``, ``filters``, ``first_stride``,
            ``dropout`` or ``bn_momentum``, or another invalid argument.

    Example:

    >>> model = build_dscnn()
    >>> model.count_params(), model.output_shape
    (93962, (None, 10))
    """
    input_shape = check_input_shape(input_shape, "dscnn", min_size=8)
    num_classes = check_num_classes(num_classes)
    blocks = _check_blocks(blocks)
    if not isinstance(filters, int) or filters < 1:
        raise ValueError(f"Invalid value for `filters`: expected a positive integer. Received: filters={filters!r}.")
    if first_stride not in (1, 2):
        raise ValueError(f"Invalid value for `first_stride`: expected 1 or 2. Received: first_stride={first_stride!r}.")
    if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"Invalid value for `dropout`: expected a rate in [0, 1). Received: dropout={dropout!r}.")
    if not isinstance(bn_momentum, (int, float)) or not 0 < bn_momentum < 1:
        raise ValueError(f"Invalid value for `bn_momentum`: expected a number in (0, 1). "
                         f"Received: bn_momentum={bn_momentum!r}.")
    inputs = keras.Input(input_shape, name="input")
    x = conv_bn_act(inputs, filters, 3, strides=first_stride, name="conv1", bn_momentum=bn_momentum)
    for i, (pointwise, strides) in enumerate(blocks, start=1):
        x = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   depthwise_initializer=depthwise_he(), name=f"b{i}_dw")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"b{i}_dw_bn")(x)
        x = layers.ReLU(name=f"b{i}_dw_relu")(x)
        x = conv_bn_act(x, pointwise, 1, name=f"b{i}_pw", bn_momentum=bn_momentum)
    x = layers.Flatten(name="flatten")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = classifier(x, num_classes, classifier_activation)
    return keras.Model(inputs, outputs, name="dscnn")
