"""Truly packed N-bit weights for TFLite Micro, with its look-up-table (LUT) model compression.

A weight tensor with at most 2^N distinct values per output channel is stored as N-bit indices into a
small per-channel value table. The format is the one TFLite Micro reads since its compression moved to
DECODE operators (tflite-micro PR #3654, 2026-08-12), as written by the pinned tflite-micro
(0.dev20261023, ``tflite_micro.tensorflow.lite.micro.compression``):

- the filter tensor becomes a UINT8 tensor holding the packed indices (no quantization parameters);
- an ancillary UINT8 tensor holds the 16-byte DECODE common metadata (decode type LUT, index bits,
  channel axis, table stride) followed by the value tables, one per channel, padded to the stride;
- a custom ``TFLM_DECODE`` operator before each consumer turns (indices, ancillary) into the int8
  filter, a tensor with the original shape and quantization that lives in the arena only during the
  next operator;
- no ``COMPRESSION_METADATA`` metadata entry (the former format) is written.

Because tfmpq's export keeps every b-bit group on its b-bit grid (``levels.count_levels``), this gives
real b-bit flash size for b in 2..7, and the compressed model computes exactly what the int8-container
model computes (tested on TFLite Micro). The decoded filter costs arena: ``ExportReport.scratch_bytes``.

LiteRT does not run LUT-compressed models: it has no DECODE kernel and refuses the file at
``allocate_tensors`` ("Tensor N has invalid quantization parameters"). A packed file is a TFLite Micro
file.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import warnings

import numpy as np

from tfmpq.errors import ExportError
from tfmpq.export.flatbuffer import ModelSource, output_channel_axis, read_model_bytes, weight_tensors
from tfmpq.metrics import LUT_INDEX_BITS, lut_kernel_bytes

# TFLite Micro's LUT index width is 1..7 bits (the DCM bit-width field has 3 bits).
LUT_BITS = LUT_INDEX_BITS


@dataclasses.dataclass(frozen=True)
class PackedTensor:
    """How one weight tensor was packed.

    Attributes:
        index: tensor index in subgraph 0 of the int8-container model.
        name: tensor name.
        bits: LUT index bits.
        per_channel: one value table per output channel (else one for the whole tensor).
        int8_bytes: bytes of the tensor in the int8-container model.
        packed_bytes: bytes of the packed indices plus the value tables and their 16-byte header.
        index_bytes: bytes of the packed indices alone.
    """

    index: int
    name: str
    bits: int
    per_channel: bool
    int8_bytes: int
    packed_bytes: int
    index_bytes: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _compression():
    # Imported lazily: tflite-micro is an optional ("deploy") dependency of tfmpq.
    from tflite_micro.tensorflow.lite.micro import compression
    from tflite_micro.tensorflow.lite.micro.compression import lut, model_editor, spec

    return compression, lut, model_editor, spec


def lut_compress(
    model: ModelSource, bits: dict[int, int], only_if_smaller: bool = True
) -> tuple[bytes, list[PackedTensor]]:
    """LUT-compresses weight tensors of an int8 .tflite model for TFLite Micro.

    A per-channel quantized tensor gets one value table per output channel, a per-tensor one a single
    table. (TFLite Micro's single-table mode decodes per-channel quantized filters wrongly: measured
    with tflite-micro 0.dev20261023, every CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED output changed,
    while per-channel tables are bit-exact; so tfmpq never uses it for them.)

    Args:
        model: a path to an int8 .tflite file, or its bytes.
        bits: index bits per weight tensor, keyed by tensor index (see ``count_levels``); each in 1..7.
        only_if_smaller: leave a tensor uncompressed when indices + value tables would not be smaller
            than its int8 data (tiny tensors: a 144-weight kernel at 6 bits). Defaults to True.

    Returns:
        (model bytes, one PackedTensor per compressed tensor). The bytes are `model` unchanged when
        no tensor was compressed.

    Raises:
        ValueError: if `bits` is empty, names a tensor that is not a weight tensor, or a bit-width
            outside 1..7.
        ExportError: if a tensor has more distinct values per channel (or per tensor, if it is not
            quantized per channel) than its bit-width can index: its weights are not on a `bits`-bit grid.

    Example:
    >>> packed, info = lut_compress(open("model.tflite", "rb").read(), {5: 4, 9: 2})  # doctest: +SKIP
    """
    compression, lut, model_editor, spec = _compression()
    data = read_model_bytes(model)
    if not bits:
        raise ValueError("Invalid value for `bits`: expected at least one {tensor index: bits} entry. Received: {}")
    weights = {w.index: w for w in weight_tensors(data)}
    editable = model_editor.read(data)
    builder = compression.SpecBuilder()
    packed = []
    for index, width in sorted(bits.items()):
        if index not in weights or weights[index].values is None:
            raise ValueError(
                f"Invalid value for `bits`: tensor {index} is not a constant weight tensor of this model. "
                f"Expected one of {sorted(i for i, w in weights.items() if w.values is not None)}"
            )
        if width not in LUT_BITS:
            raise ValueError(
                f"Invalid value for `bits`: expected LUT index bits in 1..7 (8-bit tensors stay int8). "
                f"Received: bits={width} for tensor {index} ({weights[index].name!r})"
            )
        weight = weights[index]
        axis = output_channel_axis(weight)
        per_channel = weight.channel_axis is not None
        slices = np.moveaxis(weight.values, axis, 0) if per_channel else [weight.values]
        needed = max(np.unique(s).size for s in slices)
        if needed > 2**width:
            raise ExportError(
                f"Cannot pack tensor {weight.name!r} at {width} bits: it holds {needed} distinct values "
                f"per {'channel' if per_channel else 'tensor'}, more than 2^{width} = {2**width}. Its "
                f"weights are not on a {width}-bit grid; export the QAT model with tfmpq.export_tflite, "
                "which keeps the grid"
            )
        mode = spec.PerChannel(axis) if per_channel else spec.PerTensor()
        method = spec.LookUpTableCompression(index_bitwidth=width, mode=mode)
        with contextlib.redirect_stderr(io.StringIO()):  # "index_bitwidth larger than necessary"
            result = lut.LutCompressor().compress(editable.subgraphs[0].tensors[index], method)
        int8_bytes = int(weight.values.size * (0.5 if weight.type == "INT4" else 1) + 0.5)
        packed_bytes = len(result.encoded_data) + len(result.ancillary_data)
        expected = lut_kernel_bytes(weight.values.size, width, len(slices), needed)
        if packed_bytes != expected:  # the formula tfmpq.metrics predicts flash with
            raise ExportError(
                f"TFLite Micro's LUT compressor wrote {packed_bytes} B for tensor {weight.name!r}, not the "
                f"{expected} B of indices + 16-byte header + tables that tfmpq.metrics.lut_kernel_bytes "
                "expects: the installed tflite-micro writes another format"
            )
        if only_if_smaller and packed_bytes >= int8_bytes:
            continue
        builder.add_tensor(0, index).with_lut(width, mode)
        packed.append(
            PackedTensor(
                index=index,
                name=weight.name,
                bits=width,
                per_channel=per_channel,
                int8_bytes=int8_bytes,
                packed_bytes=packed_bytes,
                index_bytes=len(result.encoded_data),
            )
        )
    if not packed:
        return data, []
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        compressed = compression.compress(data, builder.build())
    return bytes(compressed), packed
