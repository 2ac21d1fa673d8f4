"""Quantizable groups: the weighted layers of a Keras model, each with the BN and activation folded into it.

A *group* is what one gene of a mixed-precision policy controls: a weighted layer (Conv2D, Dense, ...)
plus the BatchNormalization that directly follows it (its only consumer) and a ReLU/ReLU6/linear
activation after that. Groups are found by a breadth-first walk over the layer graph from the inputs
(the `PerLayerQuantizeModelTransformer` of Šafář, Automated Quantization of Neural Networks, sec. 2.1),
so gene order is the network's topological order, never the alphabetical order of layer names.

The graph is read from ``model.get_config()``, the same description tfmot's ``ModelTransformer`` works
on, so the groups found here are exactly the chains the quantize transform folds.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import warnings
import weakref
from typing import Any, Iterable

import numpy as np

from tfmpq.convert import as_tf_keras
from tfmpq.errors import FloatLayerError, UnsupportedModelError

# Weighted layer kinds tfmpq quantizes, with how their kernel maps to output channels.
SUPPORTED_KINDS = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense", "Conv2DTranspose")
# Weighted layers that stay in float, with the reason shown to the user.
_FLOAT_REASONS = {
    # A channels-last SeparableConv2D is split into its depthwise and pointwise groups (tfmpq.convert.flatten).
    "SeparableConv2D": "only a channels-last SeparableConv2D is split into its depthwise and pointwise groups",
    "SeparableConv1D": "SeparableConv1D is not quantized: use a SeparableConv2D on a (N, 1, T, C) input",
    "Normalization": "Normalization (a per-channel affine map of the input) trains in float; the TFLite "
                     "converter quantizes its output at 8 bits from the representative data",
    "Conv3D": "Conv3D is not supported by TFLite Micro",
    "LSTM": "recurrent layers stay in float",
    "GRU": "recurrent layers stay in float",
    "SimpleRNN": "recurrent layers stay in float",
    "Embedding": "Embedding stays in float",
    "BatchNormalization": "BatchNormalization that does not directly follow a weighted layer stays in float",
    "LayerNormalization": "LayerNormalization stays in float",
    "Lambda": "Lambda layers are opaque to tfmpq and stay in float",
}
FOLDABLE_ACTIVATIONS = ("linear", "relu", "relu6")


@dataclasses.dataclass(frozen=True)
class QuantGroup:
    """One gene's worth of a model: a weighted layer with its BN and activation folded in.

    Attributes:
        name: the weighted layer's name; also the name of the QAT layer's inner layer.
        kind: the weighted layer's class name ("Conv2D", "DepthwiseConv2D", "Dense", "Conv1D",
            "Conv2DTranspose").
        layers: names of the layers folded into the group, in order (weighted, BN, activation).
        index: the position of this group's gene in a policy.
        params: kernel weights + one bias per output channel (BN folded into kernel and bias).
        kernel_params: kernel weights only (what the weight bit-width applies to).
        bias_params: folded bias values (kept at 32 bits, as TFLite does).
        out_channels: output channels (the per-channel quantization axis).
        macs: multiply-accumulates per inference (batch 1).
        activation: "linear", "relu" or "relu6", the folded activation.
        has_bn: whether a BatchNormalization is folded into the kernel.
        input_group: the group whose quantized output reaches this group's input unchanged, through
            layers that keep its grid (max pooling, Flatten, Reshape, Dropout, zero padding, ...);
            None when the input is the model's input or a tensor re-quantized at 8 bits (after Add,
            Concatenate, average pooling, a float layer, ...). The bit-width of the tensor that feeds
            a group's multiplies is that group's activation bits, else 8 (see ``tfmpq.metrics``).
    """

    name: str
    kind: str
    layers: tuple
    index: int
    params: int
    kernel_params: int
    bias_params: int
    out_channels: int
    macs: int
    activation: str = "linear"
    has_bn: bool = False
    input_group: str | None = None

    @property
    def bn_layer(self) -> str | None:
        return self.layers[1] if self.has_bn else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# Reading the layer graph from the model config.


def _keras():
    """tf_keras, for the class checks of a model being analysed. This module reads configs and
    shapes only, so importing it loads no TensorFlow (``tfmpq.policy``, ``tfmpq.metrics`` and
    ``tfmpq.search`` build on it); a model object to analyse means tf_keras is loaded already."""
    from tfmpq._keras import keras

    return keras


def check_model(model: Any) -> None:
    """Raise a clear `TypeError` for models tfmpq cannot analyse.

    The public entry points convert Keras 3 models first (`tfmpq.convert.as_tf_keras`); this check is
    for the tf_keras model that results.

    Raises:
        UnsupportedModelError: for models that are not tf_keras models (an unconverted Keras 3 model
            included), subclassed models and unbuilt models.
    """
    keras = _keras()
    if not isinstance(model, keras.Model):
        module = type(model).__module__
        if module.startswith("keras") and not module.startswith("keras.src.engine"):
            raise UnsupportedModelError(
                f"Invalid value for `model`: expected a tf_keras model; received a Keras 3 "
                f"{type(model).__name__} from `{module}`. Convert it with `tfmpq.convert.as_tf_keras(model)` "
                f"(every public tfmpq function does this for you)."
            )
        raise UnsupportedModelError(
            f"Invalid value for `model`: expected a tf_keras Sequential or functional Model. "
            f"Received: {type(model).__name__}."
        )
    if not isinstance(model, keras.Sequential) and not getattr(model, "_is_graph_network", False):
        raise UnsupportedModelError(
            f"tfmpq supports Sequential and functional tf_keras models; `{model.name}` is a subclassed "
            f"`{type(model).__name__}`, whose layer graph cannot be read. Rebuild it with the functional API."
        )
    if not model.built:
        raise UnsupportedModelError(
            f"Model `{model.name}` is not built: call `model.build(input_shape)` or give it an Input first."
        )


def _inbound_names(layer_cfg: dict) -> list[str]:
    names = []
    for node in layer_cfg.get("inbound_nodes", []):
        if isinstance(node, dict):  # Keras 3 style, not expected for tf_keras
            node = list(node.values())
        if isinstance(node, list) and node and isinstance(node[0], str):
            node = [node]
        for conn in node:
            names.append(conn[0])
            if len(conn) > 3 and isinstance(conn[3], dict):
                names += [v[0] for v in conn[3].values() if isinstance(v, list) and v and isinstance(v[0], str)]
    return names


@dataclasses.dataclass
class LayerGraph:
    """Layer names, their inputs/consumers, and a breadth-first topological order."""

    order: list  # layer names, BFS topological order from the inputs
    inputs: dict  # name -> list of input layer names
    consumers: dict  # name -> list of consumer layer names
    num_inbound_nodes: dict  # name -> number of times the layer is called
    outputs: set  # names of layers whose output is a model output
    class_names: dict  # name -> class name
    configs: dict  # name -> layer config
    ranks: dict  # name -> rank of the layer's output
    weighted: dict  # name -> whether the layer has weights


def layer_graph(model) -> LayerGraph:
    """Read `model`'s layer graph (as tfmot's ModelTransformer sees it) and order it breadth-first.

    A Keras 3 model is read as the tf_keras model it converts to (`tfmpq.convert.as_tf_keras`).
    """
    model = as_tf_keras(model)
    check_model(model)
    config = model.get_config()
    layers_cfg = config["layers"]
    names = [lc["config"]["name"] for lc in layers_cfg]
    class_names = {lc["config"]["name"]: lc["class_name"] for lc in layers_cfg}
    configs = {lc["config"]["name"]: lc["config"] for lc in layers_cfg}
    if isinstance(model, _keras().Sequential):
        inputs = {n: ([names[i - 1]] if i else []) for i, n in enumerate(names)}
        num_nodes = {n: 1 for n in names}
        outputs = {names[-1]}
    else:
        inputs = {lc["config"]["name"]: _inbound_names(lc) for lc in layers_cfg}
        num_nodes = {lc["config"]["name"]: len(lc.get("inbound_nodes", [])) for lc in layers_cfg}
        outputs = {o[0] for o in config["output_layers"]}
    # A shared layer applied to its own output (a nested block called twice in a row) feeds itself:
    # not an edge of the layer order (the layer stays in float as shared anyway).
    inputs = {n: [i for i in feeds if i != n] for n, feeds in inputs.items()}
    consumers = {n: [] for n in names}
    for n in names:
        for i in inputs[n]:
            if n not in consumers[i]:
                consumers[i].append(n)
    # Kahn's algorithm, breadth-first, ties broken by config order: stable and topological.
    position = {n: i for i, n in enumerate(names)}
    pending = {n: len(set(inputs[n])) for n in names}
    queue = collections.deque(n for n in names if pending[n] == 0)
    order = []
    while queue:
        n = queue.popleft()
        order.append(n)
        for c in sorted(consumers[n], key=position.get):
            pending[c] -= 1
            if pending[c] == 0:
                queue.append(c)
    if len(order) != len(names):  # pragma: no cover - Keras graphs are acyclic
        raise UnsupportedModelError(f"Model `{model.name}` has a cyclic layer graph.")
    ranks, weighted = {}, {}
    for layer in model.layers:
        weighted[layer.name] = bool(layer.weights)
        try:
            ranks[layer.name] = len(_output_shape(layer))
        except (AttributeError, RuntimeError):
            ranks[layer.name] = -1
    return LayerGraph(order, inputs, consumers, num_nodes, outputs, class_names, configs, ranks, weighted)


# --------------------------------------------------------------------------------------------------
# Grouping.


def activation_name(class_name: str, cfg: dict) -> str | None:
    """The foldable activation ("linear", "relu", "relu6") a layer applies, or None."""
    if class_name == "Activation":
        act = cfg.get("activation")
        return act if act in FOLDABLE_ACTIVATIONS else None
    if class_name == "ReLU":
        if cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
            return None
        mv = cfg.get("max_value")
        if mv is None:
            return "relu"
        return "relu6" if float(mv) == 6.0 else None
    return None


def _unsupported_reason(class_name: str, cfg: dict) -> str | None:
    """Why a layer of a supported kind cannot be quantized as a group (None if it can)."""
    if cfg.get("data_format", "channels_last") not in (None, "channels_last"):
        return "only channels_last is supported"
    if class_name in ("Conv1D", "Conv2D") and int(cfg.get("groups", 1) or 1) != 1:
        return "grouped convolutions are not supported by TFLite Micro"
    if class_name == "Conv2DTranspose" and tuple(cfg.get("dilation_rate") or (1, 1)) != (1, 1):
        return "a dilated Conv2DTranspose has no TFLite TRANSPOSE_CONV kernel"
    act = cfg.get("activation", "linear")
    if not isinstance(act, str):
        return "custom activation objects are not supported"
    return None


def _bn_foldable(class_name: str, cfg: dict, rank: int) -> bool:
    """A BatchNormalization over the last (channel) axis only, which folds into per-channel scales."""
    if class_name != "BatchNormalization":
        return False
    axis = cfg.get("axis", -1)
    if isinstance(axis, (list, tuple)):
        if len(axis) != 1:
            return False
        axis = axis[0]
    return axis == -1 or axis == rank - 1


def _single_consumer(g: LayerGraph, name: str) -> str | None:
    """The only consumer of `name`, if it has exactly one and is not a model output."""
    if name in g.outputs or len(g.consumers[name]) != 1:
        return None
    c = g.consumers[name][0]
    if g.num_inbound_nodes.get(c, 1) > 1:
        return None
    return c


def _chains(g: LayerGraph) -> tuple[list, dict]:
    """The folded layer chains of every quantizable group, and the reason for each float layer."""
    chains, floats = [], {}
    for name in g.order:
        cls, cfg = g.class_names[name], g.configs[name]
        if cls not in SUPPORTED_KINDS:
            if cls == "BatchNormalization":
                continue  # decided below, once every foldable BN is known
            if cls in _FLOAT_REASONS and cls != "BatchNormalization":
                floats[name] = _FLOAT_REASONS[cls]
            elif g.weighted.get(name):
                floats[name] = f"{cls} is not a layer kind tfmpq quantizes"
            elif not hasattr(_keras().layers, cls):
                floats[name] = f"custom layer `{cls}` is opaque to tfmpq and stays in float"
            continue
        reason = _unsupported_reason(cls, cfg)
        if reason is None and g.num_inbound_nodes.get(name, 1) > 1:
            reason = "the layer is shared (called more than once)"
        if reason:
            floats[name] = reason
            continue
        chain = [name]
        own_act = cfg.get("activation", "linear")
        activation = own_act if own_act in FOLDABLE_ACTIVATIONS else "linear"
        has_bn = False
        nxt = _single_consumer(g, name)
        if own_act == "linear" and nxt and _bn_foldable(g.class_names[nxt], g.configs[nxt], g.ranks[name]):
            chain.append(nxt)
            has_bn = True
            nxt = _single_consumer(g, nxt)
        if own_act == "linear" and nxt:
            act = activation_name(g.class_names[nxt], g.configs[nxt])
            if act is not None:
                chain.append(nxt)
                activation = act
        chains.append((tuple(chain), activation, has_bn))
    folded = {n for c, _, _ in chains for n in c}
    for name in g.order:
        if g.class_names[name] == "BatchNormalization" and name not in folded:
            floats[name] = _FLOAT_REASONS["BatchNormalization"]
    return chains, floats


def _count(layer, kind: str, out_shape) -> tuple[int, int, int, int]:
    """kernel params, bias params, output channels and MACs of one weighted layer."""
    if kind == "Conv2DTranspose":
        return _count_transpose(layer)
    kernel = layer.depthwise_kernel if kind == "DepthwiseConv2D" else layer.kernel
    kshape = tuple(int(d) for d in kernel.shape)
    kernel_params = int(np.prod(kshape))
    if kind == "DepthwiseConv2D":
        out_channels = kshape[2] * kshape[3]
        per_output = kshape[0] * kshape[1]
    elif kind == "Dense":
        out_channels = kshape[-1]
        per_output = kshape[0]
    else:  # Conv1D / Conv2D
        out_channels = kshape[-1]
        per_output = int(np.prod(kshape[:-1]))
    spatial = int(np.prod([int(d) for d in out_shape[1:-1]])) if len(out_shape) > 2 else 1
    macs = spatial * out_channels * per_output
    return kernel_params, out_channels, out_channels, macs


def _count_transpose(layer) -> tuple[int, int, int, int]:
    """A Conv2DTranspose: kernel (kh, kw, out, in); every input pixel meets the whole kernel once
    (kh * kw * in * out MACs per input position, TFLite's TRANSPOSE_CONV scatter)."""
    kshape = tuple(int(d) for d in layer.kernel.shape)
    in_shape = layer.input_shape[0] if isinstance(layer.input_shape, list) else layer.input_shape
    positions = int(np.prod([1 if d is None else int(d) for d in in_shape[1:-1]]))
    kernel_params = int(np.prod(kshape))
    return kernel_params, kshape[2], kshape[2], positions * kernel_params


def _output_shape(layer) -> tuple:
    shape = layer.output_shape
    if isinstance(shape, list):
        shape = shape[0]
    return tuple(shape)


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class _Analysis:
    groups: list
    floats: dict  # layer name -> why it stays in float
    float_costs: dict  # layer name -> (params, MACs) of every weighted layer outside the groups


def _analyse(model) -> _Analysis:
    """Groups, float layers and their costs of `model`, computed once per model object.

    A functional model's graph cannot change after construction, and searches ask for the groups of
    the same model once per candidate (reading the config of a MobileNet takes about a second).
    A Keras 3 model converts to the same tf_keras model object on every call, so it hits the cache too.
    """
    model = as_tf_keras(model)
    cached = _CACHE.get(model) if isinstance(model, _keras().Model) else None
    if cached is not None and cached[0] == len(model.layers):
        return cached[1]
    g = layer_graph(model)
    chains, floats = _chains(g)
    groups = _make_groups(model, g, chains)
    in_groups = {n for chain, _, _ in chains for n in chain}
    costs = {layer.name: (_num_weights(layer), _float_macs(layer)) for layer in model.layers
             if layer.name not in in_groups and layer.weights}
    analysis = _Analysis(groups, floats, costs)
    _CACHE[model] = (len(model.layers), analysis)
    return analysis


def _num_weights(layer) -> int:
    return sum(int(w.shape.num_elements() or 0) for w in layer.weights)


def _float_macs(layer) -> int:
    """Multiply-accumulates of a layer left in float, per inference (batch 1), estimated from its weights.

    Each kernel weight (``kernel``, ``depthwise_kernel``, ``recurrent_kernel``, ...) is used once per
    output position (exact for convolutions and Dense; a recurrent layer returning only its last state
    counts one step); a layer with per-channel weights only (BatchNormalization, LayerNormalization,
    Normalization) does one per output value; an Embedding is a lookup (0).
    """
    if type(layer).__name__ == "Embedding":
        return 0
    try:
        shape = _output_shape(layer)
    except (AttributeError, RuntimeError, TypeError, ValueError):
        return 0
    dims = [1 if d is None else int(d) for d in shape[1:]]
    positions = int(np.prod(dims[:-1])) if len(dims) > 1 else 1
    kernels = sum(int(w.shape.num_elements() or 0) for w in layer.weights
                  if w.name.split("/")[-1].split(":")[0].endswith("kernel"))
    return kernels * positions if kernels else int(np.prod(dims)) if dims else 0


def quantizable_groups(model) -> list[QuantGroup]:
    """Find the quantizable groups of a Sequential or functional tf_keras or Keras 3 model.

    Walks the layer graph breadth-first from the inputs and returns one group per weighted layer
    (Conv1D, Conv2D, DepthwiseConv2D, Dense, Conv2DTranspose), with the BatchNormalization that directly
    follows it (its only consumer) and a following ReLU / ReLU6 / linear activation folded in.

    Args:
        model: a built tf_keras or Keras 3 `Sequential` or functional `Model` (a Keras 3 model is read
            as the tf_keras model `tfmpq.convert.as_tf_keras` makes of it: same layers and names).

    Returns:
        The groups in topological order; `group.index` is its gene's position in a policy.

    Raises:
        UnsupportedModelError: for subclassed and unbuilt models, and Keras 3 models with a layer tfmpq
            cannot convert.

    Example:
        >>> for g in tfmpq.quantizable_groups(model):
        ...     print(g.index, g.name, g.kind, g.layers, g.params, g.macs)
    """
    return list(_analyse(model).groups)


#: Single-input layers whose output values are a subset of their input values (or zeros, which every
#: asymmetric activation grid holds exactly), so the tensor after them stays on the grid of the
#: quantized tensor before them; TFLite keeps their input's scale and zero point.
GRID_KEEPING = (
    "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "Flatten",
    "Reshape", "Dropout", "SpatialDropout1D", "SpatialDropout2D", "ZeroPadding1D", "ZeroPadding2D",
    "Cropping1D", "Cropping2D", "Permute",
)


def _input_groups(g: LayerGraph, chains: list) -> list[str | None]:
    """For each chain, the group whose output feeds it through grid-keeping layers only (else None)."""
    owner = {chain[-1]: chain[0] for chain, _, _ in chains}  # a group's output layer -> the group
    out = []
    for chain, _, _ in chains:
        feeds = list(dict.fromkeys(g.inputs[chain[0]]))
        source = None
        while len(feeds) == 1:
            layer = feeds[0]
            if layer in owner:
                source = owner[layer]
                break
            if g.class_names[layer] not in GRID_KEEPING or g.num_inbound_nodes.get(layer, 1) > 1:
                break
            feeds = list(dict.fromkeys(g.inputs[layer]))
        out.append(source)
    return out


def _make_groups(model, g: LayerGraph, chains: list) -> list[QuantGroup]:
    groups = []
    input_groups = _input_groups(g, chains)
    for index, (chain, activation, has_bn) in enumerate(chains):
        name = chain[0]
        layer = model.get_layer(name)
        kind = g.class_names[name]
        kernel_params, bias_params, out_channels, macs = _count(layer, kind, _output_shape(layer))
        # A folded group always deploys with one bias per output channel (TFLite conv/FC bias).
        has_bias = has_bn or bool(g.configs[name].get("use_bias", True))
        bias_params = out_channels if has_bias else 0
        groups.append(
            QuantGroup(
                name=name,
                kind=kind,
                layers=chain,
                index=index,
                params=kernel_params + bias_params,
                kernel_params=kernel_params,
                bias_params=bias_params,
                out_channels=out_channels,
                macs=macs,
                activation=activation,
                has_bn=has_bn,
                input_group=input_groups[index],
            )
        )
    return groups


def float_layers(model) -> dict[str, str]:
    """Layers with weights (or that tfmpq cannot fold) that stay in float, with the reason for each.

    Returns:
        layer name -> reason, in topological order.
    """
    return dict(_analyse(model).floats)


def float_costs(model) -> dict[str, tuple[int, int]]:
    """Weights and multiply-accumulates of every weighted layer outside the groups (it stays in float).

    ``tfmpq.metrics.summary`` counts them at 32 bits in every size, average and ratio. The MACs are
    an estimate (each kernel weight used once per output position, see the code); groups' MACs are exact.

    Args:
        model: a tf_keras or Keras 3 model; or a list of `QuantGroup`s (nothing outside them: ``{}``).

    Returns:
        layer name -> (weights, MACs), in the model's layer order.
    """
    if isinstance(model, (list, tuple)) or model is None:
        return {}
    return dict(_analyse(model).float_costs)


def float_weight_share(model) -> float:
    """The share of `model`'s weights in layers that stay in float (outside every group), in [0, 1].

    Args:
        model: a tf_keras or Keras 3 model.

    Returns:
        float weights / all weights (group kernels and biases, BN folded, plus the float layers').
    """
    analysis = _analyse(model)
    floats = sum(p for p, _ in analysis.float_costs.values())
    total = floats + sum(g.params for g in analysis.groups)
    return floats / total if total else 0.0


_WARNED: "weakref.WeakSet" = weakref.WeakSet()  # models whose float layers were reported already


def warn_float_layers(model, strict: bool = False) -> None:
    """Says which layers of `model` stay in float: a `UserWarning` once per model, or an error.

    Called by ``tfmpq.quantize_model`` and every search, so no layer stays in float silently.

    Args:
        model: a tf_keras or Keras 3 model (the same object as the search or quantization gets).
        strict: raise instead of warning. Defaults to False.

    Raises:
        FloatLayerError: with `strict`, when any layer stays in float.
    """
    model = as_tf_keras(model)
    analysis = _analyse(model)
    if not analysis.floats:
        return
    floats = sum(p for p, _ in analysis.float_costs.values())
    total = floats + sum(g.params for g in analysis.groups)
    share = floats / total if total else 0.0
    shown = [f"`{name}` ({reason})" for name, reason in list(analysis.floats.items())[:8]]
    if len(analysis.floats) > 8:
        shown.append(f"and {len(analysis.floats) - 8} more (tfmpq.float_layers(model) lists them all)")
    many = len(analysis.floats) != 1
    text = (f"{len(analysis.floats)} layer{'s' if many else ''} of model `{model.name}` "
            f"stay{'' if many else 's'} in float (not quantized), holding {100 * share:.1f}% of its weights "
            f"({floats:,} of {total:,}): " + "; ".join(shown) + ".")
    if strict:
        raise FloatLayerError(f"{text} Received: strict=True. Replace or remove these layers, or pass strict=False "
                              "to keep them in float (their weights count at 32 bits in tfmpq.metrics.summary).")
    if model in _WARNED:
        return
    _WARNED.add(model)
    warnings.warn(f"{text} Their weights count at 32 bits in tfmpq.metrics.summary; pass strict=True to make "
                  "this an error.", UserWarning, stacklevel=3)


def model_signature(model_or_groups) -> str:
    """A short fingerprint of a model's group structure: names, kinds and shapes of every group.

    Two models with the same signature accept the same policies.
    """
    groups = model_or_groups if isinstance(model_or_groups, (list, tuple)) else quantizable_groups(model_or_groups)
    desc = [(g.name, g.kind, g.kernel_params, g.out_channels) for g in groups]
    return hashlib.sha1(json.dumps(desc).encode()).hexdigest()[:12]


def groups_table(groups: Iterable[QuantGroup]) -> str:
    """A plain-text table of groups (used by `tfmpq info`)."""
    rows = [("#", "group", "kind", "layers", "params", "MACs")]
    for g in groups:
        rows.append((str(g.index), g.name, g.kind, "+".join(g.layers[1:]) or "-", f"{g.params:,}", f"{g.macs:,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
