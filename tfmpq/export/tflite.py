"""export_tflite: a tfmpq QAT model -> a full-integer .tflite that LiteRT and TFLite Micro run as trained.

Steps (each guards one way a deployed model can silently differ from the trained one):
1. refuse what cannot deploy: not a tfmpq QAT model, asymmetric weights (TFLite's int8 conv kernels
   need weight zero point 0), representative data of the wrong shape;
2. build the deployment graph (``deploy.build_deploy_model``): trained on-grid kernels baked in, trained
   activation ranges as fake-quant ops;
3. full-integer conversion (int8 weights and activations, int32 biases; int8 or float I/O);
4. put each 2..7-bit group exactly on its trained grid in the file (``grid.snap_to_grid``: int8
   values = grid indices, scale = trained step) and check it: each b-bit group holds at most 2^b
   distinct values per output channel (per-channel) or per tensor (``count_levels``);
5. optionally LUT-compress the sub-8-bit groups for TFLite Micro (``packed.lut_compress``) and check
   the packed model gives the same outputs as the int8-container model on TFLite Micro;
6. check the file runs (LiteRT ``allocate_tensors`` + one invoke; TFLite Micro for a packed file),
   measure the TFLite Micro arena, then write to a temporary file and rename it into place: a failed
   export never leaves a half-written or unrunnable file.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tempfile

import numpy as np

from tfmpq._keras import keras, tf
from tfmpq.checks import check_inputs
from tfmpq.errors import ExportError
from tfmpq.export.c_array import check_c_name, write_c_array
from tfmpq.export.deploy import build_deploy_model
from tfmpq.export.flatbuffer import operator_names
from tfmpq.export.grid import GridTarget, snap_to_grid
from tfmpq.export.levels import count_levels
from tfmpq.export.packed import LUT_BITS, lut_compress
from tfmpq.export.runtimes import captured_stderr_fd, litert_interpreter, run_tflite, tflm_arena_bytes
from tfmpq.quantize import group_layers, is_qat_model, policy_of


@dataclasses.dataclass
class ExportReport:
    """What `export_tflite` wrote and what it measured.

    Attributes:
        path: the .tflite file written.
        file_bytes: its size on disk.
        int8_weight_bytes: bytes of the quantized kernels in their int8 containers.
        packed_weight_bytes: bytes the kernels take at their trained bit-widths (ceil(params * b / 8)
            per group; groups left in float count at 8 bits, as deployed). Biases (int32) excluded.
        lut_weight_bytes: bytes of the kernels in the file when `packed` (LUT indices + value table
            + 16-byte header; 8-bit groups, and groups that would not get smaller, stay int8), else None.
        tflm_arena_bytes: TFLite Micro arena the model needs (host measurement), or None if TFLite
            Micro cannot run it (see `notes`).
        int8_io: whether the model's input and output are int8 (else float32).
        packed: whether the file is LUT-compressed (a TFLite Micro-only file); False when `packed`
            was asked for but no group got smaller.
        per_channel: whether weights are quantized per output channel.
        groups: one dict per group: name, kind, weight_bits, activation_bits, deployed_activation_bits,
            tensor (its name in the file), tensor_index, type, params, max_levels_per_channel,
            levels_per_tensor, exact_grid (int8 values are the trained grid indices, scale the trained
            step), int8_bytes, packed_bytes, lut_bytes.
        operators: the file's operators, in execution order.
        c_array: paths of the written ``.h`` / ``.cc`` pair, or None.
        notes: anything a user should know about this export.
    """

    path: str
    file_bytes: int
    int8_weight_bytes: int
    packed_weight_bytes: int
    lut_weight_bytes: int | None
    tflm_arena_bytes: int | None
    int8_io: bool
    packed: bool
    per_channel: bool
    groups: list
    operators: list
    c_array: list | None = None
    notes: list = dataclasses.field(default_factory=list)

    @property
    def bits(self) -> dict:
        """group name -> trained weight bits."""
        return {g["name"]: g["weight_bits"] for g in self.groups}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        """The report as JSON. Args: indent: passed to ``json.dumps``. Defaults to 2."""
        return json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        arena = "n/a" if self.tflm_arena_bytes is None else f"{self.tflm_arena_bytes} B"
        lines = [
            f"{self.path}: {self.file_bytes} B on disk ({'LUT-packed, TFLite Micro only' if self.packed else 'int8'}"
            f", {'int8' if self.int8_io else 'float'} I/O), TFLite Micro arena {arena}",
            f"weights: {self.int8_weight_bytes} B in int8 containers, {self.packed_weight_bytes} B at trained bits"
            + (f", {self.lut_weight_bytes} B LUT-packed in the file" if self.lut_weight_bytes is not None else ""),
            f"{'group':<28}{'kind':<17}{'w bits':>7}{'a bits':>7}{'levels/ch':>10}{'int8 B':>9}{'packed B':>9}",
        ]
        for g in self.groups:
            lines.append(
                f"{g['name']:<28}{g['kind']:<17}{g['weight_bits']:>7}{g['activation_bits']:>7}"
                f"{str(g['max_levels_per_channel']):>10}{g['int8_bytes']:>9}{g['packed_bytes']:>9}"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _check_qat_model(qat_model) -> dict:
    if not isinstance(qat_model, keras.Model) or not is_qat_model(qat_model):
        name = getattr(qat_model, "name", type(qat_model).__name__)
        raise ExportError(
            "Invalid value for `qat_model`: expected a QAT model built by `tfmpq.quantize_model` (with at least "
            f"one QuantGroupLayer). Received: `{name}` ({type(qat_model).__name__}). "
            "Call `tfmpq.quantize_model(model, policy)` (and train it) before exporting"
        )
    info = policy_of(qat_model)
    asymmetric = [name for name, g in info.items() if g["weight_bits"] <= 8 and not g["symmetric"]]
    if asymmetric:
        raise ExportError(
            f"Cannot export groups {asymmetric}: their weights were trained asymmetric (symmetric=False), but "
            "TFLite's int8 conv and fully-connected kernels need weight zero point 0 (such a model converts, "
            "then fails at allocate_tensors). Re-run `tfmpq.quantize_model(model, policy, symmetric=True)` "
            "and retrain"
        )
    modes = {g["per_channel"] for name, g in info.items() if g["weight_bits"] <= 8}
    if len(modes) > 1:
        raise ExportError(
            "Cannot export a model mixing per-channel and per-tensor weight groups: the TFLite converter applies "
            "one mode to the whole model. Received: per_channel="
            + str({name: g["per_channel"] for name, g in info.items()})
        )
    return info


def _check_representative_data(qat_model, data) -> np.ndarray:
    """The calibration inputs as float32, refused (ExportError) when empty, of another sample shape
    than the model's input, or holding NaN/Inf (``tfmpq.checks.check_inputs``)."""
    x = check_inputs(qat_model, data, name="representative_data", error=ExportError)
    return np.asarray(x, dtype=np.float32)


