"""Read a .tflite flatbuffer: its operators and the constant weight tensors they consume.

This is the one place tfmpq parses the TFLite schema. It uses the schema bindings shipped with
``ai_edge_litert`` (the same schema TFLite Micro reads), so no interpreter is needed to inspect a file,
and it sees tensors the interpreters hide: ``INT4`` filters (two values per byte) and the filters of
models that an interpreter refuses to allocate.
"""
from __future__ import annotations

import dataclasses
import json
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
        output: the name of the consuming operator's output tensor (it carries the Keras layer name
            on every converter version, while the filter's own name does not on TF < 2.21, where
            quantized filters are named ``tfl.pseudo_qconst*``).
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
    output: str = ""


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
                output=_tensor_name(subgraph.tensors[int(op.outputs[0])]) if op.outputs is not None else "",
            )
        )
    return result


#: The metadata entry in which ``export_tflite`` records the Keras model's input and output names, in
#: the Keras order (the converter keeps neither order: inputs and outputs are indexed in its own).
KERAS_IO_METADATA = "tfmpq_keras_io"


def keras_io(model: ModelSource) -> dict | None:
    """The Keras input and output names a file was exported with (``{"inputs": [...], "outputs": [...]}``
    in the Keras model's order), or None for a file without them (single input and output, or not
    written by ``tfmpq.export_tflite``)."""
    fb = read_model(model)
    for entry in fb.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)
        if name == KERAS_IO_METADATA:
            return json.loads(bytes(np.asarray(fb.buffers[entry.buffer].data, np.uint8)).decode())
    return None


def with_keras_io(data: bytes, inputs: list[str], outputs: list[str]) -> bytes:
    """`data` with the Keras input and output names recorded (see `keras_io`); the interpreters ignore
    metadata they do not know."""
    import flatbuffers

    if keras_io(data) == {"inputs": list(inputs), "outputs": list(outputs)}:
        return data
    schema = _schema()
    fb = schema.ModelT.InitFromObj(schema.Model.GetRootAs(data, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps({"inputs": list(inputs), "outputs": list(outputs)}).encode(), np.uint8)
    fb.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = KERAS_IO_METADATA, len(fb.buffers) - 1
    fb.metadata = [m for m in fb.metadata or [] if (m.name.decode() if isinstance(m.name, bytes) else m.name)
                   != KERAS_IO_METADATA] + [entry]
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(fb.Pack(builder), file_identifier=data[4:8])
    return bytes(builder.Output())


def io_names(model: ModelSource) -> tuple[list[str], list[str]]:
    """The names of a model's inputs and outputs, in the order the interpreters index them.

    A file converted from Keras names its inputs and outputs in its signature by the Keras input and
    output layer names, but indexes them in an order of its own (not the Keras model's; see
    `keras_io`). Tensors the signature does not name keep their tensor names.

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        (input names, output names) of subgraph 0.
    """
    fb = read_model(model)
    graph = fb.subgraphs[0]
    signature = fb.signatureDefs[0] if fb.signatureDefs else None

    def names(indices, tensor_maps):
        by_index = {int(t.tensorIndex): t.name.decode() if isinstance(t.name, bytes) else str(t.name)
                    for t in tensor_maps or []}
        return [by_index.get(int(i)) or _tensor_name(graph.tensors[int(i)]) for i in indices]

    inputs = graph.inputs if graph.inputs is not None else []
    outputs = graph.outputs if graph.outputs is not None else []
    return (names(inputs, signature.inputs if signature else None),
            names(outputs, signature.outputs if signature else None))


def _tensor_name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)


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


DECODE_OP = "CUSTOM:TFLM_DECODE"  # TFLite Micro's DECODE operator (tflite_micro ... compression.decode_insert)
_SCHEMA_QPARAM_BYTES = {"scale": 4, "zeroPoint": 8, "min": 4, "max": 4}  # float32, int64, float32, float32


