"""QuantTransposeGroupLayer: a Conv2DTranspose group (with its BatchNormalization and ReLU/ReLU6 folded in).

Keras lays a Conv2DTranspose kernel out as (kh, kw, out, in): its output channels are on axis 2, where
every other group has them last. This layer holds the kernel as (kh, kw, in, out) instead (transposed
once, when the group is folded: ``FoldGroup*`` transforms), so BN folding, per-channel weight
quantization and both BN-fold training forwards are `QuantGroupLayer`'s own, unchanged; only the
convolution itself (``tf.nn.conv2d_transpose``, which wants Keras's layout back) and the deployed
weights (Keras's layout, for the Conv2DTranspose the converter turns into TRANSPOSE_CONV) differ.
"""
from __future__ import annotations

from tf_keras.src.utils import conv_utils

from tfmpq._keras import keras, tf
from tfmpq.quantize.layers import QuantGroupLayer

#: Group kinds held by `QuantTransposeGroupLayer`.
TRANSPOSE_KINDS = ("Conv2DTranspose",)
#: Keras's Conv2DTranspose kernel (kh, kw, out, in) <-> this layer's (kh, kw, in, out): the same swap.
_SWAP = (0, 1, 3, 2)


def to_group_layout(kernel):
    """A Keras Conv2DTranspose kernel (kh, kw, out, in) as the group holds it, (kh, kw, in, out)."""
    return kernel.transpose(_SWAP)


@keras.utils.register_keras_serializable(package="tfmpq")
class QuantTransposeGroupLayer(QuantGroupLayer):
    """A Conv2DTranspose with its BatchNormalization and ReLU/ReLU6 folded in, fake-quantized as deployed.

    Args: as `QuantGroupLayer`, with ``kind="Conv2DTranspose"`` and `layer_config` a Conv2DTranspose's
    ``get_config()`` (channels last, no dilation).

    Raises:
        ValueError: an unknown `kind`, `activation` or `bn_fold`.
    """

    kinds = TRANSPOSE_KINDS

    def _kernel_shape(self, input_shape):
        c = self.layer_config
        return tuple(c["kernel_size"]) + (int(input_shape[-1]), int(c["filters"]))

    def _op(self, x, kernel):
        c = self.layer_config
        (kh, kw), (sh, sw) = c["kernel_size"], c["strides"]
        padding = c.get("padding", "valid")
        pad_h, pad_w = c.get("output_padding") or (None, None)
        dims = x.shape.as_list()
        height = dims[1] if dims[1] is not None else tf.shape(x)[1]
        width = dims[2] if dims[2] is not None else tf.shape(x)[2]
        out_h = conv_utils.deconv_output_length(height, kh, padding=padding, output_padding=pad_h, stride=sh)
        out_w = conv_utils.deconv_output_length(width, kw, padding=padding, output_padding=pad_w, stride=sw)
        shape = tf.stack([tf.shape(x)[0], out_h, out_w, int(c["filters"])])
        y = tf.nn.conv2d_transpose(x, tf.transpose(kernel, _SWAP), shape, strides=(1, sh, sw, 1),
                                   padding=padding.upper())
        return tf.ensure_shape(y, [None, dims[1] and out_h, dims[2] and out_w, int(c["filters"])])

    def deployed_weights(self):
        """(kernel, bias) as numpy, the kernel in Keras's Conv2DTranspose layout (kh, kw, out, in)."""
        kernel, bias = super().deployed_weights()
        return to_group_layout(kernel), bias
