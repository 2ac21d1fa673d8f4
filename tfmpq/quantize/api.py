"""quantize_model and friends: a float model + a QuantPolicy -> a QAT model that trains what deploys."""
from __future__ import annotations

from typing import Iterator

import numpy as np

from tfmpq._keras import keras, tf, tfmot
from tf_keras.src.saving.serialization_lib import SafeModeScope
from tfmpq.checks import check_inputs, take_samples
from tfmpq.convert import as_tf_keras
from tfmpq.errors import PolicyError
from tfmpq.graph import check_model, warn_float_layers
from tfmpq.metrics import pruned_inputs
from tfmpq.policy import QuantPolicy
from tfmpq.quantize.layers import BN_FOLDS, NEVER, QuantGroupLayer
from tfmpq.quantize.registry import PerLayerQuantizeRegistry
from tfmpq.quantize.transforms import PerLayerQuantizeScheme, custom_objects


def quantize_scope():
    """A custom-object scope for loading tfmpq QAT models: `with tfmpq.quantize_scope(): load_model(...)`."""
    return tfmot.quantization.keras.quantize_scope(custom_objects())


def _annotate(model, groups, registry: PerLayerQuantizeRegistry):
    """Wrap every layer tfmpq will quantize in tfmot's QuantizeAnnotate (weights shared, not copied)."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_annotate import QuantizeAnnotate

    in_groups = {n for g in groups for n in g.layers}

    def annotate(layer):
        if layer.name in in_groups or registry.supports(layer):
            return QuantizeAnnotate(layer)
        return layer

    return keras.models.clone_model(model, clone_function=annotate)


def quantize_model(
    model,
    policy: QuantPolicy,
    per_channel: bool = True,
    symmetric: bool = True,
    bn_freeze_step: int | None = None,
    variable_bits: bool = False,
    bn_fold: str = "one_conv",
    strict: bool = False,
):
    """Build the quantization-aware-training model of `model` under `policy`.

    Each quantizable group becomes one `QuantGroupLayer` (weighted op with its BatchNormalization folded
    in and its ReLU/ReLU6) wrapped by tfmot's `QuantizeWrapperV2`, named `quant_<group>`: it fake-quantizes
    the folded kernel at the group's weight bits (each output channel at its own width for channel-wise
    bits, see `QuantPolicy`) and its output at the group's activation bits. The model
    input and Add/Concatenate/pooling outputs are quantized at 8 bits. Built with tfmot's
    `ModelTransformer` + `quantize_apply` through a `PerLayerQuantizeRegistry`, in one transform pass.

    Args:
        model: a built tf_keras or Keras 3 Sequential or functional model (float, usually trained); a
            Keras 3 model is converted with `tfmpq.convert.as_tf_keras` (same layers, names and weights).
        policy: a `QuantPolicy` made for `model`.
        per_channel: one weight scale per output channel. Defaults to True.
        symmetric: symmetric weights with zero point 0 (needed by TFLite int8 kernels). Defaults to True.
        bn_freeze_step: training step after which folded BN uses its moving statistics (they then stop
            changing). None: never freeze. Defaults to None.
        variable_bits: keep every bit-width in a variable instead of the graph, so that one traced model
            serves a whole search (see `VariableBitModel`). Defaults to False.
        bn_fold: how a group with BatchNormalization trains before the freeze step: "one_conv" (one
            convolution of the folded, quantized kernel per step; Krishnamoorthi 2018, sec. 3.2) or
            "two_conv" (an extra float convolution for the batch statistics; Jacob et al. 2018, sec. 3.2).
            Inference and export are the same in both (see `QuantGroupLayer`). Defaults to "one_conv".
        strict: refuse a model with layers that would stay in float (`tfmpq.float_layers`); without
            it they are named in a `UserWarning`, once per model. Defaults to False.

    Returns:
        A tf_keras Model; compile and fit it like any Keras model.

    Raises:
        UnsupportedModelError: for subclassed models, and Keras 3 models with a layer tfmpq cannot convert.
        FloatLayerError: with `strict`, a layer that would stay in float.
        PolicyError: if `policy` was made for another model, or has channel-wise bits with
            `per_channel=False` (a channel's width needs its own scale).
        ValueError: a negative `bn_freeze_step` or an unknown `bn_fold`.

    Example:
        >>> policy = tfmpq.QuantPolicy.from_bits(model, weight_bits=[8, 4, 4, 8], activation_bits=8)
        >>> qat = tfmpq.quantize_model(model, policy)
        >>> qat.compile("adam", "sparse_categorical_crossentropy", ["accuracy"]); qat.fit(x, y)
    """
    model = as_tf_keras(model)
    check_model(model)
    groups = policy.check_model(model)
    warn_float_layers(model, strict=strict)
    if not groups:
        raise ValueError(f"Model `{model.name}` has no quantizable layer (Conv1D, Conv2D, DepthwiseConv2D, Dense).")
    if bn_freeze_step is not None and int(bn_freeze_step) < 0:
        raise ValueError(f"Invalid value for `bn_freeze_step`: expected >= 0 or None. Received: {bn_freeze_step}.")
    if bn_fold not in BN_FOLDS:
        raise ValueError(f"Invalid value for `bn_fold`: expected one of {BN_FOLDS}. Received: bn_fold={bn_fold!r}.")
    if policy.is_channel_wise and not per_channel:
        channel_wise = [n for n, b in zip(policy.group_names, policy.weight_bits) if isinstance(b, tuple)]
        raise PolicyError(
            f"Invalid value for `per_channel`: groups {channel_wise} have channel-wise weight bits, which need one "
            "scale per output channel (per_channel=True). Received: per_channel=False."
        )
    registry = PerLayerQuantizeRegistry(
        {n: (w, a) for n, w, a in zip(policy.group_names, policy.weight_bits, policy.activation_bits)},
        per_channel=per_channel,
        symmetric=symmetric,
        variable_bits=variable_bits,
    )
    scheme = PerLayerQuantizeScheme(
        groups, registry, per_channel=per_channel, symmetric=symmetric, bn_freeze_step=bn_freeze_step,
        bn_fold=bn_fold, input_keep={n: kept for n, (_, kept) in pruned_inputs(groups, policy.weight_bits).items()},
    )
    # Cloning re-creates every layer from its config; a Lambda (kept in float) holds Python code, which
    # Keras refuses to deserialize in safe mode. The code is the user's own model's, not a file's.
    with quantize_scope(), SafeModeScope(False):
        annotated = _annotate(model, groups, registry)
        qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    qat._tfmpq_policy = policy  # noqa: SLF001 - convenience for callers in this process
    qat._tfmpq_output_names = list(model.output_names)  # the export names several outputs so
    return qat


# --------------------------------------------------------------------------------------------------
# Inspecting and driving a QAT model.


def _wrappers(qat_model) -> Iterator:
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(inner, QuantGroupLayer):
            yield layer, inner


def group_layers(qat_model) -> dict:
    """group name -> the `QuantGroupLayer` holding it, in the QAT model's layer order."""
    return {inner.name: inner for _, inner in _wrappers(qat_model)}


def is_qat_model(model) -> bool:
    """Whether `model` was built by `tfmpq.quantize_model` (has at least one QuantGroupLayer)."""
    return isinstance(model, keras.Model) and any(True for _ in _wrappers(model))


def policy_of(qat_model) -> dict:
    """Bits and options per group, read from the QAT model's layers themselves.

    Returns:
        group name -> {"weight_bits", "activation_bits", "per_channel", "symmetric", "kind"}; weight bits
        are an int, or a tuple of one bit-width per output channel for a channel-wise group.
    """
    out = {}
    for wrapper, inner in _wrappers(qat_model):
        abits = wrapper.quantize_config.activation_bits
        channels = inner.channel_bits()
        wbits = channels[0] if len(set(channels)) == 1 else channels
        if inner.variable_bits:
            abits = int(wrapper._output_quantizer_vars["bits"].numpy())  # noqa: SLF001 (tfmot attribute)
        out[inner.name] = {
            "weight_bits": wbits,
            "activation_bits": 32 if abits is None else abits,
            "per_channel": inner.per_channel,
            "symmetric": inner.symmetric,
            "kind": inner.kind,
        }
    return out


def _mode_vars(qat_model, suffix: str) -> list:
    return [w for w in qat_model.weights if w.name.split("/")[-1].split(":")[0].endswith(suffix)]


def _activation_ranges(qat_model) -> dict:
    """Layer name -> the variables of its activation quantizer (``min_var``, ``max_var``, ``seen``, ...):
    every wrapper's output quantizer and every input's QuantizeLayer."""
    out = {}
    for layer in qat_model.layers:
        variables = getattr(layer, "_output_quantizer_vars", None) or getattr(layer, "quantizer_vars", None)
        if isinstance(variables, dict) and "seen" in variables:
            out[layer.name] = variables
    return out


def unset_ranges(qat_model) -> list[str]:
    """Layers of a QAT model whose activation range was never set (neither trained nor calibrated).

    Such a range still holds its initial [-6, 6]: exported as it is, every tensor it quantizes would
    deploy on that default grid (see ``tfmpq.export.export_tflite``, which calibrates them first).

    Returns:
        Their layer names, in the model's layer order.
    """
    return [name for name, v in _activation_ranges(qat_model).items() if float(v["seen"].numpy()) == 0.0]


def calibrate(qat_model, x, batch_size: int = 128, num_batches: int | None = None, only_unset: bool = False) -> None:
    """Set every activation range of a QAT model from data, without training (post-training calibration).

    Runs the model in inference mode (BN uses moving statistics; nothing trains) while each activation
    quantizer records the min/max of its input; then quantization is switched back on.

    Args:
        qat_model: a model built by `quantize_model`.
        x: input samples (numpy array or tf.data.Dataset of inputs; for a model with several inputs a
            list / tuple of arrays in input order or a dict by input name).
        batch_size: batch size for numpy input. Defaults to 128.
        num_batches: use at most this many batches. Defaults to all.
        only_unset: set only the ranges never set before (`unset_ranges`); trained or calibrated
            ranges keep their values. Defaults to False.

    Raises:
        ValueError: not a tfmpq QAT model, or ``x`` empty, of another sample shape than the model's
            input, or holding NaN/Inf (see ``tfmpq.checks.check_inputs``).
    """
    if not is_qat_model(qat_model):
        raise ValueError("Invalid value for `qat_model`: not a tfmpq QAT model (no QuantGroupLayer found).")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"Invalid value for `batch_size`: expected an integer >= 1. Received: batch_size={batch_size!r}.")
    x = check_inputs(qat_model, x, name="x")  # NaN, shape, empty: before any range is touched
    calibrating = _mode_vars(qat_model, "tfmpq_calibrating")
    seen = _mode_vars(qat_model, "tfmpq_seen")
    if not calibrating:
        return  # every activation stays float: nothing to calibrate
    if isinstance(x, (np.ndarray, tuple)):  # arrays; a tuple holds one per model input
        if num_batches is not None:
            x = take_samples(x, num_batches * batch_size)
        data = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
    else:
        data = x.take(num_batches) if num_batches is not None else x
    kept = []  # (variable, value) of the ranges set before, restored afterwards
    if only_unset:
        kept = [(v[k], v[k].numpy()) for v in _activation_ranges(qat_model).values()
                if float(v["seen"].numpy()) != 0.0 for k in ("min_var", "max_var", "seen")]
    for v in seen:
        v.assign(0.0)
    for v in calibrating:
        v.assign(1.0)
    try:
        for batch in data:
            qat_model(batch, training=False)
    finally:
        for v in calibrating:
            v.assign(0.0)
        for variable, value in kept:
            variable.assign(value)


def freeze_bn(qat_model, step: int = 0) -> None:
    """Freeze the folded BatchNormalizations: from training step `step` on, use moving statistics.

    Works on an already-compiled and traced model (the freeze step is a variable).
    """
    for inner in group_layers(qat_model).values():
        if inner.bn_config is not None:
            inner.freeze_step.assign(int(step) if step is not None else NEVER)
