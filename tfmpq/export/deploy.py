"""The deployment graph of a tfmpq QAT model: what the TFLite converter sees.

The TF 2.21 converter, given a QAT model with fake-quantized *float shadow* weights, re-quantizes the
shadow weights to 8 bits: a conv trained at 4 bits deploys with ~110 distinct int8 values per channel.
tfmpq therefore hands the converter a plain Keras model whose kernels already hold the trained values:

- every ``QuantizeWrapperV2(QuantGroupLayer)`` becomes a plain layer of the group's kind (Conv2D,
  DepthwiseConv2D, Conv1D, Dense) holding ``QuantGroupLayer.deployed_weights()``: the BN-folded,
  fake-quantized kernel (on the group's b-bit grid) and the folded bias, then the group's ReLU/ReLU6;
  the converter's 8-bit re-quantization of an on-grid kernel keeps at most 2^b values per channel;
- every trained activation range (the wrappers' and the input's ``ActivationQuantizer`` min/max)
  becomes a ``FakeQuantWithMinMaxArgs`` op, so the converter uses the trained ranges, not calibration;
  a group trained below 8 activation bits keeps its b-bit grid inside int8: the converter rejects
  sub-8-bit fake-quant ops ("'tfl.mean' op failed to verify that input and output must have same
  element type"), so the deployed tensor gets scale = the b-bit step and zero point = the b-bit
  minimum (an 8-bit fake quant over 255 steps), and a MINIMUM op clamps it at the b-bit maximum;
- a Dense on a 2-D input is deployed as a 1x1 CONV_2D between two RESHAPEs when `dense_as_conv`:
  LiteRT's and TFLite Micro's FULLY_CONNECTED kernels round differently (see ``runtimes``), CONV_2D
  is bit-exact between them;
- a group with channel-wise bits becomes one sub-layer per width, each holding its channels' kernel
  and bias, their outputs quantized alike and concatenated; where its channels and its inputs go is
  ``channels.channel_plan``'s (a consumer's kernel rows permuted, or the order restored by gathers).

The graph is rebuilt from the QAT model's own config (each wrapper is replaced, in place, by one
``DeployedLayer`` with the same name and inbound nodes), so any functional topology carries over.
"""
from __future__ import annotations

import copy

import numpy as np

from tfmpq._keras import keras, tf
from tf_keras.src.saving.serialization_lib import SafeModeScope
from tfmpq.export.channels import channel_plan
from tfmpq.quantize import QuantGroupLayer, policy_of

_ACTIVATIONS = {"linear": lambda x: x, "relu": tf.nn.relu, "relu6": tf.nn.relu6}


