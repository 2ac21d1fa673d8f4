"""Quantization-aware models: quantizers, fused group layers, the per-layer registry and transform."""
from tfmpq.quantize.api import (
    calibrate,
    freeze_bn,
    group_layers,
    is_qat_model,
    policy_of,
    quantize_model,
    quantize_scope,
    unset_ranges,
)
from tfmpq.quantize.layers import QuantGroupLayer
from tfmpq.quantize.quantizers import ActivationQuantizer, fake_quant_weights
from tfmpq.quantize.registry import OutputQuantizeConfig, PerLayerQuantizeRegistry
from tfmpq.quantize.transpose import QuantTransposeGroupLayer
from tfmpq.quantize.variable import VariableBitModel
from tfmpq.quantize.transforms import PerLayerQuantizeLayoutTransform, PerLayerQuantizeScheme

__all__ = [
    "ActivationQuantizer", "OutputQuantizeConfig", "PerLayerQuantizeLayoutTransform", "PerLayerQuantizeRegistry",
    "PerLayerQuantizeScheme", "QuantGroupLayer", "QuantTransposeGroupLayer", "VariableBitModel", "calibrate",
    "fake_quant_weights", "freeze_bn", "group_layers",
    "is_qat_model", "policy_of", "quantize_model", "quantize_scope", "unset_ranges",
]
