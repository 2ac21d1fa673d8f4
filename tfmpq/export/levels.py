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
            "output": weight.output,
        }
    return result


def count_activation_levels(model: ModelSource, weight_indices, x: np.ndarray) -> dict[int, dict]:
    """Counts the distinct int8 values each weighted operator's output really takes in the file.

    A group trained with b-bit activations deploys them inside int8 (scale = the trained step, a
    MINIMUM op clamping at the b-bit maximum): its output tensor may hold at most 2^b values. This runs
    the file on LiteRT's reference kernels with every intermediate tensor kept, over ``x``, and counts.

    Args:
        model: a path to a .tflite file, or its bytes (int8 activations).
        weight_indices: tensor indices of the filters whose operators' outputs to count.
        x: float model inputs (the representative data; several inputs: a tuple in input order or a
            dict by input name).

    Returns:
        ``{weight index: {"tensor", "levels", "qmin", "qmax"}}``: the operator's output tensor (the
        following MINIMUM's output when one clamps it) and the distinct values, lowest and highest seen.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tfmpq.export.flatbuffer import _name_table, _schema, io_names, keras_io, read_model, read_model_bytes
    from tfmpq.export.runtimes import _quantize_input, input_arrays

    data = read_model_bytes(model)
    fb = read_model(data)
    graph = fb.subgraphs[0]
    names = _name_table(_schema().BuiltinOperator)
    ops = []
    for op in graph.operators or []:
        code = fb.operatorCodes[op.opcodeIndex]
        ops.append((names.get(max(code.builtinCode, code.deprecatedBuiltinCode)), list(op.inputs), list(op.outputs)))
    outputs = {}
    for w in weight_indices:
        producer = next((o for name, ins, o in ops if len(ins) > 1 and ins[1] == w), None)
        if producer is None:
            continue
        out = producer[0]
        clamp = next((o for name, ins, o in ops if name == "MINIMUM" and out in ins), None)
        outputs[w] = clamp[0] if clamp else out
    interpreter = Interpreter(model_content=data, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                              experimental_preserve_all_tensors=True)
    details = interpreter.get_input_details()
    arrays = input_arrays(x, details, io_names(data)[0], "litert", (keras_io(data) or {}).get("inputs"))
    for detail, a in zip(details, arrays):
        interpreter.resize_tensor_input(detail["index"], [len(a), *detail["shape"][1:]])
    interpreter.allocate_tensors()
    for detail, a in zip(details, arrays):
        interpreter.set_tensor(detail["index"], _quantize_input(a, detail))
    interpreter.invoke()
    result = {}
    for w, t in outputs.items():
        values = interpreter.get_tensor(t)
        name = graph.tensors[t].name
        result[w] = {"tensor": name.decode() if isinstance(name, bytes) else name,
                     "levels": int(np.unique(values).size), "qmin": int(values.min()), "qmax": int(values.max())}
    return result