@dataclasses.dataclass(frozen=True)
class StoredWeight:
    """How the file stores one conv / fully-connected operator's weights, byte by byte.

    Attributes:
        name: the filter tensor's name (for a LUT-compressed filter, the name of its encoded tensor,
            which keeps the converter's name).
        op: the consuming operator ("CONV_2D", ...).
        storage: "int8", "int4", "lut" (TFLite Micro DECODE of a look-up table), or the tensor type
            in lower case for anything else ("float32", ...).
        kernel_bytes: the filter's buffer; for "lut" the encoded indices plus the ancillary tensor
            (16-byte DECODE header and value tables).
        bias_bytes: the bias buffer (0 when the operator has none).
        qparam_bytes: the filter's and the bias's quantization parameters as the schema stores them
            (4 bytes per scale, 8 per zero point, 4 per min / max).
    """

    name: str
    op: str
    storage: str
    kernel_bytes: int
    bias_bytes: int
    qparam_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.kernel_bytes + self.bias_bytes + self.qparam_bytes


def _qparam_bytes(tensor) -> int:
    q = tensor.quantization
    if q is None:
        return 0
    values = (getattr(q, field) for field in _SCHEMA_QPARAM_BYTES)
    return sum(0 if v is None else len(v) * size for v, size in zip(values, _SCHEMA_QPARAM_BYTES.values()))


def _buffer_bytes(fb, tensor) -> int:
    buffer = fb.buffers[tensor.buffer] if 0 <= tensor.buffer < len(fb.buffers) else None
    if buffer is None:
        return 0
    if buffer.data is None:
        return int(buffer.size or 0)  # a > 2 GiB model keeps its data after the flatbuffer
    return len(buffer.data)


def weight_storage(model: ModelSource) -> list[StoredWeight]:
    """Reads how the file stores the weights of every conv / fully-connected operator of subgraph 0.

    Follows TFLite Micro's DECODE operators back to the encoded tensors, so a LUT-compressed filter
    is counted as its packed indices plus its value tables. This is the file-side measurement that
    ``tfmpq.metrics.group_flash_bytes`` predicts from a policy.

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        One StoredWeight per weighted operator, in operator order.
    """
    schema = _schema()
    fb = read_model(model)
    op_names = _name_table(schema.BuiltinOperator)
    type_names = _name_table(schema.TensorType)
    subgraph = fb.subgraphs[0]
    tensors = subgraph.tensors
    decoded_from = {}  # DECODE output tensor -> (encoded tensor, ancillary tensor)
    for op in subgraph.operators or []:
        code = fb.operatorCodes[op.opcodeIndex]
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        if custom and f"CUSTOM:{custom}" == DECODE_OP:
            for j, out in enumerate(op.outputs):
                decoded_from[int(out)] = (int(op.inputs[2 * j]), int(op.inputs[2 * j + 1]))
    result = []
    for op in subgraph.operators or []:
        code = fb.operatorCodes[op.opcodeIndex]
        op_name = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
        if op_name not in WEIGHTED_OPS or op.inputs is None or len(op.inputs) < 2 or op.inputs[1] < 0:
            continue
        index = int(op.inputs[1])
        filt = tensors[index]
        if index in decoded_from:
            encoded, ancillary = decoded_from[index]
            storage = "lut"
            kernel = _buffer_bytes(fb, tensors[encoded]) + _buffer_bytes(fb, tensors[ancillary])
            name = tensors[encoded].name
        else:
            storage = type_names.get(filt.type, str(filt.type)).lower()
            kernel = _buffer_bytes(fb, filt)
            name = filt.name
        bias = tensors[int(op.inputs[2])] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        result.append(
            StoredWeight(
                name=name.decode() if isinstance(name, bytes) else str(name),
                op=op_name,
                storage=storage,
                kernel_bytes=kernel,
                bias_bytes=0 if bias is None else _buffer_bytes(fb, bias),
                qparam_bytes=_qparam_bytes(filt) + (0 if bias is None else _qparam_bytes(bias)),
            )
        )
    return result
