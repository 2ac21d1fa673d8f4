"""Layer sensitivity from the loss Hessian: Hutchinson traces and the per-bit cost table Omega.

What a quantizable group's weights may lose depends on how curved the loss is around them. For a
trained model (gradient near zero) a perturbation ``dW`` of group ``g``'s kernel costs about
``1/2 dW^T H_g dW`` in loss (Azizi et al. 2023, "Sensitivity-aware mixed-precision quantization and
width optimization of deep neural networks through cluster-based tree-structured Parzen estimation",
sec. III.A, eq. 1, Lemma 1), with ``H_g`` the Hessian of the loss with respect to that kernel.

* **The trace** ``Tr(H_g)`` is estimated with Hutchinson's method (Hutchinson 1990; Avron and Toledo
  2011): ``E[z^T H z] = Tr(H)`` for Rademacher vectors ``z``; each ``H z`` is one Hessian-vector
  product by double backpropagation (Pearlmutter 1994), as HAWQ-V2 does (Dong et al. 2020, sec. 3.1;
  Yao et al. 2020, PyHessian). One probe covers every group at once: ``z`` has a block per group and
  group ``g``'s sample is ``z_g^T (H z)_g``. Its variance is
  ``2 sum_{i != j in g} H_ij^2 + sum_{i in g, j not in g} H_ij^2`` (the off-diagonal terms of ``g``
  count twice, since ``H`` is symmetric, and the cross-group terms once); the mean of ``m`` probes has
  that over ``m``.
* **The kernel** is the *folded* one, ``W_f = W * gamma / sigma`` (per output channel, BN's moving
  statistics), the tensor tfmpq quantizes and deploys (``QuantGroupLayer.folded``). The float model
  computes the same function of ``W_f`` as the folded one, so with ``s = gamma / sigma`` and
  ``D = diag(s)``, the Hessian in folded coordinates is ``H_f = D^-1 H_W D^-1``; probing the float
  model's kernel with ``u = z / s`` gives ``u^T H_W u = z^T H_f z``, the Hutchinson sample of
  ``Tr(H_f)``. A channel with ``gamma = 0`` is constant in the float model and is left out (its probe
  is 0; its folded weights are 0, so quantizing them costs nothing).
* **The per-bit cost** ``Omega_g(b) = Tr(H_g) * ||Q_b(W_g) - W_g||^2 / n_g`` (Yao et al. 2021, HAWQ-V3,
  sec. 3.4, eq. 7; HAWQ-V2's average trace times the squared quantization error), with ``Q_b``
  tfmpq's weight quantizer (per-channel symmetric by default: what export writes) and ``n_g`` the
  kernel's weights. A negative trace estimate (a group at a saddle, or noise) is clipped to 0 in
  Omega. This is the table :func:`tfmpq.search.allocation.solve_allocation` minimises
  (:func:`omega_table`).
* **Per channel** (channel-wise bits): the same probes give each output channel's trace, the part of
  ``z_g^T (H z)_g`` over that channel's weights (``TraceEstimate.channel_trace``; the channel traces sum to
  the group's), and :func:`channel_quantization_error` each channel's ``||Q_b(w_c) - w_c||^2``: the
  per-channel statistics a channel-wise search orders channels by.

The loss is the model's mean loss over ``data`` in inference mode (BatchNormalization uses its moving
statistics, dropout is off): the compiled loss, else a cross-entropy inferred like
``tfmpq.search.Evaluator`` does.

Example:
>>> traces = tfmpq.sensitivity(model, (x_train[:512], y_train[:512]), seed=0)
>>> omega = tfmpq.omega_table(model, traces, bits=(2, 3, 4, 5, 6, 7, 8))
>>> omega["conv1"][4]          # Tr(H) * ||Q_4(W) - W||^2 / n for group conv1
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq.convert import as_tf_keras, tf_keras_loss
from tfmpq.graph import QuantGroup, quantizable_groups
from tfmpq.policy import PRUNED, QUANT_BITS, is_float
from tfmpq.quantize.quantizers import fake_quant_weights

__all__ = ["sensitivity", "hessian_trace", "TraceEstimate", "folded_kernels", "quantization_error",
           "channel_quantization_error", "channel_sensitivity", "cluster_omega", "omega_table", "METHODS"]

#: Sensitivity methods offered by :func:`sensitivity`.
METHODS = ("hessian",)


@dataclasses.dataclass
class TraceEstimate:
    """Hutchinson estimates of each group's Hessian trace.

    Attributes:
        groups: group names, in the model's order.
        trace: ``{group: Tr(H_g)}`` (the mean over probes).
        std_error: ``{group: sample standard deviation / sqrt(num_probes)}``.
        params: ``{group: n_g}``, the kernel's number of weights.
        samples: ``(num_probes, num_groups)`` array of the per-probe values ``z_g^T (H z)_g``.
        num_probes: probes drawn.
        num_samples: data samples the loss was averaged over.
        channel_trace: ``{group: per-output-channel traces}`` (NumPy, one per channel in
            ``tfmpq.QuantPolicy``'s channel order; they sum to ``trace[group]``).
    """

    groups: tuple
    trace: dict
    std_error: dict
    params: dict
    samples: np.ndarray
    num_probes: int
    num_samples: int
    channel_trace: dict = dataclasses.field(default_factory=dict)

    def average(self) -> dict:
        """``{group: Tr(H_g) / n_g}``: the per-parameter (average) trace (HAWQ-V2, sec. 3.2)."""
        return {g: self.trace[g] / self.params[g] for g in self.groups}

    def to_json(self) -> dict:
        return {"groups": list(self.groups), "trace": dict(self.trace), "std_error": dict(self.std_error),
                "params": dict(self.params), "num_probes": self.num_probes, "num_samples": self.num_samples}


def _kernel_variable(layer, group: QuantGroup):
    return layer.depthwise_kernel if group.kind == "DepthwiseConv2D" else layer.kernel


def _fold_scale(model, group: QuantGroup, kernel_shape) -> np.ndarray:
    """``gamma / sqrt(moving_variance + eps)`` of the group's BatchNormalization, shaped to broadcast
    over its kernel (ones without BN)."""
    if group.kind == "Conv2DTranspose":  # kernel (kh, kw, out, in): output channels on axis 2
        s = _fold_scale_vector(model, group, kernel_shape[2])
        return s.reshape(1, 1, -1, 1)
    if not group.has_bn:
        return np.ones(kernel_shape[-1:] if group.kind != "DepthwiseConv2D" else kernel_shape[2:], np.float32)
    s = _fold_scale_vector(model, group, None)
    if group.kind == "DepthwiseConv2D":  # BN channel = (in, multiplier) flattened, as QuantGroupLayer folds it
        s = s.reshape(kernel_shape[2:])
    return s


def _fold_scale_vector(model, group: QuantGroup, channels: int | None) -> np.ndarray:
    """``gamma / sigma`` per output channel (ones, `channels` of them, without BN)."""
    if not group.has_bn:
        return np.ones(channels, np.float32)
    bn = model.get_layer(group.bn_layer)
    var = np.asarray(bn.moving_variance.numpy(), np.float64)
    gamma = np.asarray(bn.gamma.numpy(), np.float64) if bn.gamma is not None else np.ones_like(var)
    return (gamma / np.sqrt(var + float(bn.epsilon))).astype(np.float32)


def folded_kernels(model, groups: Sequence[QuantGroup] | None = None) -> dict[str, np.ndarray]:
    """Every group's BN-folded float kernel ``W * gamma / sigma`` (moving statistics), as NumPy.

    The same tensor ``tfmpq.quantize.QuantGroupLayer.folded()`` gives for a QAT model built from
    ``model``, before any training.

    Args:
        model: the float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        groups: its groups (``tfmpq.quantizable_groups(model)``). Defaults to None (computed).

    Returns:
        ``{group name: folded kernel}``, in the Keras layout (output channels last; a Conv2DTranspose's
        on axis 2, as Keras lays it out).
    """
    model = as_tf_keras(model)
    groups = quantizable_groups(model) if groups is None else groups
    out = {}
    for g in groups:
        w = np.asarray(_kernel_variable(model.get_layer(g.name), g).numpy())
        out[g.name] = (w * _fold_scale(model, g, w.shape)).astype(np.float32)
    return out


def _by_channel(kernel: np.ndarray, kind: str) -> np.ndarray:
    """The kernel as (weights per channel, output channels), in the channel order of channel-wise bits."""
    if kind == "DepthwiseConv2D":
        return kernel.reshape(-1, kernel.shape[-2] * kernel.shape[-1])
    return kernel.reshape(-1, kernel.shape[-1])


def _quantize(kernel: np.ndarray, bits: int, kind: str, per_channel: bool, symmetric: bool) -> np.ndarray:
    """``Q_b(kernel)`` with tfmpq's weight quantizer, per output channel as export lays it out; at 0 bits
    (``PRUNED``) zeros: a pruned channel's weights are gone, its perturbation is the whole weight."""
    if is_float(bits):
        return kernel
    if bits == PRUNED:
        return np.zeros_like(kernel)
    if kind == "DepthwiseConv2D":
        kh, kw, cin, mult = kernel.shape
        q = fake_quant_weights(tf.constant(kernel.reshape(kh, kw, cin * mult)), bits, per_channel, symmetric)
        return q.numpy().reshape(kernel.shape)
    if kind == "Conv2DTranspose":  # (kh, kw, out, in): output channels last for the quantizer, and back
        swap = (0, 1, 3, 2)
        q = fake_quant_weights(tf.constant(kernel.transpose(swap)), bits, per_channel, symmetric)
        return q.numpy().transpose(swap)
    return fake_quant_weights(tf.constant(kernel), bits, per_channel, symmetric).numpy()


def quantization_error(model, bits: Sequence[int] = QUANT_BITS, *, per_channel: bool = True,
                       symmetric: bool = True) -> dict[str, dict[int, float]]:
    """``||Q_b(W_g) - W_g||^2`` of every group's folded kernel at every bit-width in ``bits``.

    Args:
        model: the float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        bits: bit-widths (2..8; 16/32 give 0). Defaults to 2..8.
        per_channel: one scale per output channel. Defaults to True (what export writes).
        symmetric: symmetric narrow-range grid. Defaults to True.

    Returns:
        ``{group: {bits: squared error}}``.
    """
    model = as_tf_keras(model)
    groups = quantizable_groups(model)
    kernels = folded_kernels(model, groups)
    return {g.name: {int(b): float(np.sum((_quantize(kernels[g.name], int(b), g.kind, per_channel, symmetric)
                                           - kernels[g.name]).astype(np.float64) ** 2)) for b in bits}
            for g in groups}


def channel_quantization_error(model, bits: Sequence[int] = QUANT_BITS, *,
                               symmetric: bool = True) -> dict[str, dict[int, np.ndarray]]:
    """``||Q_b(w_c) - w_c||^2`` of every output channel ``c`` of every group's folded kernel.

    Per-channel quantization (one scale per channel: what channel-wise bits need), so channel c's error
    at b bits is what it costs when that channel alone is given b bits. Sums over channels to
    :func:`quantization_error`'s per-channel value.

    Args:
        model: the float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        bits: bit-widths (2..8; 16/32 give 0). Defaults to 2..8.
        symmetric: symmetric narrow-range grid. Defaults to True.

    Returns:
        ``{group: {bits: array of one error per output channel}}``; at 0 bits (a pruned channel) the error
        is ``||w_c||^2``.
    """
    model = as_tf_keras(model)
    groups = quantizable_groups(model)
    kernels = folded_kernels(model, groups)
    out = {}
    for g in groups:
        k = kernels[g.name]
        out[g.name] = {int(b): np.sum(_by_channel((_quantize(k, int(b), g.kind, True, symmetric) - k).astype(
            np.float64), g.kind) ** 2, axis=0) for b in bits}
    return out


def channel_sensitivity(model, method: str = "weight", *, bits: int = 2, group_bits: Mapping[str, int] | None = None,
                        data=None, channel_traces: Mapping | None = None, num_probes: int = 64,
                        num_samples: int | None = 512, seed: int = 0) -> dict[str, np.ndarray]:
    """One sensitivity per output channel of every group: what a channel-wise search orders channels by.

    * ``"weight"``: the channel's quantization error ``||Q_b(w_c) - w_c||^2`` (folded kernel,
      per-channel symmetric grid), at ``bits``: the noise the channel takes at that width.
    * ``"hessian"``: HAWQ-V3's Omega per channel, ``max(Tr(H_c), 0) * ||Q_b(w_c) - w_c||^2 / n_c``
      (Yao et al. 2021, eq. 7, with the group's trace and kernel replaced by the channel's: the channel
      traces are the Hutchinson probes restricted to its weights, ``TraceEstimate.channel_trace``).

    The README ("Channel-wise bits") measures which ranks better.

    Args:
        model: the float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        method: ``"weight"`` or ``"hessian"``. Defaults to "weight".
        bits: the width the error is taken at. Defaults to 2.
        group_bits: ``{group: width}`` replacing ``bits`` for some groups. Defaults to None.
        data: ``(x, y)`` arrays the ``"hessian"`` traces are estimated on. Defaults to None.
        channel_traces: ``{group: per-channel traces}`` to use instead of estimating them. Defaults to None.
        num_probes, num_samples, seed: see :func:`hessian_trace`. Defaults to 64, 512, 0.

    Returns:
        ``{group: array of one value per output channel}`` (``tfmpq.QuantPolicy``'s channel order).

    Raises:
        ValueError: an unknown ``method``, or ``"hessian"`` without ``data`` or ``channel_traces``.
    """
    methods = ("weight", "hessian")
    if method not in methods:
        raise ValueError(f"Invalid value for `channel_ranking`: expected one of {methods}. Received: {method!r}")
    model = as_tf_keras(model)
    groups = quantizable_groups(model)
    group_bits = {g.name: int(dict(group_bits or {}).get(g.name, bits)) for g in groups}
    errors = channel_quantization_error(model, bits=sorted(set(group_bits.values())))
    out = {g.name: errors[g.name][group_bits[g.name]] for g in groups}
    if method == "weight":
        return out
    if channel_traces is None:
        if data is None:
            raise ValueError("Invalid value for `data`: the 'hessian' channel ranking estimates Hessian traces and "
                             "needs (x, y) training data. Received: data=None (pass it, or channel_ranking='weight').")
        channel_traces = hessian_trace(model, data, num_probes=num_probes, num_samples=num_samples,
                                       seed=seed).channel_trace
    return {g.name: np.maximum(np.asarray(channel_traces[g.name], np.float64), 0.0) * out[g.name]
            * g.out_channels / g.kernel_params for g in groups}


def cluster_omega(model, channel_traces: Mapping, clusters: Mapping[str, Sequence[Sequence[int]]],
                  bits: Sequence[int] = QUANT_BITS) -> dict[str, list[dict[int, float]]]:
    """HAWQ-V3's Omega of each channel cluster: ``max(Tr(H_k), 0) * ||Q_b(W_k) - W_k||^2 / n_k`` (Yao et al.
    2021, eq. 7, a cluster ``k`` of output channels taken as its own layer: its trace and squared error are
    its channels' sums, ``n_k`` its weights). The clusters of a group at one width sum to about the group's
    ``omega_table`` value (exactly when its channels share trace and error). At 0 bits (the cluster pruned)
    ``Q_0(W_k) = 0``: the perturbation is the whole ``W_k`` (the kernel's; eq. 7 has no bias term).

    Args:
        model: the float model.
        channel_traces: ``{group: per-channel traces}`` (``TraceEstimate.channel_trace``).
        clusters: ``{group: its clusters, each a sequence of channel indices}``.
        bits: widths of the table (0: pruned). Defaults to 2..8.

    Returns:
        ``{group: [{bits: Omega} per cluster]}`` for the groups of ``clusters``.
    """
    model = as_tf_keras(model)
    groups = {g.name: g for g in quantizable_groups(model)}
    errors = channel_quantization_error(model, bits=bits)
    out = {}
    for name, parts in clusters.items():
        per_channel = groups[name].kernel_params / groups[name].out_channels
        trace = np.asarray(channel_traces[name], np.float64)
        out[name] = [{int(b): max(float(trace[list(k)].sum()), 0.0) * float(e[list(k)].sum()) / (per_channel * len(k))
                      for b, e in errors[name].items()} for k in parts]
    return out


def omega_table(model, traces: Mapping[str, float] | TraceEstimate, bits: Sequence[int] = QUANT_BITS, *,
          per_channel: bool = True, symmetric: bool = True) -> dict[str, dict[int, float]]:
    """The per-bit cost table ``Omega_g(b) = max(Tr(H_g), 0) * ||Q_b(W_g) - W_g||^2 / n_g``
    (Yao et al. 2021, HAWQ-V3, eq. 7).

    Args:
        model: the float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        traces: ``{group: Tr(H_g)}`` (the *total* trace, as :func:`sensitivity` returns by default) or a
            :class:`TraceEstimate`.
        bits: bit-widths of the table. Defaults to 2..8.
        per_channel, symmetric: the weight quantizer (see :func:`quantization_error`). Defaults to True.

    Returns:
        ``{group: {bits: Omega}}`` for every group of the model.

    Raises:
        ValueError: ``traces`` lacks a group or holds a non-finite value.
    """
    if isinstance(traces, TraceEstimate):
        traces = traces.trace
    model = as_tf_keras(model)
    groups = quantizable_groups(model)
    missing = [g.name for g in groups if g.name not in traces]
    if missing:
        raise ValueError(f"Invalid value for `traces`: no trace for groups {missing}. Received keys {sorted(traces)}.")
    bad = {k: v for k, v in traces.items() if not math.isfinite(float(v))}
    if bad:
        raise ValueError(f"Invalid value for `traces`: expected finite numbers. Received: {bad}.")
    err = quantization_error(model, bits, per_channel=per_channel, symmetric=symmetric)
    return {g.name: {b: max(float(traces[g.name]), 0.0) * e / g.kernel_params for b, e in err[g.name].items()}
            for g in groups}


def _loss_fn(model, y: np.ndarray, loss):
    """A function ``(y_true, y_pred) -> scalar mean loss``."""
    from tfmpq.evaluate import ends_in_probabilities  # the evaluator's inference of the loss

    if loss is None:
        loss = getattr(model, "loss", None) or None
    if loss is None:
        from_logits = not ends_in_probabilities(model)
        if int(model.output_shape[-1] or 0) == 1:
            loss = keras.losses.BinaryCrossentropy(from_logits=from_logits)
        elif y.ndim >= 2 and y.shape[-1] > 1:
            loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits)
        else:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    fn = keras.losses.get(loss)
    return lambda y_true, y_pred: tf.reduce_mean(fn(y_true, y_pred))


