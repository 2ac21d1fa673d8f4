"""VariableBitModel: one compiled QAT model for a whole search; bit-widths are state, not structure.

Building a QAT model (`quantize_apply` + compile) and tracing its first epoch costs about as much as
a short training run itself. Here every quantizer reads its bit-width from a variable, so a search
builds and traces one model, and each candidate only assigns bits, restores the initial weights and
optimizer state, trains and scores. The arithmetic is the static path's (same `fake_quant`), so a
policy scores the same either way (tested); export still uses the static `quantize_model`.
"""
from __future__ import annotations

from tf_keras.src import backend as tf_random_generator

from tfmpq.convert import as_tf_keras
import numpy as np

from tfmpq.errors import PolicyError
from tfmpq.metrics import pruned_inputs
from tfmpq.policy import QuantPolicy
from tfmpq.quantize.api import _wrappers, quantize_model


class VariableBitModel:
    """A QAT model whose weight bits (one per output channel) and activation bits (one per group) are variables.

    Any policy of the model, per-layer or channel-wise (``QuantPolicy`` with per-channel tuples, 0 =
    pruned), is set by assigning variables: the traced train, predict and one-shot functions follow it.

    Args:
        model: the float tf_keras or Keras 3 model (converted with `tfmpq.convert.as_tf_keras`).
        per_channel, symmetric, bn_freeze_step, bn_fold: as in `quantize_model`.

    Example:
        >>> vbm = VariableBitModel(model)
        >>> vbm.model.compile(...)              # once
        >>> vbm.set_policy(policy); vbm.reset() # per candidate: bits, initial weights, fresh optimizer
        >>> vbm.model.fit(...)
    """

    def __init__(self, model, per_channel: bool = True, symmetric: bool = True, bn_freeze_step: int | None = None,
                 bn_fold: str = "one_conv"):
        model = as_tf_keras(model)
        self.float_model = model
        base = QuantPolicy.uniform(model, 8, 8)
        self.groups = base.check_model(model)
        self.group_names = base.group_names
        self.signature = base.signature
        # Random layers (Dropout, noise) draw from tf.random.Generator objects whose state is part of the
        # model, so a reset makes every candidate see the same masks without tf.random.set_seed (which
        # clears TensorFlow's kernel cache and costs seconds per candidate on a MobileNet).
        was_enabled = tf_random_generator.is_tf_random_generator_enabled()
        tf_random_generator.enable_tf_random_generator()
        try:
            self.model = quantize_model(model, base, per_channel=per_channel, symmetric=symmetric,
                                        bn_freeze_step=bn_freeze_step, variable_bits=True, bn_fold=bn_fold)
        finally:
            if not was_enabled:
                tf_random_generator.disable_tf_random_generator()
        self._groups = {inner.name: (wrapper, inner) for wrapper, inner in _wrappers(self.model)}
        group_bits = {id(w._output_quantizer_vars["bits"]) for w, _ in self._groups.values()}  # noqa: SLF001
        # Input / residual / pooling quantizers: 8 bits, or off when every group's activations are float.
        self._other_bits = [v for v in self.model.variables
                            if v.name.endswith("_tfmpq_bits:0") and id(v) not in group_bits]
        self._initial = [v.numpy() for v in self.model.variables]
        self.policy = base

    def set_policy(self, policy: QuantPolicy) -> None:
        """Assign `policy`'s bits to the model's variables (no rebuild, no retrace), channel-wise bits included."""
        if policy.group_names != self.group_names or policy.signature not in ("", self.signature):
            raise PolicyError(
                f"This policy was made for another model: groups {list(policy.group_names)[:4]}... vs the search "
                f"model's {list(self.group_names)[:4]}... (signatures {policy.signature} / {self.signature})."
            )
        values = self.bit_values(dict(zip(policy.group_names, policy.weight_bits)),
                                 dict(zip(policy.group_names, policy.activation_bits)))
        start = 0
        for v in self._bit_variables():
            size = int(np.prod(v.shape.as_list()))
            v.assign(values[start:start + size].reshape(v.shape.as_list()))
            start += size
        self.policy = policy

    def bit_values(self, weight: dict, activation: dict) -> np.ndarray:
        """Every bit variable's value for these bits, flattened in ``_bit_variables()`` order.

        Args:
            weight: group name -> weight bits: an int, or one bit-width per output channel (0 = pruned).
            activation: group name -> activation bits.

        Returns:
            A float32 vector: the other quantizers' bits (8, or 32 when every activation is float), then per
            group its channel bits, its activation bits and (Conv1D / Conv2D / Dense) its kernel rows kept
            (``tfmpq.metrics.pruned_inputs``).

        Raises:
            ValueError: a group's per-channel bits of the wrong length.
        """
        other = 8.0 if any(a <= 8 for a in activation.values()) else 32.0
        rows = pruned_inputs(self.groups, [weight[g.name] for g in self.groups])
        out = [np.full(len(self._other_bits), other, np.float32)]
        for name, (_, inner) in self._groups.items():
            w = weight[name]
            channels = np.asarray(w, np.float32).reshape(-1) if isinstance(w, (tuple, list, np.ndarray)) else np.full(
                (inner.out_channels,), float(w), np.float32)
            if channels.shape != (inner.out_channels,):
                raise ValueError(f"Invalid value for `weight_bits`: group `{name}` has {inner.out_channels} output "
                                 f"channels. Received {channels.size} per-channel bit-widths.")
            out += [channels, np.asarray([activation[name]], np.float32)]
            if hasattr(inner, "input_keep_var"):
                out.append(inner._row_mask_values(rows[name][1] if name in rows else None))  # noqa: SLF001
        return np.concatenate(out).astype(np.float32)

    def reset(self) -> None:
        """Restore the initial (float-derived) weights, BN statistics, quantizer ranges and step counters,
        keep the current bits, and zero the optimizer's state (a fresh optimizer, without retracing)."""
        bits = {id(v) for v in self._bit_variables()}
        for v, value in zip(self.model.variables, self._initial):
            if id(v) not in bits:
                v.assign(value)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            for v in optimizer.variables:
                v.assign(v.numpy() * 0)

    def _bit_variables(self):
        """Every variable a policy sets: the other quantizers' bits (scalars), then per group its channel
        bits (one per output channel), its activation bits (a scalar) and, for a Conv1D / Conv2D / Dense,
        which of its kernel rows are kept (one per row)."""
        out = list(self._other_bits)
        for wrapper, inner in self._groups.values():
            out += [inner.channel_bits_var, wrapper._output_quantizer_vars["bits"]]  # noqa: SLF001
            if hasattr(inner, "input_keep_var"):
                out.append(inner.input_keep_var)
        return out
