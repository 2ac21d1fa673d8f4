"""N-bit quantizers: a stateless weight fake-quantizer and a tfmot activation `Quantizer`.

Weights are fake-quantized from their *current* values every call (symmetric: scale = max|w| /
(2^(b-1) - 1) on the narrow range [-(2^(b-1)-1), 2^(b-1)-1], as TFLite's int8 conv kernels require;
asymmetric: the [min(w, 0), max(w, 0)] range on 2^b levels). No range variable can go stale, so what
is trained, evaluated and exported is the same grid. Gradients are straight-through (Bengio et al. 2013)
with the range held constant.

Activations keep a [min, max] range in layer variables: set from the first training batch, then an
exponential moving average (Jacob et al. 2018, sec. 3.1); in calibration mode (``tfmpq.calibrate``)
they record the running min/max of the data without quantizing. Modes are variables, not Python flags,
so switching them takes effect in already-traced functions.
"""
from __future__ import annotations

from tfmpq._keras import keras, tf, tfmot

_EPS = 1e-8


def fake_quant_weights(w: tf.Tensor, bits: int, per_channel: bool, symmetric: bool) -> tf.Tensor:
    """Fake-quantize a weight tensor whose output channels are on the last axis.

    Args:
        w: the (folded) float kernel, output channels last.
        bits: 2..8.
        per_channel: one scale per output channel (last axis) instead of one per tensor.
        symmetric: zero point 0 on the narrow range (TFLite int8 kernels), else asymmetric min/max.

    Returns:
        A tensor of `w`'s shape whose values lie on the `bits`-bit grid; straight-through gradient.
    """
    reduce_axes = list(range(w.shape.rank - 1)) if per_channel else None
    if symmetric:
        m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w), axis=reduce_axes), _EPS))
        lo, hi, narrow = -m, m, True
    else:
        lo = tf.stop_gradient(tf.minimum(tf.reduce_min(w, axis=reduce_axes), 0.0))
        hi = tf.stop_gradient(tf.maximum(tf.reduce_max(w, axis=reduce_axes), 0.0))
        hi = tf.maximum(hi, lo + _EPS)
        narrow = False
    if per_channel:
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(w, lo, hi, num_bits=bits, narrow_range=narrow)
    return tf.quantization.fake_quant_with_min_max_vars(w, lo, hi, num_bits=bits, narrow_range=narrow)


@keras.utils.register_keras_serializable(package="tfmpq")
class ActivationQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """Asymmetric per-tensor activation fake-quantizer with an EMA range and a calibration mode.

    Args:
        num_bits: 2..8.
        ema_decay: decay of the moving average of the batch range while training. Defaults to 0.99.
    """

    def __init__(self, num_bits: int = 8, ema_decay: float = 0.99):
        self.num_bits = int(num_bits)
        self.ema_decay = float(ema_decay)

    def build(self, tensor_shape, name, layer):
        def var(suffix, init, dtype=tf.float32):
            return layer.add_weight(
                f"{name}_{suffix}", shape=(), initializer=keras.initializers.Constant(init), dtype=dtype,
                trainable=False,
            )

        return {
            "min_var": var("min", -6.0),
            "max_var": var("max", 6.0),
            # 0 until the range has seen data; the first batch then sets it directly.
            "seen": var("tfmpq_seen", 0.0),
            # 1 while tfmpq.calibrate() runs: record min/max of the data, pass values through.
            "calibrating": var("tfmpq_calibrating", 0.0),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        x = inputs
        bmin = tf.minimum(tf.reduce_min(x), 0.0)
        bmax = tf.maximum(tf.reduce_max(x), 0.0)
        vmin, vmax, seen, calibrating = (weights[k] for k in ("min_var", "max_var", "seen", "calibrating"))
        first = tf.equal(seen, 0.0)
        if training:
            d = self.ema_decay
            new_min = tf.where(first, bmin, vmin * d + bmin * (1 - d))
            new_max = tf.where(first, bmax, vmax * d + bmax * (1 - d))
            with tf.control_dependencies([vmin.assign(new_min), vmax.assign(new_max), seen.assign(1.0)]):
                return self._quantize(x, new_min, new_max)

        def calibrate():
            new_min = tf.where(first, bmin, tf.minimum(vmin, bmin))
            new_max = tf.where(first, bmax, tf.maximum(vmax, bmax))
            with tf.control_dependencies([vmin.assign(new_min), vmax.assign(new_max), seen.assign(1.0)]):
                return tf.identity(x)

        return tf.cond(calibrating > 0.5, calibrate, lambda: self._quantize(x, vmin, vmax))

    def _quantize(self, x, lo, hi):
        hi = tf.maximum(hi, lo + _EPS)
        return tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, num_bits=self.num_bits, narrow_range=False)

    def get_config(self):
        return {"num_bits": self.num_bits, "ema_decay": self.ema_decay}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, ActivationQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)
