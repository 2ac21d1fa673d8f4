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
  is bit-exact between them.

The graph is rebuilt from the QAT model's own config (each wrapper is replaced, in place, by one
``DeployedLayer`` with the same name and inbound nodes), so any functional topology carries over.
"""
from __future__ import annotations

import copy

import numpy as np

from tfmpq._keras import keras, tf
from tf_keras.src.saving.serialization_lib import SafeModeScope
from tfmpq.quantize import QuantGroupLayer

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
    """

    def __init__(
        self, inner=None, activation="linear", output_range=None, dense_as_conv=False, output_bits=8, **kwargs
    ):
        super().__init__(**kwargs)
        self.output_bits = int(output_bits)
        self.inner_config = inner
        self.inner = keras.layers.deserialize(copy.deepcopy(inner)) if inner is not None else None
        self.activation = activation
        self.output_range = None if output_range is None else (float(output_range[0]), float(output_range[1]))
        self.dense_as_conv = bool(dense_as_conv)

    def call(self, inputs):
        x = inputs
        if self.inner is not None:
            if self.dense_as_conv:
                channels = int(x.shape[-1])
                x = tf.reshape(x, (-1, 1, 1, channels))
                x = self.inner(x)
                x = tf.reshape(x, (-1, int(x.shape[-1])))
            else:
                x = self.inner(x)
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
        )
        return config


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


def _group_inner(group: QuantGroupLayer, dense_as_conv: bool, input_rank: int):
    """A plain layer config of the group's kind (linear, with bias) and whether it is a 1x1 conv."""
    cfg = dict(group.layer_config)
    cfg.update(name=group.name, activation="linear", use_bias=True, trainable=False)
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                "bias_constraint", "depthwise_regularizer", "depthwise_constraint"):
        cfg.pop(key, None)
    if group.kind == "Dense" and dense_as_conv and input_rank == 2:
        conv = keras.layers.Conv2D(filters=int(cfg["units"]), kernel_size=1, use_bias=True, name=group.name)
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
        (deploy model, dict group name -> deployed layer name).
    """
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

    config = copy.deepcopy(qat_model.get_config())
    by_name = {layer.name: layer for layer in qat_model.layers}
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
            if as_conv:
                kernel = kernel.reshape((1, 1) + kernel.shape)
            weights[name] = [kernel.astype(np.float32), bias.astype(np.float32)]
            group_names[inner.name] = name
            new = DeployedLayer(
                inner=inner_cfg,
                activation=inner.activation,
                output_range=_range(getattr(layer, "_output_quantizer_vars", None)),
                dense_as_conv=as_conv,
                output_bits=_bits(layer),
                name=name,
            )
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
    for name in {l.name for l in qat_model.layers} - set(weights) - set(group_names.values()):
        # float layers kept as they are (e.g. a BatchNormalization that folds into nothing)
        source, target = by_name[name], deploy.get_layer(name)
        if not isinstance(target, DeployedLayer) and source.weights:
            target.set_weights(source.get_weights())
    return deploy, group_names
