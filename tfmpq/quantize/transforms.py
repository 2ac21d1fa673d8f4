"""PerLayerQuantizeModelTransformer: fold every group into one QuantGroupLayer, in one ModelTransformer pass.

The groups come from `tfmpq.graph.quantizable_groups` (a breadth-first walk over the same config
tfmot's ``ModelTransformer`` reads); the transforms below match the chains weighted -> BN -> activation,
weighted -> BN, weighted -> activation and weighted alone, and replace exactly the chains that are groups
(anything else is returned unchanged, which ModelTransformer treats as "no match"). One transform pass
folds every group; Šafář's reference ran one pass per group (~30 s per MobileNet-0.25 candidate).
"""
from __future__ import annotations

import collections

from tfmpq._keras import keras, tfmot
from tfmpq.quantize.layers import KINDS, QuantGroupLayer
from tfmpq.quantize.quantizers import ActivationQuantizer
from tfmpq.quantize.registry import OutputQuantizeConfig, PerLayerQuantizeRegistry
from tfmpq.quantize.transpose import TRANSPOSE_KINDS, QuantTransposeGroupLayer, to_group_layout

_gt = tfmot.quantization.keras.graph_transformations
LayerPattern = _gt.transforms.LayerPattern
LayerNode = _gt.transforms.LayerNode
Transform = _gt.transforms.Transform
ModelTransformer = _gt.model_transformer.ModelTransformer

_WEIGHTED = "|".join(KINDS + TRANSPOSE_KINDS)
_BN = "BatchNormalization"
_ACT = "ReLU|Activation"
_FOLDABLE = ("linear", "relu", "relu6")


def custom_objects() -> dict:
    """Every class a tfmpq QAT model needs to deserialize."""
    return {
        "QuantGroupLayer": QuantGroupLayer,
        "QuantTransposeGroupLayer": QuantTransposeGroupLayer,
        "ActivationQuantizer": ActivationQuantizer,
        "OutputQuantizeConfig": OutputQuantizeConfig,
        "QuantizeLayer": _quantize_layer_cls(),
    }


def _quantize_layer_cls():
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer

    return QuantizeLayer




class _FoldGroup(Transform):
    """Replace one group's chain (weighted [-> BN] [-> activation]) by a QuantGroupLayer."""

    chain: tuple = (_WEIGHTED,)  # class-name patterns, weighted layer first; subclasses set it

    def __init__(self, groups: dict, registry: PerLayerQuantizeRegistry, options: dict):
        self.groups = groups  # weighted layer name -> QuantGroup
        self.registry = registry
        self.options = options

    def pattern(self):
        pattern = LayerPattern(self.chain[0])
        for cls in self.chain[1:]:
            pattern = LayerPattern(cls, inputs=[pattern])
        return pattern

    def replacement(self, match_layer):
        nodes = []
        node = match_layer
        while True:
            nodes.append(node)
            if not node.input_layers:
                break
            node = node.input_layers[0]
        nodes.reverse()  # weighted layer first
        names = tuple(n.layer["config"]["name"] for n in nodes)
        group = self.groups.get(names[0])
        if group is None or tuple(group.layers) != names:
            return match_layer  # not a group chain: no change
        weighted = nodes[0]
        wcfg = dict(weighted.layer["config"])
        own_act = wcfg.get("activation", "linear")
        weights = collections.OrderedDict()
        for n in nodes:
            weights.update(n.weights)
        bn_cfg = dict(nodes[1].layer["config"]) if group.has_bn else None
        wbits, abits = self.registry.group_bits[group.name]
        cls = QuantGroupLayer
        if group.kind in TRANSPOSE_KINDS:  # its kernel held output channels last (see quantize.transpose)
            cls = QuantTransposeGroupLayer
            weights = collections.OrderedDict(
                (k, to_group_layout(v) if k.split(":")[0] == "kernel" else v) for k, v in weights.items())
        layer = cls(
            kind=group.kind,
            layer_config=wcfg,
            bn_config=bn_cfg,
            activation=group.activation,
            weight_bits=wbits,
            per_channel=self.options["per_channel"],
            symmetric=self.options["symmetric"],
            bn_freeze_step=self.options["bn_freeze_step"],
            bn_fold=self.options["bn_fold"],
            variable_bits=self.registry.variable_bits,
            input_keep=self.options.get("input_keep", {}).get(group.name),
            name=group.name,
        )
        fused = LayerNode(
            {"class_name": cls.__name__, "config": layer.get_config(), "name": group.name},
            weights=weights,
            metadata={"quantize_config": OutputQuantizeConfig(abits, self.registry.variable_bits)},
        )
        if own_act in _FOLDABLE:
            return fused
        # softmax / sigmoid / ...: applied after the group's quantized output, as TFLite does.
        act = keras.layers.Activation(own_act, name=f"{group.name}_{own_act}")
        return LayerNode(
            {"class_name": "Activation", "config": act.get_config(), "name": act.name},
            input_layers=[fused],
            metadata={"quantize_config": OutputQuantizeConfig(None)},
        )

    def custom_objects(self):
        return custom_objects()


