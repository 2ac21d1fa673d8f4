"""PerLayerQuantizeRegistry: which layers are quantized, and each group's own N-bit QuantizeConfig.

tfmot's ``DefaultNBitQuantizeRegistry`` keeps its per-layer quantize info in class-level objects, so
two registries with different bits overwrite each other (in Šafář's reference implementation every
Dense gene silently ended at 8 bits). Here every registry holds its own instance state and hands each
layer a fresh config instance: one group's bits can never leak into another's.
"""
from __future__ import annotations

from tfmpq._keras import keras, tfmot
from tfmpq.quantize.layers import QuantGroupLayer
from tfmpq.quantize.quantizers import ActivationQuantizer

QuantizeConfig = tfmot.quantization.keras.QuantizeConfig

# Non-weighted layers whose output TFLite requantizes: quantized at 8 bits, as tfmot's 8-bit scheme does.
OUTPUT_QUANTIZED = (
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
    "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D",
    "ReLU", "Activation", "UpSampling2D",
)
# Layers that only move values around (or are identity at inference): no quantizer of their own.
PASS_THROUGH = (
    "MaxPooling1D", "MaxPooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten", "Reshape",
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise", "ZeroPadding1D", "ZeroPadding2D",
    "Cropping1D", "Cropping2D", "Permute", "Softmax",
)
# Activations that TFLite quantizes with a fixed output range: leave them alone.
_FIXED_RANGE_ACTIVATIONS = ("softmax", "sigmoid", "tanh")


@keras.utils.register_keras_serializable(package="tfmpq")
class OutputQuantizeConfig(QuantizeConfig):
    """Quantize a layer's output to `activation_bits` (16/32 or None: leave it alone).

    Weights are not touched here: a `QuantGroupLayer` fake-quantizes its own folded kernel.
    """

    def __init__(self, activation_bits: int | None = 8, variable_bits: bool = False):
        self.activation_bits = None if activation_bits is None else int(activation_bits)
        self.variable_bits = bool(variable_bits)

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        if self.activation_bits is None or (self.activation_bits > 8 and not self.variable_bits):
            return []
        return [ActivationQuantizer(self.activation_bits, variable_bits=self.variable_bits)]

    def get_config(self):
        return {"activation_bits": self.activation_bits, "variable_bits": self.variable_bits}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, OutputQuantizeConfig) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


class PerLayerQuantizeRegistry(tfmot.quantization.keras.QuantizeRegistry):
    """Hands each group its own config; quantizes residual/concat/pool outputs at 8 bits.

    When every group's activations stay float (16/32), nothing outside the groups is quantized either,
    so a policy of all-float bits gives a QAT model numerically equal to the float model.

    Args:
        group_bits: group (weighted layer) name -> (weight bits, activation bits).
        per_channel: per-output-channel weight scales. Defaults to True.
        symmetric: symmetric weights (zero point 0). Defaults to True.
        variable_bits: activation quantizers keep their bits in variables (see `VariableBitModel`).
            Defaults to False.
    """

    def __init__(self, group_bits: dict, per_channel: bool = True, symmetric: bool = True,
                 variable_bits: bool = False):
        self.group_bits = dict(group_bits)
        self.per_channel = per_channel
        self.symmetric = symmetric
        self.variable_bits = variable_bits
        # Model inputs and residual/concat/pool outputs: 8 bits, unless every activation stays float.
        quantized_activations = any(a <= 8 for _, a in self.group_bits.values())
        self.other_activation_bits = 8 if quantized_activations else None

    def weight_bits(self, group: str) -> int:
        return self.group_bits[group][0]

    def activation_bits(self, group: str) -> int:
        return self.group_bits[group][1]

    def supports(self, layer) -> bool:
        name = type(layer).__name__
        return (
            isinstance(layer, QuantGroupLayer)
            or layer.name in self.group_bits
            or name in OUTPUT_QUANTIZED
            or name in PASS_THROUGH
        )

    def get_quantize_config(self, layer) -> QuantizeConfig:
        if isinstance(layer, QuantGroupLayer) or layer.name in self.group_bits:
            return OutputQuantizeConfig(self.activation_bits(layer.name), self.variable_bits)
        name = type(layer).__name__
        if name == "Activation" and layer.get_config().get("activation") in _FIXED_RANGE_ACTIVATIONS:
            return OutputQuantizeConfig(None)
        if name in OUTPUT_QUANTIZED:
            return OutputQuantizeConfig(self.other_activation_bits, self.variable_bits)
        if name in PASS_THROUGH:
            return OutputQuantizeConfig(None)
        raise ValueError(f"Layer `{layer.name}` ({name}) is not supported by PerLayerQuantizeRegistry.")
