"""N-bit quantizers: a stateless weight fake-quantizer and a tfmot activation `Quantizer`.

Weights are fake-quantized from their *current* values every call (symmetric: scale = max|w| /
(2^(b-1) - 1) on the narrow range [-(2^(b-1)-1), 2^(b-1)-1], as TFLite's int8 conv kernels require;
asymmetric: the [min(w, 0), max(w, 0)] range on 2^b levels). No range variable can go stale, so what
is trained, evaluated and exported is the same grid. Gradients are straight-through (Bengio et al. 2013)
with the range held constant.

Activations keep a [min, max] range in layer variables: set from the first training batch, then an
exponential moving average (Jacob et al. 2018, sec. 3.1); in calibration mode (``tfmpq.calibrate``)
they record the running min/max of the data without quantizing. Modes are variables, not Python flags,
so switching them takes effect in already-traced functions. Activations go through TensorFlow's own
FakeQuantWithMinMaxVars kernel (one pass forward, one backward, the op the deployment graph uses too;
`fake_quant_at_bits`), not through `fake_quant`'s dozen element-wise ops: on activations, which are far
larger than kernels, those passes cost about as much as the convolutions of a small CNN.
"""
from __future__ import annotations

from tfmpq._keras import keras, tf, tfmot

_EPS = 1e-8


def fake_quant(x: tf.Tensor, lo, hi, bits, narrow_range: bool) -> tf.Tensor:
    """Fake-quantize `x` to `bits` bits on [lo, hi]: TensorFlow's FakeQuantWithMinMaxVars, re-written.

    The same arithmetic as TF's kernel (fake_quant_ops_functor.h: nudge the zero point to an integer,
    clamp, ``floor((x - nudged_min) / scale + 0.5) * scale + nudged_min``), but `bits` may be a tensor,
    so one traced graph serves every bit-width (a search sets bits in a variable instead of rebuilding).
    `lo`/`hi` may be scalars or per-channel vectors (last axis). Straight-through gradient inside the
    nudged range, zero outside (as TF's op).
    """
    qmin = 1.0 if narrow_range else 0.0
    qmax = tf.pow(2.0, tf.cast(bits, tf.float32)) - 1.0
    scale = (hi - lo) / (qmax - qmin)
    zero_point_from_min = qmin - lo / scale
    # std::round (half away from zero) of a non-negative value, clamped to [qmin, qmax]
    nudged_zero_point = tf.clip_by_value(tf.floor(zero_point_from_min + 0.5), qmin, qmax)
    nudged_min = (qmin - nudged_zero_point) * scale
    nudged_max = (qmax - nudged_zero_point) * scale
    clamped = tf.minimum(tf.maximum(x, nudged_min), nudged_max)
    q = tf.floor((clamped - nudged_min) * (1.0 / scale) + 0.5) * scale + nudged_min
    inside = tf.logical_and(x >= nudged_min, x <= nudged_max)
    x_ste = tf.where(inside, x, tf.stop_gradient(x))
    return x_ste + tf.stop_gradient(q - x_ste)


def fake_quant_at_bits(x: tf.Tensor, lo, hi, bits, narrow_range: bool = False) -> tf.Tensor:
    """TensorFlow's FakeQuantWithMinMaxVars on [lo, hi] at a bit-width held in a tensor.

    The op takes its bit-width as an attribute, so there is one branch per width 2..8 (a `tf.switch_case`
    on `bits`, lowered to a switch by TensorFlow's graph runtime) and a pass-through above 8. Same
    grid as `fake_quant` (the values may differ by float rounding, a few units in the last place); the
    gradient is straight-through inside the nudged range, zero outside, and none reaches `lo`/`hi`.

    Args:
        x: the tensor to quantize.
        lo, hi: scalar range, lo <= 0 <= hi.
        bits: a scalar tensor (2..8, or above 8 to pass `x` through).
        narrow_range: quantize to [1, 2^bits - 1] instead of [0, 2^bits - 1]. Defaults to False.

    Returns:
        A tensor of `x`'s shape and dtype.
    """
    lo, hi = tf.stop_gradient(lo), tf.stop_gradient(hi)
    index = tf.cast(tf.clip_by_value(bits, 2.0, 9.0), tf.int32) - 2  # 0..6: 2..8 bits, 7: float

    def at(num_bits):
        return lambda: tf.quantization.fake_quant_with_min_max_vars(
            x, lo, hi, num_bits=num_bits, narrow_range=narrow_range)

    return tf.switch_case(index, [at(b) for b in range(2, 9)] + [lambda: tf.identity(x)])