class FoldGroupBNActivation(_FoldGroup):
    chain = (_WEIGHTED, _BN, _ACT)


class FoldGroupBN(_FoldGroup):
    chain = (_WEIGHTED, _BN)


class FoldGroupActivation(_FoldGroup):
    chain = (_WEIGHTED, _ACT)


class FoldGroupAlone(_FoldGroup):
    chain = (_WEIGHTED,)


class QuantizeInput(Transform):
    """InputLayer -> InputLayer -> QuantizeLayer(ActivationQuantizer(bits)), 8 bits by default."""

    def __init__(self, bits: int = 8, variable_bits: bool = False):
        self.bits = bits
        self.variable_bits = variable_bits

    def pattern(self):
        return LayerPattern("InputLayer")

    def replacement(self, match_layer):
        qlayer = _quantize_layer_cls()(ActivationQuantizer(self.bits, variable_bits=self.variable_bits), name=f"{match_layer.layer['config']['name']}_quant")
        cfg = keras.layers.serialize(qlayer)
        cfg["name"] = qlayer.name
        return LayerNode(cfg, input_layers=[match_layer])

    def custom_objects(self):
        return custom_objects()


class PerLayerQuantizeLayoutTransform(tfmot.quantization.keras.QuantizeLayoutTransform):
    """The layout transform of the per-layer scheme: fold groups, quantize inputs; one pass."""

    def __init__(self, groups, registry: PerLayerQuantizeRegistry, per_channel=True, symmetric=True,
                 bn_freeze_step=None, bn_fold="one_conv", input_keep=None):
        self.groups = {g.name: g for g in groups}
        self.registry = registry
        self.options = {"per_channel": per_channel, "symmetric": symmetric, "bn_freeze_step": bn_freeze_step,
                        "bn_fold": bn_fold, "input_keep": dict(input_keep or {})}

    def apply(self, model, layer_quantize_map):
        bits = self.registry.other_activation_bits
        transforms = [QuantizeInput(bits, self.registry.variable_bits)] if bits else []
        transforms += [
            FoldGroupBNActivation(self.groups, self.registry, self.options),
            FoldGroupBN(self.groups, self.registry, self.options),
            FoldGroupActivation(self.groups, self.registry, self.options),
            FoldGroupAlone(self.groups, self.registry, self.options),
        ]
        return ModelTransformer(model, transforms, set(layer_quantize_map.keys()), layer_quantize_map).transform()


class PerLayerQuantizeScheme(tfmot.quantization.keras.QuantizeScheme):
    """tfmot scheme pairing the per-layer registry with the group-folding layout transform."""

    def __init__(self, groups, registry: PerLayerQuantizeRegistry, **options):
        self._transform = PerLayerQuantizeLayoutTransform(groups, registry, **options)
        self._registry = registry

    def get_layout_transformer(self):
        return self._transform

    def get_quantize_registry(self):
        return self._registry