def _check_positive_int(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Invalid value for `{name}`: expected an integer >= 1. Received: {name}={value!r}")


def hessian_trace(model, data, *, num_probes: int = 64, num_samples: int | None = 512, batch_size: int = 256,
                  loss=None, seed: int = 0) -> TraceEstimate:
    """Hutchinson estimates of the loss Hessian's trace w.r.t. every group's folded kernel.

    Args:
        model: the trained float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        data: ``(x, y)`` arrays (e.g. training samples); the loss is their mean.
        num_probes: Rademacher probes (Hessian-vector products per data batch). Defaults to 64.
        num_samples: use a seeded random subset of this many samples of ``data``; None uses all.
            Defaults to 512.
        batch_size: samples per Hessian-vector product (memory). Defaults to 256.
        loss: a Keras loss (name or object); None takes the model's compiled loss or infers a
            cross-entropy. Defaults to None.
        seed: seeds the probes and the subset. Defaults to 0.

    Returns:
        A :class:`TraceEstimate`.

    Raises:
        ValueError: bad ``data`` (``tfmpq.checks.check_data``), a model without quantizable groups or
            with several inputs or outputs, or a count below 1.
    """
    from tfmpq.checks import check_data

    _check_positive_int("num_probes", num_probes)
    _check_positive_int("num_samples", num_samples, allow_none=True)
    _check_positive_int("batch_size", batch_size)
    if loss is None:  # the compiled loss, translated to tf_keras if the model is a Keras 3 one
        loss = tf_keras_loss(getattr(model, "loss", None))
    model = as_tf_keras(model)  # a Keras 3 model: the same function in tf_keras, same layer names
    x, y = check_data(model, data, name="data")
    if isinstance(x, tuple) or isinstance(y, (tuple, dict)):
        raise ValueError(f"Invalid value for `model`: the Hessian sensitivity takes a model with one input and one "
                         f"output. Received: `{model.name}` with {len(model.inputs)} inputs and "
                         f"{len(model.outputs)} outputs.")
    groups = quantizable_groups(model)
    if not groups:
        raise ValueError(f"Invalid value for `model`: `{model.name}` has no quantizable group to measure.")
    rng = np.random.default_rng(seed)
    if num_samples is not None and num_samples < len(x):
        idx = np.sort(rng.choice(len(x), num_samples, replace=False))
        x, y = x[idx], y[idx]
    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    n = len(x)
    kernels = [_kernel_variable(model.get_layer(g.name), g) for g in groups]
    inv_scale = []
    for g, k in zip(groups, kernels):
        s = _fold_scale(model, g, tuple(k.shape)).astype(np.float64)
        inv = np.divide(1.0, s, out=np.zeros_like(s), where=s != 0)  # gamma = 0: a dead channel, left out
        inv_scale.append(tf.constant(inv.astype(np.float32)))
    loss_fn = _loss_fn(model, y, loss)

    @tf.function(reduce_retracing=True)
    def hvp(xb, yb, vectors):
        # Double backprop (Pearlmutter 1994): d/dW <grad L(W), v> = H v.
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            outer.watch(kernels)
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(kernels)
                value = loss_fn(yb, model(xb, training=False))
            grads = inner.gradient(value, kernels)
            dot = tf.add_n([tf.reduce_sum(gr * v) for gr, v in zip(grads, vectors)])
        return outer.gradient(dot, kernels)

    batches = [(tf.constant(x[i:i + batch_size]), tf.constant(y[i:i + batch_size]), min(batch_size, n - i) / n)
               for i in range(0, n, batch_size)]
    samples = np.zeros((num_probes, len(groups)))
    channel_sums = [np.zeros(g.out_channels) for g in groups]
    for p in range(num_probes):
        zs = [rng.integers(0, 2, size=tuple(k.shape)).astype(np.float32) * 2.0 - 1.0 for k in kernels]
        us = [tf.constant(z) * s for z, s in zip(zs, inv_scale)]  # u = z / s: probe of the folded kernel
        total = [np.zeros(tuple(k.shape), np.float64) for k in kernels]
        for xb, yb, weight in batches:  # H of the mean loss = sum of the batches' H, weighted by size
            for t, hv in zip(total, hvp(xb, yb, us)):
                t += weight * hv.numpy()
        products = [u.numpy().astype(np.float64) * t for u, t in zip(us, total)]
        samples[p] = [float(np.sum(v)) for v in products]
        for acc, g, v in zip(channel_sums, groups, products):
            acc += np.sum(_by_channel(v, g.kind), axis=0)
    names = tuple(g.name for g in groups)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / math.sqrt(num_probes) if num_probes > 1 else np.full(len(groups), math.nan)
    return TraceEstimate(groups=names, trace=dict(zip(names, map(float, mean))), std_error=dict(zip(names, map(float, se))),
                         params={g.name: g.kernel_params for g in groups}, samples=samples, num_probes=num_probes,
                         num_samples=n, channel_trace={g.name: c / num_probes for g, c in zip(groups, channel_sums)})


def sensitivity(model, data, method: str = "hessian", *, average: bool = False, num_probes: int = 64,
                num_samples: int | None = 512, batch_size: int = 256, loss=None, seed: int = 0) -> dict[str, float]:
    """One sensitivity value per quantizable group: the trace of the loss Hessian w.r.t. its folded kernel.

    Hutchinson's estimator with Rademacher probes and double-backprop Hessian-vector products
    (Azizi et al. 2023 sec. III.A; HAWQ-V2, Dong et al. 2020 sec. 3.1): see the module docstring.

    Args:
        model: the trained float model (tf_keras, or Keras 3: converted with ``tfmpq.as_tf_keras``).
        data: ``(x, y)`` arrays, e.g. a few hundred training samples.
        method: ``"hessian"``. Defaults to "hessian".
        average: divide each trace by the kernel's number of weights (the per-parameter average
            Azizi et al. cluster, sec. III.A). Defaults to False (the total trace).
        num_probes, num_samples, batch_size, loss, seed: see :func:`hessian_trace`.
            Defaults to 64, 512, 256, None, 0.

    Returns:
        ``{group name: value}`` in the model's group order.

    Raises:
        ValueError: an unknown ``method``, bad ``data``, or a count below 1.

    Example:
    >>> s = tfmpq.sensitivity(model, (x[:512], y[:512]), seed=0)
    >>> max(s, key=s.get)    # the group whose weights the loss is most curved around
    """
    if method not in METHODS:
        raise ValueError(f"Invalid value for `method`: expected one of {METHODS}. Received: method={method!r}")
    est = hessian_trace(model, data, num_probes=num_probes, num_samples=num_samples, batch_size=batch_size,
                        loss=loss, seed=seed)
    return est.average() if average else dict(est.trace)
