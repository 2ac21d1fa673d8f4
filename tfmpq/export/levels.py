"""Count the distinct weight values a .tflite model really deploys, per output channel and per tensor.

A group trained at b bits is only deployed at b bits if its int8 (or int4) filter holds at most
2^b distinct values per output channel (per-channel quantization) or per tensor (per-tensor). Accuracy
does not show the difference: stock tfmot + the TF 2.21 converter deploys an 8-bit re-quantization of
the float shadow weights of a "4-bit" conv (about 110 distinct values in one channel) and the model
still scores well. The level count is the check that the deployed model is the trained one.
"""
from __future__ import annotations

import numpy as np

from tfmpq.export.flatbuffer import ModelSource, output_channel_axis, weight_tensors


def count_levels(model: ModelSource) -> dict[str, dict]:
    """Counts distinct stored values of every weight (filter) tensor of a .tflite model.

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        A dict keyed by tensor name (as written by the converter; it contains the Keras layer name),
        each value a dict with: ``index`` (tensor index), ``op`` ("CONV_2D", ...), ``type`` ("INT8",
        "INT4", "FLOAT32", ...), ``shape``, ``channel_axis`` (output-channel axis), ``per_channel``
        (whether quantized per channel), ``distinct_scales`` (1 for a per-tensor grid, even when stored
        in per-channel slots), ``max_levels_per_channel`` (most distinct values in one
        output channel), ``levels_per_tensor`` (distinct values in the whole tensor) and ``params``.
        Tensors without data (outputs of a TFLite Micro DECODE op) have ``None`` counts.

    Example:
    >>> levels = count_levels("model.tflite")  # doctest: +SKIP
    >>> max(v["max_levels_per_channel"] for v in levels.values()) <= 16  # a 4-bit model  # doctest: +SKIP
    """
    result = {}
    for weight in weight_tensors(model):
        axis = output_channel_axis(weight)
        values = weight.values
        if values is None:
            per_channel_max = per_tensor = None
        else:
            per_tensor = int(np.unique(values).size)
            per_channel_max = int(
                max(np.unique(channel).size for channel in np.moveaxis(values, axis, 0))
            )
        result[weight.name] = {
            "index": weight.index,
            "op": weight.op,
            "type": weight.type,
            "shape": list(weight.shape),
            "channel_axis": axis,
            "per_channel": weight.channel_axis is not None,
            "distinct_scales": int(np.unique(weight.scales).size),
            "max_levels_per_channel": per_channel_max,
            "levels_per_tensor": per_tensor,
            "params": int(np.prod(weight.shape)),
        }
    return result