def _convert(deploy, x: np.ndarray, int8_io: bool, per_channel: bool) -> bytes:
    def representative_dataset():
        for i in range(len(x)):
            yield [x[i : i + 1]]

    converter = tf.lite.TFLiteConverter.from_keras_model(deploy)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative_dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True  # noqa: SLF001 - the only switch TF offers
    with captured_stderr_fd() as log:  # the converter's C++ log: kept for the error message only
        try:
            return converter.convert()
        except Exception as e:  # ConverterError / RuntimeError / ValueError, depending on the stage
            error = e
    text = f"{error}\n{log[0] if log else ''}"
    unsupported = sorted(set(re.findall(r"'tf\.(\w+)' op is neither a custom op nor a flex op", text)))
    unsupported += [op.strip() for line in re.findall(r"TF Select ops: ([^\n]+)", text) for op in line.split(",")]
    if unsupported:
        ops = sorted(set(unsupported))
        raise ExportError(
            f"Cannot export: unsupported op(s) {ops}: TFLite has no builtin (int8) kernel for them, so neither "
            "LiteRT's builtin kernels nor TFLite Micro could run the model. Replace the layer(s) that use them"
        ) from error
    lines = [line.strip() for line in text.splitlines() if "error" in line.lower()]
    detail = "; ".join(dict.fromkeys(line[:300] for line in lines[:6])) or str(error)[:500]
    raise ExportError(f"Full-integer TFLite conversion failed. Converter: {detail}") from error


def _match_tensors(levels: dict, groups: dict, deployed_names: dict) -> dict:
    """group name -> (tensor name, level info), matched by the deployed layer name in tensor names."""
    matched = {}
    for group, layer_name in deployed_names.items():
        candidates = [name for name in levels if f"/{layer_name}/" in name or name.startswith(f"{layer_name}/")]
        if len(candidates) != 1:
            raise ExportError(
                f"Cannot find the weight tensor of group `{group}` in the converted model (tensors matching "
                f"`{layer_name}`: {candidates}). Weight tensors: {list(levels)}"
            )
        matched[group] = (candidates[0], levels[candidates[0]])
    return matched


def _verify_litert(data: bytes, x: np.ndarray) -> None:
    try:
        interpreter = litert_interpreter(data)
        interpreter.allocate_tensors()
    except Exception as e:
        raise ExportError(f"The converted model does not run on LiteRT (allocate_tensors failed): {e}") from e
    run_tflite(data, x[:1], runtime="litert")