@keras.utils.register_keras_serializable(package="tfmpq_export")
class DeployedLayer(keras.layers.Layer):
    """An inner Keras layer (or none), an optional ReLU/ReLU6, and the trained output quantization.

    Args:
        inner: a serialized Keras layer (``keras.layers.serialize``), or None for identity.
        activation: "linear", "relu" or "relu6", applied after `inner`. Defaults to "linear".
        output_range: (min, max) of the trained output quantizer, or None (no quantizer).
            Defaults to None.
        dense_as_conv: `inner` is a 1x1 Conv2D standing for a Dense on 2-D inputs. Defaults to False.
        output_bits: bits of the trained output quantizer (2..8). Defaults to 8.
        segments: a channel-wise group's sub-layers (serialized), one per width, used instead of
            `inner`; each output is quantized as the group's and they are concatenated. Defaults to None.
        segment_inputs: per segment, the gather pieces (``channels.gather_pieces``) of its input, or
            None for the whole input (a DepthwiseConv2D's sub-layers take their own channels). Defaults to None.
        input_gather: gather pieces applied to the input first, per position of `input_spatial`
            (a Flatten's input positions). Defaults to None.
        input_spatial: S where the input's last axis is S positions x channels. Defaults to 1.
        restore: gather pieces applied to the output (channels back in their places). Defaults to None.
    """

    def __init__(
        self, inner=None, activation="linear", output_range=None, dense_as_conv=False, output_bits=8,
        segments=None, segment_inputs=None, input_gather=None, input_spatial=1, restore=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.output_bits = int(output_bits)
        self.inner_config = inner
        self.inner = keras.layers.deserialize(copy.deepcopy(inner)) if inner is not None else None
        self.activation = activation
        self.output_range = None if output_range is None else (float(output_range[0]), float(output_range[1]))
        self.dense_as_conv = bool(dense_as_conv)
        self.segments_config = segments
        self.segments = [keras.layers.deserialize(copy.deepcopy(c)) for c in segments] if segments else []
        self.segment_inputs = segment_inputs
        self.input_gather = input_gather
        self.input_spatial = int(input_spatial)
        self.restore = restore

    def _run(self, layer, x):
        if not self.dense_as_conv:
            return layer(x)
        x = tf.reshape(x, (-1, 1, 1, int(x.shape[-1])))
        x = layer(x)
        return tf.reshape(x, (-1, int(x.shape[-1])))

    def call(self, inputs):
        x = inputs
        if self.input_gather is not None:
            x = gather(x, self.input_gather, self.input_spatial)
        if self.segments:
            inputs_of = self.segment_inputs or [None] * len(self.segments)
            outs = [self._output(self._run(layer, x if pieces is None else gather(x, pieces)))
                    for layer, pieces in zip(self.segments, inputs_of)]
            y = outs[0] if len(outs) == 1 else self._requantize(concat(outs))
        else:
            y = self._output(self._run(self.inner, x) if self.inner is not None else x)
        if self.restore is not None:
            y = self._requantize(gather(y, self.restore))
        return y

    def _requantize(self, x):
        """The output quantization again (values already on its grid: exact), so that the converter gives a
        concatenation or a gather the same scale and zero point as its inputs (int8 data movement only)."""
        if self.output_range is None:
            return x
        lo, hi = self.output_range
        if self.output_bits >= 8:
            return tf.quantization.fake_quant_with_min_max_args(x, min=lo, max=hi, num_bits=8, narrow_range=False)
        lo_n, _, step = nudged_range(lo, hi, self.output_bits)
        return tf.quantization.fake_quant_with_min_max_args(x, min=lo_n, max=lo_n + 255 * step, num_bits=8,
                                                            narrow_range=False)

    def _output(self, x):
        x = _ACTIVATIONS[self.activation](x)
        if self.output_range is None:
            return x
        lo, hi = self.output_range
        if self.output_bits >= 8:
            return tf.quantization.fake_quant_with_min_max_args(x, min=lo, max=hi, num_bits=8, narrow_range=False)
        # A b-bit grid inside an int8 tensor: scale = the b-bit step, zero point at the b-bit minimum, and
        # a MINIMUM at the b-bit maximum (the int8 range reaches 255 steps, the b-bit one 2^b - 1).
        lo_n, hi_n, step = nudged_range(lo, hi, self.output_bits)
        top = lo_n + 255 * step
        x = tf.quantization.fake_quant_with_min_max_args(x, min=lo_n, max=top, num_bits=8, narrow_range=False)
        x = tf.minimum(x, hi_n)
        return tf.quantization.fake_quant_with_min_max_args(x, min=lo_n, max=top, num_bits=8, narrow_range=False)

    def get_config(self):
        config = super().get_config()
        config.update(
            inner=self.inner_config,
            activation=self.activation,
            output_range=self.output_range,
            dense_as_conv=self.dense_as_conv,
            output_bits=self.output_bits,
            segments=self.segments_config,
            segment_inputs=self.segment_inputs,
            input_gather=self.input_gather,
            input_spatial=self.input_spatial,
            restore=self.restore,
        )
        return config


#: TFLite Micro's CONCATENATION takes at most 10 inputs (``kMaxInputNum`` in concatenation.cc).
MAX_CONCAT_INPUTS = 10


def concat(parts: list):
    """``tf.concat(parts, -1)`` as CONCATENATIONs of at most `MAX_CONCAT_INPUTS` inputs (a tree of them)."""
    while len(parts) > MAX_CONCAT_INPUTS:
        parts = [tf.concat(parts[i:i + MAX_CONCAT_INPUTS], axis=-1) if len(parts[i:i + MAX_CONCAT_INPUTS]) > 1
                 else parts[i] for i in range(0, len(parts), MAX_CONCAT_INPUTS)]
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)


