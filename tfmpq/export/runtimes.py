"""Run a .tflite model on the real interpreters: LiteRT (``ai_edge_litert``) and TFLite Micro (``tflite_micro``).

Both take float or int8 input/output models. For an int8 input the float data is quantized with the
input tensor's own scale and zero point (exactly as a device would), and ``evaluate_tflite`` takes the
argmax of the raw outputs (a positive scale keeps the order, so no dequantization is needed).

TFLite Micro runs one sample at a time (its Python interpreter has a fixed batch of 1); LiteRT runs
batches after resizing the input tensor. A model with several inputs takes a list or tuple of arrays
(the Keras model's input order, which the file keeps) or a dict by input name; a model with several
outputs gives a dict of arrays by output name (the file's signature names: the Keras output layer
names), since the file does not keep the Keras model's output order. The TFLite Micro arena a model needs is read from TFLite
Micro's own ``RecordingMicroAllocator`` after one inference.

Bit-exactness, measured here (ai-edge-litert 2.3.0, tflite-micro 0.dev20261023):
- LiteRT's reference kernels (``litert_kernels="reference"``, the default) and TFLite Micro give
  identical int8 outputs for CONV_2D, DEPTHWISE_CONV_2D, MEAN, RESHAPE, ...
- LiteRT's default XNNPACK delegate (``litert_kernels="default"``) requantizes in fp32: about 1% of
  int8 outputs differ by 1-2 LSB from TFLite Micro (same accuracy to within a sample or two).
- FULLY_CONNECTED is not bit-exact even with the reference kernels: LiteRT rounds the requantized
  accumulator once, TFLite Micro twice (gemmlowp style); ~0.3% of outputs differ by 1 LSB. tfmpq's
  exporter therefore deploys Dense layers as 1x1 CONV_2D (``export_tflite(dense_as_conv=True)``).
"""
from __future__ import annotations

import re

import numpy as np

from tfmpq._io import captured_stderr
from tfmpq.export.flatbuffer import ModelSource, io_names, keras_io, read_model, read_model_bytes

RUNTIMES = ("litert", "tflm")
LITERT_KERNELS = ("reference", "builtin", "default")


def _check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(
            f"Invalid value for `runtime`: expected one of {RUNTIMES}. Received: runtime={runtime!r}"
        )


def _quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Casts float data to the input tensor's type, quantizing with its scale and zero point."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return np.asarray(x, dtype=dtype)
    scales = np.asarray(detail["quantization_parameters"]["scales"], np.float64)
    zero_points = np.asarray(detail["quantization_parameters"]["zero_points"], np.float64)
    if scales.size == 0:
        return np.asarray(x, dtype=dtype)
    if np.issubdtype(np.asarray(x).dtype, np.integer) and np.asarray(x).dtype == dtype:
        return np.asarray(x)  # already quantized by the caller
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float64) / scales[0] + zero_points[0])
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """Converts raw integer outputs to float with the tensor's scale and zero point.

    Args:
        y: raw output values.
        detail: the tensor's details (``quantization_parameters`` with ``scales``, ``zero_points``).

    Returns:
        Float32 values (``y`` unchanged, as float32, if the tensor is not quantized).
    """
    scales = np.asarray(detail["quantization_parameters"]["scales"], np.float64)
    if scales.size == 0 or np.dtype(detail["dtype"]).kind == "f":
        return np.asarray(y, np.float32)
    zero_points = np.asarray(detail["quantization_parameters"]["zero_points"], np.float64)
    return ((np.asarray(y, np.float64) - zero_points[0]) * scales[0]).astype(np.float32)


def _activation_bytes(model_bytes: bytes) -> int:
    """Bytes of all non-constant tensors of subgraph 0 (an upper bound on TFLM's planned memory)."""
    fb = read_model(model_bytes)
    sizes = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 7: 2, 9: 1, 10: 8, 17: 1}  # TensorType -> bytes
    total = 0
    for tensor in fb.subgraphs[0].tensors or []:
        buffer = fb.buffers[tensor.buffer] if tensor.buffer < len(fb.buffers) else None
        if buffer is not None and buffer.data is not None and len(buffer.data):
            continue
        shape = [max(int(s), 1) for s in (tensor.shape if tensor.shape is not None else [])]
        total += int(np.prod(shape)) * sizes.get(tensor.type, 4)
    return total


