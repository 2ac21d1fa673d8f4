"""Read a .tflite flatbuffer: its operators and the constant weight tensors they consume.

This is the one place tfmpq parses the TFLite schema. It uses the schema bindings shipped with
``ai_edge_litert`` (the same schema TFLite Micro reads), so no interpreter is needed to inspect a file,
and it sees tensors the interpreters hide: ``INT4`` filters (two values per byte) and the filters of
models that an interpreter refuses to allocate.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Union

import numpy as np

ModelSource = Union[str, os.PathLike, bytes, bytearray]

# Operators whose input 1 is a weight (filter) tensor, by builtin code name.
WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "CONV_3D")


def _schema():
    # Imported lazily: ai-edge-litert is an optional ("deploy") dependency of tfmpq.
    from ai_edge_litert import schema_py_generated as schema

    return schema


def read_model_bytes(model: ModelSource) -> bytes:
    """Returns the bytes of a .tflite model given as a path or as bytes.

    Args:
        model: a path to a .tflite file, or the file's bytes.

    Returns:
        The model's flatbuffer bytes.

    Raises:
        FileNotFoundError: if `model` is a path that does not exist.
        TypeError: if `model` is neither a path nor bytes.
    """
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    raise TypeError(
        "Invalid value for `model`: expected a path to a .tflite file or its bytes. "
        f"Received: model of type {type(model).__name__}"
    )


def _name_table(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclasses.dataclass(frozen=True)
class WeightTensor:
    """A constant weight (filter) tensor of a .tflite model.

    Attributes:
        index: tensor index in subgraph 0.
        name: tensor name as written by the converter (contains the Keras layer name).
        op: builtin name of the consuming operator ("CONV_2D", ...).
        type: TFLite tensor type name ("INT8", "INT4", "FLOAT32", ...).
        shape: the tensor's shape.
        channel_axis: the quantized dimension (output channels), or None when quantized per tensor
            or not quantized.
        scales: the quantization scales (empty when not quantized).
        zero_points: the quantization zero points (empty when not quantized).
        values: the stored values (integers for quantized tensors, unpacked for INT4), or None when
            the tensor has no buffer (e.g. the output of a TFLite Micro DECODE operator).
    """

    index: int
    name: str
    op: str
    type: str
    shape: tuple
    channel_axis: int | None
    scales: np.ndarray
    zero_points: np.ndarray
    values: np.ndarray | None


def _unpack_int4(raw: np.ndarray, count: int) -> np.ndarray:
    """Unpacks TFLite INT4 data: two signed 4-bit values per byte, low nibble first."""
    raw = raw.astype(np.uint8)
    low = (raw & 0x0F).astype(np.int16)
    high = (raw >> 4).astype(np.int16)
    both = np.stack([low, high], axis=-1).reshape(-1)[:count]
    return np.where(both > 7, both - 16, both).astype(np.int8)


_NUMPY_TYPES = {
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT16": np.int16,
    "INT32": np.int32,
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
}


def _tensor_values(tensor, buffer, type_name: str) -> np.ndarray | None:
    data = buffer.data if buffer is not None else None
    if data is None or len(data) == 0:
        return None
    raw = np.asarray(data, dtype=np.uint8)
    shape = tuple(int(s) for s in tensor.shape)
    count = int(np.prod(shape)) if shape else 1
    if type_name == "INT4":
        return _unpack_int4(raw, count).reshape(shape)
    dtype = _NUMPY_TYPES.get(type_name)
    if dtype is None:
        return None
    return raw.view(dtype)[:count].reshape(shape)


def read_model(model: ModelSource):
    """Parses a .tflite flatbuffer into the schema's object API (``ModelT``).

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        The ``ModelT`` object.
    """
    schema = _schema()
    data = read_model_bytes(model)
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))


def operator_names(model: ModelSource) -> list[str]:
    """Returns the builtin operator name of every operator of subgraph 0, in execution order.

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        Operator names such as "CONV_2D"; custom operators appear as "CUSTOM:<code>".
    """
    schema = _schema()
    fb = read_model(model)
    names = _name_table(schema.BuiltinOperator)
    result = []
    for op in fb.subgraphs[0].operators or []:
        code = fb.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        name = names.get(builtin, str(builtin))
        if name == "CUSTOM":
            custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            name = f"CUSTOM:{custom}"
        result.append(name)
    return result


def weight_tensors(model: ModelSource) -> list[WeightTensor]:
    """Lists the weight (filter) tensors of subgraph 0: input 1 of every conv / fully-connected op.

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        One WeightTensor per distinct filter tensor, in operator order.
    """
    schema = _schema()
    fb = read_model(model)
    op_names = _name_table(schema.BuiltinOperator)
    type_names = _name_table(schema.TensorType)
    subgraph = fb.subgraphs[0]
    result, seen = [], set()
    for op in subgraph.operators or []:
        code = fb.operatorCodes[op.opcodeIndex]
        op_name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        if op_name not in WEIGHTED_OPS or op.inputs is None or len(op.inputs) < 2:
            continue
        index = int(op.inputs[1])
        if index < 0 or index in seen:
            continue
        seen.add(index)
        tensor = subgraph.tensors[index]
        type_name = type_names.get(tensor.type, str(tensor.type))
        quant = tensor.quantization
        scales = np.asarray(quant.scale if quant is not None and quant.scale is not None else [], np.float32)
        zero_points = np.asarray(
            quant.zeroPoint if quant is not None and quant.zeroPoint is not None else [], np.int64
        )
        channel_axis = int(quant.quantizedDimension) if len(scales) > 1 else None
        result.append(
            WeightTensor(
                index=index,
                name=tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
                op=op_name,
                type=type_name,
                shape=tuple(int(s) for s in tensor.shape),
                channel_axis=channel_axis,
                scales=scales,
                zero_points=zero_points,
                values=_tensor_values(tensor, fb.buffers[tensor.buffer], type_name),
            )
        )
    return result


def output_channel_axis(weight: WeightTensor) -> int:
    """Returns the output-channel axis of a filter: the quantized dimension, else the op's layout.

    TFLite layouts: CONV_2D [out, h, w, in], FULLY_CONNECTED [out, in], DEPTHWISE_CONV_2D
    [1, h, w, out], TRANSPOSE_CONV [out, h, w, in], CONV_3D [d, h, w, in, out].
    """
    if weight.channel_axis is not None:
        return weight.channel_axis
    if weight.op in ("DEPTHWISE_CONV_2D", "CONV_3D"):
        return len(weight.shape) - 1
    return 0