def gather(x, pieces, spatial: int = 1):
    """The channels `pieces` (``channels.gather_pieces``) of `x`'s last axis: contiguous slices, zero
    channels as padding (PAD pads int8 tensors with their zero point: an exact 0), concatenated.

    Args:
        x: a tensor, channels last.
        pieces: ``[["slice", start, stop] | ["zeros", count], ...]``.
        spatial: S when the last axis is S positions x channels (a Flatten's output); the pieces then
            apply to every position. Defaults to 1.
    """
    if spatial > 1:
        size = int(x.shape[-1])
        x = tf.reshape(x, (-1, spatial, size // spatial))
    rank = x.shape.rank

    def pad(t, before, after):
        return tf.pad(t, [[0, 0]] * (rank - 1) + [[before, after]])

    parts, zeros_before = [], 0
    for piece in pieces:
        if piece[0] == "zeros":
            if parts:
                parts[-1] = pad(parts[-1], 0, piece[1])
            else:
                zeros_before += piece[1]
            continue
        part = x[..., piece[1]:piece[2]]
        if zeros_before:
            part, zeros_before = pad(part, zeros_before, 0), 0
        parts.append(part)
    if not parts:  # zeros only: pad one channel, then cut it off
        parts = [pad(x[..., :1], 0, zeros_before)[..., 1:]]
    y = concat(parts)
    if spatial > 1:
        y = tf.reshape(y, (-1, spatial * int(y.shape[-1])))
    return y


def nudged_range(lo: float, hi: float, bits: int) -> tuple[float, float, float]:
    """The grid TensorFlow's FakeQuant ops use for [lo, hi] at `bits` (zero made exactly representable).

    Returns:
        (nudged min, nudged max, step), computed in float32 as TensorFlow does.
    """
    lo32, hi32 = np.float32(lo), np.float32(hi)
    levels = np.float32(2**bits - 1)
    step = (hi32 - lo32) / levels
    zero_point = np.float32(np.clip(np.round(-lo32 / step), 0, levels))
    return float(-zero_point * step), float((levels - zero_point) * step), float(step)


def _range(variables: dict | None) -> tuple[float, float] | None:
    if not variables:
        return None
    lo, hi = float(variables["min_var"].numpy()), float(variables["max_var"].numpy())
    return (min(lo, 0.0), max(hi, lo + 1e-6, 0.0))


def _bits(wrapper) -> int:
    quantizers = getattr(wrapper, "_output_quantizers", None) or []
    return int(getattr(quantizers[0], "num_bits", 8)) if quantizers else 8


def _group_inner(group: QuantGroupLayer, dense_as_conv: bool, input_rank: int, channels: int | None = None,
                 name: str | None = None):
    """A plain layer config of the group's kind (linear, with bias) and whether it is a 1x1 conv.

    `channels` (filters / units; a DepthwiseConv2D's follow from its input) and `name` make a sub-layer
    of a channel-wise group."""
    cfg = dict(group.layer_config)
    cfg.update(name=name or group.name, activation="linear", use_bias=True, trainable=False)
    if channels is not None and group.kind in ("Conv1D", "Conv2D"):
        cfg["filters"] = int(channels)
    if channels is not None and group.kind == "Dense":
        cfg["units"] = int(channels)
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                "bias_constraint", "depthwise_regularizer", "depthwise_constraint"):
        cfg.pop(key, None)
    if group.kind == "Dense" and dense_as_conv and input_rank == 2:
        conv = keras.layers.Conv2D(filters=int(cfg["units"]), kernel_size=1, use_bias=True, name=cfg["name"])
        return keras.layers.serialize(conv), True
    layer = getattr(keras.layers, group.kind).from_config(cfg)
    return keras.layers.serialize(layer), False


def _name_outputs(deploy, qat_model) -> None:
    """Several outputs: name them as the float model did (``quant_out`` -> ``out``), since the file's
    signature names its outputs by the Keras model's ``output_names`` and orders them by those names."""
    names = getattr(qat_model, "_tfmpq_output_names", None)  # set by quantize_model
    if len(deploy.outputs) > 1 and names and len(names) == len(deploy.outputs):
        deploy.output_names = list(names)


def build_deploy_model(qat_model, dense_as_conv: bool = True):
    """Builds the plain Keras model that `export_tflite` converts.

    Args:
        qat_model: a model built by ``tfmpq.quantize_model`` (trained or not).
        dense_as_conv: deploy Dense layers on 2-D inputs as 1x1 convolutions. Defaults to True.

    Returns:
        (deploy model, dict group name -> deployed layer name). A channel-wise group's sub-layers are
        the deployed layer's ``segments`` (see `deployed_segments`).
    """
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

    config = copy.deepcopy(qat_model.get_config())
    by_name = {layer.name: layer for layer in qat_model.layers}
    groups = {layer.name: getattr(layer, "layer") for layer in qat_model.layers
              if isinstance(getattr(layer, "layer", None), QuantGroupLayer)}
    plans = channel_plan(qat_model, groups, {g: v["weight_bits"] for g, v in policy_of(qat_model).items()})
    weights, group_names = {}, {}
    for entry in config["layers"]:
        name = entry["config"]["name"]
        layer = by_name.get(name)
        if layer is None:  # a Sequential model's InputLayer is in its config, not in `layers`
            continue
        inner = getattr(layer, "layer", None)
        if isinstance(inner, QuantGroupLayer):
            rank = len(layer.input_shape) if isinstance(layer.input_shape, tuple) else 0
            inner_cfg, as_conv = _group_inner(inner, dense_as_conv, rank)
            kernel, bias = inner.deployed_weights()
            plan = plans[name]
            group_names[inner.name] = name
            options = dict(activation=inner.activation, output_range=_range(getattr(layer, "_output_quantizer_vars", None)),
                           dense_as_conv=as_conv, output_bits=_bits(layer), name=name)
            if plan.trivial:
                if as_conv:
                    kernel = kernel.reshape((1, 1) + kernel.shape)
                weights[name] = [kernel.astype(np.float32), bias.astype(np.float32)]
                new = DeployedLayer(inner=inner_cfg, **options)
            else:
                new, weights[name] = _split_group(inner, plan, kernel, bias, dense_as_conv, rank, options)
        elif inner is not None:  # a tfmot wrapper around a non-weighted layer (Add, pooling, ...)
            if inner.weights:
                weights[name] = [w.numpy() for w in inner.weights]
            new = DeployedLayer(
                inner=keras.layers.serialize(inner),
                output_range=_range(getattr(layer, "_output_quantizer_vars", None)),
                name=name,
            )
        elif isinstance(layer, QuantizeLayer):
            new = DeployedLayer(output_range=_range(layer.quantizer_vars), name=name)
        else:
            continue
        entry["class_name"] = "DeployedLayer"
        entry["config"] = new.get_config()
        entry.pop("module", None)
        entry["registered_name"] = "tfmpq_export>DeployedLayer"
        entry.pop("build_config", None)
    objects = {"DeployedLayer": DeployedLayer}
    # SafeModeScope(False): a Lambda kept in float holds the user's own Python code (see quantize_model).
    with keras.utils.custom_object_scope(objects), SafeModeScope(False):
        if isinstance(qat_model, keras.Sequential):
            deploy = keras.Sequential.from_config(config)
        else:
            deploy = keras.Model.from_config(config)
    _name_outputs(deploy, qat_model)
    for name, values in weights.items():
        deploy.get_layer(name).set_weights(values)
    deploy._tfmpq_segments = {plan.group: [(sub, bits, list(chans)) for sub, (bits, chans) in
                                           zip(_segment_names(plan), plan.segments)]
                              for plan in plans.values() if not plan.trivial}  # noqa: SLF001
    for name in {l.name for l in qat_model.layers} - set(weights) - set(group_names.values()):
        # float layers kept as they are (e.g. a BatchNormalization that folds into nothing)
        source, target = by_name[name], deploy.get_layer(name)
        if not isinstance(target, DeployedLayer) and source.weights:
            target.set_weights(source.get_weights())
    return deploy, group_names


def _segment_names(plan) -> list[str]:
    """The sub-layer names of a channel-wise group: the group's own name when it keeps one sub-layer."""
    if len(plan.segments) == 1:
        return [plan.group]
    return [f"{plan.group}_w{bits}" for bits, _ in plan.segments]


def deployed_segments(deploy) -> dict:
    """group name -> [(sub-layer name, bits, output channels), ...] for every group that
    `build_deploy_model` did not deploy as one plain layer (channel-wise bits, or channels reordered)."""
    return dict(getattr(deploy, "_tfmpq_segments", {}))


def _split_group(group: QuantGroupLayer, plan, kernel: np.ndarray, bias: np.ndarray, dense_as_conv: bool,
                 rank: int, options: dict):
    """The DeployedLayer of a group that `channels.channel_plan` reorders or splits, and its weights."""
    if plan.rows is not None:  # the producer's channel order (and no pruned rows): per Flatten position
        per = plan.producer_channels
        rows = [s * per + c for s in range(plan.input_spatial) for c in plan.rows]
        kernel = np.take(kernel, rows, axis=kernel.ndim - 2 if group.kind != "Dense" else 0)
    segment_inputs, input_gather = plan.segment_inputs, plan.input_gather
    names = _segment_names(plan)
    if len(plan.segments) == 1 and segment_inputs is not None:  # one sub-layer: its input gather is the layer's
        input_gather, segment_inputs = segment_inputs[0], None
    configs, values = [], []
    for sub, (_, chans) in zip(names, plan.segments):
        chans = list(chans)
        if group.kind == "DepthwiseConv2D":
            multiplier = kernel.shape[-1]
            inputs = [c // multiplier for c in chans[::multiplier]]
            part = kernel[:, :, inputs, :]
        else:
            part = kernel[..., chans]
        cfg, as_conv = _group_inner(group, dense_as_conv, rank, channels=len(chans), name=sub)
        if as_conv:
            part = part.reshape((1, 1) + part.shape)
        configs.append(cfg)
        values += [part.astype(np.float32), bias[chans].astype(np.float32)]
    layer = DeployedLayer(segments=configs, segment_inputs=segment_inputs, input_gather=input_gather,
                          input_spatial=plan.input_spatial if input_gather is not None else 1, restore=plan.restore,
                          **options)
    return layer, values
