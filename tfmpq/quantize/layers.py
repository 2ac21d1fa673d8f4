"""QuantGroupLayer: one quantizable group (weighted op + folded BatchNormalization + activation) as one layer.

tfmot's per-layer configs switch off its Conv+BN handling, and tfmot never truly folds BN into the
weights, so a "4-bit" conv followed by BN trains one thing and deploys another. This layer trains what
is deployed: it fake-quantizes the *folded* kernel W * gamma / sigma, the tensor TFLite will hold.

BN folding with batch statistics and a correction factor (Jacob et al. 2018, sec. 3.2, and
Krishnamoorthi 2018, sec. 3.2, fig. 10), with sigma = sqrt(moving_var + eps), sigma_B = sqrt(var_B + eps):
    training, before the freeze step:
        y = conv(x, Q(W * gamma / sigma)) * (sigma / sigma_B) + beta - gamma * (mu_B - b) / sigma_B
        moving statistics <- EMA of the batch statistics of the float conv(x, W) + b
    inference, or after the freeze step (moving statistics no longer change):
        y = conv(x, Q(W * gamma / sigma)) + beta - gamma * (mu - b) / sigma
With quantization off (16/32 bits) the inference path equals conv -> BN of the float model.
The freeze step lives in a variable, so changing it (``tfmpq.freeze_bn``) works after tracing.
"""
from __future__ import annotations

from tfmpq._keras import keras, tf
from tfmpq.quantize.quantizers import fake_quant_weights

_ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": tf.nn.relu,
    "relu6": tf.nn.relu6,
}
KINDS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")
NEVER = 2**62  # freeze step meaning "never freeze"


