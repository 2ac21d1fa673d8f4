"""Cost metrics of a mixed-precision policy: size, BOPs and average bit-widths (pure Python).

Formulas and their sources:
- weight_bytes: sum over groups of kernel_params * w_bits / 8 + bias_params * 4 (32-bit biases, as
  TFLite stores them) + QPARAM_BYTES per quantization channel (a float32 scale and an int32 zero point),
  plus every float weight outside the groups at 4 bytes. Float groups (16/32 bits) count
  params * bits / 8 and no quantization parameters.
- compression_ratio: float_weight_bytes / weight_bytes (seed 000 sec. 5.3: original size over
  quantized size); compression_ratio_eq9 = 32 / avg_weight_bits (seed 000 eq. 9), which ignores biases.
- avg_weight_bits: sum_j n_j * nbr(j) / sum_j nbr(j), parameter-weighted (seed 000 eq. 10).
- bops: sum_j MACs_j * n_j * m_j (bit operations; the survey, seed 004, and Baskin et al.).
- avg_op_bits: sqrt(sum_j m_j * n_j * OP(j) / sum_j OP(j)), MAC-weighted (seed 000 eq. 11), so a
  policy at 4-bit weights and 4-bit activations everywhere has avg_op_bits 4.
"""
from __future__ import annotations

import math

from tfmpq.convert import as_tf_keras
from tfmpq.graph import QuantGroup, quantizable_groups
from tfmpq.policy import QuantPolicy, _groups_of, is_float

QPARAM_BYTES = 8  # per quantization channel: float32 scale + int32 zero point


def _other_float_params(model) -> int:
    """Trainable+BN weights of layers that are not part of any group (stay float)."""
    if model is None or isinstance(model, (list, tuple)):
        return 0
    in_groups = {n for g in quantizable_groups(model) for n in g.layers}
    return sum(
        int(w.shape.num_elements() or 0) for layer in model.layers if layer.name not in in_groups for w in layer.weights
    )


def group_weight_bytes(group: QuantGroup, weight_bits: int, per_channel: bool = True) -> float:
    """Bytes one group's weights take at `weight_bits` (see the module docstring)."""
    if is_float(weight_bits):
        return group.params * weight_bits / 8
    channels = group.out_channels if per_channel else 1
    return group.kernel_params * weight_bits / 8 + group.bias_params * 4 + channels * QPARAM_BYTES


def summary(model, policy: QuantPolicy, per_channel: bool = True) -> dict:
    """Size and compute cost of `policy` on `model`.

    Args:
        model: the float tf_keras or Keras 3 model (or its list of `QuantGroup`s, which skips float
            layers outside the groups).
        policy: a `QuantPolicy` made for this model.
        per_channel: whether weights have one scale per output channel. Defaults to True.

    Returns:
        A dict with `float_weight_bytes`, `weight_bytes`, `compression_ratio`, `compression_ratio_eq9`,
        `avg_weight_bits`, `avg_activation_bits`, `bops`, `avg_op_bits`, `macs`, `params`, and
        `groups` (a per-group list of name, weight/activation bits, params, MACs and bytes).

    Raises:
        PolicyError: if `policy` was made for another model.

    Example:
        >>> tfmpq.metrics.summary(model, tfmpq.QuantPolicy.uniform(model, 4, 4))["avg_op_bits"]
        4.0
    """
    model = as_tf_keras(model)
    groups = _groups_of(model)
    policy.check_model(groups)
    other = _other_float_params(model)
    float_bytes = sum(g.params for g in groups) * 4 + other * 4
    per_group, size = [], other * 4.0
    bit_params = bit_ops = total_ops = 0.0
    act_macs = 0.0
    for g, wb, ab in zip(groups, policy.weight_bits, policy.activation_bits):
        nbytes = group_weight_bytes(g, wb, per_channel)
        size += nbytes
        bit_params += wb * g.kernel_params  # eq. 10 numerator
        bit_ops += wb * ab * g.macs  # BOPs, and eq. 11 numerator
        total_ops += g.macs
        act_macs += ab * g.macs
        per_group.append(
            {"name": g.name, "kind": g.kind, "weight_bits": wb, "activation_bits": ab, "params": g.params,
             "macs": g.macs, "weight_bytes": nbytes}
        )
    kernel_params = sum(g.kernel_params for g in groups)
    avg_w = bit_params / kernel_params if kernel_params else 0.0
    return {
        "float_weight_bytes": float(float_bytes),
        "weight_bytes": float(size),
        "compression_ratio": float(float_bytes / size) if size else float("inf"),
        "compression_ratio_eq9": 32.0 / avg_w if avg_w else float("inf"),
        "avg_weight_bits": avg_w,
        "avg_activation_bits": act_macs / total_ops if total_ops else 0.0,
        "bops": float(bit_ops),
        "avg_op_bits": math.sqrt(bit_ops / total_ops) if total_ops else 0.0,
        "macs": int(total_ops),
        "params": int(sum(g.params for g in groups) + other),
        "groups": per_group,
    }
