"""QuantGroupLayer: one quantizable group (weighted op + folded BatchNormalization + activation) as one layer.

tfmot's per-layer configs switch off its Conv+BN handling, and tfmot never truly folds BN into the
weights, so a "4-bit" conv followed by BN trains one thing and deploys another. This layer trains what
is deployed: it fake-quantizes the *folded* kernel W * gamma / sigma, the tensor TFLite will hold.

Notation: sigma = sqrt(moving_var + eps), read once per step *before* the step's moving-statistics
update and used everywhere in that step; s = gamma / sigma (per output channel); Q the weight
fake-quantizer; b the conv bias; mu_B, sigma_B = sqrt(var_B + eps) batch statistics.

Inference, or training after the freeze step (moving statistics no longer change), in both modes:
    y = conv(x, Q(W * s)) + beta - gamma * (mu - b) / sigma
Training before the freeze step, ``bn_fold="one_conv"`` (the default; Krishnamoorthi 2018, sec. 3.2,
the "approximate" forward of PyTorch's fused QAT ConvBn): one convolution per step,
    y_c = conv(x, Q(W * s)) / s + b              (the conv outputs, recovered per channel)
    y   = gamma * (y_c - mu_B) / sigma_B + beta  (mu_B, var_B: batch statistics of y_c)
``bn_fold="two_conv"`` (Jacob et al. 2018, sec. 3.2 and fig. C.8): a float convolution for the batch
statistics, a quantized one for the output, with the sigma / sigma_B correction,
    y_f = conv(x, W) + b                         (mu_B, var_B: batch statistics of y_f)
    y   = conv(x, Q(W * s)) * (sigma / sigma_B) + beta - gamma * (mu_B - b) / sigma_B
Both update the moving statistics from their batch statistics as Keras's BatchNormalization does
(the variance with Bessel's correction for 4-D outputs, where Keras uses its fused kernel), and with
quantization off (16/32 bits) both equal Keras's conv -> BN(training=True) outputs, moving statistics
and gradients. They differ only in what the batch statistics are of (the quantized or the float conv)
and in the cost: two_conv runs two convolutions forward and two backward.
The freeze step lives in a variable, so changing it (``tfmpq.freeze_bn``) works after tracing.

Channel-wise bits: the weight bits are a per-output-channel vector variable (``channel_bits_var``),
so one traced graph serves per-layer and per-channel policies alike (a per-layer policy is the vector
of one width, the same arithmetic element for element). A 0 prunes a channel: its kernel is zero and
beta and the folded bias are selected to 0, so its output is exactly 0 in every forward (as deployed,
where the channel is removed). A Conv1D / Conv2D / Dense group fed by pruned channels keeps the kernel
rows that multiply them off its weight grid (``input_keep_var``: they are zeros, and export removes
them, ``tfmpq.metrics.pruned_inputs``), so its scales are the ones the deployed kernel has. Selects, not
products: with nothing pruned every value is bit for bit what it was without them.
"""
from __future__ import annotations

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq.quantize.quantizers import fake_quant_weights

_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
}
KINDS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")
#: Kinds whose kernel rows (input axis) belong to input channels: rows fed by pruned channels are masked.
ROW_KINDS = ("Conv1D", "Conv2D", "Dense")
BN_FOLDS = ("one_conv", "two_conv")
NEVER = 2**62  # freeze step meaning "never freeze"
# one_conv: a channel whose folded kernel max|W * s| is below this (gamma ~ 0) cannot be recovered by
# dividing by s; its batch statistics come from the float kernel instead (see `_one_conv`).
_VANISHING = 1e-8