def fake_quant_weights(w: tf.Tensor, bits, per_channel: bool, symmetric: bool) -> tf.Tensor:
    """Fake-quantize a weight tensor whose output channels are on the last axis.

    Args:
        w: the (folded) float kernel, output channels last.
        bits: 2..8 (a Python int or a scalar tensor), or one bit-width per output channel (a vector
            along the last axis, channel-wise bits): channel c then lies on its own ``bits[c]``-bit grid
            (symmetric: at most 2^bits[c] - 1 values), and a 0 prunes it (all its values 0, no gradient).
        per_channel: one scale per output channel (last axis) instead of one per tensor.
        symmetric: zero point 0 on the narrow range (TFLite int8 kernels), else asymmetric min/max.

    Returns:
        A tensor of `w`'s shape whose values lie on the `bits`-bit grid; straight-through gradient.
    """
    if getattr(bits, "shape", None) is not None and len(bits.shape) == 1:
        # Channel-wise bits: the same arithmetic, elementwise along the last axis (so a vector of one
        # width gives exactly the scalar width's values); pruned channels are selected away after it.
        keep = bits > 0.5
        q = _fake_quant_weights(w, tf.where(keep, bits, tf.fill(tf.shape(bits), 8.0)), per_channel, symmetric)
        return tf.where(keep, q, tf.zeros_like(q))
    return _fake_quant_weights(w, bits, per_channel, symmetric)


def _fake_quant_weights(w: tf.Tensor, bits, per_channel: bool, symmetric: bool) -> tf.Tensor:
    reduce_axes = list(range(w.shape.rank - 1)) if per_channel else None
    if symmetric:
        m = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(w), axis=reduce_axes), _EPS))
        return fake_quant(w, -m, m, bits, narrow_range=True)
    lo = tf.stop_gradient(tf.minimum(tf.reduce_min(w, axis=reduce_axes), 0.0))
    hi = tf.stop_gradient(tf.maximum(tf.reduce_max(w, axis=reduce_axes), 0.0))
    return fake_quant(w, lo, tf.maximum(hi, lo + _EPS), bits, narrow_range=False)


@keras.utils.register_keras_serializable(package="tfmpq")
class ActivationQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """Asymmetric per-tensor activation fake-quantizer with an EMA range and a calibration mode.

    Args:
        num_bits: 2..8 (16/32: pass values through).
        ema_decay: decay of the moving average of the batch range while training. Defaults to 0.99.
        variable_bits: keep the bit-width in a variable (`<name>_tfmpq_bits`) that can be changed after
            tracing; above 8 the quantizer passes values through. Defaults to False.
    """

    def __init__(self, num_bits: int = 8, ema_decay: float = 0.99, variable_bits: bool = False):
        self.num_bits = int(num_bits)
        self.ema_decay = float(ema_decay)
        self.variable_bits = bool(variable_bits)

    def build(self, tensor_shape, name, layer):
        def var(suffix, init, dtype=tf.float32):
            return layer.add_weight(
                f"{name}_{suffix}", shape=(), initializer=keras.initializers.Constant(init), dtype=dtype,
                trainable=False,
            )

        variables = {
            "min_var": var("min", -6.0),
            "max_var": var("max", 6.0),
            # 0 until the range has seen data; the first batch then sets it directly.
            "seen": var("tfmpq_seen", 0.0),
            # 1 while tfmpq.calibrate() runs: record min/max of the data, pass values through.
            "calibrating": var("tfmpq_calibrating", 0.0),
        }
        # Always a variable (see QuantGroupLayer.build): fixed and variable-bit models share one graph.
        variables["bits"] = var("tfmpq_bits", float(self.num_bits))
        return variables

    def __call__(self, inputs, training, weights, **kwargs):
        x = inputs
        vmin, vmax, seen, calibrating = (weights[k] for k in ("min_var", "max_var", "seen", "calibrating"))
        first = tf.equal(seen, 0.0)

        def batch_range():  # two passes over x: only where the range is updated (not in inference)
            return tf.minimum(tf.reduce_min(x), 0.0), tf.maximum(tf.reduce_max(x), 0.0)

        if training:
            bmin, bmax = batch_range()
            d = self.ema_decay
            new_min = tf.where(first, bmin, vmin * d + bmin * (1 - d))
            new_max = tf.where(first, bmax, vmax * d + bmax * (1 - d))
            with tf.control_dependencies([vmin.assign(new_min), vmax.assign(new_max), seen.assign(1.0)]):
                return self._quantize(x, new_min, new_max, weights)

        def calibrate():
            bmin, bmax = batch_range()
            new_min = tf.where(first, bmin, tf.minimum(vmin, bmin))
            new_max = tf.where(first, bmax, tf.maximum(vmax, bmax))
            with tf.control_dependencies([vmin.assign(new_min), vmax.assign(new_max), seen.assign(1.0)]):
                return tf.identity(x)

        return tf.cond(calibrating > 0.5, calibrate, lambda: self._quantize(x, vmin, vmax, weights))

    def _quantize(self, x, lo, hi, weights):
        hi = tf.maximum(hi, lo + _EPS)
        if not self.variable_bits and self.num_bits > 8:
            return tf.identity(x)
        return fake_quant_at_bits(x, lo, hi, weights["bits"])

    def get_config(self):
        return {"num_bits": self.num_bits, "ema_decay": self.ema_decay, "variable_bits": self.variable_bits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, ActivationQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)