@keras.utils.register_keras_serializable(package="tfmpq")
class QuantGroupLayer(keras.layers.Layer):
    """A weighted layer with its BatchNormalization and ReLU/ReLU6 folded in, fake-quantized as deployed.

    Args:
        kind: class name of the weighted layer: "Conv1D", "Conv2D", "DepthwiseConv2D" or "Dense".
        layer_config: `get_config()` of the weighted layer.
        bn_config: `get_config()` of the folded BatchNormalization, or None.
        activation: "linear", "relu" or "relu6", applied after the folded op.
        weight_bits: 2..8, or 16/32 to leave the kernel in float. Defaults to 8.
        per_channel: one scale per output channel. Defaults to True.
        symmetric: zero point 0 (TFLite int8 kernels need it). Defaults to True.
        bn_freeze_step: training step after which BN uses moving statistics. None: never. Defaults to None.
        variable_bits: the bit-width always lives in `weight_bits_var` (so fixed and variable-bit models
            share one graph); with True, a group built at 16/32 bits keeps its quantizer too, so the
            variable can switch it between float and 2..8 bits after tracing. Defaults to False.
    """

    def __init__(
        self,
        kind: str,
        layer_config: dict,
        bn_config: dict | None = None,
        activation: str = "linear",
        weight_bits: int = 8,
        per_channel: bool = True,
        symmetric: bool = True,
        bn_freeze_step: int | None = None,
        variable_bits: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"Invalid value for `kind`: expected one of {KINDS}. Received: kind={kind!r}.")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"Invalid value for `activation`: expected one of {tuple(_ACTIVATIONS)}. Received: {activation!r}."
            )
        self.kind = kind
        self.layer_config = dict(layer_config)
        self.bn_config = dict(bn_config) if bn_config else None
        self.activation = activation
        self.weight_bits = int(weight_bits)
        self.per_channel = bool(per_channel)
        self.symmetric = bool(symmetric)
        self.bn_freeze_step = None if bn_freeze_step is None else int(bn_freeze_step)
        self.variable_bits = bool(variable_bits)

    # ---- construction ----------------------------------------------------------------------------
    @property
    def quantized(self) -> bool:
        """Whether the kernel is fake-quantized (for variable bits: at the variable's current value)."""
        if self.built:
            return float(self.weight_bits_var.numpy()) <= 8
        return self.weight_bits <= 8

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
        # 1e-7 difference flips grid levels during training).
        self.weight_bits_var = self.add_weight(
            "tfmpq_weight_bits", shape=(), trainable=False,
            initializer=keras.initializers.Constant(float(self.weight_bits)),
        )
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
        if not self.variable_bits and self.weight_bits > 8:
            return kernel
        bits = self.weight_bits_var
        return tf.cond(bits > 8.5, lambda: tf.identity(kernel), lambda: self._fake_quant(kernel, bits))

    def _fake_quant(self, kernel, bits):
        if self.kind == "DepthwiseConv2D":  # output channel = (in, multiplier) flattened, TFLite's layout
            kh, kw, cin, mult = kernel.shape
            q = fake_quant_weights(tf.reshape(kernel, (kh, kw, cin * mult)), bits, self.per_channel, self.symmetric)
            return tf.reshape(q, kernel.shape)
        return fake_quant_weights(kernel, bits, self.per_channel, self.symmetric)

    def _bias(self):
        return self.bias if self.bias is not None else tf.zeros((self.out_channels,), self.dtype)

    def _bn_params(self):
        bn = self.bn_config
        gamma = self.gamma if self.gamma is not None else tf.ones((self.out_channels,))
        beta = self.beta if self.beta is not None else tf.zeros((self.out_channels,))
        return gamma, beta, float(bn.get("epsilon", 1e-3)), float(bn.get("momentum", 0.99))

    def folded(self):
        """(folded kernel, folded bias) with moving statistics, before weight quantization."""
        if self.bn_config is None:
            return self.kernel, self._bias()
        gamma, beta, eps, _ = self._bn_params()
        sigma = tf.sqrt(self.moving_variance + eps)
        kernel = self._scale_kernel(self.kernel, gamma / sigma)
        bias = beta - gamma * (self.moving_mean - self._bias()) / sigma
        return kernel, bias

    def call(self, inputs, training=None):
        if training is None:
            training = keras.backend.learning_phase()
        kernel, bias = self.folded()
        qkernel = self._quantize_kernel(kernel)
        static_training = tf.get_static_value(training) if tf.is_tensor(training) else training
        if self.bn_config is None or static_training is False or static_training == 0:
            y = self._op(inputs, qkernel) + bias
            return _ACTIVATIONS[self.activation](y)

        def batch_stats_branch():
            gamma, beta, eps, momentum = self._bn_params()
            y_float = self._op(inputs, self.kernel) + self._bias()
            axes = list(range(y_float.shape.rank - 1))
            mean_b, var_b = tf.nn.moments(y_float, axes=axes)
            with tf.control_dependencies([
                self.moving_mean.assign(self.moving_mean * momentum + tf.stop_gradient(mean_b) * (1 - momentum)),
                self.moving_variance.assign(
                    self.moving_variance * momentum + tf.stop_gradient(var_b) * (1 - momentum)),
            ]):
                sigma = tf.sqrt(self.moving_variance + eps)
                sigma_b = tf.sqrt(var_b + eps)
                y = self._op(inputs, qkernel) * (sigma / sigma_b)  # correction factor (Jacob et al., sec. 3.2)
                return y + beta - gamma * (mean_b - self._bias()) / sigma_b

        def frozen_branch():
            return self._op(inputs, qkernel) + bias

        in_training = tf.logical_and(tf.cast(training, tf.bool), self.train_step < self.freeze_step)
        with tf.control_dependencies([self.train_step.assign_add(tf.cast(tf.cast(training, tf.bool), tf.int64))]):
            y = tf.cond(in_training, batch_stats_branch, frozen_branch)
        return _ACTIVATIONS[self.activation](y)

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
            weight_bits=self.weight_bits,
            per_channel=self.per_channel,
            symmetric=self.symmetric,
            bn_freeze_step=self.bn_freeze_step,
            variable_bits=self.variable_bits,
        )
        return config