@keras.utils.register_keras_serializable(package="tfmpq")
class QuantGroupLayer(keras.layers.Layer):
    """A weighted layer with its BatchNormalization and ReLU/ReLU6 folded in, fake-quantized as deployed.

    Args:
        kind: class name of the weighted layer: "Conv1D", "Conv2D", "DepthwiseConv2D" or "Dense".
        layer_config: `get_config()` of the weighted layer.
        bn_config: `get_config()` of the folded BatchNormalization, or None.
        activation: "linear", "relu" or "relu6", applied after the folded op.
        weight_bits: 2..8, or 16/32 to leave the kernel in float, or one bit-width per output channel
            (2..8, 0 = pruned; the channel order of ``tfmpq.QuantPolicy``). Defaults to 8.
        per_channel: one scale per output channel. Defaults to True.
        symmetric: zero point 0 (TFLite int8 kernels need it). Defaults to True.
        bn_freeze_step: training step after which BN uses moving statistics. None: never. Defaults to None.
        variable_bits: the bit-widths always live in `channel_bits_var` (so fixed and variable-bit models
            share one graph); with True, a group built at 16/32 bits keeps its quantizer too, so the
            variable can switch it between float and 2..8 bits after tracing. Defaults to False.
        bn_fold: the training forward of a group with BatchNormalization before the freeze step:
            "one_conv" (one convolution of the folded, quantized kernel; batch statistics of its
            outputs divided back by gamma / sigma; Krishnamoorthi 2018, sec. 3.2) or "two_conv" (a
            float convolution for the batch statistics and a quantized one for the output; Jacob et
            al. 2018, sec. 3.2). Inference and export are the same folded model in both. Defaults to
            "one_conv".
        input_keep: Conv1D / Conv2D / Dense: one flag per channel of the group that feeds this one, False
            where that channel is pruned: the kernel rows it feeds (row r belongs to channel r mod C) are
            zeros and outside the weight grid. None: every row kept. Defaults to None.

    Raises:
        ValueError: an unknown `kind`, `activation` or `bn_fold`.
    """

    kinds = KINDS  # the group kinds this class holds (QuantTransposeGroupLayer: Conv2DTranspose)

    def __init__(
        self,
        kind: str,
        layer_config: dict,
        bn_config: dict | None = None,
        activation: str = "linear",
        weight_bits=8,
        per_channel: bool = True,
        symmetric: bool = True,
        bn_freeze_step: int | None = None,
        variable_bits: bool = False,
        bn_fold: str = "one_conv",
        input_keep=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in self.kinds:
            raise ValueError(f"Invalid value for `kind`: expected one of {self.kinds}. Received: kind={kind!r}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"Invalid value for `activation`: expected one of {tuple(_ACTIVATIONS)}. Received: {activation!r}."
            )
        if bn_fold not in BN_FOLDS:
            raise ValueError(
                f"Invalid value for `bn_fold`: expected one of {BN_FOLDS}. Received: bn_fold={bn_fold!r}."
            )
        self.kind = kind
        self.layer_config = dict(layer_config)
        self.bn_config = dict(bn_config) if bn_config else None
        self.activation = activation
        if isinstance(weight_bits, (list, tuple, np.ndarray)):
            weight_bits = tuple(int(b) for b in weight_bits)
            if len(set(weight_bits)) == 1:
                weight_bits = weight_bits[0]
        else:
            weight_bits = int(weight_bits)
        self.weight_bits = weight_bits
        self.per_channel = bool(per_channel)
        self.symmetric = bool(symmetric)
        self.bn_freeze_step = None if bn_freeze_step is None else int(bn_freeze_step)
        self.variable_bits = bool(variable_bits)
        self.bn_fold = bn_fold
        self.input_keep = None if input_keep is None else tuple(bool(k) for k in input_keep)

    # ---- construction ----------------------------------------------------------------------------
    @property
    def quantized(self) -> bool:
        """Whether the kernel is fake-quantized (for variable bits: at the variable's current value)."""
        if self.built:
            return float(self.weight_bits_var.numpy()) <= 8
        return self._widest <= 8

    @property
    def _widest(self) -> int:
        return max(self.weight_bits) if isinstance(self.weight_bits, tuple) else self.weight_bits

    @property
    def weight_bits_var(self) -> tf.Tensor:
        """The group's widest channel bit-width now (a scalar tensor; 16/32: float). Read-only: the bits
        live in ``channel_bits_var``, set them with :meth:`assign_weight_bits`."""
        return tf.reduce_max(self.channel_bits_var)

    def channel_bits(self) -> tuple:
        """The bit-width of every output channel now (ints; 0 = pruned)."""
        return tuple(int(round(b)) for b in self.channel_bits_var.numpy())

    def assign_weight_bits(self, bits) -> None:
        """Sets the weight bits of a built layer without retracing: an int (every channel) or one per channel.

        Raises:
            ValueError: a sequence whose length is not the layer's output channels.
        """
        if isinstance(bits, (list, tuple, np.ndarray)):
            values = np.asarray(bits, np.float32).reshape(-1)
            if values.size != self.out_channels:
                raise ValueError(
                    f"Invalid value for `bits`: group `{self.name}` has {self.out_channels} output channels. "
                    f"Received {values.size} per-channel bit-widths."
                )
        else:
            values = np.full((self.out_channels,), float(bits), np.float32)
        self.channel_bits_var.assign(values)

    def assign_input_keep(self, keep=None) -> None:
        """Sets which input channels feed this group (see `input_keep`) without retracing; None keeps all."""
        if self.kind in ROW_KINDS:
            self.input_keep_var.assign(self._row_mask_values(keep))

    def _row_mask_values(self, keep) -> np.ndarray:
        rows = int(self.input_keep_var.shape[0])
        if keep is None:
            return np.ones((rows,), np.float32)
        keep = np.asarray(keep, np.float32).reshape(-1)
        if rows % keep.size:
            raise ValueError(f"Invalid value for `input_keep`: group `{self.name}` has {rows} kernel rows, not a "
                             f"multiple of {keep.size} input channels.")
        return np.tile(keep, rows // keep.size)

    def _kernel_shape(self, input_shape):
        c = self.layer_config
        cin = int(input_shape[-1])
        if self.kind == "Dense":
            return (cin, int(c["units"]))
        if self.kind == "DepthwiseConv2D":
            return tuple(c["kernel_size"]) + (cin, int(c.get("depth_multiplier", 1)))
        return tuple(c["kernel_size"]) + (cin, int(c["filters"]))

    def build(self, input_shape):
        input_shape = tf.TensorShape(input_shape)
        kshape = self._kernel_shape(input_shape)
        self.out_channels = kshape[2] * kshape[3] if self.kind == "DepthwiseConv2D" else kshape[-1]
        kernel_name = "depthwise_kernel" if self.kind == "DepthwiseConv2D" else "kernel"
        self.kernel = self.add_weight(kernel_name, shape=kshape, initializer="glorot_uniform", trainable=True)
        if self.layer_config.get("use_bias", True):
            self.bias = self.add_weight("bias", shape=(self.out_channels,), initializer="zeros", trainable=True)
        else:
            self.bias = None
        if self.bn_config is not None:
            bn, n = self.bn_config, (self.out_channels,)
            self.gamma = self.add_weight("gamma", shape=n, initializer="ones", trainable=True) if bn.get(
                "scale", True) else None
            self.beta = self.add_weight("beta", shape=n, initializer="zeros", trainable=True) if bn.get(
                "center", True) else None
            self.moving_mean = self.add_weight("moving_mean", shape=n, initializer="zeros", trainable=False)
            self.moving_variance = self.add_weight("moving_variance", shape=n, initializer="ones", trainable=False)
            step_init = NEVER if self.bn_freeze_step is None else self.bn_freeze_step
            self.freeze_step = self.add_weight(
                "bn_freeze_step", shape=(), dtype=tf.int64, trainable=False,
                initializer=keras.initializers.Constant(step_init),
            )
            self.train_step = self.add_weight(
                "bn_train_step", shape=(), dtype=tf.int64, trainable=False, initializer="zeros"
            )
        # Bits live in a variable even for a fixed policy, so a fixed and a variable-bit model run the
        # very same graph (constant-folded bits let Grappler reassociate the scale arithmetic, and a
        # 1e-7 difference flips grid levels during training). One per output channel (channel-wise bits).
        bits = self.weight_bits if isinstance(self.weight_bits, tuple) else (self.weight_bits,) * self.out_channels
        if len(bits) != self.out_channels:
            raise ValueError(
                f"Invalid value for `weight_bits`: group `{self.name}` has {self.out_channels} output channels. "
                f"Received {len(bits)} per-channel bit-widths."
            )
        self.channel_bits_var = self.add_weight(
            "tfmpq_weight_bits", shape=(self.out_channels,), trainable=False,
            initializer=keras.initializers.Constant(np.asarray(bits, np.float32)),
        )
        if self.kind in ROW_KINDS:  # a variable too: a variable-bit model prunes its inputs without a rebuild
            rows = kshape[0] if self.kind == "Dense" else kshape[-2]
            self.input_keep_var = self.add_weight("tfmpq_input_keep", shape=(rows,), trainable=False,
                                                  initializer="ones")
            self.input_keep_var.assign(self._row_mask_values(self.input_keep))
        super().build(input_shape)

    # ---- the op, per kind --------------------------------------------------------------------------
    def _op(self, x, kernel):
        c = self.layer_config
        if self.kind == "Dense":
            if x.shape.rank == 2:
                return tf.matmul(x, kernel)
            return tf.tensordot(x, kernel, [[x.shape.rank - 1], [0]])
        strides = tuple(c.get("strides", (1,)))
        dilation = tuple(c.get("dilation_rate", (1,)))
        padding = c.get("padding", "valid")
        if self.kind == "DepthwiseConv2D":
            return tf.nn.depthwise_conv2d(
                x, kernel, strides=(1,) + strides + (1,), padding=padding.upper(), dilations=dilation
            )
        if padding == "causal":  # Conv1D: left-pad so output t sees inputs <= t
            left = dilation[0] * (kernel.shape[0] - 1)
            x = tf.pad(x, [[0, 0], [left, 0], [0, 0]])
            padding = "valid"
        return tf.nn.convolution(x, kernel, strides=strides, padding=padding.upper(), dilations=dilation)

    def _scale_kernel(self, kernel, scale):
        """Multiply the kernel by a per-output-channel scale (BN folding)."""
        if self.kind == "DepthwiseConv2D":
            return kernel * tf.reshape(scale, kernel.shape[2:])
        return kernel * scale

    def _quantize_kernel(self, kernel):
        if not self.variable_bits and self._widest > 8:
            return kernel
        bits = self.channel_bits_var
        return tf.cond(tf.reduce_min(bits) > 8.5, lambda: tf.identity(kernel), lambda: self._fake_quant(kernel, bits))

    def _kept(self, values):
        """`values` (one per output channel) with the pruned channels' set to 0 (see the module docstring).
        A select, not a product: bit for bit `values` where nothing is pruned, in every rewrite of the graph."""
        return tf.where(self.channel_bits_var > 0.5, values, tf.zeros_like(values))

    def _fake_quant(self, kernel, bits):
        if self.kind == "DepthwiseConv2D":  # output channel = (in, multiplier) flattened, TFLite's layout
            kh, kw, cin, mult = kernel.shape
            q = fake_quant_weights(tf.reshape(kernel, (kh, kw, cin * mult)), bits, self.per_channel, self.symmetric)
            return tf.reshape(q, kernel.shape)
        if self.kind in ROW_KINDS:  # rows fed by pruned channels: zeros, off the grid (see `input_keep`)
            shape = [1] * kernel.shape.rank
            shape[0 if self.kind == "Dense" else -2] = -1
            rows = tf.reshape(self.input_keep_var > 0.5, shape)
            kernel = tf.where(rows, kernel, tf.zeros_like(kernel))
        return fake_quant_weights(kernel, bits, self.per_channel, self.symmetric)

    def _bias(self):
        return self.bias if self.bias is not None else tf.zeros((self.out_channels,), self.dtype)

    def _bn_params(self):
        bn = self.bn_config
        gamma = self.gamma if self.gamma is not None else tf.ones((self.out_channels,))
        # beta of a pruned channel is 0: one_conv's output gamma * x_hat + beta is then 0 (its x_hat is 0)
        beta = self._kept(self.beta if self.beta is not None else tf.zeros((self.out_channels,)))
        return gamma, beta, float(bn.get("epsilon", 1e-3)), float(bn.get("momentum", 0.99))

    def _sigma(self, eps):
        return tf.sqrt(self.moving_variance + eps)

    def folded(self, sigma=None):
        """(folded kernel, folded bias) with moving statistics, before weight quantization.

        Args:
            sigma: sqrt(moving_variance + eps) as read at the start of a training step; None reads it now.
        """
        if self.bn_config is None:
            return self.kernel, self._kept(self._bias())
        gamma, beta, eps, _ = self._bn_params()
        if sigma is None:
            sigma = self._sigma(eps)
        kernel = self._scale_kernel(self.kernel, gamma / sigma)
        bias = beta - gamma * (self.moving_mean - self._bias()) / sigma
        return kernel, self._kept(bias)

    def call(self, inputs, training=None):
        if training is None:
            training = keras.backend.learning_phase()
        static_training = tf.get_static_value(training) if tf.is_tensor(training) else training
        if self.bn_config is None or static_training is False or static_training == 0:
            kernel, bias = self.folded()
            y = self._op(inputs, self._quantize_kernel(kernel)) + bias
            return _ACTIVATIONS[self.activation](y)

        gamma, beta, eps, momentum = self._bn_params()
        # One sigma for the whole step, read before this step's update of the moving variance: the folded
        # kernel and the sigma / sigma_B correction must use the same one, or the output is off by
        # sigma_old / sigma_new (29% at momentum 0.5 in the first steps).
        sigma = self._sigma(eps)
        kernel = self._scale_kernel(self.kernel, gamma / sigma)

        def batch_stats_branch():
            fold = self._one_conv if self.bn_fold == "one_conv" else self._two_conv
            y, mean_b, var_b = fold(inputs, kernel, gamma, beta, sigma, eps)
            with tf.control_dependencies([
                self.moving_mean.assign(self.moving_mean * momentum + tf.stop_gradient(mean_b) * (1 - momentum)),
                self.moving_variance.assign(
                    self.moving_variance * momentum + tf.stop_gradient(var_b) * (1 - momentum)),
            ]):
                return tf.identity(y)

        def frozen_branch():
            bias = self._kept(beta - gamma * (self.moving_mean - self._bias()) / sigma)
            return self._op(inputs, self._quantize_kernel(kernel)) + bias

        in_training = tf.logical_and(tf.cast(training, tf.bool), self.train_step < self.freeze_step)
        with tf.control_dependencies([self.train_step.assign_add(tf.cast(tf.cast(training, tf.bool), tf.int64))]):
            y = tf.cond(in_training, batch_stats_branch, frozen_branch)
        return _ACTIVATIONS[self.activation](y)

    def _moving_variance_update(self, var_b, y):
        """The batch variance that goes into the moving average: with Bessel's correction n / (n - 1)
        for 4-D outputs, where Keras's BatchNormalization runs its fused kernel (which returns it so),
        as is (biased) otherwise, as Keras's non-fused path does."""
        if y.shape.rank != 4:
            return var_b
        n = tf.cast(tf.size(y) // tf.shape(y)[-1], var_b.dtype)
        return var_b * n / tf.maximum(n - 1.0, 1.0)

    def _beta_and_bias_mean(self, beta):
        """The conv bias b shifts the batch mean (and so the moving mean) but cancels in the normalized
        output, so it is added to the per-channel mean, not to the (much larger) conv output. Returns
        (beta + 0 * b, the function adding b to a mean): `0 * b` keeps b in the gradient graph with
        Keras's gradient for it, 0, instead of none ("gradients do not exist" warnings)."""
        if self.bias is None:
            return beta, lambda mean: mean
        return beta + 0.0 * self.bias, lambda mean: mean + tf.stop_gradient(self.bias)

    def _two_conv(self, inputs, kernel, gamma, beta, sigma, eps):
        """Jacob et al. 2018, sec. 3.2: batch statistics of the float conv, output of the quantized one.

        The sigma / sigma_B correction multiplies the (small) kernel instead of the conv's output:
        conv(x, K) * c = conv(x, K * c) per output channel.
        """
        y_float = self._op(inputs, self.kernel)  # without b: mu_B - b is the mean of conv(x, W)
        mean_conv, var_b = tf.nn.moments(y_float, axes=list(range(y_float.shape.rank - 1)))
        sigma_b = tf.sqrt(var_b + eps)
        beta, add_bias = self._beta_and_bias_mean(beta)
        corrected = self._scale_kernel(self._quantize_kernel(kernel), sigma / sigma_b)
        y = self._op(inputs, corrected) + self._kept(beta - gamma * mean_conv / sigma_b)
        return y, add_bias(mean_conv), self._moving_variance_update(var_b, y_float)

    def _one_conv(self, inputs, kernel, gamma, beta, sigma, eps):
        """Krishnamoorthi 2018, sec. 3.2: one conv of the folded, quantized kernel; its outputs divided
        by s = gamma / sigma per channel are the conv outputs, normalized with their own batch statistics.

        conv(x, Q(W * s)) / s is computed as conv(x, Q(W * s) / s): the division touches the kernel,
        not the (much larger) outputs, and the rest is Keras's own BatchNormalization arithmetic (the
        fused kernel for 4-D outputs), so a step costs the float model's conv and BN plus kernel-sized
        work. A channel whose folded kernel vanishes (max|W * s| < 1e-8, e.g. gamma = 0) cannot be
        divided back; it keeps its float kernel W, so its statistics, its output gamma * x_hat + beta
        and gamma's gradient x_hat are Keras's, not 0 / 0 (its deployed kernel is ~0, its output ~beta).
        """
        s = gamma / sigma
        reduce_axes = list(range(2 if self.kind == "DepthwiseConv2D" else kernel.shape.rank - 1))
        folded_max = tf.reduce_max(tf.abs(kernel), axis=reduce_axes)  # per output channel
        vanishing = tf.reshape(folded_max, (-1,)) < _VANISHING
        divisor = tf.where(vanishing, tf.ones_like(s), s)
        unfolded = self._scale_kernel(self._quantize_kernel(kernel), 1.0 / divisor)
        mask = tf.reshape(vanishing, kernel.shape[2:]) if self.kind == "DepthwiseConv2D" else vanishing
        y_c = self._op(inputs, tf.where(mask, self.kernel, unfolded))  # without b: it cancels in y
        beta, add_bias = self._beta_and_bias_mean(beta)
        if y_c.shape.rank == 4:  # Keras's fused kernel: one pass for the statistics, Bessel-corrected variance
            y, mean_c, var_b = tf.compat.v1.nn.fused_batch_norm(y_c, gamma, beta, epsilon=eps, is_training=True)
        else:
            mean_c, var_b = tf.nn.moments(y_c, axes=list(range(y_c.shape.rank - 1)))
            y = tf.nn.batch_normalization(y_c, mean_c, var_b, beta, gamma, eps)
        return y, add_bias(mean_c), var_b

    # ---- what export needs -------------------------------------------------------------------------
    def deployed_weights(self):
        """(kernel, bias) as numpy, in the original layer's layout, exactly as inference uses them.

        The kernel is folded and fake-quantized (its values lie on the group's grid); the bias is folded.
        """
        kernel, bias = self.folded()
        return self._quantize_kernel(kernel).numpy(), bias.numpy()

    def compute_output_shape(self, input_shape):
        return self._float_layer_for_shapes().compute_output_shape(input_shape)

    def _float_layer_for_shapes(self):
        cfg = dict(self.layer_config)
        cfg.pop("name", None)
        return getattr(keras.layers, self.kind).from_config(cfg)

    def get_config(self):
        config = super().get_config()
        config.update(
            kind=self.kind,
            layer_config=self.layer_config,
            bn_config=self.bn_config,
            activation=self.activation,
            weight_bits=list(self.weight_bits) if isinstance(self.weight_bits, tuple) else self.weight_bits,
            per_channel=self.per_channel,
            symmetric=self.symmetric,
            bn_freeze_step=self.bn_freeze_step,
            variable_bits=self.variable_bits,
            bn_fold=self.bn_fold,
            input_keep=None if self.input_keep is None else list(self.input_keep),
        )
        return config
