"""Put each sub-8-bit group's int8 weights exactly on its trained grid, in the converted flatbuffer.

The converter quantizes a (BN-folded, fake-quantized) kernel with its own per-channel scale
max|w_c| / 127. For a b-bit group the kernel's values are k * s_c with integer |k| <= 2^(b-1) - 1, so
the converter stores round(127 * k * s_c / max|w_c|): at most 2^b values per channel, but each off the
trained value by up to half an int8 step (e.g. 4 bits, k = 1: 18/127 instead of 1/7), and for a group trained
per *tensor* the per-channel scales split its one grid into one per channel (more than 2^b values per
tensor). The converter ignores ``_experimental_disable_per_channel`` once the graph holds fake-quant
ops (measured with TF 2.21), so tfmpq fixes the file instead:

    filter: int8 k (the grid index itself), scale s_c = trained step (per tensor: one s for all
            channels, written into every per-channel slot);
    bias:   int32 round(b * old_scale_c / s_c), scale input_scale * s_c (TFLite's rule for biases).

The rewrite is in place (same buffer and vector sizes), so the file's layout and alignment are
untouched. It only applies to groups of 2..7 bits (an 8-bit per-channel group is already exact) and
only when the recovered indices are unambiguous (each value within a quarter step of the grid). An
8-bit *per-tensor* group keeps the converter's per-channel scales: its indices cannot be recovered
unambiguously from the file (the re-rounding error reaches half a step), and at 8 bits the file holds
at most 2^8 values per tensor anyway.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class GridTarget:
    """One weight tensor to put on its grid.

    Attributes:
        filter_index: tensor index of the filter (input 1 of its CONV_2D / DEPTHWISE_CONV_2D /
            TRANSPOSE_CONV / ...).
        bits: the group's trained weight bits (2..7).
        per_channel: the group was trained with one scale per output channel (else one per tensor).
    """

    filter_index: int
    bits: int
    per_channel: bool


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _operands() -> dict:
    """Builtin operator code -> positions of its (input, filter, bias): (0, 1, 2) unless listed."""
    return {_schema().BuiltinOperator.TRANSPOSE_CONV: (2, 1, 3)}  # inputs: output shape, filter, input, bias


def snap_to_grid(model: bytes, targets: list[GridTarget]) -> tuple[bytes, list[int]]:
    """Rewrites the listed filters (and their biases) so their int8 values are the trained grid indices.

    Args:
        model: the converted .tflite bytes.
        targets: the filters to rewrite.

    Returns:
        (new model bytes, filter indices that were rewritten). A target is left as converted (not in
        the list) if its filter or bias buffer is shared with another tensor, or its values are not
        within a quarter step of a b-bit grid.
    """
    schema = _schema()
    operands = _operands()
    data = bytearray(model)
    fb = schema.Model.GetRootAs(data, 0)
    subgraph = fb.Subgraphs(0)
    by_filter = {t.filter_index: t for t in targets}
    buffer_users: dict[int, int] = {}
    for i in range(subgraph.TensorsLength()):
        buffer_index = subgraph.Tensors(i).Buffer()
        buffer_users[buffer_index] = buffer_users.get(buffer_index, 0) + 1
    done = []
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        inputs = op.InputsAsNumpy() if op.InputsLength() else []
        code = fb.OperatorCodes(op.OpcodeIndex())
        positions = operands.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), (0, 1, 2))
        if len(inputs) <= positions[1] or int(inputs[1]) not in by_filter:
            continue
        target = by_filter[int(inputs[1])]
        x_t, w_t = subgraph.Tensors(int(inputs[positions[0]])), subgraph.Tensors(int(inputs[1]))
        has_bias = len(inputs) > positions[2] and int(inputs[positions[2]]) >= 0  # TRANSPOSE_CONV: optional
        b_t = subgraph.Tensors(int(inputs[positions[2]])) if has_bias else None
        if buffer_users[w_t.Buffer()] > 1 or (b_t is None and positions == (0, 1, 2)):
            continue
        # the converter shares one buffer between identical biases (e.g. all-zero ones); zeros stay zeros
        if _snap(fb, x_t, w_t, b_t, target, bias_shared=b_t is not None and buffer_users[b_t.Buffer()] > 1):
            done.append(target.filter_index)
    return bytes(data), done


def _snap(fb, x_t, w_t, b_t, target: GridTarget, bias_shared: bool) -> bool:
    """Rewrites one filter (and its bias; `b_t` None: a TRANSPOSE_CONV without one) in place."""
    wq, xq = w_t.Quantization(), x_t.Quantization()
    bq = None if b_t is None else b_t.Quantization()
    if wq is None or xq is None or xq.ScaleLength() != 1 or w_t.Type() != 9:
        return False
    if b_t is not None and (bq is None or b_t.Type() != 2):
        return False
    w_scales = wq.ScaleAsNumpy()  # a view into the model bytes
    w_raw = fb.Buffers(w_t.Buffer()).DataAsNumpy()
    b_raw = None if b_t is None else fb.Buffers(b_t.Buffer()).DataAsNumpy()
    if isinstance(w_raw, int) or isinstance(b_raw, int):
        return False  # no data
    shape = tuple(w_t.ShapeAsNumpy())
    weights = w_raw.view(np.int8).reshape(shape)
    bias = np.zeros(shape[0], np.int32) if b_raw is None else b_raw.view(np.int32)
    b_scales = None if bq is None else bq.ScaleAsNumpy()
    channels = len(w_scales)
    axis = wq.QuantizedDimension() if channels > 1 else 0
    if channels not in (1, shape[axis]) or bias.size != shape[axis] or (
            b_scales is not None and len(b_scales) != channels):
        return False
    qmax = 2 ** (target.bits - 1) - 1
    old = np.asarray(w_scales, np.float64)
    shape_c = [1] * len(shape)
    shape_c[axis] = -1
    values = weights.astype(np.float64) * (old.reshape(shape_c) if channels > 1 else old[0])
    reduce = tuple(i for i in range(len(shape)) if i != axis)
    if target.per_channel:
        peak = np.abs(values).max(axis=reduce)
    else:
        peak = np.full(shape[axis], np.abs(values).max())
    step = np.where(peak > 0, peak / qmax, old if channels > 1 else old[0])
    index = values / step.reshape(shape_c)
    k = np.round(index)
    if np.abs(index - k).max() > 0.25 or np.abs(k).max() > qmax:
        return False
    input_scale = float(xq.ScaleAsNumpy()[0])
    old_per_channel = np.broadcast_to(old, (shape[axis],)) if channels == 1 else old
    new_bias = np.round(bias.astype(np.float64) * old_per_channel / step)
    if np.abs(new_bias).max() >= 2**31 or (bias_shared and np.any(bias != 0)):
        return False
    if channels == 1 and not np.allclose(step, step[0]):
        return False  # one scale slot cannot hold per-channel steps
    weights[...] = k.astype(np.int8)
    w_scales[...] = step[:channels].astype(np.float32) if channels > 1 else np.float32(step[0])
    if b_scales is not None:
        bias[...] = new_bias.astype(np.int32)
        b_scales[...] = (input_scale * np.asarray(w_scales, np.float64)).astype(np.float32)
    return True
