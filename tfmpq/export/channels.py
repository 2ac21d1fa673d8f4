"""How channel-wise groups deploy: one sub-layer per width, and where each tensor's channel order goes.

A group with channel-wise bits (``tfmpq.QuantPolicy``) is deployed as one sub-layer per width
(``tfmpq.policy.channel_segments``: narrowest first, channels in index order, pruned channels in
none), so each sub-tensor is stored at its own width (INT4, LUT or int8) and ``tfmpq.metrics`` counts
exactly these tensors. The sub-layers' outputs are concatenated, so the group's output holds its
channels permuted (by width) and without its pruned channels. That order is then

- **folded** into the consumers when every consumer of the output, through layers that keep channels
  apart (max pooling, Flatten, Dropout, padding, cropping; a Reshape or Permute that keeps channels on
  the last axis), is a group: a Conv1D / Conv2D / Dense consumer takes its kernel rows in that order
  (and without the pruned channels' rows: their inputs are exactly 0); a DepthwiseConv2D consumer
  takes its input channels in that order and becomes the producer of that order in turn;
- else **restored** after the concatenation (a model output, an Add, a Concatenate, a softmax, ...):
  the channels go back to their places and pruned ones become zeros.

Restoring and the input of a DepthwiseConv2D split by width (each sub-depthwise takes its own input
channels) are *gathers*: STRIDED_SLICE of contiguous channel ranges, PAD with the zero point for
zero channels, CONCATENATION, all exact int8 data movement on LiteRT and TFLite Micro. A group whose
channels of one width are contiguous and in order (``[2] * 16 + [4] * 16``) needs no reordering at all.
"""
from __future__ import annotations

import dataclasses

from tfmpq.errors import ExportError
from tfmpq.graph import GRID_KEEPING, layer_graph
from tfmpq.policy import PRUNED, channel_segments

#: Layers through which a group's channel order reaches its consumers unchanged (the last axis stays the
#: channels); Flatten, Reshape and Permute are checked shape by shape (see `_walk`).
CHANNELWISE = tuple(c for c in GRID_KEEPING if c not in ("Flatten", "Reshape", "Permute", "MaxPooling3D"))
#: Consumers that take their kernel rows in any order.
ROW_KINDS = ("Conv1D", "Conv2D", "Dense")
_WRAPPERS = ("QuantizeWrapperV2", "QuantizeWrapper")


def gather_pieces(source, target) -> list:
    """The pieces that make a tensor holding channels `target` from one holding channels `source`.

    Args:
        source: the channel ids of the input tensor's last axis, in order.
        target: the channel ids wanted, in order; one absent from `source` becomes a zero channel.

    Returns:
        ``[["slice", start, stop] | ["zeros", count], ...]`` along the last axis (JSON-able).

    Example:
    >>> gather_pieces([5, 6, 7, 1], [1, 9, 5, 6])
    [['slice', 3, 4], ['zeros', 1], ['slice', 0, 2]]
    """
    position = {c: i for i, c in enumerate(source)}
    pieces = []
    for c in target:
        p = position.get(c)
        last = pieces[-1] if pieces else None
        if p is None:
            if last is not None and last[0] == "zeros":
                last[1] += 1
            else:
                pieces.append(["zeros", 1])
        elif last is not None and last[0] == "slice" and last[2] == p:
            last[2] = p + 1
        else:
            pieces.append(["slice", p, p + 1])
    return pieces


def _is_identity(pieces, size: int) -> bool:
    return pieces == [["slice", 0, size]]


@dataclasses.dataclass
class GroupPlan:
    """How one group deploys.

    Attributes:
        group: the group's name.
        layer: its layer in the QAT model (the deployed layer keeps the name).
        kind: "Conv1D", "Conv2D", "DepthwiseConv2D" or "Dense".
        channels: the group's output channels.
        bits: one bit-width per output channel (0 = pruned).
        segments: ``[(bits, channels), ...]`` the sub-layers, in the order their outputs are concatenated.
        input_order: the producer's channel ids along the input's last axis (None: the input is not a
            group's output reached through channel-keeping layers; its channels are then 0..n-1).
        input_zeros: producer channels present in the input but known to be 0 (pruned, restored).
        input_spatial: S where the input's last axis is S x the producer's channels (after a Flatten).
        producer_channels: the producer's output channels (when `input_order` is set).
        rows: Conv/Dense: the producer channel ids the kernel rows are taken for, in the input's order
            after `input_gather` (None: all rows, in order).
        input_gather: Conv/Dense: pieces applied to the input (per flattened position) before every
            sub-layer; None for none.
        segment_inputs: DepthwiseConv2D: per segment, the pieces that make its input; None for none.
        output_order: the channel ids of the deployed output, in order (after `restore`).
        restore: pieces applied after the concatenation to put every channel back (zeros for pruned
            ones); None when the order is folded into the consumers or already the identity.
    """

    group: str
    layer: str
    kind: str
    channels: int
    bits: tuple
    segments: list
    input_order: list | None = None
    input_zeros: frozenset = frozenset()
    input_spatial: int = 1
    producer_channels: int = 0
    rows: list | None = None
    input_gather: list | None = None
    segment_inputs: list | None = None
    output_order: list | None = None
    restore: list | None = None

    @property
    def trivial(self) -> bool:
        """Deploys exactly as a per-layer group (one sub-layer, every channel, in order, no gather)."""
        return (len(self.segments) == 1 and len(self.segments[0][1]) == self.channels and self.rows is None
                and self.input_gather is None and self.segment_inputs is None and self.restore is None
                and list(self.segments[0][1]) == list(range(self.channels)))


