"""Native INT4 filters: a <= 4-bit group stored as TFLite ``TensorType.INT4``, two values per byte.

tfmpq's export keeps a b-bit group's int8 filter on its grid, the int8 values being the grid indices
k with |k| <= 2^(b-1) - 1 (``grid.snap_to_grid``): up to b = 4 they fit INT4's -8..7 unchanged. This
module rewrites such a filter's buffer as packed nibbles (low nibble first, as TFLite's
``UnpackDenseInt4IntoInt8`` reads them) and its type to INT4; scales, zero points (0) and the bias stay
as they are, so the kernels compute exactly what they compute on the int8 container.

Which operators run INT4 filters, measured with ai-edge-litert 2.3.0 and tflite-micro 0.dev20261023
(``tests/export/test_int4.py``):

- CONV_2D, DEPTHWISE_CONV_2D: LiteRT (reference and optimized builtin kernels) and TFLite Micro,
  outputs bit-identical to the int8 container. TFLite Micro's reference kernels unpack the filter into
  an arena scratch buffer of one byte per weight on every invoke (``RequestScratchBufferInArena`` in
  conv_common.cc / depthwise_conv_common.cc), so the arena grows; CMSIS-NN's s4 kernels read the
  packed filter directly (not measurable on this host build).
- FULLY_CONNECTED: LiteRT runs it; TFLite Micro refuses a per-channel INT4 filter at prepare
  ("input->type == kTfLiteInt8 && filter->type != kTfLiteInt4 was not true":
  fully_connected_common.cc, "Currently only Int8 is supported for per channel quantization"). The
  converter writes one scale per channel even for a per-tensor group, so a FULLY_CONNECTED filter
  stays int8. tfmpq deploys Dense layers as 1x1 CONV_2D by default (``dense_as_conv``), which runs INT4.
- LiteRT's default XNNPACK delegate does not take INT4 convolutions: it leaves them to the builtin
  kernels, whose outputs differ from XNNPACK's int8 ones by rounding (not from the int8 container on
  the same kernels).

The file is rewritten through the schema's object API (``ai_edge_litert.schema_py_generated``); an
unchanged model round-trips byte for byte, so only the INT4 buffers change.
"""
from __future__ import annotations

import numpy as np

from tfmpq.export.flatbuffer import ModelSource, WeightTensor, read_model_bytes, weight_tensors

#: Operators whose INT4 filters run on both LiteRT and TFLite Micro (FULLY_CONNECTED: per tensor only).
INT4_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
INT4_MIN, INT4_MAX = -8, 7


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Packs int8 values in -8..7 two per byte, low nibble first (TFLite's INT4 layout).

    Args:
        values: integers in -8..7, any shape (flattened in C order).

    Returns:
        uint8 array of ceil(n / 2) bytes (an odd count leaves the last high nibble 0).

    Raises:
        ValueError: if a value is outside -8..7.

    Example:
    >>> pack_int4(np.array([1, 2, -8, -1, 7], np.int8)).tolist()
    [33, 248, 7]
    """
    flat = np.asarray(values).astype(np.int16).reshape(-1)
    if flat.size and (flat.min() < INT4_MIN or flat.max() > INT4_MAX):
        raise ValueError(
            f"Invalid value for `values`: expected integers in {INT4_MIN}..{INT4_MAX}. "
            f"Received: values in {int(flat.min())}..{int(flat.max())}"
        )
    if flat.size % 2:
        flat = np.append(flat, 0)
    nibbles = (flat & 0x0F).astype(np.uint8)
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def int4_unsupported_reason(weight: WeightTensor) -> str | None:
    """Why `weight` cannot be stored as INT4 in a file that runs on LiteRT and TFLite Micro, or None.

    Args:
        weight: a filter tensor of an int8 model (``flatbuffer.weight_tensors``).

    Returns:
        None when it can; else a sentence for the export report.
    """
    if weight.type != "INT8" or weight.values is None:
        return f"its filter is {weight.type}, not an int8 constant"
    if weight.op not in INT4_OPS:
        return f"{weight.op} has no INT4 filter kernel"
    if weight.op == "FULLY_CONNECTED" and len(weight.scales) > 1:
        return (
            "TFLite Micro's FULLY_CONNECTED has no per-channel INT4 kernel (deploy Dense layers as 1x1 "
            "CONV_2D: export_tflite(dense_as_conv=True))"
        )
    if weight.zero_points.size and np.any(weight.zero_points != 0):
        return "its zero points are not 0"
    if weight.values.min() < INT4_MIN or weight.values.max() > INT4_MAX:
        return "its int8 values are not 4-bit grid indices (not on its trained grid in the file)"
    return None


def to_int4(model: ModelSource, indices) -> bytes:
    """Rewrites the listed int8 filter tensors of a .tflite model as INT4 tensors.

    Args:
        model: a path to a .tflite file, or its bytes.
        indices: tensor indices (subgraph 0) of filters to rewrite; each must pass
            `int4_unsupported_reason`.

    Returns:
        The new model bytes (the input bytes, unchanged, for no indices).

    Raises:
        ValueError: for an index that is not a filter of a weighted operator, a filter that cannot be
            INT4 (the message gives the reason), or a filter whose buffer another tensor shares.

    Example:
    >>> int4_bytes = to_int4(open("model.tflite", "rb").read(), [5, 9])  # doctest: +SKIP
    """
    data = read_model_bytes(model)
    indices = sorted({int(i) for i in indices})
    weights = {w.index: w for w in weight_tensors(data)}
    for index in indices:
        weight = weights.get(index)
        if weight is None:
            raise ValueError(
                f"Invalid value for `indices`: tensor {index} is not the filter of a conv / fully-connected "
                f"operator. Expected some of {sorted(weights)}"
            )
        reason = int4_unsupported_reason(weight)
        if reason is not None:
            raise ValueError(f"Invalid value for `indices`: tensor {index} ({weight.name!r}) cannot be INT4: {reason}")
    return _rewrite_int4(data, [weights[i] for i in indices])


def _rewrite_int4(data: bytes, weights: list[WeightTensor]) -> bytes:
    """Stores `weights` as INT4 in `data`, without asking whether the runtimes have kernels for them."""
    import flatbuffers

    if not weights:
        return data
    schema = _schema()
    fb = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    subgraph = fb.subgraphs[0]
    users: dict[int, int] = {}
    for sg in fb.subgraphs:
        for t in sg.tensors or []:
            users[t.buffer] = users.get(t.buffer, 0) + 1
    for weight in weights:
        tensor = subgraph.tensors[weight.index]
        if users[tensor.buffer] > 1:
            raise ValueError(
                f"Invalid value for `indices`: tensor {weight.index} ({weight.name!r}) shares its buffer with "
                "another tensor; rewriting it would change that tensor too"
            )
        fb.buffers[tensor.buffer].data = pack_int4(weight.values)
        tensor.type = schema.TensorType.INT4
    builder = flatbuffers.Builder(len(data))
    builder.Finish(fb.Pack(builder), file_identifier=data[4:8])
    return bytes(builder.Output())