def default_arena_bytes(model: ModelSource) -> int:
    """A generous TFLite Micro arena for running `model` on a host.

    TFLite Micro's Python interpreter can crash the process (not raise) when the arena is far too
    small, so tfmpq never guesses low: 10x the file (TFLite Micro's own default) plus twice the bytes
    of every activation tensor, plus 64 KiB for per-op state.

    Args:
        model: a path to a .tflite file, or its bytes.

    Returns:
        An arena size in bytes.
    """
    data = read_model_bytes(model)
    return 10 * len(data) + 2 * _activation_bytes(data) + 64 * 1024


def litert_interpreter(model: ModelSource, litert_kernels: str = "reference"):
    """Creates a LiteRT interpreter (tensors not yet allocated) with the chosen kernels.

    Args:
        model: a path to a .tflite file, or its bytes.
        litert_kernels: "reference" (TFLite's reference kernels: bit-exact with TFLite Micro),
            "builtin" (optimized kernels, no delegate) or "default" (optimized kernels + XNNPACK,
            what LiteRT uses out of the box). Defaults to "reference".

    Returns:
        An ``ai_edge_litert.interpreter.Interpreter``.

    Raises:
        ValueError: for an unknown `litert_kernels`.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolvers = {
        "reference": OpResolverType.BUILTIN_REF,
        "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "default": OpResolverType.AUTO,
    }
    if litert_kernels not in resolvers:
        raise ValueError(
            f"Invalid value for `litert_kernels`: expected one of {LITERT_KERNELS}. "
            f"Received: litert_kernels={litert_kernels!r}"
        )
    return Interpreter(
        model_content=read_model_bytes(model), experimental_op_resolver_type=resolvers[litert_kernels]
    )


class _LiteRTRunner:
    def __init__(self, data: bytes, litert_kernels: str):
        self.interpreter = litert_interpreter(data, litert_kernels)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()
        self.batch = None

    def run(self, xs: list) -> list:
        """One batch: one array per input (the file's order) in, one array per output out."""
        if self.batch != len(xs[0]):
            for detail, x in zip(self.inputs, xs):
                self.interpreter.resize_tensor_input(detail["index"], [len(x), *detail["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.batch = len(xs[0])
        for detail, x in zip(self.inputs, xs):
            self.interpreter.set_tensor(detail["index"], _quantize_input(x, detail))
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]).copy() for o in self.outputs]


class _TFLMRunner:
    def __init__(self, data: bytes, arena_bytes: int | None):
        from tflite_micro.python.tflite_micro import runtime as tflm

        self.interpreter = tflm.Interpreter.from_bytes(
            data, arena_size=arena_bytes or default_arena_bytes(data)
        )
        num_inputs, num_outputs = (len(names) for names in io_names(data))
        self.inputs = [self.interpreter.get_input_details(i) for i in range(num_inputs)]
        self.outputs = [self.interpreter.get_output_details(i) for i in range(num_outputs)]

    def run(self, xs: list) -> list:
        quantized = [_quantize_input(x, detail) for x, detail in zip(xs, self.inputs)]
        outputs = [[] for _ in self.outputs]
        for sample in range(len(quantized[0])):
            for i, q in enumerate(quantized):
                self.interpreter.set_input(q[sample][None], i)
            self.interpreter.invoke()
            for j, detail in enumerate(self.outputs):
                outputs[j].append(np.array(self.interpreter.get_output(j)).reshape(-1, *detail["shape"][1:]))
        return [np.concatenate(o, axis=0) for o in outputs]


def _runner(data: bytes, runtime: str, arena_bytes: int | None, litert_kernels: str):
    _check_runtime(runtime)
    if runtime == "litert":
        return _LiteRTRunner(data, litert_kernels)
    return _TFLMRunner(data, arena_bytes)


def _check_input(x: np.ndarray, detail: dict, runtime: str, what: str = "") -> np.ndarray:
    x = np.asarray(x)
    expected = tuple(int(s) for s in detail["shape"][1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"Invalid value for `x`: expected a batch of inputs of shape (N, {', '.join(map(str, expected))}) "
            f"for this model{what}. Received: x with shape {x.shape} (runtime={runtime!r})"
        )
    if len(x) == 0:
        raise ValueError(f"Invalid value for `x`: expected at least one sample. Received: an empty batch {x.shape}")
    if np.issubdtype(x.dtype, np.inexact):
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():  # int8 quantization would turn NaN into an arbitrary (and silent) level
            raise ValueError(
                f"Invalid value for `x`: expected finite values{what}. Received: NaN or Inf in "
                f"{int((~finite).sum())} of {len(x)} samples (the first at index {int(np.flatnonzero(~finite)[0])})"
            )
    return x


def input_arrays(x, details: list, names: list, runtime: str, keras_names: list | None = None) -> list:
    """`x` as one checked array per input of the file, in the file's input order.

    Args:
        x: an array (one input); a list / tuple of arrays in the Keras model's input order or a dict by
            input name (several inputs).
        details: the interpreter's input details.
        names: the file's input names (``flatbuffer.io_names``).
        runtime: named in error messages.
        keras_names: the Keras model's input names in its order (``flatbuffer.keras_io``), which a list
            or tuple follows; None: only a dict is taken for several inputs. Defaults to None.

    Raises:
        ValueError: a missing, unknown or extra input, inputs of different lengths, or a bad array.
    """
    listed = ", ".join(f"`{n}`" for n in names)
    if isinstance(x, dict):
        missing, unknown = [n for n in names if n not in x], [k for k in x if k not in names]
        if missing or unknown:
            raise ValueError(f"Invalid value for `x`: expected a dict of arrays by input name ({listed}). Received: "
                             f"keys {sorted(map(str, x))}")
        arrays = [x[n] for n in names]
    elif len(details) == 1:
        arrays = [x]
    elif isinstance(x, (list, tuple)) and len(x) == len(details):
        if sorted(keras_names or []) != sorted(names):
            raise ValueError(f"Invalid value for `x`: this file does not record its Keras model's input order (it was "
                             f"not written by tfmpq.export_tflite): pass a dict of arrays by input name ({listed}). "
                             f"Received: a {type(x).__name__} of {len(x)} arrays")
        by_name = dict(zip(keras_names, x))
        arrays = [by_name[n] for n in names]
    else:
        raise ValueError(f"Invalid value for `x`: expected {len(details)} arrays, one per model input ({listed}), as a "
                         f"list or tuple in the model's input order or a dict by input name. Received: "
                         f"{type(x).__name__}" + (f" of {len(x)}" if isinstance(x, (list, tuple)) else ""))
    what = lambda name: f" (input `{name}`)" if len(details) > 1 else ""  # noqa: E731
    arrays = [_check_input(a, d, runtime, what(n)) for a, d, n in zip(arrays, details, names)]
    if len({len(a) for a in arrays}) > 1:
        raise ValueError("Invalid value for `x`: expected as many samples for every input. Received: "
                         + ", ".join(f"{len(a)} for `{n}`" for a, n in zip(arrays, names)))
    return arrays


def run_tflite(
    model: ModelSource,
    x,
    runtime: str = "litert",
    batch_size: int = 256,
    dequantize_output: bool = False,
    arena_bytes: int | None = None,
    litert_kernels: str = "reference",
):
    """Runs a .tflite model on a real interpreter and returns its outputs.

    Args:
        model: a path to a .tflite file, or its bytes.
        x: float inputs of shape (N, ...) (quantized with the input tensor's scale and zero point for
            an int8-input model); int8 data of the input's type is passed unchanged. Several inputs:
            a list / tuple of arrays in the model's input order, or a dict by input name.
        runtime: "litert" (``ai_edge_litert``) or "tflm" (``tflite_micro``). Defaults to "litert".
        batch_size: samples per LiteRT invocation (TFLite Micro always runs one). Defaults to 256.
        dequantize_output: return float outputs (dequantized with the output tensor's scale and zero
            point) instead of the raw tensor values. Defaults to False.
        arena_bytes: TFLite Micro arena size; ``None`` picks ``default_arena_bytes(model)``.
            Defaults to None.
        litert_kernels: LiteRT kernels, see `litert_interpreter`. Defaults to "reference".

    Returns:
        The outputs, shape (N, ...), as stored in the output tensor (int8 for an int8-output model)
        unless `dequantize_output`; for several outputs a dict of them by output name.

    Raises:
        ValueError: for an unknown runtime, a bad batch size, or inputs of the wrong shape (or a
            missing, unknown or extra input).
        RuntimeError: if the interpreter cannot allocate or run the model.

    Example:
    >>> raw_lrt = run_tflite("model.tflite", x_test, runtime="litert")  # doctest: +SKIP
    >>> raw_mcu = run_tflite("model.tflite", x_test, runtime="tflm")  # doctest: +SKIP
    >>> bool((raw_lrt == raw_mcu).all())  # doctest: +SKIP
    True
    """
    _check_runtime(runtime)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"Invalid value for `batch_size`: expected a positive integer. Received: batch_size={batch_size!r}"
        )
    data = read_model_bytes(model)
    runner = _runner(data, runtime, arena_bytes, litert_kernels)
    input_names, output_names = io_names(data)
    xs = input_arrays(x, runner.inputs, input_names, runtime, (keras_io(data) or {}).get("inputs"))
    count = len(xs[0])
    step = batch_size if runtime == "litert" else count
    batches = [runner.run([a[i : i + step] for a in xs]) for i in range(0, count, max(step, 1))]
    ys = [np.concatenate([b[j] for b in batches], axis=0) for j in range(len(runner.outputs))]
    if dequantize_output:
        ys = [dequantize(y, detail) for y, detail in zip(ys, runner.outputs)]
    return ys[0] if len(ys) == 1 else dict(zip(output_names, ys))


def evaluate_tflite(
    model: ModelSource,
    x,
    y,
    runtime: str = "litert",
    batch_size: int = 256,
    arena_bytes: int | None = None,
    litert_kernels: str = "reference",
):
    """Top-1 accuracy of a .tflite classifier on a real interpreter.

    Args:
        model: a path to a .tflite file, or its bytes.
        x: float inputs of shape (N, ...), as given to the Keras model (several inputs: a list / tuple
            in the model's input order or a dict by input name).
        y: integer labels of shape (N,) (or one-hot labels of shape (N, classes)); for a model with
            several outputs, a dict of them by output name (the outputs to score).
        runtime: "litert" (``ai_edge_litert``) or "tflm" (``tflite_micro``). Defaults to "litert".
        batch_size: samples per LiteRT invocation. Defaults to 256.
        arena_bytes: TFLite Micro arena size; ``None`` picks ``default_arena_bytes(model)``.
            Defaults to None.
        litert_kernels: LiteRT kernels, see `litert_interpreter`. Defaults to "reference".

    Returns:
        The fraction of samples whose argmax output equals the label, in [0, 1]; for several
        outputs, a dict of them by output name.

    Raises:
        ValueError: for an unknown runtime, inputs of the wrong shape, or labels that do not match.

    Example:
    >>> evaluate_tflite("model.tflite", x_test, y_test, runtime="tflm")  # doctest: +SKIP
    0.91
    """
    count = _num_samples(x)
    labels = {k: _labels(v, count) for k, v in y.items()} if isinstance(y, dict) else _labels(y, count)
    outputs = run_tflite(
        model, x, runtime=runtime, batch_size=batch_size, arena_bytes=arena_bytes, litert_kernels=litert_kernels
    )
    if not isinstance(outputs, dict):
        if isinstance(labels, dict):
            labels = next(iter(labels.values())) if len(labels) == 1 else labels
        if isinstance(labels, dict):
            raise ValueError(f"Invalid value for `y`: expected the labels of the model's one output. Received: a dict "
                             f"of {len(labels)} label arrays")
        return _top1(outputs, labels)
    if not isinstance(labels, dict) or any(k not in outputs for k in labels):
        raise ValueError(
            "Invalid value for `y`: expected a dict of labels by output name "
            f"({', '.join(map(repr, sorted(outputs)))}). "
            f"Received: " + (f"keys {sorted(labels)}" if isinstance(labels, dict) else f"{type(y).__name__}"))
    return {k: _top1(outputs[k], v) for k, v in labels.items()}


def _num_samples(x) -> int:
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)) and x and all(hasattr(a, "shape") for a in x):
        return len(x[0])
    return len(x)