def _inner_class(g, name: str) -> str:
    cls = g.class_names[name]
    if cls in _WRAPPERS:
        return g.configs[name]["layer"]["class_name"]
    return cls


def _inner_config(g, name: str) -> dict:
    cfg = g.configs[name]
    return cfg["layer"]["config"] if g.class_names[name] in _WRAPPERS else cfg


def _shape(layer, which: str) -> tuple:
    shape = getattr(layer, which)
    return tuple(shape[0] if isinstance(shape, list) else shape)


def _walk(g, model, layer_name: str, channels: int, spatial: int, groups: dict, reached: list) -> bool:
    """Follows `layer_name`'s consumers through channel-keeping layers; appends (group layer, spatial)
    of every group reached to `reached`. Returns whether every path ends in a group (the order folds)."""
    if layer_name in g.outputs:
        return False
    folds = True
    for c in g.consumers[layer_name]:
        if g.num_inbound_nodes.get(c, 1) > 1:
            folds = False
            continue
        if c in groups:
            if groups[c].kind == "DepthwiseConv2D" and spatial != 1:
                folds = False  # a reshaped input: its channels are not the producer's
            else:
                reached.append((c, spatial))
            continue
        cls = _inner_class(g, c)
        layer = model.get_layer(c)
        if cls in CHANNELWISE:
            folds &= _walk(g, model, c, channels, spatial, groups, reached)
        elif cls in ("Flatten", "Reshape"):
            last = _shape(layer, "output_shape")[-1]
            if last is None or last % channels:
                folds = False
                continue
            folds &= _walk(g, model, c, channels, last // channels, groups, reached)
        elif cls == "Permute" and tuple(_inner_config(g, c).get("dims", ()))[-1:] == (
                len(_shape(layer, "output_shape")) - 1,):  # the channels stay last
            folds &= _walk(g, model, c, channels, spatial, groups, reached)
        else:
            folds = False
    return folds


def _input_group(g, name: str, groups: dict) -> str | None:
    """The group whose output feeds layer `name` through single-input grid-keeping layers
    (``tfmpq.graph``'s ``input_group``, on the QAT model's graph)."""
    feeds = list(dict.fromkeys(g.inputs[name]))
    while len(feeds) == 1:
        layer = feeds[0]
        if layer in groups:
            return layer
        if _inner_class(g, layer) not in GRID_KEEPING or g.num_inbound_nodes.get(layer, 1) > 1:
            return None
        feeds = list(dict.fromkeys(g.inputs[layer]))
    return None


def channel_plan(qat_model, layers: dict, bits: dict) -> dict:
    """How every group of a QAT model deploys (see the module docstring).

    Args:
        qat_model: a model built by ``tfmpq.quantize_model``.
        layers: QAT layer name -> its ``QuantGroupLayer``.
        bits: group name -> weight bits (an int, or a per-channel tuple; ``tfmpq.policy_of``).

    Returns:
        QAT layer name -> :class:`GroupPlan`, for every group.

    Raises:
        ExportError: a DepthwiseConv2D with depth_multiplier > 1 whose outputs of one input channel
            differ in width, or a group's pruned channels that reach a consumer through layers that mix
            channels (where ``tfmpq.metrics`` would count their kernel rows as removed).
    """
    g = layer_graph(qat_model)
    plans = {}
    for name in g.order:  # topological: a producer's plan is known before its consumers'
        inner = layers.get(name)
        if inner is None:
            continue
        b = bits[inner.name]
        per_channel = b if isinstance(b, tuple) else (b,) * inner.out_channels
        plans[name] = GroupPlan(group=inner.name, layer=name, kind=inner.kind, channels=inner.out_channels,
                                bits=tuple(per_channel), segments=[])
    reached_from, folds, depthwise_of = {}, {}, {}
    for name, plan in plans.items():
        reached = []
        folds[name] = _walk(g, qat_model, name, plan.channels, 1, plans, reached)
        for consumer, spatial in reached:
            reached_from[consumer] = (name, spatial)
            if plans[consumer].kind == "DepthwiseConv2D":
                depthwise_of.setdefault(name, plans[consumer])
    for name in [n for n in g.order if n in plans]:
        plan = plans[name]
        source = reached_from.get(name)
        if source is not None:
            producer = plans[source[0]]
            plan.input_order = list(producer.output_order)
            plan.input_spatial = source[1]
            plan.producer_channels = producer.channels
            plan.input_zeros = frozenset(c for c in plan.input_order if producer.bits[c] == PRUNED)
        _check_pruned_rows(g, name, plan, plans)
        if plan.kind == "DepthwiseConv2D":
            _plan_depthwise(plan, qat_model.get_layer(name))
        else:
            _plan_rows(plan, depthwise_of.get(name) if folds[name] else None)
        if not folds[name]:
            order = plan.output_order
            pieces = gather_pieces(order, range(plan.channels))
            if not _is_identity(pieces, len(order)):
                plan.restore = pieces
                plan.output_order = list(range(plan.channels))
    return plans


def _check_pruned_rows(g, name: str, plan: GroupPlan, plans: dict) -> None:
    """A row consumer fed by a pruned group through grid-keeping layers that this plan cannot follow
    (``tfmpq.metrics.pruned_inputs`` counts those rows as removed): refused, not miscounted."""
    producer = _input_group(g, name, plans)
    if producer is None or plan.kind not in ROW_KINDS or plan.input_order is not None:
        return
    pruned = plans[producer].bits.count(PRUNED)
    if pruned:
        raise ExportError(
            f"Cannot export group `{plan.group}`: its input is the output of `{plans[producer].group}`, whose "
            f"{pruned} pruned channel(s) reach it through a layer that moves channels off the last axis (a Reshape "
            "or Permute), so their kernel rows cannot be removed. Do not prune that group's channels"
        )


def _plan_rows(plan: GroupPlan, depthwise: GroupPlan | None = None) -> None:
    """A Conv / Dense group: its input rows (the producer's order, without its zero channels) and its
    sub-layers, one per width. Inside a sub-layer the channels may come in any order: where the output
    feeds a DepthwiseConv2D they come by that consumer's widths, so each of its sub-layers takes its
    input channels in a few contiguous slices (at most one per width here) instead of one per channel."""
    plan.segments = channel_segments(plan.bits if len(set(plan.bits)) > 1 else plan.bits[0], plan.channels)
    if depthwise is not None and len(set(depthwise.bits)) > 1:
        multiplier = depthwise.channels // plan.channels
        plan.segments = [(w, tuple(sorted(chans, key=lambda c: depthwise.bits[c * multiplier])))
                         for w, chans in plan.segments]
    plan.output_order = [c for _, chans in plan.segments for c in chans]
    if plan.input_order is None:
        return
    wanted = [c for c in plan.input_order if c not in plan.input_zeros]
    if wanted != list(range(plan.producer_channels)):
        plan.rows = wanted
    if wanted != plan.input_order:
        plan.input_gather = gather_pieces(plan.input_order, wanted)


def _plan_depthwise(plan: GroupPlan, layer) -> None:
    """A DepthwiseConv2D: output channel c * m + j comes from input channel c, so its channels follow
    its input's order; one sub-layer per width, each fed its own input channels."""
    multiplier = plan.channels // max(_shape(layer, "input_shape")[-1], 1)
    for c in range(plan.channels // multiplier):
        widths = set(plan.bits[c * multiplier:(c + 1) * multiplier])
        if len(widths) > 1:
            raise ExportError(
                f"Cannot export group `{plan.group}`: a DepthwiseConv2D with depth_multiplier {multiplier} must give "
                f"the {multiplier} output channels of one input channel one width; input channel {c} has "
                f"{sorted(widths)}"
            )
    inputs = list(range(plan.channels // multiplier)) if plan.input_order is None else plan.input_order
    present = set(inputs)
    order = [c for c in inputs] + [c for c in range(plan.channels // multiplier) if c not in present]
    outputs = [c * multiplier + j for c in order for j in range(multiplier) if plan.bits[c * multiplier + j] != PRUNED]
    widths = sorted(set(plan.bits[c] for c in outputs))
    plan.segments = [(w, tuple(c for c in outputs if plan.bits[c] == w)) for w in widths]
    plan.output_order = [c for _, chans in plan.segments for c in chans]
    pieces = [gather_pieces(inputs, [c // multiplier for c in chans[::multiplier]]) for _, chans in plan.segments]
    if not (len(pieces) == 1 and _is_identity(pieces[0], len(inputs))):
        plan.segment_inputs = pieces
