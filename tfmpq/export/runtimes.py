"""Run a .tflite model on the real interpreters: LiteRT (``ai_edge_litert``) and TFLite Micro (``tflite_micro``).

Both take float or int8 input/output models. For an int8 input the float data is quantized with the
input tensor's own scale and zero point (exactly as a device would), and ``evaluate_tflite`` takes the
argmax of the raw outputs (a positive scale keeps the order, so no dequantization is needed).

TFLite Micro runs one sample at a time (its Python interpreter has a fixed batch of 1); LiteRT runs
batches after resizing the input tensor. The TFLite Micro arena a model needs is read from TFLite
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
from tfmpq.export.flatbuffer import ModelSource, read_model, read_model_bytes

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
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = None

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.batch != len(x):
            self.interpreter.resize_tensor_input(self.input["index"], [len(x), *self.input["shape"][1:]])
            self.interpreter.allocate_tensors()
            self.batch = len(x)
        self.interpreter.set_tensor(self.input["index"], _quantize_input(x, self.input))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"]).copy()


class _TFLMRunner:
    def __init__(self, data: bytes, arena_bytes: int | None):
        from tflite_micro.python.tflite_micro import runtime as tflm

        self.interpreter = tflm.Interpreter.from_bytes(
            data, arena_size=arena_bytes or default_arena_bytes(data)
        )
        self.input = self.interpreter.get_input_details(0)
        self.output = self.interpreter.get_output_details(0)

    def run(self, x: np.ndarray) -> np.ndarray:
        q = _quantize_input(x, self.input)
        outputs = []
        for sample in q:
            self.interpreter.set_input(sample[None], 0)
            self.interpreter.invoke()
            outputs.append(np.array(self.interpreter.get_output(0)).reshape(-1, *self.output["shape"][1:]))
        return np.concatenate(outputs, axis=0)


def _runner(data: bytes, runtime: str, arena_bytes: int | None, litert_kernels: str):
    _check_runtime(runtime)
    if runtime == "litert":
        return _LiteRTRunner(data, litert_kernels)
    return _TFLMRunner(data, arena_bytes)


def _check_input(x: np.ndarray, detail: dict, runtime: str) -> np.ndarray:
    x = np.asarray(x)
    expected = tuple(int(s) for s in detail["shape"][1:])
    if x.ndim != len(expected) + 1 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"Invalid value for `x`: expected a batch of inputs of shape (N, {', '.join(map(str, expected))}) "
            f"for this model. Received: x with shape {x.shape} (runtime={runtime!r})"
        )
    if len(x) == 0:
        raise ValueError(f"Invalid value for `x`: expected at least one sample. Received: an empty batch {x.shape}")
    if np.issubdtype(x.dtype, np.inexact):
        finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if not finite.all():  # int8 quantization would turn NaN into an arbitrary (and silent) level
            raise ValueError(
                f"Invalid value for `x`: expected finite values. Received: NaN or Inf in {int((~finite).sum())} of "
                f"{len(x)} samples (the first at index {int(np.flatnonzero(~finite)[0])})"
            )
    return x


def run_tflite(
    model: ModelSource,
    x: np.ndarray,
    runtime: str = "litert",
    batch_size: int = 256,
    dequantize_output: bool = False,
    arena_bytes: int | None = None,
    litert_kernels: str = "reference",
) -> np.ndarray:
    """Runs a single-input, single-output .tflite model on a real interpreter and returns its outputs.

    Args:
        model: a path to a .tflite file, or its bytes.
        x: float inputs of shape (N, ...) (quantized with the input tensor's scale and zero point for
            an int8-input model); int8 data of the input's type is passed unchanged.
        runtime: "litert" (``ai_edge_litert``) or "tflm" (``tflite_micro``). Defaults to "litert".
        batch_size: samples per LiteRT invocation (TFLite Micro always runs one). Defaults to 256.
        dequantize_output: return float outputs (dequantized with the output tensor's scale and zero
            point) instead of the raw tensor values. Defaults to False.
        arena_bytes: TFLite Micro arena size; ``None`` picks ``default_arena_bytes(model)``.
            Defaults to None.
        litert_kernels: LiteRT kernels, see `litert_interpreter`. Defaults to "reference".

    Returns:
        The outputs, shape (N, ...), as stored in the output tensor (int8 for an int8-output model)
        unless `dequantize_output`.

    Raises:
        ValueError: for an unknown runtime, a bad batch size, or inputs of the wrong shape.
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
    x = _check_input(x, runner.input, runtime)
    step = batch_size if runtime == "litert" else len(x)
    outputs = [runner.run(x[i : i + step]) for i in range(0, len(x), max(step, 1))]
    y = np.concatenate(outputs, axis=0) if outputs else np.zeros((0, *runner.output["shape"][1:]))
    return dequantize(y, runner.output) if dequantize_output else y


def evaluate_tflite(
    model: ModelSource,
    x: np.ndarray,
    y: np.ndarray,
    runtime: str = "litert",
    batch_size: int = 256,
    arena_bytes: int | None = None,
    litert_kernels: str = "reference",
) -> float:
    """Top-1 accuracy of a .tflite classifier on a real interpreter.

    Args:
        model: a path to a .tflite file, or its bytes.
        x: float inputs of shape (N, ...), as given to the Keras model.
        y: integer labels of shape (N,) (or one-hot labels of shape (N, classes)).
        runtime: "litert" (``ai_edge_litert``) or "tflm" (``tflite_micro``). Defaults to "litert".
        batch_size: samples per LiteRT invocation. Defaults to 256.
        arena_bytes: TFLite Micro arena size; ``None`` picks ``default_arena_bytes(model)``.
            Defaults to None.
        litert_kernels: LiteRT kernels, see `litert_interpreter`. Defaults to "reference".

    Returns:
        The fraction of samples whose argmax output equals the label, in [0, 1].

    Raises:
        ValueError: for an unknown runtime, inputs of the wrong shape, or labels that do not match.

    Example:
    >>> evaluate_tflite("model.tflite", x_test, y_test, runtime="tflm")  # doctest: +SKIP
    0.91
    """
    labels = np.asarray(y)
    if labels.ndim == 2:
        labels = labels.argmax(axis=-1)
    if labels.ndim != 1 or len(labels) != len(x):
        raise ValueError(
            "Invalid value for `y`: expected one integer label (or one-hot row) per sample of `x`. "
            f"Received: y with shape {np.shape(y)} for x with {len(x)} samples"
        )
    outputs = run_tflite(
        model, x, runtime=runtime, batch_size=batch_size, arena_bytes=arena_bytes, litert_kernels=litert_kernels
    )
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
        x: optional sample inputs (float or already quantized); zeros when None. Defaults to None.

    Returns:
        The arena size in bytes on this host build of TFLite Micro (a 64-bit build: pointer-holding
        structures are larger than on a 32-bit microcontroller, so this is an upper bound there).

    Raises:
        RuntimeError: if TFLite Micro cannot run the model (e.g. an operator it does not support).
    """
    from tflite_micro.python.tflite_micro import runtime as tflm

    data = read_model_bytes(model)
    with captured_stderr() as log:
        try:
            interpreter = tflm.Interpreter.from_bytes(data, arena_size=default_arena_bytes(data))
            detail = interpreter.get_input_details(0)
            if x is None:
                sample = np.zeros(detail["shape"], dtype=detail["dtype"])
            else:
                sample = _quantize_input(np.asarray(x)[:1], detail)
            interpreter.set_input(sample, 0)
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