def _labels(y, count: int) -> np.ndarray:
    labels = np.asarray(y)
    if labels.ndim == 2:
        labels = labels.argmax(axis=-1)
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(
            "Invalid value for `y`: expected one integer label (or one-hot row) per sample of `x`. "
            f"Received: y with shape {np.shape(y)} for x with {count} samples"
        )
    return labels


def _top1(outputs: np.ndarray, labels: np.ndarray) -> float:
    predictions = outputs.reshape(len(outputs), -1).argmax(axis=-1)
    return float(np.mean(predictions == labels)) if len(labels) else float("nan")


_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")


def tflm_arena_bytes(model: ModelSource, x: np.ndarray | None = None) -> int:
    """Measures the TFLite Micro arena a model needs, with TFLite Micro's RecordingMicroAllocator.

    Runs one inference (on `x[:1]`, or zeros) with a generous arena, then reads the allocator's
    "Arena allocation total" (head: planned activations; tail: persistent per-op data). The result
    was checked to be sufficient: an interpreter created with exactly this arena runs.

    Args:
        model: a path to a .tflite file, or its bytes.
        x: optional sample inputs (float or already quantized; several inputs: a list / tuple in
            input order or a dict by input name); zeros when None. Defaults to None.

    Returns:
        The arena size in bytes on this host build of TFLite Micro (a 64-bit build: pointer-holding
        structures are larger than on a 32-bit microcontroller, so this is an upper bound there).

    Raises:
        RuntimeError: if TFLite Micro cannot run the model (e.g. an operator it does not support).
    """
    from tflite_micro.python.tflite_micro import runtime as tflm

    data = read_model_bytes(model)
    names = io_names(data)[0]
    with captured_stderr() as log:
        try:
            interpreter = tflm.Interpreter.from_bytes(data, arena_size=default_arena_bytes(data))
            details = [interpreter.get_input_details(i) for i in range(len(names))]
            if x is None:
                samples = [np.zeros(d["shape"], dtype=d["dtype"]) for d in details]
            elif len(details) == 1 and not isinstance(x, dict):
                samples = [_quantize_input(np.asarray(x)[:1], details[0])]
            else:
                arrays = input_arrays(x, details, names, "tflm", (keras_io(data) or {}).get("inputs"))
                samples = [_quantize_input(a[:1], d) for a, d in zip(arrays, details)]
            for i, sample in enumerate(samples):
                interpreter.set_input(sample, i)
            interpreter.invoke()
            interpreter.print_allocations()
            error = None
        except RuntimeError as e:  # reported below, with TFLite Micro's log
            error = e
    text = log[0] if log else ""
    if error is not None:
        raise RuntimeError(f"TFLite Micro cannot run this model: {error}. TFLite Micro log:\n{text.strip()}")
    match = _ARENA_TOTAL.search(text)
    if match is None:
        raise RuntimeError(f"TFLite Micro did not report its arena usage. Log:\n{text.strip()}")
    return int(match.group(1))