def _check_output_path(path) -> str:
    """The output path, checked before any conversion work: its folder exists and takes a file."""
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ExportError(f"Invalid value for `path`: expected a .tflite file path. Received: path={path!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ExportError(f"Invalid value for `path`: `{path}` is a folder; expected a file path such as "
                          f"`{os.path.join(path, 'model.tflite')}`. Nothing was written.")
    if not os.path.isdir(directory):
        raise ExportError(f"Invalid value for `path`: its folder `{directory}` does not exist (or is not a folder). "
                          "Create it first. Nothing was written.")
    try:  # a real probe: os.access says yes to root on a read-only file system
        fd, probe = tempfile.mkstemp(prefix=".tfmpq-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"Invalid value for `path`: cannot write in `{directory}` ({e.strerror or e}). "
                          "Nothing was written.") from None
    return path


def _write_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``: a
    failure (disk full, a kill) leaves the old file or none, never a partial one."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tfmpq-", suffix=".tflite.tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise ExportError(f"Cannot write `{path}`: {e.strerror or e}. Nothing was written.") from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def export_tflite(
    qat_model,
    path: str | os.PathLike,
    representative_data,
    int8_io: bool = True,
    c_array: str | None = None,
    packed: bool = False,
    dense_as_conv: bool = True,
) -> ExportReport:
    """Exports a tfmpq QAT model to a full-integer .tflite file that runs on LiteRT and TFLite Micro.

    Weights are int8 (sub-8-bit groups in int8 containers whose values stay on the group's b-bit grid:
    at most 2^b distinct values per output channel, or per tensor), activations int8, biases int32.

    Args:
        qat_model: a model built by ``tfmpq.quantize_model`` with symmetric weights (and trained).
        path: where to write the .tflite file.
        representative_data: float model inputs, shape (N, ...) like the model's input; used by the
            converter for tensors without a trained range (a few hundred samples is plenty).
        int8_io: int8 model input and output (quantized with the tensors' scale and zero point); False
            keeps float32 input and output. Defaults to True.
        c_array: a C identifier: also write ``<name>.h`` / ``<name>.cc`` (the file as an aligned
            ``const unsigned char <name>[]`` and ``<name>_len``) next to `path`. Defaults to None.
        packed: LUT-compress every group trained at 2..7 bits to its bit-width (TFLite Micro model
            compression) where that makes it smaller; the file then runs on TFLite Micro only (LiteRT
            rejects it). Defaults to False.
        dense_as_conv: deploy Dense layers (on 2-D inputs) as 1x1 CONV_2D, so LiteRT and TFLite Micro
            compute bit-identical outputs (their FULLY_CONNECTED kernels round differently).
            Defaults to True.

    Returns:
        An ExportReport (also ``.to_json()``).

    Raises:
        ExportError: for a model that is not a tfmpq QAT model, asymmetric weights, mixed per-channel
            and per-tensor groups, representative data of the wrong shape, an operator TFLite cannot
            convert to int8, a deployed group off its grid, or a converted model that does not run.
            Nothing is written then.
        ValueError: for a `c_array` name that is not a C identifier.

    Example:
    >>> report = tfmpq.export_tflite(qat, "model.tflite", representative_data=x_train[:256],
    ...                              c_array="model_data")  # doctest: +SKIP
    >>> tfmpq.evaluate_tflite("model.tflite", x_test, y_test, runtime="tflm")  # doctest: +SKIP
    """
    info = _check_qat_model(qat_model)
    path = _check_output_path(path)
    x = _check_representative_data(qat_model, representative_data)
    if c_array is not None:
        check_c_name(c_array)  # before converting: a bad name must not cost a conversion
    if packed and not any(g["weight_bits"] in LUT_BITS for g in info.values()):
        raise ExportError(
            "Invalid value for `packed`: no group was trained at 2..7 bits, so there is nothing to LUT-compress. "
            f"Received: packed=True for weight bits {[g['weight_bits'] for g in info.values()]}"
        )
    per_channel = all(g["per_channel"] for g in info.values() if g["weight_bits"] <= 8)
    notes = []

    deploy, deployed_names = build_deploy_model(qat_model, dense_as_conv=dense_as_conv)
    data = _convert(deploy, x, int8_io, per_channel)
    matched = _match_tensors(count_levels(data), group_layers(qat_model), deployed_names)
    targets = [
        GridTarget(matched[name][1]["index"], g["weight_bits"], g["per_channel"])
        for name, g in info.items()
        if 2 <= g["weight_bits"] <= 7
    ]
    data, snapped = snap_to_grid(data, targets)
    _verify_litert(data, x)
    levels = count_levels(data)
    matched = {name: (tensor, levels[tensor]) for name, (tensor, _) in matched.items()}
    groups, off_grid, lut_bits = [], [], {}
    for name, g in info.items():
        tensor, lv = matched[name]
        bits = g["weight_bits"] if g["weight_bits"] <= 8 else 8
        limit = 2**bits
        count = lv["max_levels_per_channel"] if per_channel else lv["levels_per_tensor"]
        if 2 <= g["weight_bits"] <= 7 and lv["index"] not in snapped:
            notes.append(f"group `{name}`: int8 values left as converted (not rewritten to the exact grid)")
        if g["weight_bits"] <= 8 and count > limit:
            off_grid.append(f"`{name}` ({g['weight_bits']} bits): {count} distinct values in `{tensor}`")
        if g["weight_bits"] in LUT_BITS:
            lut_bits[lv["index"]] = g["weight_bits"]
        int8_bytes = int(lv["params"] if lv["type"] != "INT4" else math.ceil(lv["params"] / 2))
        groups.append(
            {
                "name": name,
                "kind": g["kind"],
                "weight_bits": g["weight_bits"],
                "activation_bits": g["activation_bits"],
                "deployed_activation_bits": 8,  # full-integer TFLite: every activation is int8
                "tensor": tensor,
                "tensor_index": lv["index"],
                "type": lv["type"],
                "params": lv["params"],
                "max_levels_per_channel": lv["max_levels_per_channel"],
                "levels_per_tensor": lv["levels_per_tensor"],
                "exact_grid": g["weight_bits"] == 8 and per_channel or lv["index"] in snapped,
                "int8_bytes": int8_bytes,
                "packed_bytes": math.ceil(lv["params"] * bits / 8),
                "lut_bytes": None,
            }
        )
        if g["activation_bits"] < 8:
            notes.append(
                f"group `{name}`: {g['activation_bits']}-bit activations are kept on their grid inside int8 "
                "(scale = the trained step, a MINIMUM op clamps at the trained maximum)"
            )
        if g["weight_bits"] > 8:
            notes.append(f"group `{name}` was left in float ({g['weight_bits']} bits): deployed as int8")
    if off_grid:
        raise ExportError(
            "The converted model is not the trained model: these groups lost their bit-width grid in conversion: "
            + "; ".join(off_grid)
        )

    lut_weight_bytes = None
    if packed:
        int8_data = data
        data, packed_tensors = lut_compress(int8_data, lut_bits)
        by_index = {p.index: p for p in packed_tensors}
        for g in groups:
            p = by_index.get(g["tensor_index"])
            g["lut_bytes"] = p.packed_bytes if p is not None else g["int8_bytes"]
        lut_weight_bytes = sum(g["lut_bytes"] for g in groups)
        skipped = [g["name"] for g in groups if g["tensor_index"] in lut_bits and g["tensor_index"] not in by_index]
        if skipped:
            notes.append(f"groups {skipped} stay int8: indices + value table would not be smaller")
        if packed_tensors:
            probe = x[: min(len(x), 8)]
            try:
                same = np.array_equal(run_tflite(data, probe, "tflm"), run_tflite(int8_data, probe, "tflm"))
            except RuntimeError as e:
                raise ExportError(f"The LUT-compressed model does not run on TFLite Micro: {e}") from e
            if not same:
                raise ExportError("The LUT-compressed model's outputs differ from the int8 model's on TFLite Micro")
            notes.append("LUT-compressed: runs on TFLite Micro only (LiteRT rejects compressed tensors)")

    try:
        arena = tflm_arena_bytes(data, x[:1])
    except RuntimeError as e:
        if packed:
            raise ExportError(f"The packed model does not run on TFLite Micro: {e}") from e
        arena = None
        notes.append(f"TFLite Micro cannot run this model: {str(e).splitlines()[0]}")

    _write_atomic(path, data)
    c_paths = None
    if c_array is not None:
        try:
            c_paths = list(write_c_array(data, c_array, os.path.dirname(os.path.abspath(path))))
        except OSError as e:
            os.unlink(path)  # all or nothing: no .tflite without the C array asked for
            raise ExportError(f"Cannot write the C array `{c_array}` next to `{path}`: {e.strerror or e}. "
                              "Nothing was written.") from None
    return ExportReport(
        path=path,
        file_bytes=len(data),
        int8_weight_bytes=sum(g["int8_bytes"] for g in groups),
        packed_weight_bytes=sum(g["packed_bytes"] for g in groups),
        lut_weight_bytes=lut_weight_bytes,
        tflm_arena_bytes=arena,
        int8_io=bool(int8_io),
        packed=lut_weight_bytes is not None and lut_weight_bytes < sum(g["int8_bytes"] for g in groups),
        per_channel=per_channel,
        groups=groups,
        operators=operator_names(data),
        c_array=c_paths,
        notes=notes,
    )
